package routing

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

// waitPending waits until tr has want pending messages, or fails.
func waitPending(t *testing.T, tr *Tracker, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tr.Pending() != want {
		if time.Now().After(deadline) {
			t.Fatalf("pending %d, want %d", tr.Pending(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTrackerHandledMessageCountsOnce checks that a handled message is counted as handled
// once: two messages under the same label go to two workers, and the one handled first must
// not take the other, still being handled, with it.
func TestTrackerHandledMessageCountsOnce(t *testing.T) {
	n := newNode(t)
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	fast := make(inbox, 10)
	if err := n.Register("fast", fast); err != nil {
		t.Fatal(err)
	}
	to := func(addr, p string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: []byte(p)}
	}
	tr := NewTracker()
	bg := context.Background()
	if err := n.Send(tr.Context(bg, 5), to("slow", "a")); err != nil {
		t.Fatal(err)
	}
	<-b.started
	if err := n.Send(tr.Context(bg, 5), to("fast", "b")); err != nil {
		t.Fatal(err)
	}
	receive(t, fast)
	// An untracked message behind "b": once its handler runs, the node has counted "b" as
	// handled (one mailbox goroutine, in order).
	if err := n.Send(bg, to("fast", "sync")); err != nil {
		t.Fatal(err)
	}
	receive(t, fast)
	if got, l := tr.Pending(), lowest(tr); got != 1 || l != 5 {
		t.Fatalf("with one of two label-5 messages handled: pending %d, lowest %d; want 1, 5", got, l)
	}
	close(b.release)
	<-b.got
	waitPending(t, tr, 0)
	if l := lowest(tr); l != -1 {
		t.Fatalf("lowest after both were handled: %d, want none", l)
	}
}

// TestTrackerSendStoppedByUnregisterNotPending checks that a Send waiting for room in a full
// mailbox, which fails because the worker is unregistered, leaves its message not pending:
// it was never queued (the caller has the error). The messages that were queued or being
// handled stay pending.
func TestTrackerSendStoppedByUnregisterNotPending(t *testing.T) {
	n := newNode(t, WithMailboxSize(1))
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	to := func(p string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte(p)}
	}
	tr := NewTracker()
	bg := context.Background()
	if err := n.Send(tr.Context(bg, 1), to("1")); err != nil {
		t.Fatal(err)
	}
	<-b.started // "1" is being handled
	if err := n.Send(tr.Context(bg, 2), to("2")); err != nil {
		t.Fatal(err)
	}
	// "2" fills the mailbox: "3" waits for room.
	errc := make(chan error, 1)
	go func() { errc <- n.Send(tr.Context(bg, 3), to("3")) }()
	waitPending(t, tr, 3)
	if err := n.Unregister("slow"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("send waiting for room when the worker was unregistered: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("send waiting for room did not return when the worker was unregistered")
	}
	// "1"'s handler was cut short and "2" dropped: both stay pending; "3" never was queued.
	if got := tr.Labels(nil); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("pending labels after the unregister: %v, want [1 2]", got)
	}
}

// TestTrackerPanickedHandlerHandled checks that a message whose handler panicked counts as
// handled: it would fail again, so it must not hold back what follows it for good.
func TestTrackerPanickedHandlerHandled(t *testing.T) {
	n := newNode(t)
	c := make(inbox, 1)
	if err := n.Register("p", WorkerFunc(func(ctx context.Context, m *Message) error {
		if string(m.Payload) == "boom" {
			panic("boom")
		}
		return c.HandleMessage(ctx, m)
	})); err != nil {
		t.Fatal(err)
	}
	tr := NewTracker()
	if err := n.Send(tr.Context(context.Background(), 7), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("p")}, Payload: []byte("boom")}); err != nil {
		t.Fatal(err)
	}
	// Behind the panicking message in the same mailbox: once it is received, the node has
	// counted the first one.
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("p")}, Payload: []byte("sync")}); err != nil {
		t.Fatal(err)
	}
	receive(t, c)
	if got, l := tr.Pending(), lowest(tr); got != 0 || l != -1 {
		t.Fatalf("after the handler panicked: pending %d, lowest %d; want 0, none", got, l)
	}
}

// TestRegisterAddressLengthLimit checks the bound on local address names at its edge.
func TestRegisterAddressLengthLimit(t *testing.T) {
	n := newNode(t)
	a := make([]byte, MaxAddressLen)
	for i := range a {
		a[i] = 'a'
	}
	if err := n.Register(string(a), make(inbox, 1)); err != nil {
		t.Fatalf("register a %d-byte address: %v", len(a), err)
	}
	if err := n.Register(string(append(a, 'a')), make(inbox, 1)); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("register a %d-byte address: %v, want ErrInvalidArgument", len(a)+1, err)
	}
}
