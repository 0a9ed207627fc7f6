package tcp

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// refuseFirst listens on loopback and closes the first connection it accepts at once (as a
// hub at its connection limit does); it keeps the later ones open until the test ends.
func refuseFirst(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var wg sync.WaitGroup
	var kept []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for first := true; ; first = false {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			if first {
				nc.Close()
				continue
			}
			kept = append(kept, nc)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, nc := range kept {
			nc.Close()
		}
	})
	return ln.Addr().String()
}

// A dialled connection that the peer closes before its dial has finished must not stay the
// connection for that host:port: the next Connect dials a new one.
func TestConnectionClosedDuringDialIsForgotten(t *testing.T) {
	addr := refuseFirst(t)
	client := newSide(t)
	// Hold the dial until the connection it made has closed (its reader saw the peer's EOF).
	client.tr.hooks.dialed = func(c *conn) {
		select {
		case <-c.done:
		case <-time.After(guard):
			t.Error("the peer's close did not close the dialled connection")
		}
	}
	ctx := context.Background()
	first, err := client.tr.Connect(ctx, addr)
	must(t, err)
	client.tr.hooks.dialed = nil // the dial has ended: Connect returned

	second, err := client.tr.Connect(ctx, addr)
	must(t, err)
	if second.Equal(first) {
		t.Fatalf("Connect returned the closed connection %v again", first)
	}
	select {
	case <-client.tr.Done(second):
		t.Fatalf("Connect returned %v, which is closed", second)
	default:
	}
	must(t, client.node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")}}))
}

// A caller whose ctx ends during a dial stops waiting, and the dial goes on for the others:
// it is not failed with that caller's ctx error.
func TestDialOutlivesCancelledCaller(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	var dials atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	client.tr.hooks.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			close(started)
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := client.tr.Connect(ctx, addr)
		errc <- err
	}()
	<-started
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Connect with a cancelled ctx: err = %v, want context.Canceled", err)
		}
	case <-time.After(guard):
		t.Fatal("Connect did not return when its ctx was cancelled")
	}

	close(release)
	a, err := client.tr.Connect(context.Background(), addr)
	if err != nil {
		t.Fatalf("Connect after another caller gave up: %v", err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials, want 1: the first dial ended with its first caller's ctx", n)
	}
	select {
	case <-client.tr.Done(a):
		t.Fatalf("Connect returned %v, which is closed", a)
	default:
	}
}

// A frame that reaches the queue after the writer's last drain would never be written: Send
// must fail instead of returning nil.
func TestSendAfterLastDrainFails(t *testing.T) {
	server, client := newSide(t), newSide(t)
	addr := server.listen(t)
	// Close the connection between the sender's encoding and its queueing, and wait for
	// the writer to finish. The client transport has no listener and one connection at a
	// time, so its WaitGroup counts only that connection's goroutines (and the dial that
	// made it, which has ended).
	client.tr.hooks.beforeQueue = func(c *conn) {
		c.shutdown(nil)
		c.t.wg.Wait()
	}
	ctx := context.Background()
	msg := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("inbox")}, Payload: []byte("late")}
	// Without the fix the outcome is a random select between the queue and done, so try
	// it on several connections.
	for i := range 32 {
		c, err := client.tr.connFor(ctx, addr)
		must(t, err)
		if err := c.enqueue(ctx, msg); !errors.Is(err, ErrConnectionClosed) {
			t.Fatalf("attempt %d: send on a connection whose writer has stopped: err = %v, want ErrConnectionClosed", i, err)
		}
	}
}

// Of two Abort calls for one connection that both find it open, only the one that closes
// it succeeds; the other reports that no open connection has that address, as a later
// call would. The hook holds each call, once it has found the connection, until both have.
func TestConcurrentAbortsOneSucceeds(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	client := newSide(t)
	a, err := client.tr.Connect(context.Background(), addr)
	must(t, err)
	var both sync.WaitGroup
	both.Add(2)
	client.tr.hooks.found = func(*conn) {
		both.Done()
		both.Wait()
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- client.tr.Abort(a) }()
	}
	var ok, gone int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, routing.ErrNoRoute):
			gone++
		default:
			t.Errorf("Abort = %v, want nil or an error matching routing.ErrNoRoute", err)
		}
	}
	if ok != 1 || gone != 1 {
		t.Fatalf("of two concurrent Aborts %d succeeded and %d found no connection, want 1 and 1", ok, gone)
	}
}
