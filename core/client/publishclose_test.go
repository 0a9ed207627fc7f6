package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/wire"
)

// TestPublishAfterCloseBegan: a Publish that took its window slot just before Close began
// must not queue its message afterwards. Close waits for the messages queued before it
// began (its Flush reads the last one when it starts): one queued later was not waited for,
// its Ack reported core.ErrClosed, and Close said it had waited for its confirm. The
// Publish must fail at once with core.ErrClosed and queue nothing. A fake hub holds the
// confirm of an earlier message, so Close waits (its close timeout is an hour) while the
// late Publish goes on; then the hub confirms, and Close returns with nothing left.
func TestPublishAfterCloseBegan(t *testing.T) {
	h := newHoldingHub(t)
	c, err := client.New(h.node, wire.Route{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a guard, not a timing assertion
	defer cancel()
	p, err := client.NewPublisher(ctx, c, "s", client.WithCloseTimeout(time.Hour), client.WithRequestTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.Publish(ctx, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.got: // in flight, held by the hub
	case <-ctx.Done():
		t.Fatal("the hub did not receive the first message")
	}
	closed := make(chan error, 1)
	client.SetSlotTaken(p, func() { // the Publish below has passed its checks and holds a slot
		go func() { closed <- p.Close() }()
		<-client.Closing(p) // Close has begun; it waits for the first message's confirm
	})
	late, err := p.Publish(ctx, []byte("late"))
	h.release()
	if !errors.Is(err, core.ErrClosed) || late != nil {
		t.Errorf("Publish after Close began: Ack returned %v, error %v; want no Ack and an error matching core.ErrClosed", late != nil, err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v; want nil: the one message queued before it began was confirmed", err)
	}
	if _, err := first.Wait(ctx); err != nil {
		t.Errorf("Ack of the message published before Close: %v", err)
	}
	if n := p.Stats().Published; n != 1 {
		t.Errorf("%d messages published; want 1: the one refused after Close began is not", n)
	}
}
