package tcp

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// TestGetFrameNeverReusesTooSmallBuffer checks that a frame is never read into a pooled
// buffer smaller than it: a large frame after a smaller one left its buffer in the pool.
func TestGetFrameNeverReusesTooSmallBuffer(t *testing.T) {
	for range 50 { // the race detector makes the pool drop some buffers: try often
		small := make([]byte, pooledFrameMin)
		putFrame(&small)
		bp := getFrame(wire.MaxFrame)
		if len(*bp) != wire.MaxFrame {
			t.Fatalf("getFrame(%d) returned %d bytes", wire.MaxFrame, len(*bp))
		}
	}
}

// TestWriteQueueHoldsWriteQueueSizeFrames checks the bound of a connection's write queue:
// with its writer stuck on a peer that does not read, it takes WithWriteQueueSize frames,
// and a Send for one more waits for room (here, fails at once with its cancelled ctx).
func TestWriteQueueHoldsWriteQueueSizeFrames(t *testing.T) {
	const size = 3
	s := newSide(t, WithWriteQueueSize(size), WithWriteTimeout(0))
	local, remote := net.Pipe() // unbuffered: a write waits for the peer to read it
	t.Cleanup(func() { remote.Close() })
	c, err := s.tr.start(local, "", false)
	must(t, err)
	// Larger than the writer's buffer: written to the connection at once.
	msg := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(c.addr), wire.Local("x")}, Payload: make([]byte, writeBufferSize+1)}
	ctx, cancel := context.WithTimeout(context.Background(), guard) // hang guard
	defer cancel()
	must(t, c.Send(ctx, msg))
	// The first byte arrives: the writer took the first frame and is stuck writing it.
	_ = remote.SetReadDeadline(time.Now().Add(guard))
	if _, err := remote.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	for i := range size {
		if err := c.Send(ctx, msg); err != nil {
			t.Fatalf("frame %d of a queue of %d: %v", i+1, size, err)
		}
	}
	full, stop := context.WithCancel(context.Background())
	stop()
	// Send picks at random among what is ready: with room in the queue, some of these
	// would get in.
	for range 20 {
		if err := c.Send(full, msg); !errors.Is(err, context.Canceled) {
			t.Fatalf("send to a full write queue of %d frames = %v, want context.Canceled", size, err)
		}
	}
}

// deadlineConn records the read deadlines set on a connection and signals its first Read.
type deadlineConn struct {
	net.Conn
	mu        sync.Mutex
	deadlines []time.Time
	reading   chan struct{}
	once      sync.Once
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadlines = append(c.deadlines, t)
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	c.once.Do(func() { close(c.reading) })
	return c.Conn.Read(b)
}

// TestHandshakeTimeoutOnlyForAcceptedConnections checks that the handshake timeout applies
// to accepted connections only: a dialled connection waits for its first frame under the
// idle timeout, here none (and, as a control, an hour).
func TestHandshakeTimeoutOnlyForAcceptedConnections(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	for _, idle := range []time.Duration{0, time.Hour} {
		client := newSide(t, WithHandshakeTimeout(time.Minute), WithIdleTimeout(idle))
		conns := make(chan *deadlineConn, 1)
		client.tr.hooks.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			dc := &deadlineConn{Conn: nc, reading: make(chan struct{})}
			conns <- dc
			return dc, nil
		}
		_, err := client.tr.Connect(context.Background(), addr)
		must(t, err)
		dc := <-conns
		select {
		case <-dc.reading: // the deadline for the first frame is set before the first Read
		case <-time.After(guard):
			t.Fatal("the dialled connection never read")
		}
		dc.mu.Lock()
		var set []time.Duration
		for _, d := range dc.deadlines {
			if !d.IsZero() {
				set = append(set, time.Until(d).Round(time.Minute))
			}
		}
		dc.mu.Unlock()
		switch {
		case idle == 0 && len(set) != 0:
			t.Errorf("dialled connection with no idle timeout: read deadlines in %v, want none", set)
		case idle > 0 && (len(set) != 1 || set[0] != idle):
			t.Errorf("dialled connection with a %v idle timeout: read deadlines in %v, want one in %v", idle, set, idle)
		}
	}
}

// keptOpenConn is a connection whose Close does nothing: the transport cannot end it by
// closing its socket.
type keptOpenConn struct{ net.Conn }

func (keptOpenConn) Close() error { return nil }

