package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/backends/kafka"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestTwoHubs runs two hubs on the same Kafka cluster, each with its own Store (its own
// franz-go client) and its own TCP port, serving one stream at the same time: publishers
// push through both hubs and consumers, each with its own client_id, read through both.
// Kafka assigns the offsets, so the two hubs are two safe writers of one partition. A hub
// wakes its long polls only on its own appends; a consumer still sees the other hub's
// messages because an expired long poll is answered empty and pulled again (short wait).
//
// Every consumer must read every published message, the first occurrences of each
// publisher's messages in publish order, and all consumers must read the same message at
// the same index. Duplicates (resends) are allowed, counted and logged.
func TestTwoHubs(t *testing.T) {
	const (
		publishersPerHub = 2
		perPublisher     = 400
		consumersPerHub  = 2
		pullWait         = 100 * time.Millisecond
	)
	k := cluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	stores := make([]*kafka.Store, 2)
	addrs := make([]string, 2)
	for i := range stores {
		s, err := kafka.Dial(ctx, k.Brokers, &kafka.Options{Prefix: "sluicetest."})
		if err != nil {
			t.Fatalf("kafka.Dial for hub %d: %v", i, err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close store %d: %v", i, err)
			}
		})
		stores[i] = s
		// Registered after the store's cleanup, so the hub is closed first.
		_, addrs[i] = hubtest.Start(t, &core.Backend{Storage: s, Index: s})
	}
	stream := fmt.Sprintf("twohubs-%d", time.Now().UnixNano())
	createStream(t, stores[0], stream, 1)

	clients := make([]*client.Client, 2)
	for i, addr := range addrs {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatalf("client.Dial(hub %d at %s): %v", i, addr, err)
		}
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Errorf("close client of hub %d: %v", i, err)
			}
		})
		clients[i] = c
	}

	// Consumers first, so they long-poll while the messages arrive.
	total := 2 * publishersPerHub * perPublisher
	type consumed struct {
		name       string
		hub        int
		c          *client.Consumer
		mu         sync.Mutex
		next       map[string]int // per publisher: the next sequence number expected
		byIndex    map[uint64]string
		distinct   int
		duplicates int
		errs       []string
		done       chan struct{} // closed when every message was read
	}
	var consumers []*consumed
	var runs sync.WaitGroup
	runCtx, stopRuns := context.WithCancel(ctx)
	defer stopRuns()
	for h := range 2 {
		for j := range consumersPerHub {
			cs := &consumed{
				name:    fmt.Sprintf("reader-%d-%d", h, j),
				hub:     h,
				next:    map[string]int{},
				byIndex: map[uint64]string{},
				done:    make(chan struct{}),
			}
			handler := func(_ context.Context, m core.Message) error {
				cs.mu.Lock()
				defer cs.mu.Unlock()
				data := string(m.Data)
				cs.byIndex[m.Index] = data
				pub, seqText, ok := strings.Cut(data, "/")
				seq, err := strconv.Atoi(seqText)
				switch {
				case !ok || err != nil:
					cs.errs = append(cs.errs, fmt.Sprintf("index %d: unexpected message %q", m.Index, data))
				case seq < cs.next[pub]:
					cs.duplicates++
				case seq == cs.next[pub]:
					cs.next[pub]++
					cs.distinct++
					if cs.distinct == total {
						close(cs.done)
					}
				default:
					cs.errs = append(cs.errs, fmt.Sprintf("index %d: %s after %d of its messages: out of order or lost", m.Index, data, cs.next[pub]))
				}
				return nil
			}
			c, err := client.NewConsumer(clients[h], stream, handler,
				client.WithClientID(cs.name), client.WithStartIndex(0), client.WithPullWait(pullWait))
			if err != nil {
				t.Fatalf("NewConsumer %s: %v", cs.name, err)
			}
			cs.c = c
			consumers = append(consumers, cs)
			runs.Go(func() {
				if err := c.Run(runCtx); err != nil && runCtx.Err() == nil {
					t.Errorf("consumer %s: Run: %v", cs.name, err)
				}
			})
		}
	}

	// Publishers on both hubs, all at once.
	var pubs sync.WaitGroup
	pubStats := make([]client.PublisherStats, 2*publishersPerHub)
	for h := range 2 {
		for j := range publishersPerHub {
			id := h*publishersPerHub + j
			pubs.Go(func() {
				p, err := client.NewPublisher(ctx, clients[h], stream)
				if err != nil {
					t.Errorf("publisher %d: NewPublisher: %v", id, err)
					return
				}
				defer func() {
					pubStats[id] = p.Stats()
					if err := p.Close(); err != nil {
						t.Errorf("publisher %d: Close: %v", id, err)
					}
				}()
				for seq := range perPublisher {
					if _, err := p.Publish(ctx, fmt.Appendf(nil, "hub%d-pub%d/%d", h, j, seq)); err != nil {
						t.Errorf("publisher %d: Publish %d: %v", id, seq, err)
						return
					}
				}
				if err := p.Flush(ctx); err != nil {
					t.Errorf("publisher %d: Flush: %v", id, err)
				}
			})
		}
	}
	pubs.Wait()
	for id, st := range pubStats {
		if st.Confirmed < perPublisher {
			t.Errorf("publisher %d: %d of %d messages confirmed", id, st.Confirmed, perPublisher)
		}
		t.Logf("publisher %d: %d published, %d sent, %d confirmed, %d resent, %d possible duplicates",
			id, st.Published, st.Sent, st.Confirmed, st.Resent, st.DuplicatesPossible)
	}

	for _, cs := range consumers {
		select {
		case <-cs.done:
		case <-ctx.Done():
			cs.mu.Lock()
			t.Errorf("consumer %s (hub %d): %d of %d messages after %v", cs.name, cs.hub, cs.distinct, total, ctx.Err())
			cs.mu.Unlock()
		}
	}
	stopRuns()
	runs.Wait()

	// What the stream holds, read directly: every consumer must have read the same message
	// at every index.
	var stored int
	for from := uint64(0); ; {
		ms, err := stores[1].Fetch(t.Context(), stream, 0, from, 1000)
		if err != nil {
			t.Fatalf("Fetch from %d: %v", from, err)
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			for _, cs := range consumers {
				cs.mu.Lock()
				if got, ok := cs.byIndex[m.Index]; ok && got != string(m.Data) {
					t.Errorf("consumer %s read %q at index %d, the stream holds %q", cs.name, got, m.Index, m.Data)
				}
				cs.mu.Unlock()
			}
			stored++
		}
		from = ms[len(ms)-1].Index + 1
	}
	if stored < total {
		t.Errorf("the stream holds %d messages, want at least the %d published", stored, total)
	}
	t.Logf("%d messages published through 2 hubs, %d stored (%d duplicates)", total, stored, stored-total)

	for _, cs := range consumers {
		cs.mu.Lock()
		for _, e := range cs.errs {
			t.Errorf("consumer %s (hub %d): %s", cs.name, cs.hub, e)
		}
		if cs.distinct != total {
			t.Errorf("consumer %s (hub %d): %d distinct messages, want %d", cs.name, cs.hub, cs.distinct, total)
		}
		st := cs.c.Stats()
		t.Logf("consumer %s (hub %d): %d distinct, %d duplicates, %d received, %d saves, %d pull errors",
			cs.name, cs.hub, cs.distinct, cs.duplicates, st.Received, st.Saves, st.PullErrors)
		cs.mu.Unlock()
		// The index saved through one hub is visible through the other hub's Store.
		pos, ok := cs.c.Position()
		saved, err := stores[1-cs.hub].GetIndex(t.Context(), cs.name, stream, 0)
		if err != nil || !ok || saved != pos {
			t.Errorf("consumer %s (hub %d): saved index through the other hub's store = %d, %v; position %d (known %v)", cs.name, cs.hub, saved, err, pos, ok)
		}
	}
}

