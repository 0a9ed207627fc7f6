package routing

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
)

func TestTrackerFollowsMessagesUntilHandled(t *testing.T) {
	n := newNode(t, WithMailboxSize(2))
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	if err := n.RegisterSender("sync", &fakeTransport{}); err != nil {
		t.Fatal(err)
	}
	tr := NewTracker()
	ctx := tr.Context(context.Background())
	if err := tr.Wait(ctx); err != nil {
		t.Fatalf("wait with nothing sent: %v", err)
	}
	to := func(addr, p string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: []byte(p)}
	}
	for _, p := range []string{"1", "2", "3"} {
		if err := n.Send(ctx, to("slow", p)); err != nil {
			t.Fatal(err)
		}
	}
	// A Sender handles the message in Send: nothing to follow.
	if err := n.Send(ctx, to("sync", "s")); err != nil {
		t.Fatal(err)
	}
	<-b.started // "1" is being handled, "2" and "3" are queued: the mailbox is full
	if got := tr.Pending(); got != 3 {
		t.Fatalf("pending with 1 handling and 2 queued: %d, want 3", got)
	}
	// A send that gives up on a full mailbox is not pending.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := n.Send(cctx, to("slow", "4")); !errors.Is(err, context.Canceled) {
		t.Fatalf("send to a full mailbox with a cancelled ctx: %v", err)
	}
	if got := tr.Pending(); got != 3 {
		t.Fatalf("pending after a send that gave up: %d, want 3", got)
	}
	if err := tr.Wait(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with pending messages and a cancelled ctx: %v, want context.Canceled", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- tr.Wait(context.Background()) }()
	close(b.release)
	if err := <-waited; err != nil {
		t.Fatalf("wait until handled: %v", err)
	}
	if got := len(b.got); got != 3 {
		t.Fatalf("wait returned after %d of 3 messages were handled", got)
	}
	if got := tr.Pending(); got != 0 {
		t.Fatalf("pending after all were handled: %d", got)
	}
}

func TestTrackerReportsDroppedMessages(t *testing.T) {
	n := newNode(t)
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	tr := NewTracker()
	ctx := tr.Context(context.Background())
	for _, p := range []string{"1", "2"} {
		if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	<-b.started
	// Closing the node cancels "1"'s handler and drops "2" from the mailbox.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(context.Background()); !errors.Is(err, ErrDropped) {
		t.Fatalf("wait after the node dropped a tracked message: %v, want ErrDropped", err)
	}
	if got := tr.Pending(); got != 0 {
		t.Fatalf("pending after close: %d", got)
	}
}
