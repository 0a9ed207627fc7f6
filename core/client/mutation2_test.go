package client_test

// More tests found by mutation testing (a second round, after mutation_test.go): each one
// fails for a specific way the client could be wrong that the rest of the suite missed.

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/client"
)

// TestWindowBoundsInclusive checks that the window bounds are inclusive: 1 and MaxWindow
// are valid windows.
func TestWindowBoundsInclusive(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	for _, n := range []int{1, client.MaxWindow} {
		p, err := client.NewPublisher(t.Context(), c, "window-bounds", client.WithWindow(n))
		if err != nil {
			t.Fatalf("WithWindow(%d): %v, want it accepted", n, err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBatchFitsAFrame checks that a publisher splits a queue of messages whose bytes
// together exceed a frame into requests that each fit one: the queue is built while the hub
// cannot be reached, so the first session finds it all ready at once, and every message is
// confirmed.
func TestBatchFitsAFrame(t *testing.T) {
	const n, size = 12, 16 << 10 // 192 KiB together: at least three frames
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	px.SetRefuse(true)
	p := newPublisher(t, c, "batch-frame", client.WithBackoff(fastBackoff))
	ctx := t.Context()
	acks := make([]*client.Ack, n)
	for i := range acks {
		a, err := p.Publish(ctx, msg(0, uint32(i), size))
		if err != nil {
			t.Fatal(err)
		}
		acks[i] = a
	}
	px.SetRefuse(false)
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second) // a hang guard
	defer cancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v (stats %+v)", err, p.Stats())
	}
	for i, a := range acks {
		if idx, err := a.Wait(ctx); err != nil || idx != uint64(i) {
			t.Fatalf("message %d: index %d, %v", i, idx, err)
		}
	}
}
