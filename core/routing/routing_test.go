package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

func newNode(t *testing.T, opts ...Option) *Node {
	t.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	n, err := NewNode(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// inbox is a worker that records what it receives on a channel.
type inbox chan *Message

func (c inbox) HandleMessage(ctx context.Context, m *Message) error {
	select {
	case c <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func receive(t *testing.T, c inbox) *Message {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message received")
		return nil
	}
}

func TestDeliverAndReply(t *testing.T) {
	n := newNode(t)
	client, server := make(inbox, 1), make(inbox, 1)
	if err := n.Register("client", client); err != nil {
		t.Fatal(err)
	}
	// The server replies to everything it receives.
	if err := n.Register("echo", WorkerFunc(func(ctx context.Context, m *Message) error {
		server <- m
		return m.Reply(ctx, append([]byte("re:"), m.Payload...))
	})); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err := n.Send(ctx, wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("client")},
		Payload:     []byte("hi"),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := receive(t, server)
	if got.Address != "echo" || string(got.Payload) != "hi" || !got.OnwardRoute.Equal(wire.Route{wire.Local("echo")}) {
		t.Fatalf("server got %v at %q", got.TransportMessage, got.Address)
	}
	reply := receive(t, client)
	if string(reply.Payload) != "re:hi" {
		t.Fatalf("reply payload %q", reply.Payload)
	}
	if !reply.OnwardRoute.Equal(wire.Route{wire.Local("client")}) || !reply.ReturnRoute.Equal(wire.Route{wire.Local("echo")}) {
		t.Fatalf("reply routes: %v", reply.TransportMessage)
	}
}

// TestTwoHopForwarding sends client -> hop1 -> hop2 -> echo and back, checking the Ockam
// rules at every step: each forwarder removes itself from onward and prepends itself to
// return, and the reply retraces the return route.
func TestTwoHopForwarding(t *testing.T) {
	n := newNode(t)
	client := make(inbox, 1)
	seen := make(chan wire.TransportMessage, 8) // what each forwarder received
	forwarder := WorkerFunc(func(ctx context.Context, m *Message) error {
		seen <- m.TransportMessage
		return m.Forward(ctx)
	})
	for _, a := range []string{"hop1", "hop2"} {
		if err := n.Register(a, forwarder); err != nil {
			t.Fatal(err)
		}
	}
	echoed := make(chan wire.TransportMessage, 1)
	if err := n.Register("echo", WorkerFunc(func(ctx context.Context, m *Message) error {
		echoed <- m.TransportMessage
		return m.Reply(ctx, m.Payload)
	})); err != nil {
		t.Fatal(err)
	}
	if err := n.Register("client", client); err != nil {
		t.Fatal(err)
	}
	L := wire.Local
	err := n.Send(context.Background(), wire.TransportMessage{
		OnwardRoute: wire.Route{L("hop1"), L("hop2"), L("echo")},
		ReturnRoute: wire.Route{L("client")},
		Payload:     []byte("p"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := <-echoed
	if !e.OnwardRoute.Equal(wire.Route{L("echo")}) || !e.ReturnRoute.Equal(wire.Route{L("hop2"), L("hop1"), L("client")}) {
		t.Fatalf("echo received %v", e)
	}
	reply := receive(t, client)
	if !reply.OnwardRoute.Equal(wire.Route{L("client")}) {
		t.Fatalf("reply onward %v", reply.OnwardRoute)
	}
	// The reply went back through hop2 then hop1, each forwarding it.
	if !reply.ReturnRoute.Equal(wire.Route{L("hop1"), L("hop2"), L("echo")}) {
		t.Fatalf("reply return route %v", reply.ReturnRoute)
	}
	var hops []string
	for len(seen) > 0 {
		m := <-seen
		hops = append(hops, m.OnwardRoute.String())
	}
	want := []string{"0#hop1 => 0#hop2 => 0#echo", "0#hop2 => 0#echo", "0#hop2 => 0#hop1 => 0#client", "0#hop1 => 0#client"}
	if len(hops) != len(want) {
		t.Fatalf("forwarders saw %q, want %q", hops, want)
	}
	for i := range want {
		if hops[i] != want[i] {
			t.Fatalf("forwarders saw %q, want %q", hops, want)
		}
	}
}

func TestForwardAndReplyDoNotModifyInput(t *testing.T) {
	L := wire.Local
	msg := wire.TransportMessage{
		OnwardRoute: make(wire.Route, 2, 8),
		ReturnRoute: make(wire.Route, 1, 8),
	}
	msg.OnwardRoute[0], msg.OnwardRoute[1], msg.ReturnRoute[0] = L("a"), L("b"), L("r")
	f := Forward(msg, L("a"))
	f.ReturnRoute[0] = L("X")
	f.OnwardRoute[0] = L("Y")
	r := Reply(msg, L("a"), nil)
	r.OnwardRoute[0] = L("Z")
	if msg.OnwardRoute.String() != "0#a => 0#b" || msg.ReturnRoute.String() != "0#r" {
		t.Fatalf("input modified: %v", msg)
	}
	if g := Forward(wire.TransportMessage{OnwardRoute: wire.Route{L("a")}}, L("a")); len(g.OnwardRoute) != 0 || !g.ReturnRoute.Equal(wire.Route{L("a")}) {
		t.Fatalf("forward of last hop: %v", g)
	}
}

func TestSendErrors(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	if err := n.Send(ctx, wire.TransportMessage{}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("empty onward: %v", err)
	}
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("nobody")}}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("unknown address: %v", err)
	}
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP("127.0.0.1:1")}}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("no transport: %v", err)
	}
	w := make(inbox, 1)
	if err := n.Register("a", w); err != nil {
		t.Fatal(err)
	}
	if err := n.Register("a", w); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("duplicate: %v", err)
	}
	if err := n.Register("", w); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("empty address: %v", err)
	}
	if err := n.Unregister("zzz"); !errors.Is(err, ErrNoRoute) {
		t.Errorf("unregister unknown: %v", err)
	}
	if err := n.Unregister("a"); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("a")}}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("after unregister: %v", err)
	}
	if _, err := NewNode(WithMailboxSize(0)); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("mailbox size 0: %v", err)
	}
}

