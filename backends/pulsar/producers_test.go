package pulsar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
)

// trackingClient is a pulsar.Client that records the producers it creates, so a test can
// tell which ones the Store closed and whether a producer was closed with sends in flight.
type trackingClient struct {
	pulsar.Client
	mu        sync.Mutex
	producers []*trackedProducer
}

func (c *trackingClient) CreateProducer(o pulsar.ProducerOptions) (pulsar.Producer, error) {
	p, err := c.Client.CreateProducer(o)
	if err != nil {
		return nil, err
	}
	tp := &trackedProducer{Producer: p, topic: o.Topic, closed: make(chan struct{})}
	c.mu.Lock()
	c.producers = append(c.producers, tp)
	c.mu.Unlock()
	return tp, nil
}

// created returns the producers created so far, in creation order.
func (c *trackingClient) created() []*trackedProducer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*trackedProducer(nil), c.producers...)
}

// trackedProducer counts its sends whose receipt has not arrived, and records a Close
// called while some were in flight (which an eviction must never do).
type trackedProducer struct {
	pulsar.Producer
	topic string

	mu             sync.Mutex
	inFlight       int
	closedInFlight int // sends in flight at the first Close that found some
	closeOnce      sync.Once
	closed         chan struct{} // closed once Close returned
}

func (p *trackedProducer) SendAsync(ctx context.Context, m *pulsar.ProducerMessage, f func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	p.mu.Lock()
	p.inFlight++
	p.mu.Unlock()
	p.Producer.SendAsync(ctx, m, func(id pulsar.MessageID, m *pulsar.ProducerMessage, err error) {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
		f(id, m, err)
	})
}

func (p *trackedProducer) Close() {
	p.mu.Lock()
	if p.closedInFlight == 0 {
		p.closedInFlight = p.inFlight
	}
	p.mu.Unlock()
	p.Producer.Close()
	p.closeOnce.Do(func() { close(p.closed) })
}

// sendsAtClose returns how many sends were in flight at the first Close that found some.
func (p *trackedProducer) sendsAtClose() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closedInFlight
}

func (p *trackedProducer) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// trackingStore opens a Store with opts on a trackingClient of the shared broker; both
// are closed when the test ends.
func trackingStore(t *testing.T, opts *Options) (*Store, *trackingClient) {
	t.Helper()
	b := broker(t)
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: b.URL, OperationTimeout: DefaultOperationTimeout, Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tc := &trackingClient{Client: cl}
	t.Cleanup(cl.Close)
	s, err := New(context.Background(), tc, b.AdminURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, tc
}

// producerStream creates a stream with n partitions, deleted when the test ends.
func producerStream(t *testing.T, ctx context.Context, s *Store, n int) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	stream := "producers-" + hex.EncodeToString(b)
	if _, err := s.CreateStream(ctx, stream, n); err != nil {
		t.Fatal(err)
	}
	// Through the admin API: the test may have closed s.
	t.Cleanup(func() { _ = s.admin.deletePartitioned(context.Background(), s.topic(stream)) })
	return stream
}

// heldProducers returns how many producers the Store keeps.
func heldProducers(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.producers)
}

// publishers returns how many producers the broker has on one partition topic of a stream.
func publishers(t *testing.T, ctx context.Context, s *Store, stream string, partition int) int {
	t.Helper()
	var stats struct {
		Publishers []json.RawMessage `json:"publishers"`
	}
	path := s.admin.topicPath(s.topic(stream)+"-partition-"+itoa(partition)) + "/stats"
	if err := s.admin.do(ctx, http.MethodGet, path, nil, &stats); err != nil {
		t.Fatalf("stats of partition %d: %v", partition, err)
	}
	return len(stats.Publishers)
}

// waitClosed waits until the Store closed p (eviction closes on another goroutine).
func waitClosed(t *testing.T, ctx context.Context, p *trackedProducer) {
	t.Helper()
	select {
	case <-p.closed:
	case <-ctx.Done():
		t.Fatalf("the producer of %s was never closed", p.topic)
	}
}

