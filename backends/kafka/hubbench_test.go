package kafka_test

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/backends/kafka"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/hubtest"
)

const (
	// hubBenchChunk is how many messages each path handles before the other takes its turn.
	hubBenchChunk = 2000
	// hubBenchWindow is the number of messages in flight when pushing: the Publisher's
	// window on the hub path, the records produced and not yet acknowledged on the raw path.
	hubBenchWindow = client.DefaultWindow
	// hubBenchCorpus is how many messages the pull benchmarks read, round and round.
	hubBenchCorpus = 20_000
)

// BenchmarkHubVsRaw compares the hub on Kafka with plain franz-go on the same broker, in
// the same run, for 256-byte and 1-KiB messages, and reports each path's msgs/s and the
// ratio hub/raw. The two paths alternate in chunks of hubBenchChunk messages, so a change
// in the machine's load affects both alike.
//
//   - Push: a core/client Publisher over loopback TCP to an in-process hub (its window of
//     pipelined messages, its default batching), whose Store appends with acks=all; against
//     franz-go Produce of the same messages to the same topic with the Store's client
//     settings (acks=all, idempotent, linger 0, no compression) and the same window of
//     unacknowledged records.
//   - Pull: a pull loop on one hub connection (client.Conn.Pull: one sluice_pull_batch in
//     flight, limit client.DefaultPullLimit and client.DefaultPullMaxBytes, as a Consumer
//     pulls) over a topic of hubBenchCorpus messages; against a franz-go direct partition consumer reading the same topic. The
//     raw consumer is paused between its chunks and repositioned with SetOffsets at the
//     start of each, which drops what it fetched ahead, so neither path starts a chunk with
//     data already in hand and the raw consumer does not load the broker during the hub's
//     turn.
func BenchmarkHubVsRaw(b *testing.B) {
	k := cluster(b)
	ctx := context.Background()
	store, err := kafka.Dial(ctx, k.Brokers, &kafka.Options{Prefix: "sluicebench."})
	if err != nil {
		b.Fatalf("kafka.Dial: %v", err)
	}
	b.Cleanup(func() { store.Close() })
	h, addr := hubtest.Start(b, &core.Backend{Storage: store, Index: store})
	cl, err := client.Dial(addr)
	if err != nil {
		b.Fatalf("client.Dial: %v", err)
	}
	b.Cleanup(func() { cl.Close() })
	producer, err := kgo.NewClient(append(kafka.ClientOpts(), kgo.SeedBrokers(k.Brokers...))...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(producer.Close)

	for _, size := range []int{256, 1024} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i)
		}
		push := benchStream(b, store, fmt.Sprintf("push-%d", size))
		viaHub := newHubBenchPublisher(b, cl, push, msg)
		raw := &rawBenchProducer{cl: producer, topic: store.Topic(push), msg: msg}
		b.Run(fmt.Sprintf("Push/size=%d", size), func(b *testing.B) {
			m0 := h.Metrics()
			hubtest.Alternate(b, size, hubBenchChunk, viaHub.push, raw.push)
			// The messages per backend Append say how much of the window each one carried.
			if m := h.Metrics(); m.Appends > m0.Appends {
				b.ReportMetric(float64(m.AppendedMessages-m0.AppendedMessages)/float64(m.Appends-m0.Appends), "msgs/append")
			}
		})

		pull := benchStream(b, store, fmt.Sprintf("pull-%d", size))
		raw.topic = store.Topic(pull)
		raw.push(b, hubBenchCorpus)
		hubReader := newHubBenchReader(b, cl, pull)
		rawReader := newRawBenchReader(b, k.Brokers, store.Topic(pull))
		b.Run(fmt.Sprintf("Pull/size=%d", size), func(b *testing.B) {
			hubtest.Alternate(b, size, hubBenchChunk, hubReader.read, rawReader.read)
		})
	}
}

// benchStream creates a one-partition stream with a unique name, deleted when b ends.
func benchStream(b *testing.B, store *kafka.Store, prefix string) string {
	b.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	if _, err := store.CreateStream(context.Background(), name, 1); err != nil {
		b.Fatalf("CreateStream(%q): %v", name, err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := store.DeleteStream(ctx, name); err != nil {
			b.Errorf("DeleteStream(%q): %v", name, err)
		}
	})
	return name
}

