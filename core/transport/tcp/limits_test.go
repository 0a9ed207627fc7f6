package tcp

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// openConns returns the number of open connections of tr.
func openConns(tr *Transport) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.conns)
}

// countDials makes s's transport count its dials.
func countDials(s *side) *atomic.Int32 {
	var n atomic.Int32
	s.tr.hooks.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		n.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, address)
	}
	return &n
}

// TestFrameSizeLimitAtItsEdge: a message that encodes to exactly MaxFrame bytes goes
// through; one byte more is refused at Send, before any connection is dialled for it.
func TestFrameSizeLimitAtItsEdge(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	dials := countDials(client)
	ctx := context.Background()
	msg := func(size int) wire.TransportMessage {
		t.Helper()
		m := wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")}, ReturnRoute: wire.Route{wire.Local("x")}}
		for p := size - 16; p <= size; p++ {
			m.Payload = make([]byte, p)
			if strip(m).Size() == size {
				return m
			}
		}
		t.Fatalf("no payload makes a message of %d bytes", size)
		return m
	}
	err := client.node.Send(ctx, msg(wire.MaxFrame+1))
	if !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("send of a %d-byte message: %v, want ErrFrameTooLarge", wire.MaxFrame+1, err)
	}
	if n, open := dials.Load(), openConns(client.tr); n != 0 || open != 0 {
		t.Fatalf("a message too large for a frame dialled %d and left %d connection(s) open, want none", n, open)
	}
	must(t, client.node.Send(ctx, msg(wire.MaxFrame)))
	if m := server.receive(t); len(m.Payload) != len(msg(wire.MaxFrame).Payload) {
		t.Fatalf("received %d payload bytes, want %d", len(m.Payload), len(msg(wire.MaxFrame).Payload))
	}
}

// TestDialRefusedAtLimitBeforeDialling: a transport at its connection limit refuses a dial
// without opening a connection it would have to close at once.
func TestDialRefusedAtLimitBeforeDialling(t *testing.T) {
	addr1, addr2 := newSide(t).listen(t), newSide(t).listen(t)
	client := newSide(t, WithMaxConnections(1))
	dials := countDials(client)
	ctx := context.Background()
	_, err := client.tr.Connect(ctx, addr1)
	must(t, err)
	if _, err := client.tr.Connect(ctx, addr2); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("second dial: %v, want ErrTooManyConnections", err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials with a limit of one connection, want 1", n)
	}
}

// TestHandshakeTimeoutWithIdleTimeoutOff: the handshake timeout applies to an accepted
// connection that sends nothing even when the idle timeout is disabled.
func TestHandshakeTimeoutWithIdleTimeoutOff(t *testing.T) {
	server := newSide(t, WithHandshakeTimeout(50*time.Millisecond), WithIdleTimeout(0))
	dialRaw(t, server.listen(t)).expectClosed()
}

// TestIdleTimeoutFollowsFirstFrame: once the first frame arrived, the idle timeout applies,
// not the (here much longer) handshake timeout.
func TestIdleTimeoutFollowsFirstFrame(t *testing.T) {
	server := newSide(t, WithHandshakeTimeout(time.Hour), WithIdleTimeout(100*time.Millisecond))
	c := dialRaw(t, server.listen(t))
	echoVia(c, "hello")
	c.expectClosed()
}

// TestHandshakeTimeoutEndsWithFirstFrame: once the first frame arrived, the handshake
// timeout no longer applies: with the idle timeout disabled the connection stays open. A
// second connection that never sends is closed by the handshake timeout; by then the first
// one's handshake timeout has passed too, and it must still answer.
func TestHandshakeTimeoutEndsWithFirstFrame(t *testing.T) {
	server := newSide(t, WithHandshakeTimeout(50*time.Millisecond), WithIdleTimeout(0))
	addr := server.listen(t)
	active := dialRaw(t, addr)
	echoVia(active, "1")
	dialRaw(t, addr).expectClosed()
	echoVia(active, "2")
}

