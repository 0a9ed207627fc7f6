package hub_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// A long poll with limit 0 can never be answered with a message: it must not hold a pull
// slot while it waits, or a few of them keep every other client's pulls waiting.
func TestZeroLimitLongPollsHoldNoPullSlot(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithMaxConcurrentFetches(1)) // 4 pull slots
	defer h.Close()
	bad := hubtest.Dial(t, addr)
	s := bad.Create("zero-limit")
	bad.Push(s, 1, []byte("m"))
	for i := range 8 {
		bad.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: uint64(i + 1), Limit: 0, WaitMS: 60_000})
		bad.Send(s.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: uint64(i + 1), Limit: 0, WaitMS: 60_000, MaxBytes: 1 << 20})
	}
	good := hubtest.Dial(t, addr)
	good.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: 1, Limit: 1})
	r, err := good.TryRecv(10 * time.Second)
	if err != nil {
		t.Fatalf("a pull behind 16 long polls with limit 0 was not answered: %v", err)
	}
	pr, err := wire.DecodePullResponse(r.Data)
	if err != nil || r.Protocol != wire.ProtocolPull || len(pr.Messages) != 1 {
		t.Fatalf("pull reply %q %+v (%v), want one message", r.Protocol, pr, err)
	}
	// Each is answered, with no messages.
	for range 16 {
		r := bad.Recv()
		var n int
		switch r.Protocol {
		case wire.ProtocolPullWait:
			pr, err := wire.DecodePullResponse(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			n = len(pr.Messages)
		case wire.ProtocolPullBatch:
			part, err := wire.DecodePullBatchPart(r.Data)
			if err != nil || part.More {
				t.Fatalf("pull batch part %+v (%v), want the last", part, err)
			}
			n = len(part.Messages)
		default:
			t.Fatalf("got a %q reply to a long poll", r.Protocol)
		}
		if n != 0 {
			t.Fatalf("a long poll with limit 0 was answered with %d messages", n)
		}
	}
}

// unreadable is a backend whose reads lag its appends without end: Fetch finds nothing, and
// answers at once without looking at its context (as a backend serving reads from a cache
// may).
type unreadable struct{ core.Storage }

func (unreadable) Fetch(context.Context, string, int, uint64, int) ([]core.Message, error) {
	return []core.Message{}, nil
}

// A long poll that waits for the backend's reads to catch up with an append of this hub is
// answered with no messages when the hub shuts down, like a parked one, and a hard stop
// ends it: Shutdown returns by its context. The poll waits up to an hour and the graceful
// Shutdown may take as long, so a Shutdown that waited for the poll hangs: the test's
// guards are far below that and far above what a Shutdown takes, whatever the load.
func TestShutdownEndsLongPollWaitingForReadLag(t *testing.T) {
	const guard = 2 * time.Minute
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			mem := openMemory(t)
			defer mem.Close()
			h, addr := isolatedHub(t, &core.Backend{Storage: unreadable{mem.Storage}, Index: mem.Index},
				hub.WithIdleTimeout(3*time.Hour), hub.WithMaxPullWait(time.Hour))
			defer h.Close()
			c := hubtest.Dial(t, addr)
			s := c.Create("lagging")
			c.Push(s, 1, []byte("m")) // index 0: the hub knows it was appended
			c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 7, Index: 0, Limit: 1, WaitMS: uint64(time.Hour / time.Millisecond)})
			// The push and the poll: 2, or 3 when the poll came before the append's wake,
			// parked, and was woken into a new pull (the confirm goes out before the wake).
			if !waitFor(guard, func() bool { return hub.PushesStarted(h, s.Name, 0) >= 2 }) {
				t.Fatalf("the long poll did not start: started %d", hub.PushesStarted(h, s.Name, 0))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			if hard {
				ctx, cancel = context.WithCancel(context.Background())
				cancel()
			}
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- h.Shutdown(ctx) }()
			select {
			case err := <-done:
				if !hard && err != nil {
					t.Errorf("graceful Shutdown: %v", err)
				}
			case <-time.After(guard):
				t.Fatalf("Shutdown did not return within %v: a long poll waiting for read lag outlives it", guard)
			}
			pr := c.ExpectPull(wire.ProtocolPullWait)
			if pr.RequestID != 7 || len(pr.Messages) != 0 {
				t.Errorf("long poll answered with %+v, want request 7 with no messages", pr)
			}
		})
	}
}

