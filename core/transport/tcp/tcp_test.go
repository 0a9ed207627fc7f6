package tcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// guard bounds every blocking step of a test so that a bug fails it instead of hanging it.
// It is never an assertion about speed.
const guard = 20 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type side struct {
	node *routing.Node
	tr   *Transport
	in   chan *routing.Message // messages delivered to the local worker "inbox"
}

// newSide returns a node with a TCP transport and a worker at "inbox", and an echo worker at
// "echo" that replies with the payload it got.
func newSide(t *testing.T, opts ...Option) *side { return newBenchSide(t, opts...) }

func newBenchSide(t testing.TB, opts ...Option) *side {
	t.Helper()
	n, err := routing.NewNode(routing.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	s := &side{node: n, tr: tr, in: make(chan *routing.Message, 1000)}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("node close: %v", err)
		}
	})
	must(t, n.Register("inbox", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		s.in <- m
		return nil
	})))
	must(t, n.Register("echo", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		return m.Reply(ctx, m.Payload)
	})))
	return s
}

func (s *side) listen(t testing.TB) string {
	t.Helper()
	a, err := s.tr.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

func (s *side) receive(t *testing.T) *routing.Message {
	t.Helper()
	select {
	case m := <-s.in:
		return m
	case <-time.After(guard):
		t.Fatal("no message received")
		return nil
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestEchoRoundTrip(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()

	must(t, client.node.Send(ctx, wire.TransportMessage{
		OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("inbox")},
		Payload:     []byte("ping"),
	}))
	reply := client.receive(t)
	if string(reply.Payload) != "ping" {
		t.Fatalf("payload %q", reply.Payload)
	}
	// onward [inbox]; return [client's connection, echo]: the client's connection address
	// was prepended on receipt, the server's one was stripped when sending.
	if !reply.OnwardRoute.Equal(wire.Route{wire.Local("inbox")}) || len(reply.ReturnRoute) != 2 ||
		!reply.ReturnRoute[1].Equal(wire.Local("echo")) {
		t.Fatalf("reply routes: %v", reply.TransportMessage)
	}
	connAddr, err := client.tr.Connect(ctx, addr)
	must(t, err)
	if !reply.ReturnRoute[0].Equal(connAddr) {
		t.Fatalf("return route starts with %v, want the connection %v (reused)", reply.ReturnRoute[0], connAddr)
	}

	// Reply along the return route: this time through the connection's local address.
	must(t, reply.Reply(ctx, []byte("pong")))
	again := client.receive(t)
	if string(again.Payload) != "pong" || !again.ReturnRoute.Equal(reply.ReturnRoute) {
		t.Fatalf("second round trip: %v %q", again.TransportMessage, again.Payload)
	}
}

// A closed transport leaves its node: sends to TCP addresses find no route (not a closed
// transport that would refuse them for good), and a new transport on the same node
// registers and carries them.
func TestClosedTransportLeavesTheNode(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	must(t, client.tr.Close())
	ping := wire.TransportMessage{
		OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("inbox")},
		Payload:     []byte("ping"),
	}
	if err := client.node.Send(ctx, ping); !errors.Is(err, routing.ErrNoRoute) {
		t.Fatalf("send after the transport closed: %v, want an error matching routing.ErrNoRoute", err)
	}
	again, err := New(client.node)
	if err != nil {
		t.Fatalf("a new transport on the node of a closed one: %v", err)
	}
	defer again.Close()
	must(t, client.node.Send(ctx, ping))
	if reply := client.receive(t); string(reply.Payload) != "ping" {
		t.Fatalf("reply through the new transport: %q", reply.Payload)
	}
}

func TestServerSeesConnectionInReturnRoute(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	for i := range 3 {
		must(t, client.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")},
			ReturnRoute: wire.Route{wire.Local("someone")},
			Payload:     []byte{byte(i)},
		}))
	}
	var first wire.Address
	for i := range 3 {
		m := server.receive(t)
		if m.Payload[0] != byte(i) {
			t.Fatalf("message %d arrived as %d: order not kept", i, m.Payload[0])
		}
		if !m.OnwardRoute.Equal(wire.Route{wire.Local("inbox")}) || len(m.ReturnRoute) != 2 ||
			!m.ReturnRoute[1].Equal(wire.Local("someone")) || len(m.ReturnRoute[0].Value) != 32 {
			t.Fatalf("server got %v", m.TransportMessage)
		}
		if i == 0 {
			first = m.ReturnRoute[0]
		} else if !m.ReturnRoute[0].Equal(first) {
			t.Fatalf("message %d came over another connection (%v, first %v)", i, m.ReturnRoute[0], first)
		}
	}
}

