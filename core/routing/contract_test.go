package routing

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

// TestFallbackNotConsultedForInvalidAddress checks that the fallback is asked only for
// addresses a worker could be registered at: an empty address or one of more than
// MaxAddressLen bytes (a peer can send either) fails with ErrNoRoute without calling it.
func TestFallbackNotConsultedForInvalidAddress(t *testing.T) {
	n := newNode(t)
	var asked atomic.Int32
	n.SetFallback(func(ctx context.Context, addr string) Worker {
		asked.Add(1)
		return make(inbox, 1)
	})
	for _, addr := range []string{"", strings.Repeat("a", MaxAddressLen+1)} {
		err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}})
		if !errors.Is(err, ErrNoRoute) {
			t.Errorf("send to a %d-byte address: %v, want ErrNoRoute", len(addr), err)
		}
	}
	if got := asked.Load(); got != 0 {
		t.Fatalf("fallback asked %d times for invalid addresses, want 0", got)
	}
}

// TestCancelledSendToFullMailboxLeavesNothingQueued checks that a Send that gave up on a
// full mailbox is not counted as queued: once the worker handled what was queued, Drain
// returns and UnregisterIdle finds the worker idle.
func TestCancelledSendToFullMailboxLeavesNothingQueued(t *testing.T) {
	n, b, to := fullMailbox(t)
	bg := context.Background()
	cctx, cancel := context.WithCancel(bg)
	cancel()
	if err := n.Send(cctx, to("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("send to full mailbox: %v, want context.Canceled", err)
	}
	close(b.release)
	ctx, stop := context.WithTimeout(bg, 10*time.Second) // hang guard
	defer stop()
	if err := n.Drain(ctx); err != nil {
		t.Fatalf("Drain after the queued messages were handled: %v", err)
	}
	if ok, err := n.UnregisterIdle("slow"); !ok || err != nil {
		t.Fatalf("UnregisterIdle after Drain = %v, %v; want true, nil", ok, err)
	}
}

// TestTrackerFailedHandlerIsHandled checks that a message whose handler returned an error
// while its ctx was still live counts as handled: only failures caused by the worker
// stopping leave a message pending.
func TestTrackerFailedHandlerIsHandled(t *testing.T) {
	n := newNode(t)
	synced := make(chan struct{}, 1)
	if err := n.Register("w", WorkerFunc(func(ctx context.Context, m *Message) error {
		if string(m.Payload) == "sync" {
			synced <- struct{}{}
			return nil
		}
		return errors.New("refused")
	})); err != nil {
		t.Fatal(err)
	}
	to := func(p string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}, Payload: []byte(p)}
	}
	tr := NewTracker()
	bg := context.Background()
	if err := n.Send(tr.Context(bg, 3), to("fail")); err != nil {
		t.Fatal(err)
	}
	// An untracked message behind it: once its handler runs, the failed one was counted
	// (one mailbox goroutine, in order).
	if err := n.Send(bg, to("sync")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-synced:
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("sync message not handled")
	}
	if got, l := tr.Pending(), lowest(tr); got != 0 || l != -1 {
		t.Fatalf("after a handler failed with a live ctx: pending %d, lowest %d; want 0, none", got, l)
	}
}

// TestSendOwnedToNonCopyingTransport checks that a lent buffer is not given back after a
// Transport that may keep the payload (it does not implement PayloadCopier) returned.
func TestSendOwnedToNonCopyingTransport(t *testing.T) {
	n := newNode(t)
	tr := &fakeTransport{}
	if _, err := n.RegisterTransport(wire.AddressTCP, tr); err != nil {
		t.Fatal(err)
	}
	released := 0
	msg := wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP("h:1"), wire.Local("x")}, Payload: []byte("x")}
	if err := n.SendOwned(context.Background(), msg, func() { released++ }); err != nil {
		t.Fatal(err)
	}
	if released != 0 || len(tr.sent) != 1 {
		t.Fatalf("released %d times, transport got %d messages; want 0 and 1", released, len(tr.sent))
	}
}

// TestRegisterRefusesNil checks that a nil worker or sender is refused with
// core.ErrInvalidArgument and takes no address.
func TestRegisterRefusesNil(t *testing.T) {
	n := newNode(t)
	if err := n.Register("w", nil); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("Register(nil) = %v, want core.ErrInvalidArgument", err)
	}
	if err := n.RegisterSender("s", nil); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("RegisterSender(nil) = %v, want core.ErrInvalidArgument", err)
	}
	for _, addr := range []string{"w", "s"} {
		if err := n.Unregister(addr); !errors.Is(err, ErrNoRoute) {
			t.Errorf("Unregister(%q) after a refused registration = %v, want ErrNoRoute", addr, err)
		}
	}
}

// TestSendClosedDuringFallback checks that a Send whose fallback runs while the node
// closes fails with ErrClosed, as every Send after Close does, and not with ErrNoRoute,
// which says that no worker exists at the address (a server answers a client with "no such
// stream" for it): the worker the fallback returns cannot be registered any more.
func TestSendClosedDuringFallback(t *testing.T) {
	n := newNode(t)
	entered, closed := make(chan struct{}), make(chan struct{})
	n.SetFallback(func(ctx context.Context, addr string) Worker {
		close(entered)
		<-closed
		return make(inbox, 1)
	})
	errc := make(chan error, 1)
	go func() {
		errc <- n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("later")}})
	}()
	<-entered
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	close(closed)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) || errors.Is(err, ErrNoRoute) {
			t.Fatalf("send whose fallback ran while the node closed: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("send did not return")
	}
}
