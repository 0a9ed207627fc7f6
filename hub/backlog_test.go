package hub

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// A reply that waits in its destination's backlog keeps its own copy of its routes. The
// routes of a request alias the frame it came in (wire.DecodeTransportMessage), and the
// transport reuses that buffer for other frames once the request is released: a refused
// push is released right after its confirm is handed to reply. A backlogged confirm that
// kept the request's route would then go out along whatever bytes the next frame put there.
func TestBacklogKeepsItsOwnRoute(t *testing.T) {
	// A mailbox of one lets the test fill the destination, so that the confirm goes to
	// the backlog.
	node, err := routing.NewNode(routing.WithMailboxSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	store, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Replies are never given up while the test holds the destination.
	h, err := New(&core.Backend{Storage: store, Index: store}, WithNode(node), WithMaxMessageSize(16), WithReplyTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := store.CreateStream(t.Context(), "s", 1); err != nil {
		t.Fatal(err)
	}

	gate := make(chan struct{})
	handling := make(chan struct{}, 1)
	got := make(chan wire.TransportMessage, 8)
	err = node.Register("dest", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		select {
		case handling <- struct{}{}:
		default:
		}
		<-gate
		c := m.TransportMessage
		c.OnwardRoute, c.Payload = c.OnwardRoute.Clone(), bytes.Clone(c.Payload)
		got <- c
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	filler := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("dest")}, Payload: []byte("filler")}
	if err := node.Send(t.Context(), filler); err != nil { // handled: the worker waits at the gate
		t.Fatal(err)
	}
	<-handling
	if err := node.Send(t.Context(), filler); err != nil { // fills the mailbox
		t.Fatal(err)
	}

	// The push request as the TCP transport hands it over: its return route aliases the
	// frame's buffer, which its release hands back for reuse (here: overwritten).
	frame := []byte("client-reply-address")
	want := bytes.Clone(frame)
	released := make(chan struct{})
	push := wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local(partitionAddr("s", 0))},
		ReturnRoute: wire.Route{wire.Local("dest"), {Type: wire.AddressLocal, Value: frame}},
		Payload:     wire.EncodePayload(wire.ProtocolPush, wire.PushRequest{RequestID: 7, Data: make([]byte, 100)}), // too large: refused
	}
	err = node.SendOwned(t.Context(), push, func() {
		copy(frame, bytes.Repeat([]byte("X"), len(frame))) // the next frame read into the buffer
		close(released)
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-time.After(time.Minute):
		t.Fatal("the refused push was not released")
	}
	close(gate)

	for {
		var m wire.TransportMessage
		select {
		case m = <-got:
		case <-time.After(time.Minute):
			t.Fatal("no confirm of the refused push")
		}
		if string(m.Payload) == "filler" {
			continue
		}
		bp, err := wire.DecodeBasePayload(m.Payload)
		if err != nil || bp.Protocol != wire.ProtocolPush {
			t.Fatalf("reply %q, %v; want a %s confirm", m.Payload, err, wire.ProtocolPush)
		}
		c, err := wire.DecodePushConfirm(bp.Data)
		if err != nil || c.RequestID != 7 || c.Status != wire.StatusError {
			t.Fatalf("confirm %+v, %v; want request 7 with status ERROR", c, err)
		}
		if len(m.OnwardRoute) != 2 || !bytes.Equal(m.OnwardRoute[1].Value, want) {
			t.Fatalf("confirm sent along %v, want the request's return route [dest, %s]", m.OnwardRoute, want)
		}
		return
	}
}
