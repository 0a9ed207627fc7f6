package hub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// These tests pin the hub's delivery guarantees down deterministically (gated backends,
// no timing asserts): each fails when the guarantee it names is broken.

// noReply fails the test if c receives anything within a short while. It is used only to
// check that nothing was sent at a point where the hub must stay silent; the correct hub
// never sends there, so a slow machine cannot make it fail.
func noReply(t *testing.T, c *hubtest.Conn, what string) {
	t.Helper()
	if r, err := c.TryRecv(100 * time.Millisecond); err == nil {
		t.Fatalf("%s: got a %q reply while the append was still in progress", what, r.Protocol)
	}
}

// nextAppend returns the number of messages of the next Append that g holds, failing the
// test if none starts within the reply timeout.
func nextAppend(t *testing.T, g *gated) int {
	t.Helper()
	select {
	case n := <-g.started:
		return n
	case <-time.After(hubtest.ReplyTimeout):
		t.Fatalf("no Append started within %v", hubtest.ReplyTimeout)
		return 0
	}
}

// releaseAppend lets the Append that g holds return, failing the test if none takes the
// release within the reply timeout.
func releaseAppend(t *testing.T, g *gated) {
	t.Helper()
	select {
	case g.release <- struct{}{}:
	case <-time.After(hubtest.ReplyTimeout):
		t.Fatalf("no Append waiting for release within %v", hubtest.ReplyTimeout)
	}
}

// queuedWithin is queued with a bound: it fails the test if the push queue of stream's
// partition 0 does not hold n requests within the reply timeout.
func queuedWithin(t *testing.T, h *hub.Hub, stream string, n int) {
	t.Helper()
	if !waitFor(hubtest.ReplyTimeout, func() bool { return hub.QueueLen(h, stream, 0) == n }) {
		t.Fatalf("the push queue of %q holds %d requests, want %d", stream, hub.QueueLen(h, stream, 0), n)
	}
}

// failNext is a gated backend whose next Append fails after it is released.
type failNext struct {
	*gated
	fail atomic.Bool
}

func (f *failNext) Append(ctx context.Context, s string, p int, msgs [][]byte) ([]uint64, error) {
	idx, err := f.gated.Append(ctx, s, p, msgs)
	if f.fail.Swap(false) {
		return nil, errors.New("injected: append failed after it started")
	}
	return idx, err
}

// TestConfirmOnlyAfterAppend checks that no push is confirmed while its Append is in
// progress, and that an Append that then fails is confirmed with status ERROR (never OK).
func TestConfirmOnlyAfterAppend(t *testing.T) {
	g, b := newGated(t)
	f := &failNext{gated: g}
	_, addr := hubtest.Start(t, &core.Backend{Storage: f, Index: b.Index}, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	s := c.Create("durable")

	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("a")})
	nextAppend(t, g)
	noReply(t, c, "stream_push")
	releaseAppend(t, g)
	if pc := c.ExpectConfirm(); pc.RequestID != 1 || pc.Status != wire.StatusOK || pc.Index != 0 {
		t.Fatalf("confirm %+v, want request 1 OK index 0", pc)
	}

	f.fail.Store(true)
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 2, Messages: [][]byte{[]byte("b"), []byte("c")}})
	nextAppend(t, g)
	noReply(t, c, "sluice_push_batch")
	releaseAppend(t, g)
	r := c.Expect(wire.ProtocolPushBatch)
	conf, err := wire.DecodePushBatchConfirm(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	if conf.RequestID != 2 || conf.Status != wire.StatusError || len(conf.Indexes) != 0 {
		t.Fatalf("confirm of a failed append %+v, want request 2 ERROR without indexes", conf)
	}
}