// TestProducersEvicted checks that a Store keeps at most MaxProducers producers, closing
// the least recently used one (also on the broker), that an append to a partition whose
// producer was evicted works on a new one, and that Close closes every producer.
func TestProducersEvicted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, tc := trackingStore(t, &Options{TopicPrefix: "producers-", MaxProducers: 2})
	stream := producerStream(t, ctx, s, 4)
	for p := range 4 {
		if _, err := s.Append(ctx, stream, p, [][]byte{fmt.Appendf(nil, "p%d", p)}); err != nil {
			t.Fatalf("append to partition %d: %v", p, err)
		}
		if n := heldProducers(s); n > 2 {
			t.Fatalf("after appending to partitions 0..%d the Store holds %d producers, want at most MaxProducers = 2", p, n)
		}
	}
	made := tc.created()
	if len(made) != 4 {
		t.Fatalf("%d producers created for 4 partitions, want 4", len(made))
	}
	// Partitions 0 and 1 were used least recently: their producers are closed, on the
	// broker too; those of 2 and 3 are kept.
	for p, tp := range made {
		if p < 2 {
			waitClosed(t, ctx, tp)
			if n := publishers(t, ctx, s, stream, p); n != 0 {
				t.Errorf("partition %d: the broker still has %d producers after the eviction", p, n)
			}
		} else if tp.isClosed() {
			t.Errorf("the producer of partition %d, among the 2 most recently used, was closed", p)
		}
	}
	// Using partition 2 makes 3 the least recently used: appending to 0 again creates a
	// producer and evicts 3's.
	for _, p := range []int{2, 0} {
		if _, err := s.Append(ctx, stream, p, [][]byte{[]byte("again")}); err != nil {
			t.Fatalf("append to partition %d after the evictions: %v", p, err)
		}
	}
	made = tc.created()
	if len(made) != 5 || made[4].topic != s.partitionTopic(stream, 0) {
		t.Fatalf("%d producers created, want a fifth for partition 0", len(made))
	}
	waitClosed(t, ctx, made[3])
	if made[2].isClosed() {
		t.Error("the producer of partition 2, used more recently than 3's, was closed")
	}
	got, err := s.Fetch(ctx, stream, 0, 0, 10)
	if err != nil || len(got) != 2 || string(got[0].Data) != "p0" || string(got[1].Data) != "again" {
		t.Fatalf("partition 0 holds %v (%v), want p0 and again", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i, tp := range tc.created() {
		if !tp.isClosed() {
			t.Errorf("producer %d (%s) is open after Close", i, tp.topic)
		}
		if n := tp.sendsAtClose(); n > 0 {
			t.Errorf("producer %d (%s) was closed with %d sends in flight", i, tp.topic, n)
		}
	}
}

// TestProducerEvictionKeepsAppendsInFlight appends to three partitions with MaxProducers 1
// and many appends in flight on each: no producer may be closed under an append, every
// append must succeed with indexes increasing in start order, and everything must be read
// back. Once the appends are done, the next append brings the Store back to the bound.
func TestProducerEvictionKeepsAppendsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, tc := trackingStore(t, &Options{TopicPrefix: "producers-", MaxProducers: 1})
	const partitions, rounds, batch = 3, 40, 20
	stream := producerStream(t, ctx, s, partitions)

	type result struct {
		idx []uint64
		err error
	}
	results := make([][]chan result, partitions)
	for p := range results {
		results[p] = make([]chan result, rounds)
	}
	for r := range rounds {
		for p := range partitions {
			msgs := make([][]byte, batch)
			for k := range msgs {
				msgs[k] = fmt.Appendf(nil, "p%d r%02d m%02d", p, r, k)
			}
			ch := make(chan result, 1)
			results[p][r] = ch
			// Not waited for: while this append is in flight the next one, to another
			// partition, needs a producer beyond the bound.
			s.AppendAsync(ctx, stream, p, msgs, func(idx []uint64, err error) { ch <- result{idx, err} })
		}
	}
	for p := range partitions {
		var prev []uint64 // the indexes reported so far
		for r := range rounds {
			res := <-results[p][r]
			if res.err != nil {
				t.Fatalf("partition %d, append %d: %v", p, r, res.err)
			}
			for _, i := range res.idx {
				if len(prev) > 0 && i <= prev[len(prev)-1] {
					t.Fatalf("partition %d, append %d: index %d not above %d, reported earlier", p, r, i, prev[len(prev)-1])
				}
				prev = append(prev, i)
			}
		}
	}
	for i, tp := range tc.created() {
		if n := tp.sendsAtClose(); n > 0 {
			t.Fatalf("producer %d (%s) was closed with %d sends in flight", i, tp.topic, n)
		}
	}
	t.Logf("%d producers created", len(tc.created()))
	// Idle again: the next append evicts the producers beyond the bound.
	if _, err := s.Append(ctx, stream, 0, [][]byte{[]byte("last")}); err != nil {
		t.Fatal(err)
	}
	if n := heldProducers(s); n > 1 {
		t.Fatalf("the Store holds %d producers once no append is in flight, want at most MaxProducers = 1", n)
	}
	for p := range partitions {
		var all []string
		for from := uint64(0); ; {
			got, err := s.Fetch(ctx, stream, p, from, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				break
			}
			for _, m := range got {
				all = append(all, string(m.Data))
			}
			from = got[len(got)-1].Index + 1
		}
		want := rounds * batch
		if p == 0 {
			want++
		}
		if len(all) != want {
			t.Fatalf("partition %d holds %d messages, want %d", p, len(all), want)
		}
		for k, m := range all[:rounds*batch] {
			if w := fmt.Sprintf("p%d r%02d m%02d", p, k/batch, k%batch); m != w {
				t.Fatalf("partition %d, message %d = %q, want %q", p, k, m, w)
			}
		}
	}
}