// blocker is a worker whose handler waits until released, to fill its mailbox.
type blocker struct {
	started chan struct{}
	release chan struct{}
	got     chan []byte
}

func (b *blocker) HandleMessage(ctx context.Context, m *Message) error {
	b.started <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.got <- m.Payload
	return nil
}

// fullMailbox returns a node whose worker "slow" (b) has a mailbox of one: the handler holds
// message "1" until b.release, and "2" fills the mailbox. to addresses a payload to it.
func fullMailbox(t *testing.T) (n *Node, b *blocker, to func(string) wire.TransportMessage) {
	t.Helper()
	n = newNode(t, WithMailboxSize(1))
	b = &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	to = func(p string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte(p)}
	}
	ctx := context.Background()
	if err := n.Send(ctx, to("1")); err != nil { // taken by the handler
		t.Fatal(err)
	}
	<-b.started
	if err := n.Send(ctx, to("2")); err != nil { // fills the mailbox
		t.Fatal(err)
	}
	return n, b, to
}

func TestFullMailboxWaitsForRoomOrContext(t *testing.T) {
	n, b, to := fullMailbox(t)
	ctx := context.Background()
	// The mailbox is full: a send with a cancelled context fails, and nothing is lost.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := n.Send(cctx, to("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("send to full mailbox: %v, want context.Canceled", err)
	}
	// A blocked send completes once there is room.
	done := make(chan error, 1)
	go func() { done <- n.Send(ctx, to("3")) }()
	close(b.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1", "2", "3"} {
		if got := string(<-b.got); got != want {
			t.Fatalf("handled %q, want %q (in order)", got, want)
		}
	}
}