// TestAbortEndsConnectionBeforeReturning checks that Abort shuts the connection down
// itself, not only through the errors that closing its socket causes: when it returns,
// the connection is closed (Done), no longer counted, and no longer a route.
func TestAbortEndsConnectionBeforeReturning(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	client := newSide(t)
	sockets := make(chan net.Conn, 1)
	client.tr.hooks.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		sockets <- nc
		return keptOpenConn{nc}, nil
	}
	ctx := context.Background()
	a, err := client.tr.Connect(ctx, addr)
	must(t, err)
	socket := <-sockets
	t.Cleanup(func() { socket.Close() }) // before the node closes: ends the reader
	must(t, client.tr.Abort(a))
	select {
	case <-client.tr.Done(a):
	default:
		t.Fatal("Done not closed when Abort returned")
	}
	if n := client.tr.Connections(); n != 0 {
		t.Fatalf("%d connections counted when Abort returned", n)
	}
	err = client.node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{a, wire.Local("inbox")}})
	if !errors.Is(err, routing.ErrNoRoute) {
		t.Fatalf("send via the aborted connection = %v, want routing.ErrNoRoute", err)
	}
}

// TestAddressTypesAreChecked checks that the transport sends only to TCP addresses and
// names its connections only by local addresses: a TCP address whose value happens to be
// a connection's local name is not that connection.
func TestAddressTypesAreChecked(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	client := newSide(t)
	ctx := context.Background()
	if err := client.tr.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr), wire.Local("inbox")}}); !errors.Is(err, routing.ErrNoRoute) {
		t.Fatalf("Send to a local first address = %v, want routing.ErrNoRoute", err)
	}
	if n := client.tr.Connections(); n != 0 {
		t.Fatalf("Send to a local first address opened %d connections", n)
	}
	a, err := client.tr.Connect(ctx, addr)
	must(t, err)
	asTCP := wire.Address{Type: wire.AddressTCP, Value: a.Value}
	select {
	case <-client.tr.Done(asTCP):
	default:
		t.Fatal("Done of a TCP address is the open connection's")
	}
	if err := client.tr.Disconnect(asTCP); !errors.Is(err, routing.ErrNoRoute) {
		t.Fatalf("Disconnect of a TCP address = %v, want routing.ErrNoRoute", err)
	}
	select {
	case <-client.tr.Done(a):
		t.Fatal("the connection was closed by a Disconnect of a TCP address")
	default:
	}
}

// TestDialTimeout checks that a dial that does not complete fails after the dial timeout
// with an error matching core.ErrUnavailable, whatever the caller's ctx allows.
func TestDialTimeout(t *testing.T) {
	client := newSide(t, WithDialTimeout(50*time.Millisecond))
	client.tr.hooks.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		<-ctx.Done() // a peer that never answers
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard) // hang guard
	defer cancel()
	_, err := client.tr.Connect(ctx, "127.0.0.1:9") // never dialled: the hook stands for the network
	if !errors.Is(err, core.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("Connect to a peer that never answers = %v, want the dial timeout's error matching core.ErrUnavailable", err)
	}
}

// TestDialEndingAfterCloseFails checks that a dial that completes after the transport
// began to close does not hand out its connection: Connect fails with routing.ErrClosed.
func TestDialEndingAfterCloseFails(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	client := newSide(t)
	closed := make(chan error, 1)
	client.tr.hooks.dialed = func(c *conn) {
		go func() { closed <- client.tr.Close() }()
		// Wait until Close has marked the transport closed (it then waits for this dial).
		for deadline := time.Now().Add(guard); ; time.Sleep(time.Millisecond) {
			client.tr.mu.Lock()
			done := client.tr.closed
			client.tr.mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Error("Close did not mark the transport closed")
				return
			}
		}
	}
	if a, err := client.tr.Connect(context.Background(), addr); !errors.Is(err, routing.ErrClosed) {
		t.Fatalf("Connect whose dial ended after Close began = %v, %v; want routing.ErrClosed", a, err)
	}
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(guard):
		t.Fatal("Close did not return")
	}
}

// A send finds room in the write queue whatever its ctx: like routing.Node.Send with a
// mailbox that has room, it queues the frame even when ctx has ended (a reply sent from a
// handler whose ctx was cancelled, say). Only waiting for room is bounded by ctx. The queue
// holds every frame sent here, so each send has room, however slowly the writer drains.
func TestSendWithEndedContextQueuesWhenThereIsRoom(t *testing.T) {
	server, client := newSide(t), newSide(t, WithWriteQueueSize(256))
	addr := server.listen(t)
	_, err := client.tr.Connect(context.Background(), addr)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	const n = 64
	for i := range n {
		err := client.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")},
			Payload:     []byte{byte(i)},
		})
		if err != nil {
			t.Fatalf("send %d with an ended ctx and room in the write queue: %v", i, err)
		}
	}
	for i := range n {
		if m := server.receive(t); len(m.Payload) != 1 || m.Payload[0] != byte(i) {
			t.Fatalf("message %d: payload % x", i, m.Payload)
		}
	}
}
