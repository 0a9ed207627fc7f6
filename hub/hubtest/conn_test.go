package hubtest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestConnDeletesItsStreams checks that the streams a Conn creates, plain and partitioned,
// are deleted when the Conn's test ends, and only those.
func TestConnDeletesItsStreams(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := &core.Backend{Storage: s, Index: s}
	ctx := context.Background()
	exists := func(stream string) bool {
		t.Helper()
		_, err := s.Partitions(ctx, stream)
		if err != nil && !errors.Is(err, core.ErrStreamNotFound) {
			t.Fatalf("Partitions(%q): %v", stream, err)
		}
		return err == nil
	}

	_, addr := hubtest.Start(t, b)
	t.Run("create", func(t *testing.T) {
		c := hubtest.Dial(t, addr)
		c.Create("plain")
		c.Create("plain") // again: its second cleanup finds it gone, which is fine
		c.CreatePartitioned(wire.ProtocolCreatePartitioned, "parts", 3)
		if !exists("plain") || !exists("parts") {
			t.Fatal("a stream the Conn created is missing during its test")
		}
	})
	for _, stream := range []string{"plain", "parts"} {
		if exists(stream) {
			t.Errorf("stream %q outlived the test whose Conn created it", stream)
		}
	}

	// A Conn deletes only what it created: another test's Conn that created nothing leaves
	// this test's stream alone.
	c := hubtest.Dial(t, addr)
	c.Create("kept")
	t.Run("reuse", func(t *testing.T) {
		hubtest.Dial(t, addr) // no Create: deletes nothing
	})
	if !exists("kept") {
		t.Error("a Conn that created nothing deleted a stream")
	}
}