// TestBatchedConfirmsCarryTheirIndexes queues pushes and push batches of several sizes
// behind an Append in progress, so the writer appends them together: each request must be
// confirmed, in arrival order, with the indexes of its own messages in request order.
func TestBatchedConfirmsCarryTheirIndexes(t *testing.T) {
	g, b := newGated(t)
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	s := c.Create("mixed")

	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("m0")})
	if n := nextAppend(t, g); n != 1 {
		t.Fatalf("first Append of %d messages, want 1", n)
	}
	type req struct {
		id    uint64
		batch bool
		data  []string
	}
	reqs := []req{
		{10, false, []string{"m1"}},
		{11, false, []string{"m2"}},
		{12, true, []string{"m3", "m4", "m5"}},
		{13, false, []string{"m6"}},
		{14, true, []string{"m7", "m8", "m9"}},
		{15, true, []string{"m10", "m11"}},
	}
	for _, r := range reqs {
		if r.batch {
			msgs := make([][]byte, len(r.data))
			for i, d := range r.data {
				msgs[i] = []byte(d)
			}
			c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: r.id, Messages: msgs})
		} else {
			c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: r.id, Data: []byte(r.data[0])})
		}
	}
	queuedWithin(t, h, "mixed", len(reqs))
	releaseAppend(t, g)
	if n := nextAppend(t, g); n != 11 {
		t.Fatalf("second Append of %d messages, want the 11 queued", n)
	}
	releaseAppend(t, g)

	if pc := c.ExpectConfirm(); pc.RequestID != 1 || pc.Status != wire.StatusOK || pc.Index != 0 {
		t.Fatalf("confirm %+v, want request 1 OK index 0", pc)
	}
	next := uint64(1)
	for _, r := range reqs {
		var got []uint64
		if r.batch {
			rep := c.Expect(wire.ProtocolPushBatch)
			conf, err := wire.DecodePushBatchConfirm(rep.Data)
			if err != nil {
				t.Fatal(err)
			}
			if conf.RequestID != r.id || conf.Status != wire.StatusOK {
				t.Fatalf("batch confirm %+v, want request %d OK", conf, r.id)
			}
			got = conf.Indexes
		} else {
			pc := c.ExpectConfirm()
			if pc.RequestID != r.id || pc.Status != wire.StatusOK {
				t.Fatalf("confirm %+v, want request %d OK", pc, r.id)
			}
			got = []uint64{pc.Index}
		}
		var want []uint64
		for range r.data {
			want = append(want, next)
			next++
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("request %d confirmed with indexes %v, want %v", r.id, got, want)
		}
	}
	// Each index holds the message it was confirmed for.
	pr := c.Pull(s, 99, 0, 100)
	if len(pr.Messages) != 12 {
		t.Fatalf("pull: %d messages, want 12", len(pr.Messages))
	}
	for i, m := range pr.Messages {
		if want := fmt.Sprintf("m%d", i); m.Index != uint64(i) || string(m.Data) != want {
			t.Fatalf("message %d: index %d %q, want index %d %q", i, m.Index, m.Data, i, want)
		}
	}
}

// shortIndexes returns one index fewer than messages appended.
type shortIndexes struct{ core.Storage }

func (s shortIndexes) Append(ctx context.Context, st string, p int, msgs [][]byte) ([]uint64, error) {
	idx, err := s.Storage.Append(ctx, st, p, msgs)
	if err != nil || len(idx) == 0 {
		return idx, err
	}
	return idx[:len(idx)-1], nil
}

// TestBackendIndexCountMismatch checks that an Append reporting fewer indexes than
// messages is confirmed with status ERROR, not with indexes made up or a crash.
func TestBackendIndexCountMismatch(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	_, addr := hubtest.Start(t, &core.Backend{Storage: shortIndexes{mem.Storage}, Index: mem.Index}, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	s := c.Create("short")
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 1, Messages: [][]byte{[]byte("a"), []byte("b")}})
	r := c.Expect(wire.ProtocolPushBatch)
	conf, err := wire.DecodePushBatchConfirm(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	if conf.RequestID != 1 || conf.Status != wire.StatusError || len(conf.Indexes) != 0 {
		t.Fatalf("confirm %+v, want request 1 ERROR without indexes", conf)
	}
	if pc := c.Push(s, 2, []byte("c")); pc.RequestID != 2 || pc.Status != wire.StatusError {
		t.Fatalf("confirm %+v, want request 2 ERROR (no index reported)", pc)
	}
}

