package hub_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// These tests check that one client, or a slow broker, cannot make the hub stall the work
// of other clients or grow without bound, and that Shutdown keeps to its context.

// isolatedHub starts a hub on b (no Cleanup: each test decides how it stops).
func isolatedHub(t *testing.T, b *core.Backend, opts ...hub.Option) (*hub.Hub, string) {
	t.Helper()
	h, err := hub.New(b, append([]hub.Option{hub.WithLogger(quietLogger)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return h, a.String()
}

// stall makes c a client that stopped reading: ~600 pull replies of ~60 KB fill its socket
// buffers and its connection's write queue.
func stall(t *testing.T, c *hubtest.Conn) {
	t.Helper()
	s := c.Create("stall-big")
	for i := range 4 {
		c.Push(s, uint64(i+1), make([]byte, 30_000))
	}
	for i := range 600 {
		c.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: uint64(100 + i), Limit: 2})
	}
	time.Sleep(500 * time.Millisecond)
}

// waitFor polls cond until it holds or d has passed, and reports whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stallTimeout is the reply timeout of the hubs of the tests below that check that a client
// that stopped reading holds up nobody else. Those hubs have no TCP write timeout either, so
// nothing gives the stalled client up while a test runs: a hub that waited for that client
// would stall the others for hours, and their requests fail at hubtest.ReplyTimeout. No
// test measures how long a request took.
const stallTimeout = time.Hour

// stalledHub starts a hub whose reply and write timeouts never give a stalled client up
// while a test runs (see stallTimeout).
func stalledHub(t *testing.T, b *core.Backend, opts ...hub.Option) (*hub.Hub, string) {
	t.Helper()
	return isolatedHub(t, b, append([]hub.Option{hub.WithReplyTimeout(stallTimeout), hub.WithWriteTimeout(0)}, opts...)...)
}

func TestSlowClientDoesNotStallPartitionWriter(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := stalledHub(t, b)
	defer h.Close()
	bad := hubtest.Dial(t, addr)
	shared := bad.Create("shared")
	stall(t, bad)
	for i := range 4 { // their confirms cannot be queued on bad's connection
		bad.Send(shared.Route, wire.ProtocolPush, wire.PushRequest{RequestID: uint64(1000 + i), Data: []byte("x")})
	}
	time.Sleep(100 * time.Millisecond)
	// A partition writer that waited for bad's connection would not answer before 4 reply
	// timeouts: the push fails at hubtest.ReplyTimeout.
	good := hubtest.Dial(t, addr)
	if c := good.Push(shared, 1, []byte("hello")); c.Status != wire.StatusOK {
		t.Fatalf("push status %d", c.Status)
	}
}

// TestNonReadingClientIsSlowConsumer checks that the hub gives up a client that reads
// nothing: it counts a slow consumer and closes the connection.
func TestNonReadingClientIsSlowConsumer(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b)
	defer h.Close()
	bad := hubtest.Dial(t, addr)
	stall(t, bad)
	if !waitFor(20*time.Second, func() bool { return h.Metrics().SlowConsumers > 0 }) {
		t.Fatal("the non-reading client was not counted as a slow consumer")
	}
	bad.ExpectClosed()
}

// TestSlowConsumerCountedOnce: every reply that times out on a connection gives it up as a
// slow consumer (several wait on one at once, and time out together: see
// TestStalledClientCountedOnce), concurrently or after it was closed; Metrics.SlowConsumers
// counts the connection once, and the hub warns about it once. (It counted each reply, the
// later ones as "replies dropped" to a destination that was no longer a connection.)
func TestSlowConsumerCountedOnce(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	var logs hubtest.LogBuffer
	h, addr := isolatedHub(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	defer h.Close()
	// The hub's address of c's connection is the first of the return route of what c sends.
	conns := make(chan wire.Address, 1)
	if err := h.Node().Register("probe", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		conns <- m.ReturnRoute[0].Clone()
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	c := hubtest.Dial(t, addr)
	c.Send(wire.Route{wire.Local("probe")}, wire.ProtocolBinary, wire.Binary{Data: []byte("x")})
	conn := <-conns
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { hub.GiveUpSlowConsumer(h, conn) })
	}
	wg.Wait()
	hub.GiveUpSlowConsumer(h, conn)
	c.ExpectClosed()
	if n := h.Metrics().SlowConsumers; n != 1 {
		t.Fatalf("slow_consumers %d for one connection given up by 9 replies, want 1", n)
	}
	if n := strings.Count(logs.String(), `msg="slow consumer`); n != 1 {
		t.Fatalf("%d warnings about one slow consumer, want 1:\n%s", n, logs.String())
	}
}

