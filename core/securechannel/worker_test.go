package securechannel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// memType is the address type of the in-memory test transport: value = node name.
const memType uint8 = 200

// memNet connects in-memory routing nodes. Like the TCP transport, a hop removes its address
// from the onward route and prepends the sender's address to the return route. A fault
// function may rewrite each hop into zero or more messages (duplicate, tamper, reorder).
type memNet struct {
	mu    sync.Mutex
	nodes map[string]*routing.Node
	fault func(from string, m wire.TransportMessage) []wire.TransportMessage
	seen  [][]byte // every payload that crossed a hop
}

type memTransport struct {
	net  *memNet
	self string
}

func (t *memTransport) Send(ctx context.Context, m wire.TransportMessage) error {
	t.net.mu.Lock()
	dst := t.net.nodes[string(m.OnwardRoute[0].Value)]
	fault := t.net.fault
	t.net.seen = append(t.net.seen, bytes.Clone(m.Payload))
	t.net.mu.Unlock()
	if dst == nil {
		return fmt.Errorf("mem: no node %q: %w", m.OnwardRoute[0].Value, routing.ErrNoRoute)
	}
	out := wire.TransportMessage{
		OnwardRoute: m.OnwardRoute[1:],
		ReturnRoute: m.ReturnRoute.Prepend(wire.Address{Type: memType, Value: []byte(t.self)}),
		Payload:     m.Payload,
	}
	msgs := []wire.TransportMessage{out}
	if fault != nil {
		msgs = fault(t.self, out)
	}
	for _, m := range msgs {
		if err := dst.Send(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (t *memTransport) Close() error { return nil }

func (n *memNet) node(t *testing.T, name string, opts ...routing.Option) *routing.Node {
	t.Helper()
	opts = append([]routing.Option{routing.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	node, err := routing.NewNode(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	if _, err := node.RegisterTransport(memType, &memTransport{net: n, self: name}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	if n.nodes == nil {
		n.nodes = map[string]*routing.Node{}
	}
	n.nodes[name] = node
	n.mu.Unlock()
	return node
}

func mem(name string) wire.Address { return wire.Address{Type: memType, Value: []byte(name)} }

// inbox is an application worker that records what it receives.
type inbox chan *routing.Message

func (in inbox) HandleMessage(_ context.Context, m *routing.Message) error {
	in <- m
	return nil
}

func (in inbox) next(t *testing.T) *routing.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return nil
	}
}

// echo replies "echo: <payload>" and records the initiator's identity as seen by l.
func echo(l **Listener, peers chan<- PublicKey) routing.WorkerFunc {
	return func(ctx context.Context, m *routing.Message) error {
		if sc, ok := (*l).Channel(m.ReturnRoute[0]); ok {
			peers <- sc.PeerIdentity()
		} else {
			peers <- PublicKey{}
		}
		return m.Reply(ctx, append([]byte("echo: "), m.Payload...))
	}
}

type fixture struct {
	net           *memNet
	a, b          *routing.Node
	ida, idb      *Identity
	listener      *Listener
	peers         chan PublicKey
	app           inbox
	established   chan *SecureChannel
	cfgA, cfgB    Config
	listenerRoute wire.Route
}

// newFixture builds nodes "a" and "b" (and "hub" when viaHub), a listener "sc" and an echo
// worker on b, and an app inbox on a.
func newFixture(t *testing.T, viaHub bool, rekeyAfter uint64) *fixture {
	f := &fixture{net: &memNet{}, peers: make(chan PublicKey, 1000), app: make(inbox, 1000), established: make(chan *SecureChannel, 10)}
	f.a, f.b = f.net.node(t, "a"), f.net.node(t, "b")
	f.listenerRoute = wire.Route{mem("b"), wire.Local("sc")}
	if viaHub {
		f.net.node(t, "hub")
		f.listenerRoute = wire.Route{mem("hub"), mem("b"), wire.Local("sc")}
	}
	f.ida, f.idb = mustIdentity(t), mustIdentity(t)
	f.cfgA = Config{Identity: f.ida, Trust: TrustKeys(f.idb.PublicKey()), RekeyAfter: rekeyAfter}
	f.cfgB = Config{Identity: f.idb, Trust: TrustKeys(f.ida.PublicKey()), RekeyAfter: rekeyAfter}
	var err error
	f.listener, err = Listen(f.b, "sc", f.cfgB, &ListenOptions{OnChannel: func(c *SecureChannel) { f.established <- c }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.listener.Close() })
	if err := f.b.Register("echo", echo(&f.listener, f.peers)); err != nil {
		t.Fatal(err)
	}
	if err := f.a.Register("app", f.app); err != nil {
		t.Fatal(err)
	}
	return f
}

// listen starts a listener at name on node with cfg (and no options), closed when the test
// ends.
func listen(t *testing.T, node *routing.Node, name string, cfg Config) *Listener {
	t.Helper()
	l, err := Listen(node, name, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// crashB stops device B as a crash would (its listener and node close, nothing more is
// saved) and starts it again: a new node "b" with a listener "sc" (closed when the test
// ends) and no workers yet.
func (f *fixture) crashB(t *testing.T) (*routing.Node, *Listener) {
	t.Helper()
	f.listener.Close()
	f.b.Close()
	nb := f.net.node(t, "b")
	return nb, listen(t, nb, "sc", f.cfgB)
}

// crashBWithEcho stops and starts device B as crashB does, and registers B's echo worker on
// the new node as newFixture does: its replies go back through the new listener's channels.
func (f *fixture) crashBWithEcho(t *testing.T) (*routing.Node, *Listener) {
	t.Helper()
	nb, l := f.crashB(t)
	if err := nb.Register("echo", echo(&l, f.peers)); err != nil {
		t.Fatal(err)
	}
	return nb, l
}

// offline holds back what node "a" sends to "b" after message 1 (message 3 and data) while
// B is offline; see dialWhileBOffline.
type offline struct {
	mu   sync.Mutex
	held []wire.TransportMessage
	hold bool
}

// messages returns what was held back so far.
func (o *offline) messages() []wire.TransportMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.held
}

// online stops holding messages back and returns those held.
func (o *offline) online() []wire.TransportMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hold = false
	return o.held
}

// dialWhileBOffline dials B while what A sends to B after message 1 is held back, as if B
// went offline once it answered: it saves B's half-open channel to a session file once that
// channel wrote message 2, and sends "while B is offline" on A's channel (closed when the
// test ends). It returns A's channel, B's half-open one, the session file, and what is held
// back.
func (f *fixture) dialWhileBOffline(t *testing.T) (sc, rc *SecureChannel, path string, o *offline) {
	t.Helper()
	o = &offline{hold: true}
	f.net.mu.Lock()
	f.net.fault = func(from string, m wire.TransportMessage) []wire.TransportMessage {
		o.mu.Lock()
		defer o.mu.Unlock()
		if typ, _ := PeekType(m.Payload); from == "a" && o.hold && typ != TypeHandshake1 {
			o.held = append(o.held, m)
			return nil
		}
		return []wire.TransportMessage{m}
	}
	f.net.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialed := make(chan *SecureChannel, 1)
	go func() {
		sc, err := Dial(ctx, f.a, f.listenerRoute, f.cfgA)
		if err != nil {
			t.Error(err)
		}
		dialed <- sc
	}()
	waitFor(t, func() bool {
		f.listener.mu.Lock()
		defer f.listener.mu.Unlock()
		for _, c := range f.listener.hellos {
			rc = c
		}
		return rc != nil
	})
	path = filepath.Join(t.TempDir(), "b.session")
	waitFor(t, func() bool { return rc.SaveSession(path) == nil }) // once message 2 is written
	sc = <-dialed
	if sc == nil {
		t.FailNow()
	}
	t.Cleanup(func() { sc.Close() })
	f.send(t, sc, "while B is offline")
	return sc, rc, path, o
}

func (f *fixture) dial(t *testing.T) *SecureChannel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := Dial(ctx, f.a, f.listenerRoute, f.cfgA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// send sends payload from node through sc to the peer's "echo" worker, the reply to go to
// node's "app".
func send(t *testing.T, node *routing.Node, sc *SecureChannel, payload string) {
	t.Helper()
	err := node.Send(context.Background(), wire.TransportMessage{
		OnwardRoute: wire.Route{sc.Address(), wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("app")},
		Payload:     []byte(payload),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sendAll sends msgs from node, in order.
func sendAll(t *testing.T, node *routing.Node, msgs []wire.TransportMessage) {
	t.Helper()
	for _, m := range msgs {
		if err := node.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// send sends payload from node "a" through sc to B's echo worker (see send).
func (f *fixture) send(t *testing.T, sc *SecureChannel, payload string) {
	t.Helper()
	send(t, f.a, sc, payload)
}

func TestRoutingEcho(t *testing.T) {
	for _, viaHub := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaHub=%v", viaHub), func(t *testing.T) {
			f := newFixture(t, viaHub, 0)
			sc := f.dial(t)
			if sc.PeerIdentity() != f.idb.PublicKey() {
				t.Fatal("initiator sees the wrong responder identity")
			}
			f.send(t, sc, "hello")
			m := f.app.next(t)
			if string(m.Payload) != "echo: hello" {
				t.Fatalf("reply %q", m.Payload)
			}
			if !m.ReturnRoute[0].Equal(sc.Address()) || !m.ReturnRoute[1].Equal(wire.Local("echo")) {
				t.Fatalf("reply return route %s, want the channel then echo", m.ReturnRoute)
			}
			if got := <-f.peers; got != f.ida.PublicKey() {
				t.Fatalf("responder application sees identity %s, want %s", got, f.ida.PublicKey())
			}
			rc := recvWithin(t, f.established, "the channel established (OnChannel)")
			if rc.PeerIdentity() != f.ida.PublicKey() {
				t.Fatal("OnChannel channel has the wrong peer")
			}
			// Nothing crossed the network in the clear.
			f.net.mu.Lock()
			defer f.net.mu.Unlock()
			for _, p := range f.net.seen {
				if bytes.Contains(p, []byte("hello")) {
					t.Fatalf("plaintext on the wire: %q", p)
				}
			}
		})
	}
}

// TestRoutingAtLeastOnce duplicates, reorders and tampers with data messages on the way:
// the application receives each message exactly once.
func TestRoutingAtLeastOnce(t *testing.T) {
	f := newFixture(t, true, 3)
	sc := f.dial(t)
	var mu sync.Mutex
	held := map[string][]wire.TransportMessage{} // by sending node
	f.net.mu.Lock()
	f.net.fault = func(from string, m wire.TransportMessage) []wire.TransportMessage {
		if len(m.Payload) == 0 || m.Payload[0] != byte(TypeData) || from == "hub" {
			return []wire.TransportMessage{m}
		}
		tampered := m.Clone()
		tampered.Payload[len(tampered.Payload)-1] ^= 1
		mu.Lock()
		defer mu.Unlock()
		// Swap pairs of each direction: hold one, then deliver the next before it.
		// Everything twice. (A message held by one direction and released by the other
		// could fall behind by any number of messages, in the goroutine of the other
		// direction, and be dropped as older than the previous key epoch.)
		if len(held[from]) == 0 {
			held[from] = append(held[from], m)
			return []wire.TransportMessage{tampered}
		}
		h := held[from][0]
		held[from] = held[from][:0]
		return []wire.TransportMessage{m, h, m.Clone(), h.Clone()}
	}
	f.net.mu.Unlock()

	const n = 40 // even: the pair swapping releases every message
	for i := range n {
		f.send(t, sc, fmt.Sprint(i))
	}
	got := map[string]int{}
	for range n {
		m := f.app.next(t)
		got[string(m.Payload)]++
	}
	for i := range n {
		if c := got[fmt.Sprint("echo: ", i)]; c != 1 {
			t.Fatalf("message %d delivered %d times", i, c)
		}
	}
	select {
	case m := <-f.app:
		t.Fatalf("extra delivery %q", m.Payload)
	default:
	}
	// Replies went through the same faults; duplicates were counted, not delivered.
	if s := sc.Stats(); s.Delivered != n || s.Duplicates == 0 || s.Rejected == 0 {
		t.Fatalf("initiator stats %+v", s)
	}
}

func TestRoutingUntrusted(t *testing.T) {
	t.Run("initiator refuses responder", func(t *testing.T) {
		f := newFixture(t, false, 0)
		f.cfgA.Trust = TrustKeys(mustIdentity(t).PublicKey())
		_, err := Dial(context.Background(), f.a, f.listenerRoute, f.cfgA)
		if !errors.Is(err, ErrUntrusted) {
			t.Fatalf("Dial: %v, want ErrUntrusted", err)
		}
	})
	t.Run("responder refuses initiator", func(t *testing.T) {
		f := newFixture(t, false, 0)
		f.listener.cfg.Trust = TrustKeys(mustIdentity(t).PublicKey())
		sc := f.dial(t)
		// The responder refuses when it reads message 3 and removes its half of the channel.
		waitFor(t, func() bool {
			f.listener.mu.Lock()
			defer f.listener.mu.Unlock()
			return len(f.listener.hellos) == 0
		})
		err := f.a.Send(context.Background(), wire.TransportMessage{
			OnwardRoute: wire.Route{sc.Address(), wire.Local("echo")},
			ReturnRoute: wire.Route{wire.Local("app")},
			Payload:     []byte("x"),
		})
		if !errors.Is(err, routing.ErrNoRoute) {
			t.Fatalf("send through refused channel: %v, want ErrNoRoute", err)
		}
		select {
		case c := <-f.established:
			t.Fatalf("responder established a channel with %s", c.PeerIdentity())
		default:
		}
		if s := f.listener.Stats(); s != (ListenerStats{Accepted: 1, Failed: 1}) {
			t.Errorf("listener stats after refusing the initiator's identity: %+v", s)
		}
	})
}

// TestRoutingRouteTooLong checks that a message whose inner route the peer's decoder would
// refuse (more than wire.MaxRouteLen addresses) is refused when sent, consuming no nonce,
// and that the channel carries on.
func TestRoutingRouteTooLong(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	long := make(wire.Route, wire.MaxRouteLen+1)
	for i := range long {
		long[i] = wire.Local("hop")
	}
	for _, m := range []wire.TransportMessage{
		{OnwardRoute: append(wire.Route{sc.Address()}, long...), ReturnRoute: wire.Route{wire.Local("app")}},
		{OnwardRoute: wire.Route{sc.Address(), wire.Local("echo")}, ReturnRoute: long},
	} {
		if err := f.a.Send(context.Background(), m); !errors.Is(err, wire.ErrRouteTooLong) || !errors.Is(err, core.ErrInvalidArgument) {
			t.Fatalf("send with %d onward and %d return addresses: %v, want wire.ErrRouteTooLong", len(m.OnwardRoute), len(m.ReturnRoute), err)
		}
	}
	if s := sc.Stats(); s.Sent != 0 {
		t.Errorf("Stats().Sent = %d after two refused sends, want 0", s.Sent)
	}
	f.send(t, sc, "small")
	if m := f.app.next(t); string(m.Payload) != "echo: small" {
		t.Fatalf("reply %q", m.Payload)
	}
}

// TestRouteEndingAtChannelRefused: a message whose onward route ends at the channel's
// address (nothing for the peer to deliver it to) is refused with core.ErrInvalidArgument
// before it is sealed: it spends no nonce, and the channel goes on. (It was sealed, sent and
// counted, then dropped by the peer as without an inner route.)
func TestRouteEndingAtChannelRefused(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	err := f.a.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{sc.Address()}, ReturnRoute: wire.Route{wire.Local("app")}, Payload: []byte("nowhere")})
	if !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("send to the channel's address alone: %v, want core.ErrInvalidArgument", err)
	}
	if s := sc.Stats(); s.Sent != 0 {
		t.Errorf("Stats().Sent = %d after a refused send, want 0", s.Sent)
	}
	f.send(t, sc, "after")
	if m := f.app.next(t); string(m.Payload) != "echo: after" {
		t.Fatalf("reply %q", m.Payload)
	}
}

// TestMaxPayloadSizeIsTheLargest: MaxPayloadSize is the largest payload whose inner message
// fits in MaxPlaintextSize, also where the payload's length prefix is a byte shorter than
// the room's (rooms of 128 and 16384 bytes), and negative when not even an empty one fits.
func TestMaxPayloadSizeIsTheLargest(t *testing.T) {
	onward := wire.Route{wire.Local("echo")}
	payload := make([]byte, MaxPlaintextSize)
	for _, room := range []int{0, 1, 2, 126, 127, 128, 129, 130, 16382, 16383, 16384, 16385, 16386, 40000} {
		// A return route that leaves room bytes for the payload and its length.
		size := MaxPlaintextSize - 1 - onward.Size() - room
		var ret wire.Route
		for l := max(size-6, 0); l <= size && ret == nil; l++ {
			if r := (wire.Route{wire.Local(strings.Repeat("r", l))}); r.Size() == size {
				ret = r
			}
		}
		if ret == nil {
			t.Fatalf("no return route of %d bytes", size)
		}
		fits := func(n int) bool {
			m := wire.TransportMessage{OnwardRoute: onward, ReturnRoute: ret, Payload: payload[:n]}
			return m.Size() <= MaxPlaintextSize
		}
		n := MaxPayloadSize(onward, ret)
		if (n >= 0 && !fits(n)) || fits(n+1) {
			t.Errorf("room %d: MaxPayloadSize = %d; fits: %v, one more fits: %v", room, n, n >= 0 && fits(n), fits(n+1))
		}
	}
}

func TestRoutingMessageTooLarge(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	err := f.a.Send(context.Background(), wire.TransportMessage{
		OnwardRoute: wire.Route{sc.Address(), wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("app")},
		Payload:     make([]byte, MaxPlaintextSize),
	})
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("send: %v, want ErrMessageTooLarge", err)
	}
	f.send(t, sc, "small")
	if m := f.app.next(t); string(m.Payload) != "echo: small" {
		t.Fatalf("reply %q", m.Payload)
	}
}

func TestRoutingHandshakeTimeoutAndDuplicateHello(t *testing.T) {
	f := newFixture(t, false, 0)
	f.listener.opts.HandshakeTimeout = 20 * time.Millisecond
	raw := make(inbox, 10)
	if err := f.a.Register("raw", raw); err != nil {
		t.Fatal(err)
	}
	hs, err := NewInitiator(f.cfgA)
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := hs.WriteMessage()
	for range 2 { // an at-least-once duplicate of message 1
		if err := f.a.Send(context.Background(), wire.TransportMessage{OnwardRoute: f.listenerRoute, ReturnRoute: wire.Route{wire.Local("raw")}, Payload: m1}); err != nil {
			t.Fatal(err)
		}
	}
	m2 := raw.next(t)
	if err := hs.ReadMessage(m2.Payload); err != nil {
		t.Fatal(err)
	}
	// Message 3 is never sent: the responder gives up and forgets the half-open channel.
	waitFor(t, func() bool {
		f.listener.mu.Lock()
		defer f.listener.mu.Unlock()
		return len(f.listener.hellos) == 0 && f.listener.pending == 0
	})
	select {
	case m := <-raw:
		t.Fatalf("a duplicate message 1 was answered: %x", m.Payload)
	default:
	}
	if s := f.listener.Stats(); s != (ListenerStats{Accepted: 1, Duplicates: 1, Failed: 1}) {
		t.Errorf("listener stats after a duplicate message 1 and a handshake timeout: %+v", s)
	}
	// The listener still works (with a timeout a loaded machine cannot miss).
	f.listener.opts.HandshakeTimeout = DefaultHandshakeTimeout
	sc := f.dial(t)
	f.send(t, sc, "after")
	if m := f.app.next(t); string(m.Payload) != "echo: after" {
		t.Fatalf("reply %q", m.Payload)
	}
	if s := f.listener.Stats(); s != (ListenerStats{Accepted: 2, Opened: 1, Duplicates: 1, Failed: 1, Open: 1}) {
		t.Errorf("listener stats after a channel opened: %+v", s)
	}
}

func TestRoutingListenerClose(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	f.send(t, sc, "1")
	f.app.next(t)
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	if _, ok := f.listener.Channel(rc.Address()); !ok {
		t.Fatal("listener does not know its channel")
	}
	if err := f.listener.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.listener.Channel(rc.Address()); ok {
		t.Fatal("channel still listed after Close")
	}
	_, err := Dial(context.Background(), f.a, f.listenerRoute, f.cfgA)
	if !errors.Is(err, routing.ErrNoRoute) {
		t.Fatalf("dial closed listener: %v", err)
	}
}

// TestListenerClosedTakesNoHandshake: a message 1 that reaches a listener after Close (it
// was on its way) is dropped before any handshake work, and a channel being tracked
// concurrently is refused with core.ErrClosed.
func TestListenerClosedTakesNoHandshake(t *testing.T) {
	node := (&memNet{}).node(t, "b")
	random := &countingReader{}
	l, err := Listen(node, "closing", Config{Identity: mustIdentity(t), Trust: TrustAnyInsecure(), Random: random}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	ini, err := NewInitiator(Config{Identity: mustIdentity(t), Trust: TrustAnyInsecure()})
	if err != nil {
		t.Fatal(err)
	}
	m1 := mustWrite(t, ini)
	if err := l.handle(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{l.Address()}, ReturnRoute: wire.Route{wire.Local("replies")}, Payload: m1}); err != nil {
		t.Fatal(err)
	}
	if n := random.reads.Load(); n != 0 {
		t.Fatalf("a closed listener made %d ephemeral keys", n)
	}
	if err := l.track(&SecureChannel{done: make(chan struct{})}, string(m1), false, 0); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("track after Close: %v, want core.ErrClosed", err)
	}
	if s := l.Stats(); s != (ListenerStats{}) {
		t.Fatalf("stats of a closed listener after a message 1: %+v", s)
	}
}

func TestDialContextDone(t *testing.T) {
	f := newFixture(t, false, 0)
	if err := f.b.Register("blackhole", routing.WorkerFunc(func(context.Context, *routing.Message) error { return nil })); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, f.a, wire.Route{mem("b"), wire.Local("blackhole")}, f.cfgA)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: %v", err)
	}
}

// TestDialNodeClosed: a Dial waiting for the answer ends when its node closes, with an error
// matching core.ErrClosed, not when its (long) ctx ends.
func TestDialNodeClosed(t *testing.T) {
	f := newFixture(t, false, 0)
	got := make(chan struct{}, 1)
	if err := f.b.Register("blackhole", routing.WorkerFunc(func(context.Context, *routing.Message) error {
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { // ends when Dial returns
		_, err := Dial(ctx, f.a, wire.Route{mem("b"), wire.Local("blackhole")}, f.cfgA)
		errc <- err
	}()
	recvWithin(t, got, "handshake message 1") // Dial sent it and waits for the answer
	if err := f.a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := recvWithin(t, errc, "Dial's return after node.Close"); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Dial after its node closed: %v, want an error matching core.ErrClosed", err)
	}
}

// waitFor polls cond until it holds (it waits for asynchronous work; it asserts no timing).
// recvWithin receives from ch, failing the test when nothing comes within 10s (a broken
// channel fails the test instead of hanging it). Call it from the test's goroutine.
func recvWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing within 10s", what)
		panic("unreachable")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRoutingEarlyDataBounded: whoever sends message 1 learns the half-open channel's
// address from message 2 and can send it data before any authentication. The responder
// keeps at most maxEarly messages and maxEarlyBytes of it, and counts what it drops.
func TestRoutingEarlyDataBounded(t *testing.T) {
	f := newFixture(t, false, 0)
	raw := make(inbox, 10)
	if err := f.a.Register("raw", raw); err != nil {
		t.Fatal(err)
	}
	hs, err := NewInitiator(Config{Identity: mustIdentity(t), Trust: TrustAnyInsecure()}) // trusted by nobody
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := hs.WriteMessage()
	ctx := context.Background()
	if err := f.a.Send(ctx, wire.TransportMessage{OnwardRoute: f.listenerRoute, ReturnRoute: wire.Route{wire.Local("raw")}, Payload: m1}); err != nil {
		t.Fatal(err)
	}
	m2 := raw.next(t) // its return route leads to the half-open channel
	junk := make([]byte, MaxSealedSize)
	junk[0] = byte(TypeData)
	sizes := make([]int, 100) // one is held, then the bytes bound drops the others
	for i := range sizes {
		sizes[i] = len(junk)
	}
	// Then fill the bytes bound exactly: a message one byte over it is dropped, and the
	// smaller one after it is held.
	rest := maxEarlyBytes - len(junk)
	sizes = append(sizes, rest-Overhead, Overhead+1, Overhead)
	sent := len(sizes)
	for _, n := range sizes {
		if err := f.a.Send(ctx, wire.TransportMessage{OnwardRoute: m2.ReturnRoute, Payload: junk[:n]}); err != nil {
			t.Fatal(err)
		}
	}
	f.listener.mu.Lock()
	defer f.listener.mu.Unlock()
	if len(f.listener.hellos) != 1 {
		t.Fatalf("%d half-open channels, want 1", len(f.listener.hellos))
	}
	for _, c := range f.listener.hellos {
		c.mu.Lock()
		held, size := len(c.early), 0
		for _, e := range c.early {
			size += len(e.payload)
		}
		c.mu.Unlock()
		if held > maxEarly || size > maxEarlyBytes {
			t.Fatalf("a half-open channel holds %d early messages, %d bytes: more than %d / %d", held, size, maxEarly, maxEarlyBytes)
		}
		if held != 3 || size != maxEarlyBytes {
			t.Fatalf("a half-open channel holds %d early messages, %d bytes; want 3 that fill the %d bytes", held, size, maxEarlyBytes)
		}
		if got := c.Stats().Rejected; got != uint64(sent-held) {
			t.Fatalf("Rejected = %d, want the %d messages dropped", got, sent-held)
		}
	}
}

// countingReader is crypto/rand counting its reads: a responder reads it once per handshake
// message 2 it writes (its ephemeral key).
type countingReader struct{ reads atomic.Int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	r.reads.Add(1)
	return rand.Read(p)
}

// TestListenerBoundsPendingHandshakes sends more handshake messages 1 than
// MaxPendingHandshakes allows: only that many half-open channels are made (message 1 needs
// no key, so anybody can send them), a message 1 beyond the bound is dropped before any
// handshake work (no ephemeral key is made for it), and closing one makes room for a new one.
func TestListenerBoundsPendingHandshakes(t *testing.T) {
	const limit = 2
	node := (&memNet{}).node(t, "b")
	random := &countingReader{}
	cfg := Config{Identity: mustIdentity(t), Trust: TrustAnyInsecure(), Random: random}
	l, err := Listen(node, "bounded", cfg, &ListenOptions{MaxPendingHandshakes: limit, HandshakeTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	replies := make(inbox, 10)
	if err := node.Register("replies", replies); err != nil {
		t.Fatal(err)
	}
	hello := func() {
		t.Helper()
		ini, err := NewInitiator(Config{Identity: mustIdentity(t), Trust: TrustAnyInsecure()})
		if err != nil {
			t.Fatal(err)
		}
		m1, err := ini.WriteMessage()
		if err != nil {
			t.Fatal(err)
		}
		if err := node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{l.Address()}, ReturnRoute: wire.Route{wire.Local("replies")}, Payload: m1}); err != nil {
			t.Fatal(err)
		}
	}
	for range limit + 2 {
		hello()
	}
	pending := l.Channels()
	if len(pending) != limit {
		t.Fatalf("%d half-open channels after %d messages 1, want %d", len(pending), limit+2, limit)
	}
	if s := l.Stats(); s != (ListenerStats{Accepted: limit, Refused: 2, Pending: limit}) {
		t.Errorf("listener stats with %d handshakes refused for the bound: %+v", 2, s)
	}
	if n := random.reads.Load(); n != limit {
		t.Errorf("%d ephemeral keys made for %d messages 1 of which %d were within the bound", n, limit+2, limit)
	}
	// The bound holds for a channel tracked concurrently with the ones above, too.
	if err := l.track(&SecureChannel{done: make(chan struct{})}, "\x01another message 1", false, limit); err == nil {
		t.Fatal("the listener tracked a half-open channel beyond MaxPendingHandshakes")
	}
	pending[0].Close()
	// A channel closed while its handshake completes (establish calls onOpen after Close
	// took it from the listener) is not counted open, and its place is not freed twice.
	pending[0].onOpen(pending[0])
	hello()
	if n := len(l.Channels()); n != limit {
		t.Fatalf("%d half-open channels after one closed and a new message 1, want %d", n, limit)
	}
	// Closed by the application: not a failed handshake.
	if s := l.Stats(); s != (ListenerStats{Accepted: limit + 1, Refused: 2, Pending: limit}) {
		t.Errorf("listener stats after closing a pending channel and a new message 1: %+v", s)
	}
}

// logSink is a concurrency-safe buffer for a logger's output.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestListenerLogsNonHandshake: data sent to the listener instead of through a channel is
// dropped with a warning that says where data goes. A flood of such messages (or of forged
// ones) is one warning per interval, which counts them; the node's Close logs the count of
// those held back.
func TestListenerLogsNonHandshake(t *testing.T) {
	var logs logSink
	n, err := routing.NewNode(routing.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	l, err := Listen(n, "listener", Config{Identity: fixedIdentity(t, 1), Trust: TrustAnyInsecure()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const sent = 5
	for range sent {
		if err := n.Send(t.Context(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("listener")}, Payload: []byte("plaintext")}); err != nil {
			t.Fatal(err)
		}
	}
	if s := l.Stats(); s != (ListenerStats{NotHandshake: sent}) {
		t.Errorf("listener stats after %d plaintext messages: %+v", sent, s)
	}
	warnings := func() []string {
		var ws []string
		for line := range strings.Lines(logs.String()) {
			if strings.Contains(line, "level=WARN") {
				ws = append(ws, line)
			}
		}
		return ws
	}
	if ws := warnings(); len(ws) != 1 || !strings.Contains(ws[0], "not handshake message 1") || !strings.Contains(ws[0], "SecureChannel's address") ||
		!strings.Contains(ws[0], " messages=1 ") {
		t.Fatalf("the node's warnings %q, want one about the dropped message, counting 1", ws)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if ws := warnings(); len(ws) != 2 || !strings.Contains(ws[1], "not handshake message 1") || !strings.Contains(ws[1], fmt.Sprintf(" messages=%d ", sent-1)) {
		t.Fatalf("the node's warnings after Close %q, want a second counting the %d held back", ws, sent-1)
	}
}

// stoppingSender refuses its first message as a worker that is stopping does (routing
// ErrClosed: a delivery cut short), and takes the following ones.
type stoppingSender struct {
	calls atomic.Int32
	got   chan string
}

func (s *stoppingSender) Send(_ context.Context, m wire.TransportMessage) error {
	if s.calls.Add(1) == 1 {
		return fmt.Errorf("worker stopping: %w", routing.ErrClosed)
	}
	s.got <- string(m.Payload)
	return nil
}

// TestCutShortDeliveryLeavesCiphertext: a channel decrypts a data message in its own
// buffer. When the delivery of its inner message is cut short, the caller may deliver the
// same message again from the same buffer: a stream subscription's consumer retries its
// handler with the stream message it read while the subscription goes on (the worker was
// stopping, say). The buffer must hold the data message again, or the retry fails
// authentication and the message is dropped as forged: lost.
func TestCutShortDeliveryLeavesCiphertext(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	f.send(t, sc, "before")
	if m := f.app.next(t); string(m.Payload) != "echo: before" {
		t.Fatalf("reply %q", m.Payload)
	}
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	w := &stoppingSender{got: make(chan string, 1)}
	if err := f.b.RegisterSender("w", w); err != nil {
		t.Fatal(err)
	}
	inner := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}, Payload: []byte("hello")}
	sealed, err := sc.ch.Seal(inner.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(sealed)
	msg := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(rc.decAddr)}, Payload: sealed}
	if err := f.b.Send(context.Background(), msg); !errors.Is(err, routing.ErrClosed) {
		t.Fatalf("delivery to a stopping worker: %v, want routing.ErrClosed (cut short)", err)
	}
	if !bytes.Equal(sealed, orig) {
		t.Fatal("a delivery cut short left the message's buffer decrypted")
	}
	if err := f.b.Send(context.Background(), msg); err != nil { // the retry, same buffer
		t.Fatal(err)
	}
	select {
	case p := <-w.got:
		if p != "hello" {
			t.Fatalf("delivered %q", p)
		}
	default:
		t.Fatalf("the message was not delivered when it came again; stats %+v", rc.Stats())
	}
	if st := rc.Stats(); st.Rejected != 0 || st.Delivered != 2 {
		t.Fatalf("stats %+v: want 2 delivered (the first message, and the retry of the one cut short), none rejected", st)
	}
}

// TestInnerMessageWithoutRouteRejected: a data message that authenticates but whose inner
// message has no onward route is dropped and counted as rejected, not as delivered.
func TestInnerMessageWithoutRouteRejected(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	f.send(t, sc, "before")
	if m := f.app.next(t); string(m.Payload) != "echo: before" {
		t.Fatalf("reply %q", m.Payload)
	}
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	sealed, err := sc.ch.Seal(wire.TransportMessage{Payload: []byte("nowhere")}.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.b.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(rc.decAddr)}, Payload: sealed}); err != nil {
		t.Fatal(err)
	}
	if st := rc.Stats(); st.Delivered != 1 || st.Rejected != 1 {
		t.Fatalf("stats %+v: want the message without a route rejected, and only the first one delivered", st)
	}
}
