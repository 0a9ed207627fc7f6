package routing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/wire"
)

// startDrains starts count Drains of n, each with a ctx that ends after timeout, and
// returns the channels their results arrive on.
func startDrains(t *testing.T, n *Node, count int, timeout time.Duration) []chan error {
	t.Helper()
	errs := make([]chan error, count)
	for i := range errs {
		errs[i] = make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			errs[i] <- n.Drain(ctx)
		}()
	}
	// Let the Drains find the node busy and wait. Whether they got there first only
	// decides whether the test can catch the bug, never whether it passes when fixed.
	time.Sleep(50 * time.Millisecond)
	return errs
}

// TestConcurrentDrainsAllReturn checks that every Drain waiting when the last busy worker
// becomes idle returns, not only the one that takes the wake-up.
func TestConcurrentDrainsAllReturn(t *testing.T) {
	n := newNode(t)
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	<-b.started
	errs := startDrains(t, n, 3, 5*time.Second)
	close(b.release)
	for i, ch := range errs {
		if err := <-ch; err != nil {
			t.Errorf("Drain %d: %v; want nil once the worker handled its message", i, err)
		}
	}
}

// TestDrainReturnsWhenBusyWorkerLeaves checks that a Drain waiting for a worker returns
// once that worker is unregistered, or the node closed, with messages still queued for it:
// those are dropped, so nothing registered is left to wait for.
func TestDrainReturnsWhenBusyWorkerLeaves(t *testing.T) {
	for _, how := range []string{"Unregister", "Close"} {
		t.Run(how, func(t *testing.T) {
			n := newNode(t)
			b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
			if err := n.Register("slow", b); err != nil {
				t.Fatal(err)
			}
			for range 3 { // one being handled, two queued behind it
				if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte("m")}); err != nil {
					t.Fatal(err)
				}
			}
			<-b.started
			errs := startDrains(t, n, 1, 5*time.Second)
			var err error
			if how == "Unregister" {
				err = n.Unregister("slow")
			} else {
				err = n.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errs[0]; err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Drain after %s of the only busy worker: %v; want nil", how, err)
				}
				t.Fatal(err)
			}
		})
	}
}
