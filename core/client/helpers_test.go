package client_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// fakeReply sends p to m's sender as a reply from "fake.s", the stream worker of a fake hub
// on node (see registerFakeStreamService).
func fakeReply(ctx context.Context, node *routing.Node, m *routing.Message, proto string, p wire.Encoder) {
	_ = node.Send(ctx, wire.TransportMessage{OnwardRoute: m.ReturnRoute.Clone(), ReturnRoute: wire.Route{wire.Local("fake.s")}, Payload: wire.EncodePayload(proto, p)})
}

// registerFakeStreamService registers a fake hub's stream service at "stream" on node: it
// answers every stream_create with an Init from "fake.s", where the test registers the
// stream's fake worker.
func registerFakeStreamService(t *testing.T, node *routing.Node) {
	t.Helper()
	if err := node.Register("stream", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, _ := wire.DecodeCreateStreamRequest(bp.Data)
		fakeReply(ctx, node, m, wire.ProtocolCreate, wire.Init{StreamName: req.StreamName.Value})
		return nil
	})); err != nil {
		t.Fatal(err)
	}
}

// answerStreamService answers m, a request to a fake hub's stream service on node: a
// stream_create with an Init from "fake.s", a sluice_stream_open with the route to
// "fake.s" as the one partition of an existing stream. Other requests go unanswered.
func answerStreamService(ctx context.Context, node *routing.Node, m *routing.Message) error {
	bp, err := wire.DecodeBasePayload(m.Payload)
	if err != nil {
		return err
	}
	switch bp.Protocol {
	case wire.ProtocolCreate:
		req, err := wire.DecodeCreateStreamRequest(bp.Data)
		if err != nil {
			return err
		}
		fakeReply(ctx, node, m, wire.ProtocolCreate, wire.Init{StreamName: req.StreamName.Value})
	case wire.ProtocolStreamOpen:
		req, err := wire.DecodeStreamOpenRequest(bp.Data)
		if err != nil {
			return err
		}
		fakeReply(ctx, node, m, wire.ProtocolStreamOpen, wire.StreamOpenReply{RequestID: req.RequestID, Status: wire.StatusOK, Partitions: wire.Some(uint64(1))})
	}
	return nil
}

// testHub is an in-process hub on a real loopback TCP listener.
type testHub struct {
	*hub.Hub
	Addr  string
	Store core.Storage
}

// startHub starts a hub on a fresh memory backend, closed at the end of the test.
func startHub(t testing.TB, opts ...hub.Option) *testHub {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return startHubOn(t, &core.Backend{Storage: s, Index: s}, opts...)
}