// Metrics.IndexSaves and IndexGets count each index request once, as what it is: a
// sluice_index_save (answered with the saved value, read back) is one save, and a request
// with a partition out of range counts like one with an invalid client id.
func TestIndexMetricsCountEachRequestOnce(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	index := wire.Route{wire.Local(hub.IndexAddress)}
	// Ockam saves get no reply: a get of the same key, which runs after, tells when done.
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexSave, ClientID: "c", StreamName: "s", Index: 3})
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "c", StreamName: "s"})
	c.Expect(wire.ProtocolIndex)
	c.Send(index, wire.ProtocolIndexPartitioned, wire.IndexRequestPartitioned{Op: wire.IndexSave, ClientID: "c", StreamName: "s", Partition: 1, Index: 3})
	c.Send(index, wire.ProtocolIndexPartitioned, wire.IndexRequestPartitioned{Op: wire.IndexGet, ClientID: "c", StreamName: "s", Partition: 1})
	c.Expect(wire.ProtocolIndexPartitioned)
	c.Send(index, wire.ProtocolIndexSave, wire.IndexSaveRequest{RequestID: 1, ClientID: "c", StreamName: "s", Partition: 2, Index: 5})
	c.Expect(wire.ProtocolIndexSave)
	if m := h.Metrics(); m.IndexSaves != 3 || m.IndexGets != 2 {
		t.Errorf("after 3 saves and 2 gets, metrics count %d index saves and %d index gets", m.IndexSaves, m.IndexGets)
	}
	c.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: 2, ClientID: "c", StreamName: "s", Partition: 2})
	c.Expect(wire.ProtocolIndexGet)
	if m := h.Metrics(); m.IndexGets != 3 {
		t.Errorf("after 3 gets, metrics count %d index gets", m.IndexGets)
	}
	c.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: 3, ClientID: "c", StreamName: "s", Partition: core.MaxPartitions})
	c.Expect(wire.ProtocolIndexGet) // status ERROR
	if m := h.Metrics(); m.IndexSaves != 3 || m.IndexGets != 4 {
		t.Errorf("metrics count %d index saves and %d index gets, want 3 and 4", m.IndexSaves, m.IndexGets)
	}
}

// A sluice_push_batch is confirmed, whatever its size: one whose OK confirm (an index per
// message) could not fit in a frame is refused with status ERROR before anything is
// appended, rather than stored and never confirmed (its client would send it again, and
// again).
func TestPushBatchWhoseConfirmCannotFitIsRefused(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	_, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	s := c.Create("tiny-batch")
	// 40,000 empty messages take 40 KB; their indexes (up to 3 bytes each) take 100 KB.
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 1, Messages: make([][]byte, 40_000)})
	// A batch whose confirm fits is stored as usual.
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 2, Messages: make([][]byte, 1_000)})
	for _, want := range []struct {
		id     uint64
		status wire.Status
		n      int
	}{{1, wire.StatusError, 0}, {2, wire.StatusOK, 1_000}} {
		r, err := c.TryRecv(10 * time.Second)
		if err != nil {
			t.Fatalf("no reply to push batch %d: %v", want.id, err)
		}
		pc, err := wire.DecodePushBatchConfirm(r.Data)
		if r.Protocol != wire.ProtocolPushBatch || err != nil {
			t.Fatalf("got a %q reply (%v), want a push batch confirm", r.Protocol, err)
		}
		if pc.RequestID != want.id || pc.Status != want.status || len(pc.Indexes) != want.n {
			t.Fatalf("push batch %d confirmed with status %v and %d indexes, want %v and %d", pc.RequestID, pc.Status, len(pc.Indexes), want.status, want.n)
		}
		if want.n > 0 && pc.Indexes[0] != 0 {
			t.Fatalf("the batch after the refused one starts at index %d, want 0: the refused one was stored", pc.Indexes[0])
		}
	}
}