// TestStalledClientCountedOnce: a client that stops reading has many pull replies waiting
// for room on its connection at once, and they time out together; Metrics.SlowConsumers
// counts its connection once. (Before, it counted two or three in about half the runs.)
func TestStalledClientCountedOnce(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithReplyTimeout(time.Second))
	bad := hubtest.Dial(t, addr)
	stall(t, bad)
	if !waitFor(20*time.Second, func() bool { return h.Metrics().SlowConsumers > 0 }) {
		t.Fatal("the non-reading client was not counted as a slow consumer")
	}
	bad.ExpectClosed()
	if err := h.Close(); err != nil { // every pull, and its reply, has ended
		t.Fatal(err)
	}
	if n := h.Metrics().SlowConsumers; n != 1 {
		t.Fatalf("slow_consumers %d for one connection given up, want 1", n)
	}
}

// TestSlowConsumerWarningsRateLimited: any client can make itself a slow consumer,
// connection after connection, so the hub's warnings about the connections it closes for it
// are one line per interval that counts them, like its other warnings about what clients
// do (the others at Debug); the line that counts those held back comes when the hub stops.
// Each connection is given up, warned about and counted once, however many of its replies
// timed out (see TestSlowConsumerCountedOnce).
func TestSlowConsumerWarningsRateLimited(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	var logs hubtest.LogBuffer
	// A second of a full write queue makes a slow consumer (5 s by default).
	h, addr := isolatedHub(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), hub.WithReplyTimeout(time.Second))
	hub.SetWarnEvery(h, time.Hour)
	const msg = `msg="slow consumer: connection closed"`
	// warned returns the counts of the lines at Warn about connections closed as slow
	// consumers, and the connections named by those lines at any level.
	warned := func() (counts []string, conns map[string]bool) {
		conns = map[string]bool{}
		for line := range strings.Lines(logs.String()) {
			if !strings.Contains(line, msg) {
				continue
			}
			for f := range strings.FieldsSeq(line) {
				if _, v, ok := strings.Cut(f, "address="); ok { // last_address= (or address=)
					conns[v] = true
				}
				if v, ok := strings.CutPrefix(f, "connections="); ok && strings.Contains(line, "level=WARN ") {
					counts = append(counts, v)
				}
			}
		}
		return counts, conns
	}
	const bad = 2
	for range bad {
		stall(t, hubtest.Dial(t, addr)) // not read again: reading would unstall it
	}
	if !waitFor(30*time.Second, func() bool { _, conns := warned(); return len(conns) >= bad }) {
		t.Fatalf("the hub did not close the %d non-reading clients:\n%s", bad, logs.String())
	}
	if counts, _ := warned(); !slices.Equal(counts, []string{"1"}) {
		t.Fatalf("%d connections closed as slow consumers were warned about in lines counting %v, want one line counting 1:\n%s", bad, counts, logs.String())
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if counts, _ := warned(); !slices.Equal(counts, []string{"1", "1"}) {
		t.Fatalf("after the hub stopped, warnings counting %v, want a second line counting the one held back:\n%s", counts, logs.String())
	}
	if n := h.Metrics().SlowConsumers; n != bad {
		t.Fatalf("slow_consumers %d, want %d", n, bad)
	}
}

