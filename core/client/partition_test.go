package client_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// createStream creates stream with n partitions through a Conn to the hub at addr.
func createStream(t *testing.T, addr, stream string, n int) {
	t.Helper()
	conn, err := dial(t, addr).Open(t.Context(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, err := conn.CreateStream(t.Context(), stream, n); err != nil || got != n {
		t.Fatalf("CreateStream(%q, %d) = %d, %v", stream, n, got, err)
	}
}

// collector records the data of the messages a consumer handled, in order.
type collector struct {
	mu   sync.Mutex
	msgs []core.Message
}

func (c *collector) handle(_ context.Context, m core.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, core.Message{Index: m.Index, Data: slices.Clone(m.Data)})
	return nil
}

func (c *collector) data() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = string(m.Data)
	}
	return out
}

func (c *collector) indexes() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = m.Index
	}
	return out
}

// fetchData returns the data of every message of a partition in the backend.
func fetchData(t *testing.T, s core.Storage, stream string, partition int) []string {
	t.Helper()
	msgs, err := s.Fetch(t.Context(), stream, partition, 0, 1000)
	if err != nil {
		t.Fatalf("Fetch %q partition %d: %v", stream, partition, err)
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Data)
	}
	return out
}

func labels(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// TestPartitionPublishConsume: publishers to partitions 1 and 2 of a three-partition stream
// append only to their partition, consumers of those partitions read only theirs, and none
// of them creates the stream (they open it with sluice_stream_open), on both backends.
func TestPartitionPublishConsume(t *testing.T) {
	for _, backend := range []struct {
		name  string
		start func(testing.TB, ...hub.Option) *testHub
	}{{"memory", startHub}, {"bbolt", startBboltHub}} {
		t.Run(backend.name, func(t *testing.T) {
			h := backend.start(t)
			g := hubtest.NewGate(t, h.Hub)
			const stream = "three"
			createStream(t, h.Addr, stream, 3)
			c := dial(t, h.Addr, client.WithStreamService(hubtest.GateAddress))
			ctx := t.Context()
			want := map[int][]string{0: {}, 1: labels("p1", 5), 2: labels("p2", 5)}
			for _, part := range []int{1, 2} {
				p := newPublisher(t, c, stream, client.WithPartition(part), client.WithBackoff(fastBackoff))
				for i, m := range want[part] {
					if idx, err := p.PublishSync(ctx, []byte(m)); err != nil || idx != uint64(i) {
						t.Fatalf("partition %d: PublishSync %q = %d, %v; want index %d", part, m, idx, err, i)
					}
				}
			}
			for part, w := range want {
				if got := fetchData(t, h.Store, stream, part); !slices.Equal(got, w) {
					t.Errorf("partition %d holds %q, want %q", part, got, w)
				}
			}
			for _, part := range []int{1, 2} {
				var col collector
				cons, err := client.NewConsumer(c, stream, col.handle, client.WithConsumerPartition(part),
					client.WithClientID("reader"), client.WithConsumerBackoff(fastBackoff), client.WithPullWait(100*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				stop := runConsumer(t, cons)
				waitFor(t, fmt.Sprintf("partition %d read", part), func() bool { return len(col.data()) >= len(want[part]) })
				if err := stop(); !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v, want context.Canceled", err)
				}
				if got := col.data(); !slices.Equal(got, want[part]) {
					t.Errorf("the consumer of partition %d read %q, want %q", part, got, want[part])
				}
			}
			if n := g.Count(wire.ProtocolCreate, wire.ProtocolCreatePartitioned); n != 0 {
				t.Errorf("requests %v: the publishers and consumers sent %d stream_create*, want none", g.Counts(), n)
			}
			if g.Count(wire.ProtocolStreamOpen) == 0 {
				t.Errorf("requests %v: no sluice_stream_open", g.Counts())
			}
		})
	}
}

// TestPartitionZeroUnchanged: with partition 0 chosen explicitly, a publisher and a consumer
// send what they sent before the option existed: stream_create, which creates a missing
// stream with one partition, and no sluice_stream_open.
func TestPartitionZeroUnchanged(t *testing.T) {
	h := startHub(t)
	g := hubtest.NewGate(t, h.Hub)
	c := dial(t, h.Addr, client.WithStreamService(hubtest.GateAddress))
	ctx := t.Context()
	p := newPublisher(t, c, "zero", client.WithPartition(0), client.WithMaxBatch(1))
	if idx, err := p.PublishSync(ctx, []byte("a")); err != nil || idx != 0 {
		t.Fatalf("PublishSync = %d, %v", idx, err)
	}
	var col collector
	cons, err := client.NewConsumer(c, "zero", col.handle, client.WithConsumerPartition(0), client.WithPullWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "the message read", func() bool { return len(col.data()) == 1 })
	_ = stop()
	if n, err := h.Store.(core.PartitionCounter).Partitions(ctx, "zero"); err != nil || n != 1 {
		t.Fatalf("Partitions = %d, %v; want the stream created with 1", n, err)
	}
	counts := g.Counts()
	if counts[wire.ProtocolCreate] != 2 || counts[wire.ProtocolStreamOpen]+counts[wire.ProtocolStreamInfo]+counts[wire.ProtocolCreatePartitioned] != 0 {
		t.Fatalf("requests %v: want one stream_create each and nothing else", counts)
	}
}

// TestPartitionConsumerResumes: a consumer's saved index is its partition's: a consumer
// restarted with the same client id resumes its partition where it stopped, and the same id
// on another partition starts at its own beginning.
func TestPartitionConsumerResumes(t *testing.T) {
	h := startBboltHub(t)
	const stream = "resume"
	createStream(t, h.Addr, stream, 3)
	ctx := t.Context()
	if _, err := h.Store.Append(ctx, stream, 2, [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Store.Append(ctx, stream, 1, [][]byte{[]byte("x"), []byte("y")}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, h.Addr)
	read := func(part, n int) *collector {
		t.Helper()
		var col collector
		cons, err := client.NewConsumer(c, stream, col.handle, client.WithConsumerPartition(part), client.WithClientID("r"),
			client.WithConsumerBackoff(fastBackoff), client.WithPullWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		stop := runConsumer(t, cons)
		waitFor(t, fmt.Sprintf("%d messages of partition %d", n, part), func() bool { return len(col.data()) >= n })
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		return &col
	}
	if got := read(2, 4).data(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("first run read %q", got)
	}
	conn, err := c.Open(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if i, err := conn.GetIndex(ctx, "r", stream, 2); err != nil || i != 4 {
		t.Fatalf("saved index of partition 2 = %d, %v; want 4", i, err)
	}
	for _, part := range []int{0, 1} {
		if i, err := conn.GetIndex(ctx, "r", stream, part); !errors.Is(err, core.ErrIndexNotFound) {
			t.Fatalf("saved index of partition %d = %d, %v; want none", part, i, err)
		}
	}
	if _, err := h.Store.Append(ctx, stream, 2, [][]byte{[]byte("e")}); err != nil {
		t.Fatal(err)
	}
	col := read(2, 1)
	if got, idx := col.data(), col.indexes(); !slices.Equal(got, []string{"e"}) || idx[0] != 4 {
		t.Fatalf("restarted consumer of partition 2 read %q at %v, want \"e\" at index 4", got, idx)
	}
	if got := read(1, 2).data(); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("the same client id on partition 1 read %q, want its partition from the start", got)
	}
	if i, err := conn.GetIndex(ctx, "r", stream, 1); err != nil || i != 2 {
		t.Fatalf("saved index of partition 1 = %d, %v; want 2", i, err)
	}
}

// TestPartitionErrors: a partition the stream does not have, or a stream that does not
// exist, fails a publisher (its messages and later Publishes) and ends a consumer's Run,
// with errors matching core.ErrInvalidArgument and core.ErrStreamNotFound that say what to
// do; nothing is created. Invalid partitions are refused as options.
func TestPartitionErrors(t *testing.T) {
	h := startHub(t)
	g := hubtest.NewGate(t, h.Hub)
	createStream(t, h.Addr, "two", 2)
	c := dial(t, h.Addr, client.WithStreamService(hubtest.GateAddress))
	// A guard, not a timing assertion: a publisher that retried for ever would hang.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		stream    string
		partition int
		want      error
		hint      string
	}{
		{"two", 2, core.ErrInvalidArgument, "use a partition from 0 to 1"},
		{"two", 7, core.ErrInvalidArgument, "sluice create -partitions 8"},
		{"absent", 1, core.ErrStreamNotFound, "sluice create -partitions 2 absent"},
		{"absent", 3, core.ErrStreamNotFound, "sluice create -partitions 4 absent"},
	} {
		name := fmt.Sprintf("%s/%d", tc.stream, tc.partition)
		var sessionErrs []error
		p := newPublisher(t, c, tc.stream, client.WithPartition(tc.partition), client.WithBackoff(fastBackoff),
			client.WithPublisherSessionErrors(func(err error) { sessionErrs = append(sessionErrs, err) }))
		// The publisher connects at once: it may have failed before Publish, which then
		// returns the error itself, and no message is left for Flush to report.
		ack, err := p.Publish(ctx, []byte("m"))
		queued := err == nil
		if queued {
			_, err = ack.Wait(ctx)
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%s: Publish (queued: %v) = %v, want %v saying %q", name, queued, err, tc.want, tc.hint)
		}
		if err := p.Flush(ctx); queued && !errors.Is(err, tc.want) || !queued && err != nil {
			t.Errorf("%s: Flush = %v, want %v (the message was queued: %v)", name, err, tc.want, queued)
		}
		if _, err := p.Publish(ctx, []byte("later")); !errors.Is(err, tc.want) {
			t.Errorf("%s: a later Publish = %v, want %v", name, err, tc.want)
		}
		if err := p.Close(); err != nil {
			t.Errorf("%s: Close = %v (the failure was reported by Flush)", name, err)
		}
		if len(sessionErrs) != 0 {
			t.Errorf("%s: session errors %v: a failure that is not retried is no session error", name, sessionErrs)
		}

		cons, err := client.NewConsumer(c, tc.stream, func(context.Context, core.Message) error { return nil },
			client.WithConsumerPartition(tc.partition), client.WithConsumerBackoff(fastBackoff))
		if err != nil {
			t.Fatal(err)
		}
		if err := runUntilDone(t, cons); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%s: Run = %v, want %v saying %q", name, err, tc.want, tc.hint)
		}
	}
	if _, err := h.Store.(core.PartitionCounter).Partitions(ctx, "absent"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Partitions(absent) = %v: the stream was created", err)
	}
	if n := g.Count(wire.ProtocolCreate, wire.ProtocolCreatePartitioned); n != 0 {
		t.Errorf("requests %v: %d stream_create*, want none", g.Counts(), n)
	}

	for _, bad := range []int{-1, core.MaxPartitions} {
		if _, err := client.NewPublisher(ctx, c, "two", client.WithPartition(bad)); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("WithPartition(%d) = %v, want ErrInvalidOption", bad, err)
		}
		if _, err := client.NewConsumer(c, "two", func(context.Context, core.Message) error { return nil }, client.WithConsumerPartition(bad)); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("WithConsumerPartition(%d) = %v, want ErrInvalidOption", bad, err)
		}
	}
}

// TestPartitionOldHub: with a hub that does not know sluice_stream_open, a publisher and a
// consumer of partition 2 fall back to sluice_stream_info and stream_create_partitioned with
// the count the hub reported, reach their partition, and still report a missing stream or
// partition instead of creating it.
func TestPartitionOldHub(t *testing.T) {
	h := startHub(t)
	g := hubtest.NewGate(t, h.Hub)
	createStream(t, h.Addr, "old", 3)
	g.SetBefore(asOldHub)
	c := dial(t, h.Addr, client.WithStreamService(hubtest.GateAddress))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a guard, as in TestPartitionErrors
	defer cancel()
	p := newPublisher(t, c, "old", client.WithPartition(2), client.WithBackoff(fastBackoff))
	for i, m := range []string{"a", "b"} {
		if idx, err := p.PublishSync(ctx, []byte(m)); err != nil || idx != uint64(i) {
			t.Fatalf("PublishSync %q = %d, %v", m, idx, err)
		}
	}
	for part, want := range [][]string{{}, {}, {"a", "b"}} {
		if got := fetchData(t, h.Store, "old", part); !slices.Equal(got, want) {
			t.Errorf("partition %d holds %q, want %q", part, got, want)
		}
	}
	var col collector
	cons, err := client.NewConsumer(c, "old", col.handle, client.WithConsumerPartition(2), client.WithPullWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "the two messages read", func() bool { return len(col.data()) >= 2 })
	_ = stop()
	if got := col.data(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("the consumer read %q", got)
	}
	counts := g.Counts()
	if counts[wire.ProtocolStreamOpen] == 0 || counts[wire.ProtocolStreamInfo] == 0 || counts[wire.ProtocolCreatePartitioned] == 0 || counts[wire.ProtocolCreate] != 0 {
		t.Fatalf("requests %v: want sluice_stream_open, then sluice_stream_info and stream_create_partitioned", counts)
	}
	for _, tc := range []struct {
		stream    string
		partition int
		want      error
	}{{"old", 3, core.ErrInvalidArgument}, {"absent", 1, core.ErrStreamNotFound}} {
		p := newPublisher(t, c, tc.stream, client.WithPartition(tc.partition), client.WithBackoff(fastBackoff))
		if _, err := p.PublishSync(ctx, []byte("m")); !errors.Is(err, tc.want) {
			t.Errorf("%s/%d: PublishSync = %v, want %v", tc.stream, tc.partition, err, tc.want)
		}
	}
	if _, err := h.Store.(core.PartitionCounter).Partitions(ctx, "absent"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Partitions(absent) = %v: the stream was created", err)
	}
}

// TestPartitionHubRestartOutbox: a publisher with an outbox and a consumer of partition 2
// go on through a hub restart (bbolt, same address); every message lands in partition 2 once
// at least, and the consumer reads them in order. An outbox belongs to its partition; the
// messages of a publisher that failed because its stream did not exist stay in its outbox
// and are delivered by the next publisher on it once the stream exists.
func TestPartitionHubRestartOutbox(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	hb := hubtest.NewRestartable(filepath.Join(dir, "hub.db"), func() []hub.Option { return []hub.Option{hub.WithMaxPullWait(time.Second)} })
	if err := hb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hb.Stop(hubtest.StopClose, 0) })
	const stream = "restart"
	createStream(t, hb.Addr(), stream, 3)
	c := dial(t, hb.Addr(), client.WithDialTimeout(time.Second))
	box := filepath.Join(dir, "outbox.db")
	p := newPublisher(t, c, stream, client.WithPartition(2), client.WithOutbox(box), client.WithBackoff(fastBackoff))
	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, stream, func(_ context.Context, m core.Message) error { oc.add(m.Data); return nil },
		client.WithConsumerPartition(2), client.WithClientID("r"), client.WithConsumerBackoff(fastBackoff), client.WithPullWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, cons)
	const n = 20
	for i := range n {
		if i == n/2 {
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := hb.Stop(hubtest.StopClose, 0); err != nil {
				t.Fatal(err)
			}
			if err := hb.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Publish(ctx, msg(7, uint32(i), 8)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every message read", func() bool { return oc.count(7) == n })
	oc.check(t)
	for _, part := range []int{0, 1} {
		if got := fetchData(t, hb.Store(), stream, part); len(got) != 0 {
			t.Errorf("partition %d holds %d messages, want none", part, len(got))
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.NewPublisher(ctx, c, stream, client.WithPartition(1), client.WithOutbox(box)); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("the outbox of partition 2 opened for partition 1: %v, want ErrInvalidOption", err)
	}

	// The hub is down while the message is published, so that it is in the outbox before
	// the publisher finds the stream missing.
	if err := hb.Stop(hubtest.StopClose, 0); err != nil {
		t.Fatal(err)
	}
	box = filepath.Join(dir, "later.db")
	early := newPublisher(t, c, "later", client.WithPartition(1), client.WithOutbox(box), client.WithBackoff(fastBackoff))
	ack, err := early.Publish(ctx, []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	guard, cancel := context.WithTimeout(ctx, 60*time.Second) // a guard, as in TestPartitionErrors
	defer cancel()
	if _, err := ack.Wait(guard); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("the Ack of a message to a missing stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := early.Publish(ctx, []byte("refused")); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Publish after the publisher failed = %v, want ErrStreamNotFound", err)
	}
	_ = early.Close()
	createStream(t, hb.Addr(), "later", 2)
	late := newPublisher(t, c, "later", client.WithPartition(1), client.WithOutbox(box), client.WithBackoff(fastBackoff))
	if err := late.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fetchData(t, hb.Store(), "later", 1); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("partition 1 of later holds %q, want the message kept in the outbox", got)
	}
}
