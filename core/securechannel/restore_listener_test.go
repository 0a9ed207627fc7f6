package securechannel

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
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
	f, m1, path := ikEarlyDataHandledAndSaved(t)
	ctx := context.Background()
	nb, l2, work2 := restartB(t, f) // the device restarts, with its listener for new channels
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
