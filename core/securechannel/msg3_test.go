package securechannel

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
)

// TestMessage3CutShortSentWhenMessage2ComesAgain: when the initiator's send of XX message 3 is
// cut short (the subscription that delivered message 2 stops while message 3 cannot be
// queued, as when the device's Transport closes), the delivery of message 2 fails, so that
// it comes again, and Dial keeps waiting; when message 2 comes again, the initiator sends
// message 3 and Dial returns the open channel. Before, Dial failed, and the subscription
// moved past message 2: through streams, where Dial is meant to wait while the device goes
// offline and online again, the handshake was lost.
func TestMessage3CutShortSentWhenMessage2ComesAgain(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t))
	m1, res, p2, dialed := f.dialByHand(t, func(ctx context.Context, to wire.Route) (*SecureChannel, error) {
		return Dial(ctx, f.node, to, f.cfgA)
	})
	// Message 2's return route leads to "raw", whose mailbox is full.
	m2 := wire.TransportMessage{OnwardRoute: wire.Route{m1.ReturnRoute[0]}, ReturnRoute: wire.Route{wire.Local("raw")}, Payload: p2}
	f.raw.fill(t)
	stopped, stop := context.WithCancel(context.Background())
	stop()
	if err := f.node.Send(stopped, m2.Clone()); !errors.Is(err, context.Canceled) {
		t.Fatalf("delivering message 2 while message 3 cannot be sent: %v, want context.Canceled (cut short, so that it comes again)", err)
	}
	f.raw.free(t)

	if err := f.node.Send(context.Background(), m2.Clone()); err != nil { // it comes again
		t.Fatal(err)
	}
	m3 := []byte(f.raw.next(t))
	sc, err := dialed()
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := res.ReadMessage(m3); err != nil || !res.Complete() {
		t.Fatalf("the responder reads message 3: %v (complete: %v)", err, res.Complete())
	}
	ch, err := res.Channel()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := ch.Seal([]byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ch.Open(sealed); err != nil {
		t.Fatalf("the initiator's channel opens the responder's message: %v", err)
	}

	// Message 2 once more: a duplicate.
	if err := f.node.Send(context.Background(), m2.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := f.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("raw")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if p := f.raw.next(t); p != "marker" {
		t.Fatalf("got %q, want the marker: message 3 was sent again for a message 2 that came after it was sent", p)
	}
}