func TestCloseStopsWorkersAndCancelsHandlers(t *testing.T) {
	n, err := NewNode(WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	b := &blocker{started: make(chan struct{}, 1), release: make(chan struct{}), got: make(chan []byte, 1)}
	if err := n.Register("w", b); err != nil {
		t.Fatal(err)
	}
	tr := &fakeTransport{}
	if _, err := n.RegisterTransport(wire.AddressTCP, tr); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}}); err != nil {
		t.Fatal(err)
	}
	<-b.started
	// Close returns although the handler never gets released: its ctx is cancelled.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if !tr.closed() {
		t.Fatal("transport not closed")
	}
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}}); !errors.Is(err, ErrClosed) || !errors.Is(err, core.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if err := n.Register("x", b); !errors.Is(err, ErrClosed) {
		t.Fatalf("register after close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

type fakeTransport struct {
	mu   sync.Mutex
	sent []wire.TransportMessage
	done bool
}

func (f *fakeTransport) Send(ctx context.Context, m wire.TransportMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, m)
	return nil
}

func (f *fakeTransport) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = true
	return nil
}

func (f *fakeTransport) closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

func TestTransportAndSender(t *testing.T) {
	n := newNode(t)
	tr := &fakeTransport{}
	if _, err := n.RegisterTransport(wire.AddressTCP, tr); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RegisterTransport(wire.AddressTCP, tr); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("second transport: %v", err)
	}
	if _, err := n.RegisterTransport(wire.AddressLocal, tr); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("local transport: %v", err)
	}
	s := &fakeTransport{}
	if err := n.RegisterSender("conn", s); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP("h:1"), wire.Local("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("conn")}}); err != nil {
		t.Fatal(err)
	}
	// Senders are called synchronously: the messages are there already.
	if len(tr.sent) != 1 || tr.sent[0].OnwardRoute.String() != "1#h:1 => 0#x" {
		t.Fatalf("transport got %v", tr.sent)
	}
	if len(s.sent) != 1 {
		t.Fatalf("sender got %v", s.sent)
	}
}

// RegisterTransport's remove takes that transport off the node, and only it: sends to its
// address type then find no route, another transport can register, and the first one's
// remove, called again, leaves the second in place. The node does not close a transport
// that was removed.
func TestRemoveTransport(t *testing.T) {
	n := newNode(t)
	first := &fakeTransport{}
	remove, err := n.RegisterTransport(wire.AddressTCP, first)
	if err != nil {
		t.Fatal(err)
	}
	remove()
	ctx := context.Background()
	msg := wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP("h:1"), wire.Local("x")}}
	if err := n.Send(ctx, msg); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("send with the transport removed: %v, want ErrNoRoute", err)
	}
	second := &fakeTransport{}
	if _, err := n.RegisterTransport(wire.AddressTCP, second); err != nil {
		t.Fatalf("register after remove: %v", err)
	}
	remove()
	if err := n.Send(ctx, msg); err != nil {
		t.Fatalf("send after the first transport's remove ran again: %v", err)
	}
	if len(second.sent) != 1 || len(first.sent) != 0 {
		t.Fatalf("the second transport got %d messages, the first %d; want 1 and 0", len(second.sent), len(first.sent))
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if first.closed() || !second.closed() {
		t.Fatalf("after the node's Close: removed transport closed %v, registered one closed %v; want false, true", first.closed(), second.closed())
	}
}

func TestHandlerPanicIsContained(t *testing.T) {
	n := newNode(t)
	c := make(inbox, 1)
	first := true
	if err := n.Register("p", WorkerFunc(func(ctx context.Context, m *Message) error {
		if first {
			first = false
			panic("boom")
		}
		return c.HandleMessage(ctx, m)
	})); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("p")}}); err != nil {
			t.Fatal(err)
		}
	}
	receive(t, c) // the worker survived its panic
}