// TestSlowConsumerSocketClosedAtOnce: the hub closes a slow consumer's socket when it gives
// the client up, not once the TCP write timeout has passed. The connection stops counting
// against WithMaxConnections then, so a socket left open meanwhile would hold what the
// limit is there to bound (a descriptor, goroutines, a write queue of frames) for a
// client that does not even count. A socket the hub has closed answers what the client
// sends with a reset, which fails the client's writes; one that stays open takes them
// into its buffers, and then they time out.
func TestSlowConsumerSocketClosedAtOnce(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	// Without a write timeout, only the hub giving the client up can close its socket.
	h, addr := isolatedHub(t, b, hub.WithWriteTimeout(0))
	defer h.Close()
	bad := hubtest.Dial(t, addr)
	stall(t, bad)
	if !waitFor(20*time.Second, func() bool { return h.Metrics().SlowConsumers > 0 }) {
		t.Fatal("the non-reading client was not counted as a slow consumer")
	}
	frame, err := wire.AppendFrame(nil, wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local(hub.StreamAddress)}, ReturnRoute: bad.Self,
		Payload: wire.EncodePayload(wire.ProtocolBinary, wire.Binary{Data: make([]byte, 4096)})})
	if err != nil {
		t.Fatal(err)
	}
	// A guard against a hang, not a timing assertion: a socket the hub does not close stays
	// open for good, as the hub has no write timeout.
	bound := 2 * time.Minute
	nc := bad.NetConn()
	for deadline := time.Now().Add(bound); ; {
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := nc.Write(frame)
		var ne net.Error
		switch {
		case err == nil, errors.As(err, &ne) && ne.Timeout():
		default:
			return // reset: the hub closed the socket
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow consumer's socket was still open %v after the hub gave it up: last write: %v", bound, err)
		}
	}
}

func TestSlowClientDoesNotStallIndexService(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := stalledHub(t, b, hub.WithMaxConcurrentFetches(8))
	defer h.Close()
	index := wire.Route{wire.Local(hub.IndexAddress)}
	bad := hubtest.Dial(t, addr)
	stall(t, bad)
	for i := range 32 { // distinct keys run concurrently; their replies cannot be queued
		bad.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: uint64(i + 1), ClientID: fmt.Sprint("c", i), StreamName: "s"})
	}
	time.Sleep(100 * time.Millisecond)
	// An index service whose slots were held while replying to bad would not answer before
	// 4 reply timeouts: Expect fails at hubtest.ReplyTimeout.
	good := hubtest.Dial(t, addr)
	good.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: 1, ClientID: "good", StreamName: "s"})
	good.Expect(wire.ProtocolIndexGet)
}

func TestShutdownBoundedByCtxWithSlowClient(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := stalledHub(t, b)
	c := hubtest.Dial(t, addr)
	stall(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(ctx) }()
	// Pull replies waiting for the client, not cancelled by the hard stop, would hold
	// Shutdown for a reply timeout, and a writer waiting to flush them for good: a guard
	// against that hang, far above any time Shutdown needs, not a timing assertion.
	const guard = 2 * time.Minute
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown returned %v, want an error matching context.DeadlineExceeded", err)
		}
	case <-time.After(guard):
		c.Close() // unblock the writer so the test ends
		t.Errorf("Shutdown with a 500ms ctx still blocked after %v; after the client closed it returned %v", guard, <-done)
	}
}

type hangingAppend struct{ core.Storage } // a broker that is down; Append waits for ctx

func (hangingAppend) Append(ctx context.Context, _ string, _ int, _ [][]byte) ([]uint64, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestShutdownWithFullPushQueueAndStuckBackend(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	h, addr := isolatedHub(t, &core.Backend{Storage: hangingAppend{mem.Storage}, Index: mem.Index}, hub.WithQueueLen(1))
	c := hubtest.Dial(t, addr)
	s := c.Create("hang")
	for i := range 5 { // in Append, queued, then one waiting in the mailbox for room in the queue
		c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: uint64(i + 1), Data: []byte("x")})
	}
	if !waitFor(10*time.Second, func() bool { return hub.QueueLen(h, "hang", 0) == 1 }) {
		t.Fatal("the push queue did not fill")
	}
	time.Sleep(100 * time.Millisecond) // the next push waits for room
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = h.Close() // cancels the hub's ctx: Append returns, the queue drains
		t.Errorf("Shutdown with a 1s ctx has not returned after 10s (returned %v only after Close)", <-done)
	}
}

func TestCreatePartitionedStartsNoWorkers(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b)
	defer h.Close()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	c := hubtest.Dial(t, addr)
	parts := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "wide", 1024)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	// Each worker cost two goroutines and about 100 KiB: 2048 goroutines and ~100 MiB.
	heap, g := (int64(m1.HeapAlloc)-int64(m0.HeapAlloc))>>20, runtime.NumGoroutine()-g0
	if heap > 32 || g > 256 {
		t.Fatalf("one stream_create_partitioned request retains %d MiB and %d goroutines for the life of the hub", heap, g)
	}
	// The worker of a partition starts on first use.
	for _, id := range []int{0, 1023} {
		if pc := c.Push(parts[id], 1, []byte("x")); pc.Status != wire.StatusOK {
			t.Fatalf("push to partition %d: status %d", id, pc.Status)
		}
		if pr := c.Pull(parts[id], 2, 0, 10); len(pr.Messages) != 1 {
			t.Fatalf("pull from partition %d: %d messages, want 1", id, len(pr.Messages))
		}
	}
}

