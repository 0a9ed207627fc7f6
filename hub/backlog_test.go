package hub

import (
	"bytes"
	"context"
	"sync"
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
	node, _, release, got := gatedHub(t)

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
	err := node.SendOwned(t.Context(), push, func() {
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
	release()

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

// gatedHub starts a hub on a node whose mailboxes hold one message (a memory backend with
// stream "s"; messages larger than 16 bytes are refused; replies are never given up for
// their timeout), and registers at "dest" on the node a worker that holds each message
// until release is called and then hands a copy of it to got. It fills dest with two
// "filler" messages, one held and one in the mailbox: replies to dest then cannot be
// queued, and go to its backlog. release may be called more than once; the test's cleanup
// calls it before it closes the hub, whose Close waits for its backlogs.
func gatedHub(t *testing.T) (node *routing.Node, h *Hub, release func(), got chan wire.TransportMessage) {
	t.Helper()
	node, err := routing.NewNode(routing.WithMailboxSize(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	store, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h, err = New(&core.Backend{Storage: store, Index: store}, WithNode(node), WithMaxMessageSize(16), WithReplyTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if _, err := store.CreateStream(t.Context(), "s", 1); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	release = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // runs before the hub's Close
	handling := make(chan struct{}, 1)
	got = make(chan wire.TransportMessage, 16)
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
	return node, h, release, got
}

// TestBacklogOverflowGivesUpDestination: a destination that lets more than maxBacklog
// replies pile up is given up as a slow consumer, once: its backlog is dropped, and so is
// what would join it; once the backlog is gone, new replies reach the destination again.
func TestBacklogOverflowGivesUpDestination(t *testing.T) {
	node, h, release, got := gatedHub(t)
	probed := make(chan struct{}, 1)
	if err := node.Register("probe", routing.WorkerFunc(func(context.Context, *routing.Message) error {
		probed <- struct{}{}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	push := func(id uint64, to string) { // refused (too large): its confirm goes to to
		err := node.Send(t.Context(), wire.TransportMessage{
			OnwardRoute: wire.Route{wire.Local(partitionAddr("s", 0))},
			ReturnRoute: wire.Route{wire.Local(to)},
			Payload:     wire.EncodePayload(wire.ProtocolPush, wire.PushRequest{RequestID: id, Data: make([]byte, 100)}),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	const n = maxBacklog + 100
	for id := range uint64(n) {
		push(id, "dest")
	}
	// The partition refuses pushes in order, handing each confirm to the hub's reply before
	// it takes the next request: once the probe's confirm arrives, every confirm to dest
	// was handed over, and went to dest's backlog (dest takes nothing).
	push(n, "probe")
	select {
	case <-probed:
	case <-time.After(time.Minute):
		t.Fatal("no confirm of the probe")
	}
	if sc := h.Metrics().SlowConsumers; sc != 1 {
		t.Fatalf("%d replies held for one destination: SlowConsumers = %d, want 1", n, sc)
	}
	release()
	// The backlog's goroutine delivers what it was sending, and ends.
	deadline := time.Now().Add(time.Minute) // a guard, not a timing assertion
	for h.nBacklogs.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the given-up backlog was not removed")
		}
		time.Sleep(time.Millisecond)
	}
	const last = n + 1
	push(last, "dest")
	// dest takes the fillers, at most the one confirm the backlog's goroutine was sending
	// when the backlog overflowed (request 0's), and then the confirm of the last push.
	var confirms []uint64
	for len(confirms) == 0 || confirms[len(confirms)-1] != last {
		var m wire.TransportMessage
		select {
		case m = <-got:
		case <-time.After(time.Minute):
			t.Fatalf("dest got confirms %v, and not the one of request %d sent after the backlog was gone", confirms, last)
		}
		if string(m.Payload) == "filler" {
			continue
		}
		bp, err := wire.DecodeBasePayload(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		c, err := wire.DecodePushConfirm(bp.Data)
		if err != nil {
			t.Fatal(err)
		}
		confirms = append(confirms, c.RequestID)
	}
	if len(confirms) > 2 || len(confirms) == 2 && confirms[0] != 0 {
		t.Fatalf("dest got confirms %v: want at most request 0's before request %d's, the rest dropped", confirms, last)
	}
	if sc := h.Metrics().SlowConsumers; sc != 1 {
		t.Fatalf("SlowConsumers = %d, want 1", sc)
	}
}