type hubBenchPublisher struct {
	p   *client.Publisher
	msg []byte
}

func newHubBenchPublisher(b *testing.B, cl *client.Client, stream string, msg []byte) *hubBenchPublisher {
	p, err := client.NewPublisher(context.Background(), cl, stream, client.WithWindow(hubBenchWindow))
	if err != nil {
		b.Fatalf("NewPublisher: %v", err)
	}
	b.Cleanup(func() { p.Close() })
	return &hubBenchPublisher{p: p, msg: msg}
}

// push publishes n messages, waits until all are confirmed and returns the time.
func (h *hubBenchPublisher) push(b *testing.B, n int) time.Duration {
	return hubtest.PublishN(b, h.p, h.msg, n)
}

type rawBenchProducer struct {
	cl    *kgo.Client
	topic string
	msg   []byte
}

// push produces n records with up to hubBenchWindow unacknowledged, waits for every
// acknowledgement and returns the time.
func (r *rawBenchProducer) push(b *testing.B, n int) time.Duration {
	ctx := context.Background()
	window := make(chan struct{}, hubBenchWindow)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range n {
		window <- struct{}{}
		wg.Add(1)
		r.cl.Produce(ctx, &kgo.Record{Topic: r.topic, Partition: 0, Value: r.msg}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
			<-window
			wg.Done()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		b.Fatalf("produce: %v", firstErr)
	}
	return elapsed
}

// hubBenchReader pulls a stream of hubBenchCorpus messages, starting at 0, round and round.
type hubBenchReader struct {
	conn   *client.Conn
	stream string
	next   uint64
}

func newHubBenchReader(b *testing.B, cl *client.Client, stream string) *hubBenchReader {
	ctx := context.Background()
	conn, err := cl.Open(ctx, time.Minute)
	if err != nil {
		b.Fatalf("client Open: %v", err)
	}
	b.Cleanup(func() { conn.Close() })
	if _, err := conn.CreateStream(ctx, stream, 1); err != nil {
		b.Fatalf("CreateStream(%q): %v", stream, err)
	}
	return &hubBenchReader{conn: conn, stream: stream}
}

// read pulls n messages (fewer if the corpus ends first: it starts over at 0 next time)
// and returns the time.
func (h *hubBenchReader) read(b *testing.B, n int) time.Duration {
	n = min(n, hubBenchCorpus-int(h.next))
	elapsed := hubtest.PullN(b, h.conn, h.stream, &h.next, n)
	if h.next == hubBenchCorpus {
		h.next = 0
	}
	return elapsed
}

// rawBenchReader reads a topic of hubBenchCorpus records with a franz-go direct partition
// consumer, starting at 0, round and round.
type rawBenchReader struct {
	cl    *kgo.Client
	topic string
	next  int64
}

func newRawBenchReader(b *testing.B, brokers []string, topic string) *rawBenchReader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return &rawBenchReader{cl: cl, topic: topic}
}

// read consumes n records (fewer if the corpus ends first) from its position and returns
// the time. It first repositions the consumer, dropping what it fetched ahead, and pauses
// it at the end, so that it does not fetch and decode during the hub's turn.
func (r *rawBenchReader) read(b *testing.B, n int) time.Duration {
	ctx := context.Background()
	n = min(n, hubBenchCorpus-int(r.next))
	r.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.topic: {0: {Epoch: -1, Offset: r.next}}})
	parts := map[string][]int32{r.topic: {0}}
	start := time.Now()
	r.cl.ResumeFetchPartitions(parts)
	for got := 0; got < n; {
		fs := r.cl.PollRecords(ctx, n-got)
		if err := fs.Err0(); err != nil {
			b.Fatalf("poll: %v", err)
		}
		for _, rec := range fs.Records() {
			if rec.Offset != r.next {
				b.Fatalf("raw consume: offset %d, want %d", rec.Offset, r.next)
			}
			r.next++
			got++
		}
	}
	elapsed := time.Since(start)
	// Stop fetching ahead while the hub has its turn (SetOffsets drops what was fetched).
	r.cl.PauseFetchPartitions(parts)
	if r.next == hubBenchCorpus {
		r.next = 0
	}
	return elapsed
}