// rawConn is a hand-driven client connection.
type rawConn struct {
	t *testing.T
	net.Conn
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, guard)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(guard))
	return &rawConn{t, c}
}

func (c *rawConn) send(m wire.TransportMessage) {
	c.t.Helper()
	f, err := wire.AppendFrame(nil, m)
	must(c.t, err)
	if _, err := c.Write(f); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) readMessage() wire.TransportMessage {
	c.t.Helper()
	var hdr [2]byte
	body, _, err := readFrame(c, hdr[:])
	must(c.t, err)
	m, err := wire.DecodeTransportMessage(body)
	must(c.t, err)
	return m
}

// expectClosed waits until the server closes the connection.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("connection was not closed by the server")
		}
		return // EOF or reset
	}
}

func echoVia(c *rawConn, payload string) {
	c.t.Helper()
	c.send(wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("me")},
		Payload:     []byte(payload),
	})
	m := c.readMessage()
	if string(m.Payload) != payload || !m.OnwardRoute.Equal(wire.Route{wire.Local("me")}) || !m.ReturnRoute.Equal(wire.Route{wire.Local("echo")}) {
		c.t.Fatalf("echo reply %v %q", m, m.Payload)
	}
}

func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	valid := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("echo")}, Payload: []byte("x")}.Append(nil)
	version2 := append([]byte{2}, valid[1:]...)
	trailing := append(append([]byte(nil), valid...), 0)
	tests := []struct {
		name  string
		frame []byte // full bytes on the wire
	}{
		{"zero length", []byte{0x00, 0x00}},
		{"garbage", append([]byte{0x00, 0x03}, 0xff, 0xff, 0xff)},
		{"version 2", append(binary.BigEndian.AppendUint16(nil, uint16(len(version2))), version2...)},
		{"trailing byte", append(binary.BigEndian.AppendUint16(nil, uint16(len(trailing))), trailing...)},
		{"truncated message", append(binary.BigEndian.AppendUint16(nil, uint16(len(valid)-1)), valid[:len(valid)-1]...)},
	}
	server := newSide(t)
	addr := server.listen(t)
	good := dialRaw(t, addr)
	echoVia(good, "before")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := dialRaw(t, addr)
			if _, err := bad.Write(tt.frame); err != nil {
				t.Fatal(err)
			}
			bad.expectClosed()
			echoVia(good, tt.name) // the other connection keeps working
		})
	}
}

func TestOversizedMessageRejectedAtSend(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	onward := wire.Route{wire.TCP(addr), wire.Local("inbox")}
	ret := wire.Route{wire.Local("x")}
	// The budget is computed on the route as written (after the TCP hop is stripped).
	budget := wire.FramePayloadBudget(onward[1:], ret)

	err := client.node.Send(ctx, wire.TransportMessage{OnwardRoute: onward, ReturnRoute: ret, Payload: make([]byte, budget+1)})
	if !errors.Is(err, wire.ErrFrameTooLarge) || !errors.Is(err, core.ErrMessageTooLarge) {
		t.Fatalf("oversized send: err = %v, want wire.ErrFrameTooLarge", err)
	}

	// Exactly the budget goes through whole, over the same connection, and the first,
	// refused message never arrives.
	big := bytes.Repeat([]byte{0xab}, budget)
	must(t, client.node.Send(ctx, wire.TransportMessage{OnwardRoute: onward, ReturnRoute: ret, Payload: big}))
	m := server.receive(t)
	if !bytes.Equal(m.Payload, big) {
		t.Fatalf("received %d bytes, want %d", len(m.Payload), len(big))
	}

	// The same check applies on the reply path (routing to the connection's local address).
	err = m.Reply(ctx, make([]byte, wire.MaxFrame))
	if !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("oversized reply: %v", err)
	}
	must(t, m.Node().Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{m.ReturnRoute[0], wire.Local("inbox")}, Payload: []byte("ok")}))
	if r := client.receive(t); string(r.Payload) != "ok" {
		t.Fatalf("reply %q", r.Payload)
	}
}