// A sluice_push_batch whose confirm could not fit is refused by its message count, before
// its messages are decoded (which allocates for each): a request whose messages do not even
// decode is refused all the same, with status ERROR, and its messages are counted as
// push errors.
func TestPushBatchRefusedBeforeDecoding(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	s := c.Create("tiny-batch")
	// request id 7, 40,000 messages: 39,999 empty ones, then one whose length (5) runs past
	// the end.
	req := wire.AppendUint(nil, 7)
	req = wire.AppendUint(req, 40_000)
	req = append(req, make([]byte, 39_999)...)
	req = append(req, 5)
	if _, err := wire.DecodePushBatchRequest(req); err == nil {
		t.Fatal("the request decodes: the test needs one that does not")
	}
	c.SendPayload(s.Route, wire.BasePayload{Protocol: wire.ProtocolPushBatch, Data: req}.Append(nil))
	r, err := c.TryRecv(10 * time.Second)
	if err != nil {
		t.Fatalf("no reply to the push batch: %v", err)
	}
	pc, err := wire.DecodePushBatchConfirm(r.Data)
	if r.Protocol != wire.ProtocolPushBatch || err != nil || pc.RequestID != 7 || pc.Status != wire.StatusError {
		t.Fatalf("got a %q reply %+v (%v), want push batch 7 confirmed with status ERROR", r.Protocol, pc, err)
	}
	if m := h.Metrics(); m.PushErrors != 40_000 || m.AppendedMessages != 0 {
		t.Errorf("metrics count %d push errors and %d appended messages, want 40000 and 0", m.PushErrors, m.AppendedMessages)
	}
}

// A connection the hub gave up as a slow consumer is gone: what it sends after that is not
// served, since no reply could reach it. Its pushes in particular are not stored: they
// could never be confirmed, and its client sends them again on its next connection.
func TestSlowConsumerRequestsNotServedAfterGiveUp(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithReplyTimeout(time.Second))
	defer h.Close()
	bad := hubtest.Dial(t, addr)
	s := bad.Create("after-give-up")
	stall(t, bad)
	if !waitFor(20*time.Second, func() bool { m := h.Metrics(); return m.SlowConsumers > 0 && m.Connections == 0 }) {
		t.Fatal("the non-reading client was not given up as a slow consumer")
	}
	// The hub's writer still holds frames for bad (its socket is full), so the
	// connection is still open: bad can send.
	bad.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("unanswerable")})
	bad.ExpectClosed() // takes what was queued for it, then the close
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil { // appends whatever was queued
		t.Fatal(err)
	}
	msgs, err := b.Storage.Fetch(ctx, s.Name, 0, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 0 {
		t.Fatalf("a push the hub read after giving its connection up was stored (%q), never to be confirmed", msgs[0].Data)
	}
}