func TestNewAddressAndRegisterRandom(t *testing.T) {
	n := newNode(t)
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 100 {
		a, err := n.RegisterRandom(make(inbox))
		if err != nil {
			t.Fatal(err)
		}
		if !hex32.MatchString(a) || seen[a] {
			t.Fatalf("address %q (duplicate: %v)", a, seen[a])
		}
		seen[a] = true
	}
}

func TestUnregisterFromOwnHandler(t *testing.T) {
	n := newNode(t)
	done := make(chan error, 1)
	if err := n.Register("self", WorkerFunc(func(ctx context.Context, m *Message) error {
		done <- m.Node().Unregister(m.Address)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("self")}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFallback(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	msg := func(addr string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: []byte(addr)}
	}
	if err := n.Send(ctx, msg("dyn.1")); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("Send without fallback = %v, want ErrNoRoute", err)
	}
	in := make(inbox, 10)
	var mu sync.Mutex
	var asked []string
	n.SetFallback(func(ctx context.Context, addr string) Worker {
		mu.Lock()
		asked = append(asked, addr)
		mu.Unlock()
		if addr == "dyn.1" {
			return in
		}
		return nil
	})
	if err := n.Send(ctx, msg("dyn.1")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, in); string(m.Payload) != "dyn.1" || m.Address != "dyn.1" {
		t.Fatalf("delivered %q at %q", m.Payload, m.Address)
	}
	// The worker is registered now: the fallback is not asked again.
	if err := n.Send(ctx, msg("dyn.1")); err != nil {
		t.Fatal(err)
	}
	receive(t, in)
	if err := n.Send(ctx, msg("other")); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("Send to an address the fallback refuses = %v, want ErrNoRoute", err)
	}
	mu.Lock()
	got := append([]string(nil), asked...)
	mu.Unlock()
	if len(got) != 2 || got[0] != "dyn.1" || got[1] != "other" {
		t.Fatalf("fallback asked for %q, want [dyn.1 other]", got)
	}
	// A fallback that registers the worker itself: its registration is used.
	in2 := make(inbox, 10)
	n.SetFallback(func(ctx context.Context, addr string) Worker {
		if err := n.Register(addr, in2); err != nil {
			t.Errorf("register from fallback: %v", err)
		}
		return in // dropped: the address is taken
	})
	if err := n.Send(ctx, msg("self")); err != nil {
		t.Fatal(err)
	}
	receive(t, in2)
	n.SetFallback(nil)
	if err := n.Send(ctx, msg("gone")); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("Send after SetFallback(nil) = %v, want ErrNoRoute", err)
	}
}

// copyingSender is a fakeTransport that declares it copies payloads (it records them all the
// same, so the test can see whether the node copied).
type copyingSender struct{ fakeTransport }

func (*copyingSender) CopiesPayload() bool { return true }

// TestSendBorrowed checks that SendBorrowed hands the caller's buffer only to destinations
// that declared they copy it: a worker's mailbox, a plain Sender and a Transport get a copy,
// so that the caller may overwrite its buffer as soon as SendBorrowed returns.
func TestSendBorrowed(t *testing.T) {
	n := newNode(t)
	tr, plain, copying := &fakeTransport{}, &fakeTransport{}, &copyingSender{}
	box := make(inbox, 1)
	if _, err := n.RegisterTransport(wire.AddressTCP, tr); err != nil {
		t.Fatal(err)
	}
	if err := n.RegisterSender("plain", plain); err != nil {
		t.Fatal(err)
	}
	if err := n.RegisterSender("copying", copying); err != nil {
		t.Fatal(err)
	}
	if err := n.Register("box", box); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	buf := []byte("payload")
	for _, to := range []wire.Address{wire.TCP("h:1"), wire.Local("plain"), wire.Local("copying"), wire.Local("box")} {
		copy(buf, "payload")
		if err := n.SendBorrowed(ctx, wire.TransportMessage{OnwardRoute: wire.Route{to}, Payload: buf}); err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
		copy(buf, "REUSED!") // the caller reuses its buffer
	}
	for name, got := range map[string][]byte{
		"transport": tr.sent[0].Payload,
		"sender":    plain.sent[0].Payload,
		"mailbox":   receive(t, box).Payload,
	} {
		if string(got) != "payload" {
			t.Errorf("%s got %q: the node did not copy a borrowed payload", name, got)
		}
	}
	// The copying sender got the caller's own buffer (which the caller then reused).
	if p := copying.sent[0].Payload; &p[0] != &buf[0] {
		t.Errorf("a PayloadCopier got a copy of a borrowed payload")
	}
	// Send hands the payload over: no copy.
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("plain")}, Payload: buf}); err != nil {
		t.Fatal(err)
	}
	if p := plain.sent[1].Payload; &p[0] != &buf[0] {
		t.Errorf("Send copied the payload")
	}
}