// TestWriterBatchBounded checks that WithMaxBatch bounds the messages of one Append.
func TestWriterBatchBounded(t *testing.T) {
	g, b := newGated(t)
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithMaxBatch(2, 1<<20))
	c := hubtest.Dial(t, addr)
	s := c.Create("bounded")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 0, Data: []byte("x")})
	nextAppend(t, g)
	for i := uint64(1); i <= 5; i++ {
		c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: i, Data: []byte("x")})
	}
	queuedWithin(t, h, "bounded", 5)
	var sizes []int
	for total := 0; total < 5; {
		releaseAppend(t, g)
		n := nextAppend(t, g)
		sizes = append(sizes, n)
		total += n
	}
	releaseAppend(t, g)
	if fmt.Sprint(sizes) != "[2 2 1]" {
		t.Fatalf("Appends of %v messages after the first, want [2 2 1] with WithMaxBatch(2, ...)", sizes)
	}
	for i := range uint64(6) {
		if pc := c.ExpectConfirm(); pc.RequestID != i || pc.Status != wire.StatusOK || pc.Index != i {
			t.Fatalf("confirm %+v, want request %d OK index %d", pc, i, i)
		}
	}
}

// expectRange fails unless pr holds exactly the messages from..from+n-1 pushed by
// TestPullReturnsExactlyTheAskedRange.
func expectRange(t *testing.T, what string, pr wire.PullResponse, from uint64, n int) {
	t.Helper()
	if len(pr.Messages) != n {
		t.Fatalf("%s: %d messages, want %d", what, len(pr.Messages), n)
	}
	for i, m := range pr.Messages {
		want := from + uint64(i)
		if m.Index != want || len(m.Data) != 4000 || m.Data[0] != byte(want) {
			t.Fatalf("%s: message %d has index %d (data %d), want index %d", what, i, m.Index, m.Data[0], want)
		}
	}
}

// TestPullReturnsExactlyTheAskedRange pulls with limits below and above what fits in a
// frame, and from indexes other than where the previous pull ended, so that the messages
// the hub kept from a previous fetch (see partition.takeLeft) are in play: every pull must
// return the messages from its own index, at most its limit, none skipped or repeated.
func TestPullReturnsExactlyTheAskedRange(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	_, addr := hubtest.Start(t, mem, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	s := c.Create("ranges")
	const n = 40 // of 4000 bytes: about 16 fit in a frame
	for i := range n {
		if pc := c.Push(s, uint64(i), bytes.Repeat([]byte{byte(i)}, 4000)); pc.Status != wire.StatusOK || pc.Index != uint64(i) {
			t.Fatalf("push %d: %+v", i, pc)
		}
	}
	id := uint64(100)
	pull := func(from, limit uint64) wire.PullResponse {
		t.Helper()
		id++
		pr := c.Pull(s, id, from, limit)
		if pr.RequestID != id {
			t.Fatalf("pull response for request %d, want %d", pr.RequestID, id)
		}
		return pr
	}
	// A full frame: the rest of the backend page (64 messages: the hub does not know
	// their size yet) is kept for a pull from where the frame ends.
	first := pull(0, 1000)
	full := uint64(len(first.Messages))
	if full < 2 || full+6 >= n {
		t.Fatalf("pull from 0: %d messages, want a frame's worth (fewer than %d)", full, n-6)
	}
	expectRange(t, "pull from 0, limit 1000", first, 0, int(full))
	// Served from what was kept: exactly the limit, and the next pull goes on from there.
	expectRange(t, fmt.Sprintf("pull from %d, limit 3", full), pull(full, 3), full, 3)
	// From elsewhere: not served from what was kept.
	expectRange(t, "pull from 5, limit 3", pull(5, 3), 5, 3)
	expectRange(t, fmt.Sprintf("pull from %d, limit 3", full+3), pull(full+3, 3), full+3, 3)
	// A frame again, then continue with small limits from where each ends.
	expectRange(t, "pull from 0 again", pull(0, 1000), 0, int(full))
	for at := full; at < full+9; at += 3 {
		expectRange(t, fmt.Sprintf("pull from %d, limit 3", at), pull(at, 3), at, 3)
	}
	expectRange(t, "pull from 1, limit 1", pull(1, 1), 1, 1)
	expectRange(t, fmt.Sprintf("pull from %d, limit 2", n-2), pull(n-2, 2), n-2, 2)
	expectRange(t, fmt.Sprintf("pull from %d, limit 10", n-1), pull(n-1, 10), n-1, 1)
	expectRange(t, "pull past the end", pull(n, 10), n, 0)
	expectRange(t, "pull with limit 0", pull(0, 0), 0, 0)
}

// TestPullLimitCapped checks that WithMaxPullLimit caps the limit of stream_pull and
// sluice_pull_batch.
func TestPullLimitCapped(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	_, addr := hubtest.Start(t, mem, hub.WithLogger(quietLogger), hub.WithMaxPullLimit(3))
	c := hubtest.Dial(t, addr)
	s := c.Create("capped-limit")
	for i := range 6 {
		c.Push(s, uint64(i), []byte{byte(i)})
	}
	if pr := c.Pull(s, 1, 0, 10); len(pr.Messages) != 3 {
		t.Fatalf("pull with limit 10: %d messages, want 3 (WithMaxPullLimit(3))", len(pr.Messages))
	}
	c.Send(s.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 2, Index: 0, Limit: 10, MaxBytes: 1 << 20})
	got := 0
	for _, p := range expectParts(t, c, 2) {
		got += len(p.Messages)
	}
	if got != 3 {
		t.Fatalf("pull batch with limit 10: %d messages, want 3 (WithMaxPullLimit(3))", got)
	}
}