func TestMaxConnections(t *testing.T) {
	server := newSide(t, WithMaxConnections(1))
	addr := server.listen(t)
	first := dialRaw(t, addr)
	echoVia(first, "1") // the first connection is established and registered
	second := dialRaw(t, addr)
	second.expectClosed()
	echoVia(first, "2")

	// Dialling side: the limit counts dialled connections too. (Both servers here have no
	// limit of their own, so they keep the connections open.)
	addr1, addr2 := newSide(t).listen(t), newSide(t).listen(t)
	client := newSide(t, WithMaxConnections(1))
	ctx := context.Background()
	_, err := client.tr.Connect(ctx, addr1)
	must(t, err)
	if _, err := client.tr.Connect(ctx, addr2); !errors.Is(err, ErrTooManyConnections) || !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("second dial: %v, want ErrTooManyConnections", err)
	}
}

// TestRefusedHook: each connection refused at the limit reaches the hook, with an error
// matching ErrTooManyConnections.
func TestRefusedHook(t *testing.T) {
	type refusal struct {
		remote string
		err    error
	}
	refused := make(chan refusal, 4)
	server := newSide(t, WithMaxConnections(1), WithRefusedHook(func(remote string, err error) {
		refused <- refusal{remote, err}
	}))
	addr := server.listen(t)
	first := dialRaw(t, addr)
	echoVia(first, "1")
	for range 2 {
		dialRaw(t, addr).expectClosed()
		select {
		case r := <-refused:
			if !errors.Is(r.err, ErrTooManyConnections) || r.remote == "" {
				t.Fatalf("hook got (%q, %v), want the remote address and ErrTooManyConnections", r.remote, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the hook was not called for a connection refused at the limit")
		}
	}
	echoVia(first, "2")
	if n := len(refused); n != 0 {
		t.Fatalf("%d more refusals reported than connections refused", n)
	}
}

func TestHandshakeAndIdleTimeout(t *testing.T) {
	server := newSide(t, WithHandshakeTimeout(50*time.Millisecond), WithIdleTimeout(100*time.Millisecond))
	addr := server.listen(t)

	silent := dialRaw(t, addr) // never sends a first frame
	silent.expectClosed()

	idle := dialRaw(t, addr)
	echoVia(idle, "hello") // first frame in time, then nothing
	idle.expectClosed()
}

func TestIdleConnectionIsRedialled(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	client := newSide(t, WithIdleTimeout(50*time.Millisecond))
	ctx := context.Background()
	a1, err := client.tr.Connect(ctx, addr)
	must(t, err)
	// Wait until the idle connection is gone from the node. The probes get no reply, so
	// nothing arrives on the connection and it stays idle.
	deadline := time.Now().Add(guard)
	for client.node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{a1, wire.Local("nobody")}}) == nil {
		if time.Now().After(deadline) {
			t.Fatal("idle connection never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Routing by TCP address dials a new connection.
	must(t, client.node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("echo")}, ReturnRoute: wire.Route{wire.Local("inbox")}, Payload: []byte("new")}))
	for {
		m := client.receive(t)
		if string(m.Payload) == "new" {
			if m.ReturnRoute[0].Equal(a1) {
				t.Fatal("reply came through the closed connection's address")
			}
			return
		}
	}
}

func TestGracefulCloseFlushesQueuedFrames(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	n, err := routing.NewNode(routing.WithLogger(quiet))
	must(t, err)
	tr, err := New(n)
	must(t, err)
	ctx := context.Background()
	const count = 200
	for i := range count {
		must(t, n.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")},
			Payload:     binary.BigEndian.AppendUint32(nil, uint32(i)),
		}))
	}
	must(t, n.Close()) // closes tr
	if err := tr.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	for i := range count {
		m := server.receive(t)
		if got := binary.BigEndian.Uint32(m.Payload); got != uint32(i) {
			t.Fatalf("message %d arrived as %d", i, got)
		}
	}
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP(addr)}}); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

