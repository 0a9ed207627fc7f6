package remote_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/backends/remote"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/hub"
)

// startHub runs an in-process hub on a memory backend on a loopback port.
func startHub(t testing.TB) string {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return startHubOn(t, s)
}

// startHubOn runs an in-process hub on s (closed at the end of the test).
func startHubOn(t testing.TB, s interface {
	core.Storage
	core.IndexStorage
}) string {
	t.Helper()
	h, err := hub.New(&core.Backend{Storage: s, Index: s}, hub.WithMaxPullWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		_ = s.Close()
	})
	return a.String()
}

func harness(addr string) conformance.Harness {
	return conformance.Harness{
		Open: func(ctx context.Context) (*core.Backend, error) {
			// The hub's backend outlives the remote store's Close, so the hub path is
			// persistent; memory's and bbolt's indexes are dense.
			return core.Open(ctx, "sluice://"+addr+"?dense=true&persistent=true&timeout=10s")
		},
		Appenders:           4,
		MessagesPerAppender: 100,
	}
}

// TestConformance runs the conformance suite through an in-process hub over loopback TCP,
// with the hub on the memory backend and on bbolt.
func TestConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) { runConformance(t, startHub(t)) })
	t.Run("bbolt", func(t *testing.T) {
		s, err := bbolt.New(t.Context(), filepath.Join(t.TempDir(), "hub.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		runConformance(t, startHubOn(t, s))
	})
}

func runConformance(t *testing.T, addr string) {
	res := conformance.Run(t.Context(), harness(addr), conformance.ReportFunc(func(r conformance.TestResult) {
		if !r.Leaf {
			return
		}
		switch r.Outcome {
		case conformance.Fail:
			t.Errorf("%s failed: %v", r.Name, r.Failures)
		case conformance.Skip:
			t.Logf("%s skipped: %s", r.Name, r.SkipReason)
		}
	}))
	t.Logf("conformance through the hub: %v", res)
	if res.Passed < 40 {
		t.Errorf("only %d conformance tests passed", res.Passed)
	}
}

func TestOpenURL(t *testing.T) {
	addr := startHub(t)
	ctx := t.Context()
	for _, bad := range []string{
		"sluice://",
		"sluice://" + addr + "?dense=maybe",
		"sluice://" + addr + "?timeout=-1s",
		"sluice://" + addr + "?max_message_size=70000",
		"sluice://" + addr + "?max_partitions=5000",
		"sluice://" + addr + "?colour=blue",
	} {
		if b, err := core.Open(ctx, bad); !errors.Is(err, core.ErrInvalidOption) {
			if b != nil {
				_ = b.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrInvalidOption", bad, err)
		}
	}
	b, err := core.Open(ctx, "sluice://"+addr+"?max_message_size=1000&max_partitions=8")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	caps := b.Storage.Capabilities()
	if caps.Name != "remote" || caps.MaxMessageSize != 1000 || caps.MaxPartitions != 8 || caps.DenseIndex || caps.Persistent {
		t.Fatalf("capabilities = %v", caps)
	}
	if _, err := b.Storage.Append(ctx, "s", 0, [][]byte{make([]byte, 1001)}); !errors.Is(err, core.ErrMessageTooLarge) {
		t.Fatalf("Append of 1001 bytes with max_message_size=1000: %v", err)
	}
}

// TestHubDown checks that a hub that cannot be reached is reported as unavailable, not as
// an empty stream, and that the store recovers once the hub is back.
func TestHubDown(t *testing.T) {
	addr := startHub(t)
	px, err := faultproxy.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	s, err := remote.New(t.Context(), px.Addr(), &remote.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.CreateStream(ctx, "down", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "down", 0, [][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	px.SetRefuse(true)
	px.ResetAll()
	msgs, err := s.Fetch(ctx, "down", 0, 0, 10)
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		// A call racing with the reset may still be answered on the old connection.
		time.Sleep(10 * time.Millisecond)
		msgs, err = s.Fetch(ctx, "down", 0, 0, 10)
	}
	if !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("Fetch with the hub unreachable = %v, %v; want ErrUnavailable", msgs, err)
	}
	px.SetRefuse(false)
	// A connection accepted just before refusing ended may still be reset: a call may fail
	// with ErrUnavailable before the store is back.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if msgs, err = s.Fetch(ctx, "down", 0, 0, 10); err == nil {
			break
		}
		if !errors.Is(err, core.ErrUnavailable) {
			t.Fatalf("Fetch while the hub comes back = %v", err)
		}
	}
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "a" {
		t.Fatalf("Fetch after the hub is back = %v, %v", msgs, err)
	}
}

// BenchmarkStorage runs the conformance benchmarks through a hub on bbolt over loopback
// TCP; compare with backends/bbolt's BenchmarkStorage for the cost of the hub path.
func BenchmarkStorage(b *testing.B) {
	s, err := bbolt.New(context.Background(), filepath.Join(b.TempDir(), "hub.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	conformance.BenchmarkStorage(b, harness(startHubOn(b, s)))
}