// noCounter hides the backend's core.PartitionCounter: the hub knows only the streams
// created through it.
type noCounter struct{ core.Storage }

func TestPartitionWorkerStartsOnFirstUseWithoutPartitionCounter(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	h, addr := isolatedHub(t, &core.Backend{Storage: noCounter{mem.Storage}, Index: mem.Index})
	defer h.Close()
	c := hubtest.Dial(t, addr)
	parts := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "plain", 3)
	if pc := c.Push(parts[2], 1, []byte("x")); pc.Status != wire.StatusOK {
		t.Fatalf("push to partition 2: status %d", pc.Status)
	}
	if pr := c.Pull(parts[2], 2, 0, 10); len(pr.Messages) != 1 {
		t.Fatalf("pull from partition 2: %d messages, want 1", len(pr.Messages))
	}
}

type gatedFetch struct { // a slow broker: Fetch waits for gate
	core.Storage
	gate chan struct{}
}

func (g *gatedFetch) Fetch(ctx context.Context, s string, p int, from uint64, limit int) ([]core.Message, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Storage.Fetch(ctx, s, p, from, limit)
}

func TestPullGoroutinesBounded(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	g := &gatedFetch{Storage: mem.Storage, gate: make(chan struct{})}
	h, addr := isolatedHub(t, &core.Backend{Storage: g, Index: mem.Index}, hub.WithMaxConcurrentFetches(8))
	defer func() { close(g.gate); _ = h.Close() }()
	c := hubtest.Dial(t, addr)
	s := c.Create("pulls")
	before := runtime.NumGoroutine()
	for i := range 5000 {
		c.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: uint64(i + 1), Limit: 1})
	}
	time.Sleep(time.Second)
	// 4 pulls per allowed fetch are in progress; the others wait in the worker's mailbox.
	if n := runtime.NumGoroutine() - before; n > 1000 {
		t.Fatalf("5000 pulls from one connection hold %d extra goroutines (fetch concurrency 8)", n)
	}
}

// gatedMeta is a slow broker for creates and index calls: they wait for gate.
type gatedMeta struct {
	core.Storage
	core.IndexStorage
	gate chan struct{}
}

func (g *gatedMeta) wait(ctx context.Context) error {
	select {
	case <-g.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatedMeta) CreateStream(ctx context.Context, s string, n int) (int, error) {
	if err := g.wait(ctx); err != nil {
		return 0, err
	}
	return g.Storage.CreateStream(ctx, s, n)
}

func (g *gatedMeta) GetIndex(ctx context.Context, c, s string, p int) (uint64, error) {
	if err := g.wait(ctx); err != nil {
		return 0, err
	}
	return g.IndexStorage.GetIndex(ctx, c, s, p)
}

func (g *gatedMeta) Close() error { return nil } // both halves have one, the test closes mem

func TestIndexAndCreateGoroutinesBounded(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	g := &gatedMeta{Storage: mem.Storage, IndexStorage: mem.Index, gate: make(chan struct{})}
	h, addr := isolatedHub(t, &core.Backend{Storage: g, Index: g}, hub.WithMaxConcurrentFetches(8))
	defer func() { close(g.gate); _ = h.Close() }()
	for _, tc := range []struct {
		name string
		send func(c *hubtest.Conn, i int)
	}{
		{"index gets", func(c *hubtest.Conn, i int) {
			c.Send(wire.Route{wire.Local(hub.IndexAddress)}, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: uint64(i + 1), ClientID: fmt.Sprint("c", i), StreamName: "s"})
		}},
		{"creates", func(c *hubtest.Conn, _ int) {
			c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{})
		}},
	} {
		// One connection each: a service that is full slows down only the connections
		// that send to it.
		c := hubtest.Dial(t, addr)
		before := runtime.NumGoroutine()
		for i := range 3000 {
			tc.send(c, i)
		}
		time.Sleep(time.Second)
		// 4 index requests per allowed backend call are queued or running, and 1 create;
		// the others wait in the service's mailbox.
		if n := runtime.NumGoroutine() - before; n > 500 {
			t.Errorf("3000 %s hold %d extra goroutines (backend concurrency 8)", tc.name, n)
		}
	}
}

