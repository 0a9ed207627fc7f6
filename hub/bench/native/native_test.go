package native

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/conformance/brokers"
	"github.com/sluicehq/sluice/core"
)

func TestBolt(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "native.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testStorage(t, s, "s")
	if _, err := s.Append(context.Background(), "missing", 0, [][]byte{{1}}); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Append to a missing stream: %v", err)
	}
	if _, err := s.Fetch(context.Background(), "missing", 0, 0, 1); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Fetch of a missing stream: %v", err)
	}
	if err := s.DeleteStream(context.Background(), "missing"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("DeleteStream of a missing stream: %v", err)
	}
	// A call whose ctx is done changes nothing.
	if _, err := s.CreateStream(context.Background(), "c", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "c", 0, [][]byte{{1}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled ctx: %v", err)
	}
	if ms, err := s.Fetch(context.Background(), "c", 0, 0, 10); err != nil || len(ms) != 0 {
		t.Errorf("Fetch after an Append with a cancelled ctx = %+v, %v; want nothing", ms, err)
	}
}

func TestKafka(t *testing.T) {
	if testing.Short() && !brokers.Required() {
		t.Skip("needs Kafka (-short)")
	}
	k, err := brokers.StartKafka(t.Context(), nil)
	if err != nil {
		brokers.Unavailable(t, "kafka", err)
		return
	}
	t.Cleanup(func() { _ = k.Stop() })
	s, err := OpenKafka(k.Brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	testStorage(t, s, "native-test-"+hex.EncodeToString(rnd[:]))
}

// testStorage checks the part of core.Storage the benchmark uses on a new stream.
func testStorage(t *testing.T, s interface {
	core.Storage
	core.StreamDeleter
}, stream string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	idx, err := s.Append(ctx, stream, 0, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	if err != nil || len(idx) != 3 || idx[0] != 0 || idx[2] != 2 {
		t.Fatalf("Append = %v, %v", idx, err)
	}
	ms, err := s.Fetch(ctx, stream, 0, 1, 10)
	if err != nil || len(ms) != 2 || ms[0].Index != 1 || !bytes.Equal(ms[1].Data, []byte("c")) {
		t.Fatalf("Fetch = %+v, %v", ms, err)
	}
	if ms, err := s.Fetch(ctx, stream, 0, 0, 2); err != nil || len(ms) != 2 || ms[1].Index != 1 {
		t.Fatalf("Fetch with limit 2 = %+v, %v", ms, err)
	}
	if ms, _ := s.Fetch(ctx, stream, 0, 3, 10); len(ms) != 0 {
		t.Errorf("Fetch past the end = %+v", ms)
	}
	if err := s.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
}
