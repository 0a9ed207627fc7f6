package securechannel

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// TestRestoredResponderKnownToListener: an IK responder channel whose early data was
// handled is saved; after a restart, its handshake message 1 comes again from the stream
// (the subscription had not saved its position past it) to the node's listener. The early
// data must not be delivered a second time, whichever way the application restores the
// channel: a responder restored without its listener was unknown to it, so the listener
// made a second channel of that message 1 and delivered its early data again. Restore (and
// RestoreSession) refuse a responder's state instead, naming Listener.Restore.
func TestRestoredResponderKnownToListener(t *testing.T) {
	f := newFixture(t, false, 0)
	work := make(inbox, 10)
	if err := f.b.Register("work", work); err != nil {
		t.Fatal(err)
	}
	m1 := ikHello(t, f, wire.Route{wire.Local("work")}, "early")
	sub := routing.NewTracker()
	ctx := context.Background()
	if err := f.b.Send(sub.Context(ctx, 7), m1.Clone()); err != nil {
		t.Fatal(err)
	}
	if m := work.next(t); string(m.Payload) != "early" {
		t.Fatalf("delivered %q", m.Payload)
	}
	// Received is not handled yet: wait until the worker returned, or the save would find
	// the early data unhandled and the restored channel would rightly deliver it again.
	waitFor(t, func() bool { return sub.Pending() == 0 })
	path := filepath.Join(t.TempDir(), "b.session")
	if err := onlyChannel(t, f.listener).SaveSession(path); err != nil {
		t.Fatal(err)
	}
	f.listener.Close()
	f.b.Close()

	nb := f.net.node(t, "b") // the device restarts, with its listener for new channels
	l2, err := Listen(nb, "sc", f.cfgB, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	work2 := make(inbox, 10)
	if err := nb.Register("work", work2); err != nil {
		t.Fatal(err)
	}
	sb, err := RestoreSession(nb, f.cfgB, path)
	if err != nil {
		if !errors.Is(err, core.ErrInvalidArgument) || !strings.Contains(err.Error(), "Listener.Restore") {
			t.Fatalf("restore a responder's session without its listener: %v, want core.ErrInvalidArgument naming Listener.Restore", err)
		}
		if sb, err = l2.RestoreSession(path); err != nil {
			t.Fatal(err)
		}
	}
	defer sb.Close()
	if err := nb.Send(ctx, m1.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := nb.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("work")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if m := work2.next(t); string(m.Payload) != "marker" {
		t.Fatalf("got %q, want the marker: the handled early data was delivered again", m.Payload)
	}
	if s := l2.Stats(); s.Accepted != 0 || s.Open != 1 {
		t.Fatalf("listener stats %+v: message 1 of the restored channel made another channel", s)
	}
}
