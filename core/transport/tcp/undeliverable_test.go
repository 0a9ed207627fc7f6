package tcp

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// undelivered is a message handed to an undeliverable hook.
type undelivered struct {
	remote string
	msg    wire.TransportMessage
	err    error
}

// TestUndeliverableHook: a message read from a connection that has nowhere to go (no
// worker at its address, or a remote address while relaying is off) is handed to the
// undeliverable hook, with the connection's address first in its return route so that the
// hook can answer it, and logged at Debug only: the hook's owner decides what to warn
// about, so a peer that floods such messages costs no warning per frame. Without a hook it
// is a warning, as before.
func TestUndeliverableHook(t *testing.T) {
	got := make(chan undelivered, 10)
	rec := newLogRecorder()
	server := newSide(t, WithLogger(slog.New(rec)), WithUndeliverableHook(func(remote string, msg wire.TransportMessage, err error) {
		got <- undelivered{remote, msg, err}
	}))
	c := dialRaw(t, server.listen(t))
	remote := c.LocalAddr().String()
	for _, onward := range []wire.Route{
		{wire.Local("nowhere")},
		{wire.TCP("127.0.0.1:1"), wire.Local("echo")}, // relaying is off
	} {
		c.send(wire.TransportMessage{OnwardRoute: onward, ReturnRoute: wire.Route{wire.Local("me")}, Payload: []byte("hi")})
		var u undelivered
		select {
		case u = <-got:
		case <-time.After(guard):
			t.Fatalf("a message to [%s] did not reach the undeliverable hook", onward)
		}
		if !errors.Is(u.err, routing.ErrNoRoute) || u.remote != remote || string(u.msg.Payload) != "hi" ||
			!u.msg.OnwardRoute.Equal(onward) || len(u.msg.ReturnRoute) != 2 || !u.msg.ReturnRoute[1].Equal(wire.Local("me")) {
			t.Fatalf("hook got remote %s, %v, err %v; want %s, a message to [%s] with the connection's address before [0#me], ErrNoRoute", u.remote, u.msg, u.err, remote, onward)
		}
		// The hook may answer along the return route: through the connection.
		must(t, server.node.Send(t.Context(), routing.Reply(u.msg, wire.Local("nowhere"), []byte("no such address"))))
		if m := c.readMessage(); string(m.Payload) != "no such address" || !m.OnwardRoute.Equal(wire.Route{wire.Local("me")}) {
			t.Fatalf("answer from the hook arrived as %v %q", m, m.Payload)
		}
	}
	if w := rec.warnings(remote); len(w) > 0 {
		t.Errorf("with an undeliverable hook the transport warned: %q", w)
	}

	// Without a hook: a warning per message.
	rec = newLogRecorder()
	plain := newSide(t, WithLogger(slog.New(rec)))
	c = dialRaw(t, plain.listen(t))
	c.send(wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("nowhere")}, Payload: []byte("hi")})
	echoVia(c, "after") // the connection reads on, in order: the drop came first
	if w := rec.warnings(c.LocalAddr().String()); len(w) != 1 {
		t.Errorf("without a hook, warnings about a message to an unknown address: %q, want one", w)
	}
}
