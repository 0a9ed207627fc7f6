package tcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// hops returns a route of n distinct local addresses.
func hops(n int) wire.Route {
	r := make(wire.Route, n)
	for i := range r {
		r[i] = wire.Local(fmt.Sprintf("hop%d", i))
	}
	return r
}

// TestRouteCapOnTheWire: a frame whose return route holds wire.MaxRouteLen addresses is
// delivered (with the connection's address in front: one more than the cap, in memory),
// and the reply, whose onward route loses that address when it is written, fits the cap
// and comes back; a frame with one address more closes its connection, and only that one.
func TestRouteCapOnTheWire(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	c := dialRaw(t, addr)
	ret := hops(wire.MaxRouteLen)
	c.send(wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("echo")}, ReturnRoute: ret, Payload: []byte("at the cap")})
	if m := c.readMessage(); string(m.Payload) != "at the cap" || !m.OnwardRoute.Equal(ret) {
		t.Fatalf("reply to a message with a return route of %d addresses: %v, want it sent back along that route", wire.MaxRouteLen, m)
	}

	bad := dialRaw(t, addr)
	// AppendFrame refuses this message: frame it by hand.
	body := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("echo")}, ReturnRoute: hops(wire.MaxRouteLen + 1), Payload: []byte("over")}.Append(nil)
	if _, err := bad.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)); err != nil {
		t.Fatal(err)
	}
	bad.expectClosed()
	echoVia(c, "still open")
}

// TestRouteCapRefusedAtSend: a message with a route of more than wire.MaxRouteLen
// addresses is refused at Send with wire.ErrRouteTooLong, before anything is dialled, and
// on the reply path (routed to a connection's local address) too.
func TestRouteCapRefusedAtSend(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	dials := countDials(client)
	ctx := context.Background()
	for _, m := range []wire.TransportMessage{
		{OnwardRoute: append(wire.Route{wire.TCP(addr)}, hops(wire.MaxRouteLen+1)...)},
		{OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")}, ReturnRoute: hops(wire.MaxRouteLen + 1)},
	} {
		err := client.node.Send(ctx, m)
		if !errors.Is(err, wire.ErrRouteTooLong) || !errors.Is(err, core.ErrInvalidArgument) {
			t.Fatalf("send with %d onward and %d return addresses: err = %v, want wire.ErrRouteTooLong", len(m.OnwardRoute), len(m.ReturnRoute), err)
		}
	}
	if n, open := dials.Load(), openConns(client.tr); n != 0 || open != 0 {
		t.Fatalf("messages with a route too long dialled %d and left %d connection(s) open, want none", n, open)
	}
	// At the cap: the TCP address is stripped before the frame is written, so the onward
	// route may hold one address more than the cap when it is sent.
	onward := append(wire.Route{wire.TCP(addr), wire.Local("inbox")}, hops(wire.MaxRouteLen-1)...)
	must(t, client.node.Send(ctx, wire.TransportMessage{OnwardRoute: onward, ReturnRoute: hops(wire.MaxRouteLen), Payload: []byte("at")}))
	m := server.receive(t)
	if len(m.OnwardRoute) != wire.MaxRouteLen || len(m.ReturnRoute) != wire.MaxRouteLen+1 {
		t.Fatalf("received %d onward and %d return addresses, want %d and %d", len(m.OnwardRoute), len(m.ReturnRoute), wire.MaxRouteLen, wire.MaxRouteLen+1)
	}
	// The reply path: routed to the connection's local address, one hop more than the cap
	// beyond it.
	long := append(wire.Route{m.ReturnRoute[0]}, hops(wire.MaxRouteLen+1)...)
	err := server.node.Send(ctx, wire.TransportMessage{OnwardRoute: long, Payload: []byte("over")})
	if !errors.Is(err, wire.ErrRouteTooLong) {
		t.Fatalf("send through a connection with %d onward addresses after it: err = %v, want wire.ErrRouteTooLong", wire.MaxRouteLen+1, err)
	}
}

// TestRouteCapReachedByForwarding: every node a message crosses makes its return route
// longer (the receiving transport prepends the connection's address, a forwarder itself),
// so forwarding can take a route that arrived within the cap past it. The node that would
// send it on refuses, and the forwarder gets the error (wire.ErrRouteTooLong); nothing is
// sent cut short.
func TestRouteCapReachedByForwarding(t *testing.T) {
	server, client := newSide(t), newSide(t)
	serverAddr, clientAddr := server.listen(t), client.listen(t)
	errs := make(chan error, 1)
	must(t, server.node.Register("fwd", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		errs <- m.Forward(ctx)
		return nil
	})))
	ctx := context.Background()
	forwarded := func(retLen int) error {
		t.Helper()
		must(t, client.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(serverAddr), wire.Local("fwd"), wire.TCP(clientAddr), wire.Local("inbox")},
			ReturnRoute: hops(retLen),
			Payload:     []byte{byte(retLen)},
		}))
		select {
		case err := <-errs:
			return err
		case <-time.After(guard):
			t.Fatal("the forwarder got no message")
			return nil
		}
	}
	// The server adds 2 addresses (its connection, "fwd"): MaxRouteLen-2 on the wire is
	// the longest return route it can forward.
	must(t, forwarded(wire.MaxRouteLen-2))
	if m := client.receive(t); len(m.ReturnRoute) != wire.MaxRouteLen+1 || !m.ReturnRoute[1].Equal(wire.Local("fwd")) {
		t.Fatalf("forwarded message has return route of %d addresses [%v ...], want %d starting with the client's connection and fwd", len(m.ReturnRoute), m.ReturnRoute[:2], wire.MaxRouteLen+1)
	}
	err := forwarded(wire.MaxRouteLen - 1)
	if !errors.Is(err, wire.ErrRouteTooLong) {
		t.Fatalf("forwarding a return route of %d addresses on: err = %v, want wire.ErrRouteTooLong", wire.MaxRouteLen+1, err)
	}
	// Forwarded messages travel on one connection, in order: the next to arrive is the
	// next that was forwarded, not the refused one.
	must(t, forwarded(wire.MaxRouteLen-2))
	if m := client.receive(t); m.Payload[0] != byte(wire.MaxRouteLen-2) {
		t.Fatalf("a message whose route grew past the cap arrived, with %d return addresses", len(m.ReturnRoute))
	}
}