// TestAppendAfterOtherStoreRecreates: store A appends to a stream; store B (another hub)
// deletes it and creates it again. A's appends must then reach the new topic: the first may
// fail (it ran on the deleted topic), the next ones must succeed and be read back by B.
// Before the fix, A's producer kept the deleted topic's ID and every later append failed
// with UNKNOWN_TOPIC_ID, mapped to core.ErrStreamNotFound, although the stream existed.
func TestAppendAfterOtherStoreRecreates(t *testing.T) {
	ctx := t.Context()
	a := dial(t)
	b := dial(t)
	name := fmt.Sprintf("recreated-%d", time.Now().UnixNano())
	createStream(t, a, name, 1)
	if _, err := a.Append(ctx, name, 0, [][]byte{[]byte("old")}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteStream(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateStream(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if idx, err = a.Append(ctx, name, 0, [][]byte{[]byte("new")}); err == nil {
			break
		}
		t.Logf("store A's append %d after store B created the stream again: %v", attempt, err)
	}
	if err != nil {
		t.Fatalf("store A cannot append to the stream store B created again: %v", err)
	}
	got, err := b.Fetch(ctx, name, 0, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Index != idx[0] || string(got[0].Data) != "new" {
		t.Fatalf("store B fetched %v; want store A's message \"new\" at index %d", got, idx[0])
	}
}

// TestFetchAfterOtherStoreRecreatesWithFewerPartitions: store A reads partition 1 of a
// two-partition stream; store B deletes the stream and creates it again with one partition.
// A's Fetch of partition 1 must fail with core.ErrInvalidArgument (the partition no longer
// exists), and its Fetch of partition 0 must work. Before the fix, the Fetch refreshed the
// topic's metadata after UNKNOWN_TOPIC_ID and indexed its one-partition leader list with
// partition 1: a panic, which takes the whole hub down.
func TestFetchAfterOtherStoreRecreatesWithFewerPartitions(t *testing.T) {
	ctx := t.Context()
	a := dial(t)
	b := dial(t)
	name := fmt.Sprintf("fewer-%d", time.Now().UnixNano())
	createStream(t, a, name, 2)
	if _, err := a.Append(ctx, name, 1, [][]byte{[]byte("old")}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Fetch(ctx, name, 1, 0, 10); err != nil || len(got) != 1 {
		t.Fatalf("Fetch of partition 1 = %v, %v; want its message", got, err)
	}
	if err := b.DeleteStream(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateStream(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Fetch(ctx, name, 1, 1, 10); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("store A's Fetch of partition 1 of the stream store B created again with 1 partition = %v, %v; want core.ErrInvalidArgument", got, err)
	}
	if got, err := a.Fetch(ctx, name, 0, 0, 10); err != nil || len(got) != 0 {
		t.Errorf("store A's Fetch of partition 0 of the stream created again = %v, %v; want nothing, no error", got, err)
	}
}

// TestAppendToAddedPartition: a partition added to a stream's topic after the Store cached
// its metadata (with Kafka's tools, or by another Store creating the stream again with more
// partitions) must be usable: Append and Fetch refuse a partition only after a fresh look.
func TestAppendToAddedPartition(t *testing.T) {
	ctx := t.Context()
	s := dial(t)
	name := fmt.Sprintf("grown-%d", time.Now().UnixNano())
	createStream(t, s, name, 1)
	if _, err := s.Append(ctx, name, 0, [][]byte{[]byte("p0")}); err != nil {
		t.Fatal(err)
	}
	resps, err := kadm.NewClient(s.Client()).CreatePartitions(ctx, 1, s.Topic(name))
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatalf("CreatePartitions: %v", err)
	}
	idx, err := s.Append(ctx, name, 1, [][]byte{[]byte("p1")})
	if err != nil {
		t.Fatalf("Append to the partition added to the topic: %v", err)
	}
	got, err := s.Fetch(ctx, name, 1, 0, 10)
	if err != nil || len(got) != 1 || got[0].Index != idx[0] || string(got[0].Data) != "p1" {
		t.Fatalf("Fetch of the partition added = %v, %v; want \"p1\" at %d", got, err, idx[0])
	}
	if _, err := s.Fetch(ctx, name, 2, 0, 10); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("Fetch of partition 2 of a 2-partition stream: %v; want core.ErrInvalidArgument", err)
	}
}