// The stream protocol proposal sends the partitioned index requests under stream_index (Ockam's
// Elixir implementation under stream_index_partitioned): the hub serves both, and answers
// each under the protocol it was asked with.
func TestPartitionedIndexUnderStreamIndex(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	_, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	index := wire.Route{wire.Local(hub.IndexAddress)}
	c.Send(index, wire.ProtocolIndex, wire.IndexRequestPartitioned{Op: wire.IndexSave, ClientID: "c", StreamName: "s", Partition: 2, Index: 7})
	c.Send(index, wire.ProtocolIndex, wire.IndexRequestPartitioned{Op: wire.IndexGet, ClientID: "c", StreamName: "s", Partition: 2})
	r := c.Expect(wire.ProtocolIndex)
	got, err := wire.DecodeIndexResponsePartitioned(r.Data)
	if err != nil || got.Partition != 2 || got.Index != wire.Some[uint64](7) {
		t.Fatalf("partitioned get under stream_index answered %+v (%v), want partition 2 at index 7", got, err)
	}
	if idx, err := b.Index.GetIndex(t.Context(), "c", "s", 2); err != nil || idx != 7 {
		t.Errorf("saved index of partition 2 = %d, %v; want 7", idx, err)
	}
	// Partition 0 is untouched, and the unpartitioned form is still served as such.
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "c", StreamName: "s"})
	if got, err := wire.DecodeIndexResponse(c.Expect(wire.ProtocolIndex).Data); err != nil || got.Index.Valid {
		t.Errorf("unpartitioned get answered %+v (%v), want no index", got, err)
	}
}

// countedIndex counts the calls that reach an index storage.
type countedIndex struct {
	core.IndexStorage
	calls atomic.Int32
}

func (s *countedIndex) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	s.calls.Add(1)
	return s.IndexStorage.GetIndex(ctx, clientID, stream, partition)
}

func (s *countedIndex) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	s.calls.Add(1)
	return s.IndexStorage.SaveIndex(ctx, clientID, stream, partition, index)
}

// TestIndexKeyBounds checks the hub's own checks of an index request's key, which no
// backend is asked to repeat: the last partition a stream may have, core.MaxPartitions-1,
// is served; core.MaxPartitions, like an empty client id, is refused with status ERROR
// without a backend call, for a save as for a get.
func TestIndexKeyBounds(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	idx := &countedIndex{IndexStorage: b.Index}
	_, addr := hubtest.Start(t, &core.Backend{Storage: b.Storage, Index: idx}, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	index := wire.Route{wire.Local(hub.IndexAddress)}
	for id, tc := range []struct {
		client    string
		partition uint64
		want      wire.Status
	}{{"c", core.MaxPartitions - 1, wire.StatusOK}, {"c", core.MaxPartitions, wire.StatusError}, {"", 0, wire.StatusError}} {
		calls := idx.calls.Load()
		c.Send(index, wire.ProtocolIndexSave, wire.IndexSaveRequest{RequestID: uint64(2 * id), ClientID: tc.client, StreamName: "s", Partition: tc.partition, Index: 7})
		c.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: uint64(2*id + 1), ClientID: tc.client, StreamName: "s", Partition: tc.partition})
		for _, protocol := range []string{wire.ProtocolIndexSave, wire.ProtocolIndexGet} {
			rep, err := wire.DecodeIndexReply(c.Expect(protocol).Data)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Status != tc.want {
				t.Fatalf("%s of client %q partition %d: status %v, want %v", protocol, tc.client, tc.partition, rep.Status, tc.want)
			}
			if tc.want == wire.StatusOK && (!rep.Index.Valid || rep.Index.Value != 7) {
				t.Fatalf("%s of partition %d: index %+v, want 7", protocol, tc.partition, rep.Index)
			}
		}
		if n := idx.calls.Load() - calls; tc.want == wire.StatusError && n != 0 {
			t.Fatalf("client %q partition %d: %d backend calls for requests the hub must refuse itself", tc.client, tc.partition, n)
		}
	}
	// Ockam's stream_index_partitioned: an `error` reply.
	calls := idx.calls.Load()
	for _, op := range []wire.IndexOp{wire.IndexSave, wire.IndexGet} {
		c.Send(index, wire.ProtocolIndexPartitioned, wire.IndexRequestPartitioned{Op: op, ClientID: "c", StreamName: "s", Partition: core.MaxPartitions, Index: 7})
		c.ExpectError()
	}
	if n := idx.calls.Load() - calls; n != 0 {
		t.Fatalf("stream_index_partitioned of partition %d: %d backend calls, want 0", core.MaxPartitions, n)
	}
}