// TestPullWaitCapped checks that WithMaxPullWait caps a long poll's wait: one asking for
// ten minutes is answered, empty, long before the test's reply timeout.
func TestPullWaitCapped(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	_, addr := hubtest.Start(t, mem, hub.WithLogger(quietLogger), hub.WithMaxPullWait(50*time.Millisecond))
	c := hubtest.Dial(t, addr)
	s := c.Create("capped-wait")
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: 0, Limit: 10, WaitMS: 600_000})
	if pr := c.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 1 || len(pr.Messages) != 0 {
		t.Fatalf("capped long poll: %+v, want request 1 with no messages", pr)
	}
}

// gateFetch holds the first Fetch after arm until the test releases it, having read its
// result before the hold: what a pull sees when an append lands between its fetch and its
// decision to park.
type gateFetch struct {
	core.Storage
	armed   atomic.Bool
	fetched chan struct{}
	gate    chan struct{}
}

func (g *gateFetch) Fetch(ctx context.Context, s string, p int, from uint64, limit int) ([]core.Message, error) {
	msgs, err := g.Storage.Fetch(ctx, s, p, from, limit)
	if g.armed.CompareAndSwap(true, false) {
		g.fetched <- struct{}{}
		select {
		case <-g.gate:
		case <-ctx.Done():
		}
	}
	return msgs, err
}

// TestLongPollSeesAppendDuringItsFetch checks that a long poll whose (empty) fetch raced
// with appends does not park and miss them: the appends land, and wake the partition,
// after the pull read the backend and before it parks. It must answer with the messages,
// not wait for a later append or its deadline.
func TestLongPollSeesAppendDuringItsFetch(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	g := &gateFetch{Storage: mem.Storage, fetched: make(chan struct{}, 1), gate: make(chan struct{})}
	_, addr := hubtest.Start(t, &core.Backend{Storage: g, Index: mem.Index}, hub.WithLogger(quietLogger))
	consumer := hubtest.Dial(t, addr)
	producer := hubtest.Dial(t, addr)
	cs := consumer.Create("race")
	ps := producer.Create("race")

	g.armed.Store(true)
	// The wait is short so that a pull wrongly parked answers (empty) soon; a correct
	// hub answers with the messages whatever the wait.
	consumer.Send(cs.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: 0, Limit: 10, WaitMS: 2000})
	<-g.fetched // the pull read an empty partition
	// Each confirm is sent before its append wakes the partition; the second append
	// starts only after the first one's wake returned.
	for i := range uint64(2) {
		if pc := producer.Push(ps, i, fmt.Appendf(nil, "m%d", i)); pc.Status != wire.StatusOK || pc.Index != i {
			t.Fatalf("push %d: %+v", i, pc)
		}
	}
	close(g.gate)
	pr := consumer.ExpectPull(wire.ProtocolPullWait)
	if pr.RequestID != 1 || len(pr.Messages) != 2 || string(pr.Messages[0].Data) != "m0" || string(pr.Messages[1].Data) != "m1" {
		t.Fatalf("long poll whose fetch raced with two appends: %+v, want request 1 with m0 and m1", pr)
	}
}