// TestWriteTimeoutClosesStalledConnection: a connection whose writer is blocked on a peer
// that stopped reading is closed by the write timeout, without Close.
func TestWriteTimeoutClosesStalledConnection(t *testing.T) {
	addr, release := stalledPeer(t)
	defer release()
	client := newSide(t, WithWriteTimeout(100*time.Millisecond))
	ctx := context.Background()
	a, err := client.tr.Connect(ctx, addr)
	must(t, err)
	done := client.tr.Done(a)
	msg := wire.TransportMessage{OnwardRoute: wire.Route{a, wire.Local("inbox")}, Payload: make([]byte, 60_000)}
fill:
	for range 2000 {
		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := client.node.Send(sctx, msg)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			break fill // the write queue is full: the writer is blocked in a write
		case errors.Is(err, ErrConnectionClosed), errors.Is(err, routing.ErrNoRoute):
			break fill // closed meanwhile
		default:
			t.Fatal(err)
		}
		select {
		case <-done:
			break fill
		default:
		}
	}
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("a connection whose writes to a peer that does not read time out was never closed")
	}
}

// TestRefusedHookRunsBeforeClose: the refused hook runs before the refused connection is
// closed, so that when the peer sees it closed the refusal has been counted.
func TestRefusedHookRunsBeforeClose(t *testing.T) {
	refused := make(chan string, 1)
	proceed := make(chan struct{})
	server := newSide(t, WithMaxConnections(1), WithRefusedHook(func(remote string, err error) {
		refused <- remote
		select {
		case <-proceed:
		case <-time.After(guard):
		}
	}))
	addr := server.listen(t)
	first := dialRaw(t, addr)
	echoVia(first, "1")
	second := dialRaw(t, addr)
	select {
	case r := <-refused:
		if r != second.LocalAddr().String() {
			close(proceed)
			t.Fatalf("hook got remote %q, want %q", r, second.LocalAddr())
		}
	case <-time.After(guard):
		close(proceed)
		t.Fatal("the hook was not called for a connection refused at the limit")
	}
	// The hook has not returned: the connection must still be open. A read can only time out.
	_ = second.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := second.Read(make([]byte, 1))
	close(proceed)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read on the refused connection while the hook runs: %v, want a timeout (the connection was closed before the hook ran)", err)
	}
	_ = second.SetReadDeadline(time.Now().Add(guard))
	second.expectClosed()
	echoVia(first, "2")
}

// TestLastDrainWritesFramesOfLateSenders: frames that senders queued after checking that
// the connection was open, while the writer was already closing, are written by the
// writer's last drain (their Send returned nil).
func TestLastDrainWritesFramesOfLateSenders(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	c, err := client.tr.connFor(context.Background(), addr)
	must(t, err)
	// Act as a sender that saw done open: the writer's last drain waits for it.
	c.sendMu.RLock()
	c.shutdown(nil)
	// The writer, with nothing queued, takes done and waits for the sender: a pending Lock
	// makes TryRLock fail.
	waiting := false
	for range 20000 {
		if !c.sendMu.TryRLock() {
			waiting = true
			break
		}
		c.sendMu.RUnlock()
		time.Sleep(time.Millisecond)
	}
	if !waiting {
		c.sendMu.RUnlock()
		t.Fatal("the writer of a closed connection never started its last drain")
	}
	const count = 3
	for i := range count {
		b, err := wire.AppendFrame(nil, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("inbox")}, Payload: []byte{byte(i)}})
		must(t, err)
		c.queue <- frame{b: b}
	}
	c.sendMu.RUnlock()
	for i := range count {
		if m := server.receive(t); len(m.Payload) != 1 || m.Payload[0] != byte(i) {
			t.Fatalf("frame %d arrived as %v", i, m.Payload)
		}
	}
}

// TestSendRedialsWhenConnectionClosesUnderIt: a Send routed by TCP address that picked a
// connection which closes before its frame is queued dials a new connection and delivers
// the message there.
func TestSendRedialsWhenConnectionClosesUnderIt(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	ctx := context.Background()
	first, err := client.tr.Connect(ctx, addr)
	must(t, err)
	var closed atomic.Bool
	client.tr.hooks.beforeQueue = func(c *conn) {
		if !closed.Swap(true) {
			c.shutdown(nil)
		}
	}
	must(t, client.node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")}, Payload: []byte("again")}))
	if !closed.Load() {
		t.Fatal("the send did not go through the connection that was open")
	}
	if m := server.receive(t); string(m.Payload) != "again" {
		t.Fatalf("received %q", m.Payload)
	}
	second, err := client.tr.Connect(ctx, addr)
	must(t, err)
	if second.Equal(first) {
		t.Fatalf("the closed connection %v is still the one for %s", first, addr)
	}
}
