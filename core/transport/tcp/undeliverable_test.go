package tcp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
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
// about. Without a hook it is a warning (rate-limited: see TestWarningsRateLimited).
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

	// Without a hook: a warning.
	rec = newLogRecorder()
	plain := newSide(t, WithLogger(slog.New(rec)))
	c = dialRaw(t, plain.listen(t))
	c.send(wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("nowhere")}, Payload: []byte("hi")})
	echoVia(c, "after") // the connection reads on, in order: the drop came first
	if w := rec.warnings(c.LocalAddr().String()); len(w) != 1 {
		t.Errorf("without a hook, warnings about a message to an unknown address: %q, want one", w)
	}
}

// TestWarningsRateLimited: without hooks, the transport's warnings about what peers do (messages
// to addresses that do not exist, connections refused) are one line per kind and interval,
// which counts the events since the previous line; a flood of them does not flood the log,
// and Close logs the lines that count those held back.
func TestWarningsRateLimited(t *testing.T) {
	rec := newLogRecorder()
	server := newSide(t, WithLogger(slog.New(rec)), WithMaxConnections(1))
	server.tr.limits.SetInterval(time.Hour)
	addr := server.listen(t)
	c := dialRaw(t, addr)
	const drops = 5
	for range drops {
		c.send(wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("nowhere")}, Payload: []byte("hi")})
	}
	echoVia(c, "after") // the connection reads in order: the drops came first
	const refusals = 3
	for range refusals { // c holds the only connection allowed
		r := dialRaw(t, addr)
		// To the server's close, which comes after the refusal was logged.
		if _, err := io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}

	counts := func() (dropped, refused []string) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, r := range rec.recs {
			if r.Level < slog.LevelWarn {
				continue
			}
			r.Attrs(func(a slog.Attr) bool {
				switch {
				case r.Message == "tcp: dropped incoming messages" && a.Key == "messages":
					dropped = append(dropped, a.Value.String())
				case r.Message == "tcp: refused connection" && a.Key == "connections":
					refused = append(refused, a.Value.String())
				}
				return true
			})
		}
		return dropped, refused
	}
	if d, r := counts(); !slices.Equal(d, []string{"1"}) || !slices.Equal(r, []string{"1"}) {
		t.Fatalf("warnings counting dropped messages %v and refused connections %v, want one line each, counting 1", d, r)
	}
	must(t, server.tr.Close())
	if d, r := counts(); !slices.Equal(d, []string{"1", "4"}) || !slices.Equal(r, []string{"1", "2"}) {
		t.Fatalf("after Close, warnings counting dropped messages %v and refused connections %v, want [1 4] and [1 2]", d, r)
	}
}

// TestClosingWarningsRateLimited: accepted connections closed for an error (here a frame cut
// short, which any peer can send) are warned about once per interval, a line counting the
// connections since the previous one, so that a peer that connects again and again with bad
// frames does not flood the log; Close logs the line counting those held back. Each is still
// logged at Debug with its remote address and error.
func TestClosingWarningsRateLimited(t *testing.T) {
	rec := newLogRecorder()
	server := newSide(t, WithLogger(slog.New(rec)))
	server.tr.limits.SetInterval(time.Hour)
	addr := server.listen(t)
	const bad = 4
	for range bad {
		c := dialRaw(t, addr)
		if _, err := c.Write([]byte{0, 9, 1}); err != nil { // a frame of 9 bytes, cut short
			t.Fatal(err)
		}
		must(t, c.Conn.(*net.TCPConn).CloseWrite())
		rec.awaitClosed(t, c.LocalAddr().String())
		c.Close()
	}
	counts := func() (warned []string, debug int) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, r := range rec.recs {
			if r.Message != "tcp: closing connection" {
				continue
			}
			if r.Level < slog.LevelWarn {
				debug++
				continue
			}
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "connections" {
					warned = append(warned, a.Value.String())
				}
				return true
			})
		}
		return warned, debug
	}
	if w, d := counts(); !slices.Equal(w, []string{"1"}) || d != bad-1 {
		t.Fatalf("warnings about closed connections counting %v, and %d at Debug; want one counting 1, and %d at Debug", w, d, bad-1)
	}
	must(t, server.tr.Close())
	if w, _ := counts(); !slices.Equal(w, []string{"1", fmt.Sprint(bad - 1)}) {
		t.Fatalf("after Close, warnings about closed connections counting %v, want [1 %d]", w, bad-1)
	}
}