// failingSender declares that it copies payloads and fails every Send.
type failingSender struct{}

func (failingSender) Send(context.Context, wire.TransportMessage) error {
	return errors.New("link down")
}
func (failingSender) CopiesPayload() bool { return true }

// TestSendOwned checks when a lent buffer comes back: after a copying Sender returned, when
// the receiving worker calls Release (once, however often it calls it), and never from a
// destination that may keep the payload or a Send that failed.
func TestSendOwned(t *testing.T) {
	n := newNode(t)
	plain, copying := &fakeTransport{}, &copyingSender{}
	box := make(inbox, 1)
	for addr, s := range map[string]Sender{"plain": plain, "copying": copying, "failing": failingSender{}} {
		if err := n.RegisterSender(addr, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Register("box", box); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	send := func(to string) (*int, error) {
		released := new(int)
		err := n.SendOwned(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(to)}, Payload: []byte("x")}, func() { *released++ })
		return released, err
	}

	r, err := send("copying")
	if err != nil || *r != 1 {
		t.Errorf("copying sender: err %v, released %d times, want nil and 1", err, *r)
	}
	if r, err := send("plain"); err != nil || *r != 0 {
		t.Errorf("sender that may keep the payload: err %v, released %d times, want nil and 0", err, *r)
	}
	if r, err := send("failing"); err == nil || *r != 0 {
		t.Errorf("failed send: err %v, released %d times, want an error and 0", err, *r)
	}
	if r, err := send("nowhere"); !errors.Is(err, ErrNoRoute) || *r != 0 {
		t.Errorf("no route: err %v, released %d times, want ErrNoRoute and 0", err, *r)
	}

	r, err = send("box")
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, box)
	if *r != 0 {
		t.Fatalf("released %d times before the worker released it", *r)
	}
	m.Release()
	m.Release()
	if *r != 1 {
		t.Errorf("worker released twice: the sender's release ran %d times, want 1", *r)
	}

	// Send and SendBorrowed lend nothing: Release does nothing.
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("box")}, Payload: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	receive(t, box).Release()
}