func TestOptionsValidated(t *testing.T) {
	n, err := routing.NewNode(routing.WithLogger(quiet))
	must(t, err)
	defer n.Close()
	for _, o := range []Option{WithMaxConnections(0), WithWriteQueueSize(0), WithIdleTimeout(-1), WithLogger(nil), WithCloseTimeout(0), WithRefusedHook(nil)} {
		if _, err := New(n, o); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("err = %v, want ErrInvalidOption", err)
		}
	}
}

func TestStableRoute(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	must(t, client.node.Send(ctx, wire.TransportMessage{
		OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("inbox")},
	}))
	reply := client.receive(t)
	stable := client.tr.StableRoute(reply.ReturnRoute)
	if !stable.Equal(wire.Route{wire.TCP(addr), wire.Local("echo")}) {
		t.Fatalf("StableRoute(%v) = %v", reply.ReturnRoute, stable)
	}
	other := wire.Route{wire.Local("x"), wire.Local("y")}
	if got := client.tr.StableRoute(other); !got.Equal(other) {
		t.Fatalf("StableRoute of a plain route = %v", got)
	}
}

func TestRelayIsOffByDefault(t *testing.T) {
	target := newSide(t)
	targetAddr := target.listen(t)
	for _, relay := range []bool{false, true} {
		hub := newSide(t, WithRelay(relay))
		hubAddr := hub.listen(t)
		c := dialRaw(t, hubAddr)
		c.send(wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(targetAddr), wire.Local("inbox")},
			Payload:     []byte{map[bool]byte{false: 0, true: 1}[relay]},
		})
		// A second message on the same connection proves the first was processed.
		echoVia(c, "after")
		if relay {
			if m := target.receive(t); m.Payload[0] != 1 {
				t.Fatalf("relayed payload %v", m.Payload)
			}
		}
	}
	// Without relay nothing but the relayed message (payload 1) reached the target.
	select {
	case m := <-target.in:
		t.Fatalf("unexpected message at target: %v", m.Payload)
	default:
	}
}

func TestDone(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	a, err := client.tr.Connect(ctx, addr)
	must(t, err)
	done := client.tr.Done(a)
	select {
	case <-done:
		t.Fatal("Done closed for an open connection")
	default:
	}
	// Closing the server side ends the connection; Done notices.
	must(t, server.node.Close())
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("Done not closed after the peer went away")
	}
	select {
	case <-client.tr.Done(wire.Local("unknown")):
	default:
		t.Fatal("Done of an unknown address is not closed")
	}
}

func TestStopListeningKeepsConnections(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	echo := func() error {
		return client.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("echo")},
			ReturnRoute: wire.Route{wire.Local("inbox")},
			Payload:     []byte("ping"),
		})
	}
	must(t, echo())
	client.receive(t)
	must(t, server.tr.StopListening())
	// The open connection still works both ways.
	must(t, echo())
	if m := client.receive(t); string(m.Payload) != "ping" {
		t.Fatalf("echo after StopListening: %q", m.Payload)
	}
	// A new connection is refused.
	if nc, err := net.DialTimeout("tcp", addr, guard); err == nil {
		nc.Close()
		t.Fatalf("dial %s after StopListening succeeded", addr)
	}
	must(t, server.tr.StopListening()) // idempotent
}

func TestDisconnect(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	a, err := client.tr.Connect(ctx, addr)
	must(t, err)
	done := client.tr.Done(a)
	must(t, client.tr.Disconnect(a))
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("Done not closed after Disconnect")
	}
	b, err := client.tr.Connect(ctx, addr)
	must(t, err)
	if b.Equal(a) {
		t.Fatalf("Connect after Disconnect reused %v", a)
	}
	if err := client.tr.Disconnect(a); !errors.Is(err, routing.ErrNoRoute) {
		t.Fatalf("Disconnect of a closed connection = %v, want ErrNoRoute", err)
	}
}
