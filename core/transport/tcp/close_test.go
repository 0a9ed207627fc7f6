package tcp

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// stalledPeer returns a listener's address; the one connection it accepts is never read
// from. release closes the listener and that connection; tests defer it, so that it runs
// before the node's Cleanup even when the test fails (it unblocks a stuck writer).
func stalledPeer(t *testing.T) (addr string, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			nc = nil
		}
		accepted <- nc
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		if nc := <-accepted; nc != nil {
			nc.Close()
		}
	}
}

// fill sends large messages to addr until a send finds the write queue full: the peer does
// not read, so the socket buffers are full too and the connection's writer is blocked in a
// write.
func fill(t *testing.T, s *side, addr string) {
	t.Helper()
	for range 2000 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := s.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")}, Payload: make([]byte, 60_000)})
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return
		}
		must(t, err)
	}
	t.Fatal("2000 frames of 60 KB were queued to a peer that does not read")
}

// awaitClose runs close and fails the test if it has not returned within guard.
func awaitClose(t *testing.T, what string, close func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(guard):
		t.Fatalf("%s still blocked after %v: a writer blocked on a peer that stopped reading is never interrupted", what, guard)
		return nil
	}
}

// With the write timeout disabled (a documented setting), a writer blocked on a peer that
// stopped reading must not keep Close waiting: the close timeout closes the connection.
func TestCloseInterruptsWriterOfStalledPeer(t *testing.T) {
	addr, release := stalledPeer(t)
	defer release()
	client := newSide(t, WithWriteTimeout(0), WithCloseTimeout(200*time.Millisecond))
	fill(t, client, addr)
	if err := awaitClose(t, "Close", client.tr.Close); err != nil {
		t.Fatalf("Close: %v (a close timeout that passes is not an error)", err)
	}
}

// Shutdown stops flushing when its ctx ends, even when the close timeout is far away, and
// says so in its error.
func TestShutdownCutShortByContext(t *testing.T) {
	addr, release := stalledPeer(t)
	defer release()
	client := newSide(t, WithWriteTimeout(0), WithCloseTimeout(time.Hour))
	fill(t, client, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := awaitClose(t, "Shutdown", func() error { return client.tr.Shutdown(ctx) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with an expired ctx and a connection still writing = %v, want an error matching context.DeadlineExceeded", err)
	}
	// A later call waits for nothing: the transport has stopped.
	if err := client.tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// A connection that was closed before the transport (Disconnect) and is still trying to
// flush to a peer that stopped reading is cut short by Close too.
func TestCloseInterruptsDisconnectedWriter(t *testing.T) {
	addr, release := stalledPeer(t)
	defer release()
	client := newSide(t, WithWriteTimeout(0), WithCloseTimeout(200*time.Millisecond))
	local, err := client.tr.Connect(context.Background(), addr)
	must(t, err)
	fill(t, client, addr)
	must(t, client.tr.Disconnect(local))
	if err := awaitClose(t, "Close", client.tr.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// Shutdown with a peer that reads still delivers every queued frame, and a ctx that ends
// after that is no error.
func TestShutdownFlushesToReadingPeer(t *testing.T) {
	server, client := newSide(t), newSide(t, WithCloseTimeout(time.Hour))
	addr := server.listen(t)
	const count = 300 // more than the write queue holds
	payload := make([]byte, 10_000)
	for range count {
		must(t, client.node.Send(context.Background(), wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")}, Payload: payload}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := client.tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range count {
		server.receive(t)
	}
}

// writers returns the number of connections of tr whose writer has not returned: those
// whose socket is still open.
func writers(tr *Transport) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.writing)
}

// Abort closes the socket of a connection whose writer is blocked on a peer that stopped
// reading at once, rather than when a write timeout passes (here: never), and the
// connection no longer counts: its socket does not outlive its place in the count.
func TestAbortClosesSocketOfStalledPeer(t *testing.T) {
	addr, release := stalledPeer(t)
	defer release()
	client := newSide(t, WithWriteTimeout(0))
	local, err := client.tr.Connect(context.Background(), addr)
	must(t, err)
	fill(t, client, addr)
	must(t, client.tr.Abort(local))
	if n := openConns(client.tr); n != 0 {
		t.Fatalf("%d connections counted after Abort", n)
	}
	for deadline := time.Now().Add(guard); writers(client.tr) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the aborted connection's writer is still blocked on its socket after %v", guard)
		}
	}
	if err := client.tr.Abort(local); !errors.Is(err, routing.ErrNoRoute) {
		t.Fatalf("Abort of a connection already aborted = %v, want an error matching routing.ErrNoRoute", err)
	}
	// A new connection to the peer's address is dialled: the aborted one is forgotten.
	if again, err := client.tr.Connect(context.Background(), addr); err != nil || string(again.Value) == string(local.Value) {
		t.Fatalf("Connect after Abort = %v, %v; want a new connection", again, err)
	}
}

// slowConn writes to its connection a little at a time, 1 KiB every millisecond, and
// enforces its own write deadline between the pieces (the socket's deadline would not
// fire: each piece is written at once). It counts the bytes written.
type slowConn struct {
	net.Conn
	mu       sync.Mutex
	deadline time.Time
	written  int
}

func (c *slowConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *slowConn) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		time.Sleep(time.Millisecond)
		c.mu.Lock()
		deadline := c.deadline
		c.mu.Unlock()
		if !deadline.IsZero() && time.Now().After(deadline) {
			return n, os.ErrDeadlineExceeded
		}
		m, err := c.Conn.Write(b[n:min(len(b), n+1<<10)])
		n += m
		c.mu.Lock()
		c.written += m
		c.mu.Unlock()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// A connection that is closing writes what was queued on it for at most the write timeout
// in all, not for up to the write timeout per write: a peer that keeps reading, but too
// slowly to take the queue within the write timeout, must not hold the socket and the
// queued frames (up to 16 MiB) for as long as it likes. Here each write of the queue takes
// well under the write timeout and the whole queue several times it.
func TestFlushOnCloseBoundedByWriteTimeout(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	const frames, size = 150, 8000
	client := newSide(t, WithWriteTimeout(300*time.Millisecond), WithWriteQueueSize(frames))
	sockets := make(chan *slowConn, 1)
	client.tr.hooks.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		sc := &slowConn{Conn: nc}
		sockets <- sc
		return sc, nil
	}
	ctx := context.Background()
	local, err := client.tr.Connect(ctx, addr)
	must(t, err)
	sc := <-sockets
	for range frames {
		must(t, client.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{local, wire.Local("inbox")}, Payload: make([]byte, size)}))
	}
	must(t, client.tr.Disconnect(local))
	for deadline := time.Now().Add(guard); writers(client.tr) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the disconnected connection is still writing after %v", guard)
		}
	}
	sc.mu.Lock()
	written := sc.written
	sc.mu.Unlock()
	if written >= frames*size {
		t.Fatalf("the closing connection wrote all %d bytes queued, at 1 KiB/ms: its flush outlived the 300ms write timeout", written)
	}
}