type countFetch struct {
	core.Storage
	n atomic.Int64
}

func (c *countFetch) Fetch(ctx context.Context, s string, p int, from uint64, limit int) ([]core.Message, error) {
	c.n.Add(1)
	return c.Storage.Fetch(ctx, s, p, from, limit)
}

// parkPulls sends n sluice_pull_wait requests for index on c and waits until the hub
// counts want parked long polls in all.
func parkPulls(t *testing.T, h *hub.Hub, c *hubtest.Conn, s hubtest.Stream, n int, index uint64, want uint64) {
	t.Helper()
	for i := range n {
		c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: uint64(i + 1), Index: index, Limit: 1, WaitMS: 60_000})
	}
	if !waitFor(20*time.Second, func() bool { return h.Metrics().PullWaits >= want }) {
		t.Fatalf("%d long polls parked, want %d", h.Metrics().PullWaits, want)
	}
}

func TestWakeSkipsWaitersBeyondTheAppend(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	cf := &countFetch{Storage: mem.Storage}
	h, addr := isolatedHub(t, &core.Backend{Storage: cf, Index: mem.Index}, hub.WithMaxParkedPullsPerConnection(2000)) // all on one connection
	defer h.Close()
	waiting := hubtest.Dial(t, addr)
	s := waiting.Create("wake-ahead")
	parkPulls(t, h, waiting, s, 2000, 1<<40, 2000)
	good := hubtest.Dial(t, addr)
	before := cf.n.Load()
	for i := range 3 {
		good.Push(s, uint64(i+1), []byte("x"))
	}
	time.Sleep(time.Second) // woken pulls would fetch meanwhile
	// Each append used to wake and fetch for all 2000.
	if n := cf.n.Load() - before; n > 100 {
		t.Fatalf("3 pushes caused %d backend fetches for long polls waiting at index 2^40", n)
	}
}

func TestWakeDropsWaitersOfClosedConnections(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	cf := &countFetch{Storage: mem.Storage}
	h, addr := isolatedHub(t, &core.Backend{Storage: cf, Index: mem.Index}, hub.WithMaxParkedPullsPerConnection(2000)) // all on one connection
	defer h.Close()
	gone := hubtest.Dial(t, addr)
	s := gone.Create("wake-gone")
	parkPulls(t, h, gone, s, 2000, 0, 2000) // an append satisfies them all
	gone.Close()
	time.Sleep(500 * time.Millisecond) // the hub reads EOF and closes the connection
	good := hubtest.Dial(t, addr)
	before := cf.n.Load()
	good.Push(s, 1, []byte("x"))
	time.Sleep(time.Second) // woken pulls would fetch meanwhile
	// Each of the 2000 used to fetch and answer a connection that is gone.
	if n := cf.n.Load() - before; n > 100 {
		t.Fatalf("a push caused %d backend fetches for long polls of a closed connection", n)
	}
}

func TestParkedPullsCapped(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithMaxParkedPulls(2))
	defer h.Close()
	c := hubtest.Dial(t, addr)
	s := c.Create("capped")
	parkPulls(t, h, c, s, 2, 0, 2)
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 3, Index: 0, Limit: 1, WaitMS: 60_000})
	// The third is answered at once, empty, as if its wait had expired.
	pr := c.ExpectPull(wire.ProtocolPullWait)
	if pr.RequestID != 3 || len(pr.Messages) != 0 {
		t.Fatalf("reply to request %d with %d messages, want request 3 with none", pr.RequestID, len(pr.Messages))
	}
	if m := h.Metrics(); m.PullWaitsRefused != 1 || m.PullWaits != 2 {
		t.Fatalf("pull_waits_refused %d, pull_waits %d; want 1 and 2", m.PullWaitsRefused, m.PullWaits)
	}
	// The parked two still get the next message.
	other := hubtest.Dial(t, addr)
	other.Push(s, 1, []byte("x"))
	for range 2 {
		if pr := c.ExpectPull(wire.ProtocolPullWait); len(pr.Messages) != 1 {
			t.Fatalf("parked request %d woke with %d messages, want 1", pr.RequestID, len(pr.Messages))
		}
	}
}