// startBboltHub starts a hub on a bbolt backend in a temporary directory.
func startBboltHub(t testing.TB, opts ...hub.Option) *testHub {
	t.Helper()
	s, err := bbolt.New(context.Background(), filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return startHubOn(t, &core.Backend{Storage: s, Index: s}, opts...)
}

func startHubOn(t testing.TB, b *core.Backend, opts ...hub.Option) *testHub {
	t.Helper()
	h, err := hub.New(b, append([]hub.Option{hub.WithMaxPullWait(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("hub Close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("backend Close: %v", err)
		}
	})
	return &testHub{Hub: h, Addr: a.String(), Store: b.Storage}
}

func newProxy(t testing.TB, target string, opts ...faultproxy.Option) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// openWithStream opens a Conn on c, closed when the test ends, and creates stream on it
// with one partition.
func openWithStream(t testing.TB, c *client.Client, stream string) *client.Conn {
	t.Helper()
	conn, err := c.Open(t.Context(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.CreateStream(t.Context(), stream, 1); err != nil {
		t.Fatal(err)
	}
	return conn
}

func dial(t testing.TB, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
	})
	return c
}

func newPublisher(t testing.TB, c *client.Client, stream string, opts ...client.PublisherOption) *client.Publisher {
	t.Helper()
	p, err := client.NewPublisher(context.Background(), c, stream, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// fastBackoff keeps reconnects quick in tests.
var fastBackoff = client.Backoff{Min: 5 * time.Millisecond, Max: 100 * time.Millisecond, Factor: 2, Jitter: 0.5}

// msg encodes (publisher, seq) into a payload of at least size bytes.
func msg(pub, seq uint32, size int) []byte {
	b := make([]byte, max(size, 8))
	binary.BigEndian.PutUint32(b, pub)
	binary.BigEndian.PutUint32(b[4:], seq)
	return b
}

func parse(b []byte) (pub, seq uint32) {
	return binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
}

// orderChecker checks at-least-once, in-order delivery per publisher: the first occurrences
// of each publisher's sequence numbers arrive as 0, 1, 2, ...; repeats are duplicates.
type orderChecker struct {
	mu   sync.Mutex
	next map[uint32]uint32
	dups int
	errs []string
}

func newOrderChecker() *orderChecker { return &orderChecker{next: map[uint32]uint32{}} }

func (o *orderChecker) add(b []byte) {
	pub, seq := parse(b)
	o.mu.Lock()
	defer o.mu.Unlock()
	switch n := o.next[pub]; {
	case seq == n:
		o.next[pub] = n + 1
	case seq < n:
		o.dups++
	default:
		if len(o.errs) < 10 {
			o.errs = append(o.errs, fmt.Sprintf("publisher %d: got seq %d, expected %d (gap or reorder)", pub, seq, n))
		}
	}
}

// count returns how many distinct messages of pub arrived (in order).
func (o *orderChecker) count(pub uint32) uint32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next[pub]
}

func (o *orderChecker) check(t testing.TB) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.errs {
		t.Error(e)
	}
}

// runConsumer runs c in the background until the test ends (or stop is called) and returns
// a function that stops it and returns Run's error.
func runConsumer(t testing.TB, c *client.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitFor polls cond until it holds or the test's deadline is near.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok && dl.Add(-5*time.Second).Before(deadline) {
			deadline = dl.Add(-5 * time.Second)
		}
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// confirmsHeld is a publisher p of stream with an outbox at path, on client c through proxy
// px to hub h, whose messages 1..n the hub has stored but whose confirms px holds (message 0
// was confirmed first, so the session is up).
type confirmsHeld struct {
	h    *testHub
	px   *faultproxy.Proxy
	c    *client.Client
	p    *client.Publisher
	path string
}

// holdConfirms sets up a confirmsHeld for stream with n messages of size bytes; opts are
// added to the publisher's outbox and backoff options. The caller closes the publisher.
func holdConfirms(t *testing.T, stream string, n, size int, opts ...client.PublisherOption) confirmsHeld {
	t.Helper()
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "outbox.db")
	p, err := client.NewPublisher(ctx, c, stream, append([]client.PublisherOption{client.WithOutbox(path), client.WithBackoff(fastBackoff)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishSync(ctx, msg(0, 0, size)); err != nil { // the session is up
		_ = p.Close()
		t.Fatal(err)
	}
	px.PauseDirection(faultproxy.Down) // the hub stores what it gets; its confirms are held
	for i := 1; i <= n; i++ {
		if _, err := p.Publish(ctx, msg(0, uint32(i), size)); err != nil {
			_ = p.Close()
			t.Fatal(err)
		}
	}
	waitFor(t, "the hub to store the messages", func() bool {
		msgs, err := h.Store.Fetch(ctx, stream, 0, 0, n+100)
		return err == nil && len(msgs) >= n+1
	})
	return confirmsHeld{h: h, px: px, c: c, p: p, path: path}
}

// fakeNode returns a routing node for a fake hub on the client's own node, closed when the
// test ends.
func fakeNode(t *testing.T) *routing.Node {
	t.Helper()
	node, err := routing.NewNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node
}

// fakeClient returns a client of the fake hub on node (see fakeNode), closed when the test
// ends.
func fakeClient(t *testing.T, node *routing.Node) *client.Client {
	t.Helper()
	c, err := client.New(node, wire.Route{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fakeConn returns a Conn of a client of the fake hub on node (see fakeClient) whose
// requests time out after timeout, closed when the test ends.
func fakeConn(t *testing.T, node *routing.Node, timeout time.Duration) *client.Conn {
	t.Helper()
	conn, err := fakeClient(t, node).Open(t.Context(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// confirmAll is a fake hub's confirm of every message of req, at indexes 0, 1, ...
func confirmAll(req wire.PushBatchRequest) wire.PushBatchConfirm {
	c := wire.PushBatchConfirm{RequestID: req.RequestID, Status: wire.StatusOK}
	for i := range req.Messages {
		c.Indexes = append(c.Indexes, uint64(i))
	}
	return c
}