// TestDrain checks that Drain waits until every worker handled its mailbox, including what
// a handler sends on to another worker, and gives up with ctx.
func TestDrain(t *testing.T) {
	n := newNode(t)
	gate := make(chan struct{})
	var mu sync.Mutex
	var handled []string
	record := func(s string) {
		mu.Lock()
		handled = append(handled, s)
		mu.Unlock()
	}
	if err := n.Register("first", WorkerFunc(func(ctx context.Context, m *Message) error {
		<-gate
		record("first " + string(m.Payload))
		return n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("second")}, Payload: m.Payload})
	})); err != nil {
		t.Fatal(err)
	}
	if err := n.Register("second", WorkerFunc(func(_ context.Context, m *Message) error {
		record("second " + string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := n.RegisterSender("sender", &fakeTransport{}); err != nil { // no mailbox: nothing to wait for
		t.Fatal(err)
	}
	if err := n.Drain(context.Background()); err != nil {
		t.Fatalf("drain of idle workers: %v", err)
	}
	ctx := context.Background()
	for _, p := range []string{"a", "b", "c"} {
		if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("first")}, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := n.Drain(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain with a blocked worker: %v, want context.DeadlineExceeded", err)
	}
	close(gate)
	if err := n.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 6 {
		t.Fatalf("after Drain: handled %q, want 3 messages through both workers", handled)
	}
}

// TestCloseHandlesNothingQueued: when Close cancels a handler, the messages queued behind it
// in the mailbox are never handled, not even in the moment between the cancellation and the
// worker's stop (a stream subscription relies on it: they stay unhandled, so it does not
// move past them).
func TestCloseHandlesNothingQueued(t *testing.T) {
	for i := range 1000 {
		n, err := NewNode(WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		var handled sync.Map
		if err := n.Register("w", WorkerFunc(func(ctx context.Context, m *Message) error {
			if string(m.Payload) == "stuck" {
				close(started)
				<-ctx.Done()
				return ctx.Err()
			}
			handled.Store(string(m.Payload), true)
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"stuck", "queued 1", "queued 2"} {
			if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}, Payload: []byte(p)}); err != nil {
				t.Fatal(err)
			}
		}
		<-started
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		handled.Range(func(k, _ any) bool {
			t.Fatalf("round %d: %q was handled after Close cancelled the handler before it", i, k)
			return false
		})
	}
}

// TestAddFallback: AddFallback refuses a node that has a fallback, and its remove removes
// its own fallback only, not one set after it.
func TestAddFallback(t *testing.T) {
	n, err := NewNode()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	got := func() bool {
		err := n.Send(t.Context(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("made")}})
		return err == nil
	}
	sink := WorkerFunc(func(context.Context, *Message) error { return nil })
	remove, err := n.AddFallback(func(context.Context, string) Worker { return sink })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddFallback(func(context.Context, string) Worker { return nil }); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("second AddFallback = %v, want ErrAddressInUse", err)
	}
	if !got() {
		t.Fatal("the fallback AddFallback set was not consulted")
	}
	if err := n.Unregister("made"); err != nil {
		t.Fatal(err)
	}
	remove()
	if got() {
		t.Fatal("Send found a worker after remove: the fallback is still set")
	}
	remove2, err := n.AddFallback(func(context.Context, string) Worker { return sink })
	if err != nil {
		t.Fatalf("AddFallback after remove: %v", err)
	}
	n.SetFallback(func(context.Context, string) Worker { return sink }) // another owner's
	remove2()
	if !got() {
		t.Fatal("remove removed a fallback set after its own")
	}
}

// TestHandlerFailuresRateLimited: the warnings about handlers that fail are one line per
// interval, which counts the failures since the previous one and names the last; Close logs
// the line that counts those held back.
func TestHandlerFailuresRateLimited(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	n := newNode(t, WithLogger(slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))))
	n.limits.SetInterval(time.Hour)
	// One worker: its failures are logged in the order they happen.
	if err := n.Register("a", WorkerFunc(func(_ context.Context, m *Message) error {
		return fmt.Errorf("refused %s", m.Payload)
	})); err != nil {
		t.Fatal(err)
	}
	const failures = 5
	for i := range failures {
		if err := n.Send(t.Context(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("a")}, Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	warnings := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var ws []string
		for line := range strings.Lines(logs.String()) {
			if strings.Contains(line, "level=WARN") {
				ws = append(ws, line)
			}
		}
		return ws
	}
	if err := n.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ws := warnings(); len(ws) != 1 {
		t.Fatalf("warnings %q before Close, want one", ws)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	ws := warnings()
	if len(ws) != 2 || !strings.Contains(ws[0], `msg="routing: workers failed to handle messages" last_address=a last_err="refused m0"`) || !strings.Contains(ws[0], " messages=1 ") ||
		!strings.Contains(ws[1], `last_address=a last_err="refused m4"`) || !strings.Contains(ws[1], " messages=4 ") {
		t.Fatalf("warnings %q, want two: about m0, counting 1, and (at Close) about m4, counting 4", ws)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