// TestSlotsReleased checks that every bounded resource is given back once its request is
// answered: with the smallest bounds (one backend call at once, four pulls and four index
// requests in progress), many more requests of each kind than there are slots, one after
// another, are all answered, long polls woken by a push too.
func TestSlotsReleased(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithMaxConcurrentFetches(1))
	defer h.Close()
	c := hubtest.Dial(t, addr)
	s := c.Create("slots")
	c.Push(s, 1, []byte("m"))
	pusher := hubtest.Dial(t, addr)
	index := wire.Route{wire.Local(hub.IndexAddress)}
	const rounds = 20
	for i := range uint64(rounds) {
		if pr := c.Pull(s, i, 0, 1); len(pr.Messages) != 1 {
			t.Fatalf("pull %d: %d messages, want 1", i, len(pr.Messages))
		}
		c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: i, Index: 0, Limit: 1, WaitMS: 60_000})
		if pr := c.ExpectPull(wire.ProtocolPullWait); len(pr.Messages) != 1 {
			t.Fatalf("pull wait %d: %d messages, want 1", i, len(pr.Messages))
		}
		c.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: i, ClientID: "c", StreamName: "slots"})
		if r := c.Expect(wire.ProtocolIndexGet); len(r.Data) == 0 {
			t.Fatalf("index get %d: empty reply", i)
		}
		if rep := c.StreamInfo(i, "slots"); rep.Partitions != wire.Some[uint64](1) {
			t.Fatalf("stream info %d: %+v, want 1 partition", i, rep)
		}
		// A long poll parked past the end, woken by the next push.
		c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: i, Index: i + 1, Limit: 1, WaitMS: 60_000})
		if !waitFor(time.Minute, func() bool { return h.Metrics().PullWaits == i+1 }) {
			t.Fatalf("long poll %d did not park within a minute", i)
		}
		if pc := pusher.Push(s, i, []byte("m")); pc.Status != wire.StatusOK || pc.Index != i+1 {
			t.Fatalf("push %d: %+v", i, pc)
		}
		if pr := c.ExpectPull(wire.ProtocolPullWait); len(pr.Messages) != 1 || pr.Messages[0].Index != i+1 {
			t.Fatalf("woken long poll %d: %+v, want message %d", i, pr, i+1)
		}
	}
}

// TestParkedLongPollsBeyondPullSlots: an append that makes more parked long polls ready than
// there are free pull slots starts those it has slots for and hands the rest to a task that
// waits for slots (the partition's writer never waits): every one is answered with the new
// message.
func TestParkedLongPollsBeyondPullSlots(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithMaxConcurrentFetches(1)) // 4 pull slots
	defer h.Close()
	c := hubtest.Dial(t, addr)
	s := c.Create("parked")
	const n = 12
	for i := range n {
		c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: uint64(i + 1), Limit: 10, WaitMS: 60_000})
	}
	if !waitFor(20*time.Second, func() bool { return hub.Parked(h, s.Name, 0) == n }) {
		t.Fatalf("%d of %d long polls parked", hub.Parked(h, s.Name, 0), n)
	}
	hubtest.Dial(t, addr).Push(s, 1, []byte("m"))
	answered := map[uint64]bool{}
	for range n {
		r := c.Recv()
		pr, err := wire.DecodePullResponse(r.Data)
		if err != nil || r.Protocol != wire.ProtocolPullWait {
			t.Fatalf("reply %q (%v), want a %s reply", r.Protocol, err, wire.ProtocolPullWait)
		}
		if len(pr.Messages) != 1 || string(pr.Messages[0].Data) != "m" {
			t.Fatalf("long poll %d answered with %+v, want the one message", pr.RequestID, pr.Messages)
		}
		answered[pr.RequestID] = true
	}
	if len(answered) != n {
		t.Fatalf("answered %v, want each of the %d long polls once", answered, n)
	}
}