// TestShutdownAnswersPushWaitingForQueueRoom checks that a push waiting for room in a
// full queue when Shutdown starts gets an answer (not taken), while the pushes already
// queued are appended and confirmed.
func TestShutdownAnswersPushWaitingForQueueRoom(t *testing.T) {
	g, b := newGated(t)
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithQueueLen(1))
	c := hubtest.Dial(t, addr)
	s := c.Create("full")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("in append")})
	nextAppend(t, g)
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("queued")})
	queuedWithin(t, h, "full", 1)
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 3, Data: []byte("waiting for room")})
	if !waitFor(hubtest.ReplyTimeout, func() bool { return hub.PushesStarted(h, "full", 0) == 3 }) { // the third waits in enqueue
		t.Fatalf("%d pushes begun, want 3", hub.PushesStarted(h, "full", 0))
	}
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	if reason := c.ExpectError(); reason == "" {
		t.Fatal("empty reason")
	}
	releaseAppend(t, g)
	nextAppend(t, g)
	releaseAppend(t, g)
	for i := uint64(1); i <= 2; i++ {
		if pc := c.ExpectConfirm(); pc.RequestID != i || pc.Status != wire.StatusOK {
			t.Fatalf("confirm %+v, want request %d OK", pc, i)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestCreateOnPartitionedStreamSendsOneInit checks that stream_create of a stream that
// has several partitions answers one Init, routed to partition 0.
func TestCreateOnPartitionedStreamSendsOneInit(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	_, addr := hubtest.Start(t, mem, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	parts := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "three", 3)
	s := c.Create("three")
	if !s.Route.Equal(parts[0].Route) {
		t.Fatalf("stream_create route [%s], want partition 0's [%s]", s.Route, parts[0].Route)
	}
	// The next reply on the connection answers the next request: no other Init came.
	if rep := c.StreamInfo(7, "three"); rep.Partitions != wire.Some[uint64](3) {
		t.Fatalf("stream info %+v, want 3 partitions", rep)
	}
}

// TestSluiceIndexPerPartition checks that sluice_index_save and sluice_index_get keep one
// index per (client_id, stream, partition), each monotonic.
func TestSluiceIndexPerPartition(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	_, addr := hubtest.Start(t, mem, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	index := wire.Route{wire.Local(hub.IndexAddress)}
	id := uint64(0)
	call := func(protocol string, e func(id uint64) wire.Encoder) wire.IndexReply {
		t.Helper()
		id++
		c.Send(index, protocol, e(id))
		rep, err := wire.DecodeIndexReply(c.Expect(protocol).Data)
		if err != nil {
			t.Fatal(err)
		}
		if rep.RequestID != id || rep.Status != wire.StatusOK {
			t.Fatalf("%s reply %+v, want request %d OK", protocol, rep, id)
		}
		return rep
	}
	save := func(client, stream string, p, i uint64) wire.Optional[uint64] {
		t.Helper()
		return call(wire.ProtocolIndexSave, func(id uint64) wire.Encoder {
			return wire.IndexSaveRequest{RequestID: id, ClientID: client, StreamName: stream, Partition: p, Index: i}
		}).Index
	}
	get := func(client, stream string, p uint64) wire.Optional[uint64] {
		t.Helper()
		return call(wire.ProtocolIndexGet, func(id uint64) wire.Encoder {
			return wire.IndexGetRequest{RequestID: id, ClientID: client, StreamName: stream, Partition: p}
		}).Index
	}
	if got := save("c", "s", 1, 7); got != wire.Some[uint64](7) {
		t.Fatalf("save 7 on partition 1 replied %v, want 7", got)
	}
	if got := get("c", "s", 0); got.Valid {
		t.Fatalf("partition 0 index %v after saving partition 1, want none", got)
	}
	if got := get("c", "s", 1); got != wire.Some[uint64](7) {
		t.Fatalf("partition 1 index %v, want 7", got)
	}
	if got := save("c", "s", 0, 3); got != wire.Some[uint64](3) {
		t.Fatalf("save 3 on partition 0 replied %v, want 3 (partition 1's 7 is another key)", got)
	}
	if got := save("c", "s", 1, 5); got != wire.Some[uint64](7) {
		t.Fatalf("save 5 on partition 1 replied %v, want 7 (monotonic)", got)
	}
	if got := get("c", "s", 1); got != wire.Some[uint64](7) {
		t.Fatalf("partition 1 index %v after a lower save, want 7", got)
	}
	if got := get("c", "s", 0); got != wire.Some[uint64](3) {
		t.Fatalf("partition 0 index %v, want 3", got)
	}
	if got := get("other", "s", 1); got.Valid {
		t.Fatalf("another client's index %v, want none", got)
	}
	if got := get("c", "s2", 1); got.Valid {
		t.Fatalf("another stream's index %v, want none", got)
	}
}

// TestBusyWorkerNotRetired checks that a partition worker whose Append is in progress is
// not retired however many idle periods pass (retiring it would let a new worker append to
// the partition alongside it), and that its pushes and the next ones are confirmed in
// order.
func TestBusyWorkerNotRetired(t *testing.T) {
	const idle = 5 * time.Millisecond
	g, b := newGated(t)
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithWorkerIdleTimeout(idle))
	c := hubtest.Dial(t, addr)
	s := c.Create("busy")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("a")})
	nextAppend(t, g)
	w := hub.PartitionWorker(h, "busy", 0)
	if w == nil {
		t.Fatal("no partition worker while its Append runs")
	}
	time.Sleep(40 * idle) // forty idle periods: a chance to retire it wrongly
	if got := hub.PartitionWorker(h, "busy", 0); got != w {
		t.Fatalf("the worker was replaced (%p, was %p) while its Append was in progress", got, w)
	}
	if m := h.Metrics(); m.PartitionWorkersRetired != 0 {
		t.Fatalf("metrics partition_workers_retired %d while the only worker was appending, want 0", m.PartitionWorkersRetired)
	}
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("b")})
	queuedWithin(t, h, "busy", 1) // behind the Append in progress, on the same worker
	releaseAppend(t, g)
	nextAppend(t, g)
	releaseAppend(t, g)
	for i := uint64(1); i <= 2; i++ {
		if pc := c.ExpectConfirm(); pc.RequestID != i || pc.Status != wire.StatusOK || pc.Index != i-1 {
			t.Fatalf("confirm %+v, want request %d OK index %d", pc, i, i-1)
		}
	}
}

