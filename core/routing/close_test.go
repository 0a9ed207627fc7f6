package routing

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/wire"
)

// A second Close must not return while the first still waits for a handler: its caller
// may free what the handler uses.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	n, err := NewNode()
	if err != nil {
		t.Fatal(err)
	}
	var running atomic.Bool
	entered := make(chan struct{})
	if err := n.Register("w", WorkerFunc(func(ctx context.Context, _ *Message) error {
		running.Store(true)
		close(entered)
		<-ctx.Done()
		time.Sleep(500 * time.Millisecond) // cleanup after cancellation
		running.Store(false)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}}); err != nil {
		t.Fatal(err)
	}
	<-entered
	first := make(chan error, 1)
	go func() { first <- n.Close() }()
	// Wait until the first Close has begun (the handler's ctx is cancelled after closed is
	// set), so the next call is a second Close.
	for n.ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if running.Load() {
		t.Fatal("second Close returned while a worker's HandleMessage is still running")
	}
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("first Close: %v", err)
		}
	case <-time.After(20 * time.Second): // a guard, not a timing assertion
		t.Fatal("first Close has not returned")
	}
}