// TestLongPollWokenByAnyIndexOfABatch checks that an append of several messages wakes a
// long poll waiting for any of them, not only for the first: a poll parked at index 1
// gets message 1 of a sluice_push_batch that appends 0 and 1 (not an empty answer when its
// wait ends).
func TestLongPollWokenByAnyIndexOfABatch(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	puller, pusher := hubtest.Dial(t, addr), hubtest.Dial(t, addr)
	st := puller.Create("woken")
	puller.Send(st.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: 1, Limit: 10, WaitMS: 60_000})
	if !waitFor(time.Minute, func() bool { return h.Metrics().PullWaits == 1 }) {
		t.Fatal("the long poll did not park within a minute")
	}
	pusher.Send(pusher.Create("woken").Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 2, Messages: [][]byte{[]byte("m0"), []byte("m1")}})
	c, err := wire.DecodePushBatchConfirm(pusher.Expect(wire.ProtocolPushBatch).Data)
	if err != nil || c.Status != wire.StatusOK || len(c.Indexes) != 2 || c.Indexes[1] != 1 {
		t.Fatalf("push batch confirm %+v (%v), want OK with indexes 0 and 1", c, err)
	}
	pr := puller.ExpectPull(wire.ProtocolPullWait)
	if pr.RequestID != 1 || len(pr.Messages) != 1 || pr.Messages[0].Index != 1 || string(pr.Messages[0].Data) != "m1" {
		t.Fatalf("long poll at index 1 answered %+v, want message 1", pr)
	}
}

// gatedSave holds each SaveIndex until the test releases it, telling the test when one
// starts.
type gatedSave struct {
	core.IndexStorage
	started chan struct{}
	release chan struct{}
}

func (g *gatedSave) SaveIndex(ctx context.Context, c, s string, p int, index uint64) error {
	g.started <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.IndexStorage.SaveIndex(ctx, c, s, p, index)
}

// TestIndexRequestsOfOneKeyInOrder checks that index requests for the same (client_id,
// stream, partition) run in arrival order: an Ockam client's get after its (unanswered)
// save waits for the save and reads it, while a request for another key does not wait.
func TestIndexRequestsOfOneKeyInOrder(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	g := &gatedSave{IndexStorage: mem.Index, started: make(chan struct{}, 1), release: make(chan struct{})}
	_, addr := hubtest.Start(t, &core.Backend{Storage: mem.Storage, Index: g}, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	index := wire.Route{wire.Local(hub.IndexAddress)}
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexSave, ClientID: "c", StreamName: "s", Index: 5})
	select {
	case <-g.started:
	case <-time.After(hubtest.ReplyTimeout):
		t.Fatal("the save did not reach the backend")
	}
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "c", StreamName: "s"})
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "other", StreamName: "s"})
	// The other key's get is answered while the save is held; then the save's own get.
	for _, want := range []struct {
		client string
		index  wire.Optional[uint64]
	}{{"other", wire.None[uint64]()}, {"c", wire.Some[uint64](5)}} {
		r, err := wire.DecodeIndexResponse(c.Expect(wire.ProtocolIndex).Data)
		if err != nil {
			t.Fatal(err)
		}
		if r.ClientID != want.client || r.Index != want.index {
			t.Fatalf("index get answered %+v, want client %q with index %+v", r, want.client, want.index)
		}
		if want.client == "other" {
			close(g.release)
		}
	}
}

// TestLongPollAnsweredOnceWhenWakeRacesExpiry checks that a long poll is answered once
// when its wait ends just as a wake takes it: the expiring timer finds it no longer parked
// and stays silent, and the woken pull answers (here: parks again, and gets the next push):
// the first reply to the request carries the message.
func TestLongPollAnsweredOnceWhenWakeRacesExpiry(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	c, pusher := hubtest.Dial(t, addr), hubtest.Dial(t, addr)
	st := c.Create("race-expiry")
	c.Send(st.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: 0, Limit: 10, WaitMS: 60_000})
	if !waitFor(time.Minute, func() bool { return h.Metrics().PullWaits == 1 }) {
		t.Fatal("the long poll did not park within a minute")
	}
	if n := hub.WakeRacingExpiry(h, "race-expiry", 0); n != 1 {
		t.Fatalf("%d long polls parked, want 1", n)
	}
	if !waitFor(time.Minute, func() bool { return h.Metrics().PullWaits == 2 }) {
		t.Fatal("the woken long poll did not park again within a minute")
	}
	if pc := pusher.Push(pusher.Create("race-expiry"), 1, []byte("m")); pc.Status != wire.StatusOK {
		t.Fatalf("push: %+v", pc)
	}
	if pr := c.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 1 || len(pr.Messages) != 1 {
		t.Fatalf("long poll answered %+v, want request 1 with the message", pr)
	}
}

// TestLongPollOfClosedConnectionNotParked checks that a long poll whose connection closed
// while it fetched (a connection the hub watches) does not park: nobody is there to answer, and a parked poll would keep
// its worker busy (not retired) until its deadline, an hour here.
func TestLongPollOfClosedConnectionNotParked(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	g := &gateFetch{Storage: mem.Storage, fetched: make(chan struct{}, 1), gate: make(chan struct{})}
	h, addr := hubtest.Start(t, &core.Backend{Storage: g, Index: mem.Index}, hub.WithLogger(quietLogger),
		hub.WithWorkerIdleTimeout(time.Hour), hub.WithIdleTimeout(0), hub.WithMaxPullWait(time.Hour))
	c := hubtest.Dial(t, addr)
	s := c.Create("gone")
	// A first long poll, which parks and expires, has the hub watch the connection.
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: 0, Limit: 1, WaitMS: 50})
	if pr := c.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 1 || len(pr.Messages) != 0 {
		t.Fatalf("first long poll answered %+v, want request 1 empty", pr)
	}
	g.armed.Store(true)
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 2, Index: 0, Limit: 1, WaitMS: 3_600_000})
	select {
	case <-g.fetched:
	case <-time.After(hubtest.ReplyTimeout):
		t.Fatal("the long poll did not fetch")
	}
	_ = c.Close()
	// The gauge drops before the connection's Done channel closes, which is what the long
	// poll looks at: wait for both.
	if !waitFor(time.Minute, func() bool { return h.Metrics().Connections == 0 && hub.WatchedConnsClosed(h) }) {
		t.Fatal("the hub did not see the connection close within a minute")
	}
	close(g.gate)
	if !waitFor(time.Minute, func() bool {
		hub.CheckRetire(h, s.Name, 0)
		return h.Metrics().PartitionWorkersRetired == 1
	}) {
		t.Fatal("the worker was not retired within a minute: the long poll of a closed connection parked")
	}
	if m := h.Metrics(); m.PullWaits != 1 {
		t.Fatalf("pull_waits %d, want 1 (the first poll): a long poll of a closed connection parked", m.PullWaits)
	}
}
