package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// requestTimeout bounds one request of the hub client; slow emulated brokers need seconds.
const requestTimeout = 30 * time.Second

// epoch is the time base of the timestamps carried in latency messages.
var epoch = time.Now()

// payloads returns n distinct messages of size random bytes, so that no layer compresses
// them away: neither one message alone nor a batch of them as a whole, as a Kafka producer
// compresses each record batch (franz-go's default is snappy, which would find every repeat
// of one message in a batch). The throughput workloads send Batch of them in turn, so the
// messages of one request or Append are all distinct, as real (encrypted) traffic is.
func payloads(size, n int) [][]byte {
	buf := make([]byte, size*n)
	_, _ = rand.Read(buf)
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = buf[i*size : (i+1)*size : (i+1)*size]
	}
	return msgs
}

// payload returns one message of size random bytes, for the latency workloads: they send
// one message per request, each stamped with its own time.
func payload(size int) []byte { return payloads(size, 1)[0] }

// stamp writes the time at into the first 8 bytes of a copy of msg.
func stamp(msg []byte, at time.Time) []byte {
	m := append([]byte(nil), msg...)
	binary.BigEndian.PutUint64(m, uint64(at.Sub(epoch)))
	return m
}

// sinceStamp returns how long ago the time written by stamp was, and false for a message
// without a stamp (a warm-up message, all zeros in its first 8 bytes).
func sinceStamp(m []byte) (time.Duration, bool) {
	if len(m) < 8 {
		return 0, false
	}
	ts := binary.BigEndian.Uint64(m)
	if ts == 0 {
		return 0, false
	}
	return time.Since(epoch) - time.Duration(ts), true
}

// firstErr keeps the first error reported from several goroutines.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (e *env) publisher(ctx context.Context, stream string, window, batch int) (*client.Publisher, error) {
	p, err := client.NewPublisher(ctx, e.cl, stream,
		client.WithWindow(window), client.WithMaxBatch(batch), client.WithRequestTimeout(requestTimeout))
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return p, nil
}

// warmUp publishes one unstamped message and waits for it, so the stream exists and the
// session is connected before the clock starts.
func warmUp(ctx context.Context, p *client.Publisher, size int) error {
	if _, err := p.PublishSync(ctx, make([]byte, size)); err != nil {
		return fmt.Errorf("warm-up publish: %w", err)
	}
	return nil
}

// pushHub publishes messages of size for cfg.Duration through the hub and waits for every
// confirm. It returns the stream it wrote.
func (e *env) pushHub(ctx context.Context, cfg Config, size int) (Sample, string, error) {
	stream := e.stream(fmt.Sprintf("push-hub-%d", size))
	p, err := e.publisher(ctx, stream, cfg.Window, cfg.Batch)
	if err != nil {
		return Sample{}, "", err
	}
	defer p.Close()
	if err := warmUp(ctx, p, size); err != nil {
		return Sample{}, "", err
	}
	msgs := payloads(size, cfg.Batch)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	n := 0
	for time.Now().Before(deadline) {
		if _, err := p.Publish(ctx, msgs[n%len(msgs)]); err != nil {
			return Sample{}, "", fmt.Errorf("publish: %w", err)
		}
		n++
	}
	if err := p.Flush(ctx); err != nil {
		return Sample{}, "", fmt.Errorf("flush: %w", err)
	}
	return throughput(n, size, time.Since(start)), stream, nil
}

// rawAppenders is how many goroutines the raw push path runs: as many as it takes to keep
// window messages in flight in batches of batch, at least one (and window of them for a
// batch below 1, which only a report not made by Run can hold).
func rawAppenders(window, batch int) int {
	return max(1, window/max(1, batch))
}

// appendFor appends one batch of Batch distinct messages of size to stream, again and again,
// from Window/Batch goroutines until d passed. It returns how many messages were appended and
// how long it took.
func appendFor(ctx context.Context, cfg Config, st core.Storage, stream string, size int, d time.Duration) (int, time.Duration, error) {
	batch := payloads(size, cfg.Batch) // read-only: the goroutines share it
	workers := rawAppenders(cfg.Window, cfg.Batch)
	var (
		total atomic.Int64
		fe    firstErr
		wg    sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() { // owned by appendFor: ends at the deadline or on the first error
			defer wg.Done()
			for time.Now().Before(deadline) && fe.get() == nil {
				idx, err := st.Append(ctx, stream, 0, batch)
				if err != nil {
					fe.set(fmt.Errorf("append: %w", err))
					return
				}
				total.Add(int64(len(idx)))
			}
		}()
	}
	wg.Wait()
	return int(total.Load()), time.Since(start), fe.get()
}

// createRaw creates a new stream of one partition on st.
func (e *env) createRaw(ctx context.Context, st core.Storage, label string) (string, error) {
	stream := e.streamOn(st, label)
	if _, err := st.CreateStream(ctx, stream, 1); err != nil {
		return "", fmt.Errorf("create stream: %w", err)
	}
	return stream, nil
}

// pushRaw appends messages of size for cfg.Duration directly to st. It returns the stream
// it wrote.
func (e *env) pushRaw(ctx context.Context, cfg Config, st core.Storage, size int) (Sample, string, error) {
	stream, err := e.createRaw(ctx, st, fmt.Sprintf("push-raw-%d", size))
	if err != nil {
		return Sample{}, "", err
	}
	// Warm up as the hub path does: one message before the clock starts.
	if _, err := st.Append(ctx, stream, 0, [][]byte{make([]byte, size)}); err != nil {
		return Sample{}, "", fmt.Errorf("warm-up append: %w", err)
	}
	n, d, err := appendFor(ctx, cfg, st, stream, size, cfg.Duration)
	if err != nil {
		return Sample{}, "", err
	}
	return throughput(n, size, d), stream, nil
}

// fill writes a stream on st for the pull workload when push did not run.
func (e *env) fill(ctx context.Context, cfg Config, st core.Storage, size int) (string, error) {
	stream, err := e.createRaw(ctx, st, fmt.Sprintf("pull-%d", size))
	if err != nil {
		return "", err
	}
	_, _, err = appendFor(ctx, cfg, st, stream, size, cfg.Duration)
	return stream, err
}

// pullHub reads stream from index 0 through the hub until it is caught up or cfg.Duration
// passed.
func (e *env) pullHub(ctx context.Context, cfg Config, stream string, size int) (Sample, error) {
	conn, err := e.cl.Open(ctx, requestTimeout)
	if err != nil {
		return Sample{}, fmt.Errorf("open session: %w", err)
	}
	defer conn.Close()
	if _, err := conn.CreateStream(ctx, stream, 1); err != nil {
		return Sample{}, fmt.Errorf("create stream: %w", err)
	}
	return readAll(cfg, func(from uint64) ([]core.Message, error) {
		return conn.Pull(ctx, stream, 0, from, cfg.Limit, 0)
	}, size)
}

// pullRaw reads stream from index 0 with st.Fetch, as many messages per call as the hub
// path's pull returns: cfg.Limit, or fewer when they would pass client.DefaultPullMaxBytes.
func pullRaw(ctx context.Context, cfg Config, st core.Storage, stream string, size int) (Sample, error) {
	limit := min(cfg.Limit, max(1, client.DefaultPullMaxBytes/max(size, 1)))
	return readAll(cfg, func(from uint64) ([]core.Message, error) {
		return st.Fetch(ctx, stream, 0, from, limit)
	}, size)
}

// readAll pages through a partition with fetch until it is empty or cfg.Duration passed.
func readAll(cfg Config, fetch func(from uint64) ([]core.Message, error), size int) (Sample, error) {
	start := time.Now()
	var from uint64
	n := 0
	for time.Since(start) < cfg.Duration {
		ms, err := fetch(from)
		if err != nil {
			return Sample{}, fmt.Errorf("pull from %d: %w", from, err)
		}
		if len(ms) == 0 {
			break
		}
		n += len(ms)
		from = ms[len(ms)-1].Index + 1
	}
	if n == 0 {
		return Sample{}, errors.New("pull: the stream is empty")
	}
	return throughput(n, size, time.Since(start)), nil
}

// atRate calls send(i, at) for i = 0, 1, ... at cfg.Rate per second for cfg.Duration, each
// at its scheduled time at (or as soon as possible after it). It returns how many it called.
func atRate(ctx context.Context, cfg Config, send func(at time.Time) error) (int, error) {
	n := max(1, int(cfg.Duration.Seconds()*float64(cfg.Rate)))
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if err := core.Sleep(ctx, time.Until(at)); err != nil {
			return i, err
		}
		if err := send(at); err != nil {
			return i, err
		}
	}
	return n, nil
}

// pushLatencyHub publishes at a fixed rate through the hub and records, per message, the
// time from its schedule to its confirm.
func (e *env) pushLatencyHub(ctx context.Context, cfg Config, size int) (Sample, error) {
	stream := e.stream(fmt.Sprintf("lat-hub-%d", size))
	p, err := e.publisher(ctx, stream, max(cfg.Window, cfg.Rate), cfg.Batch)
	if err != nil {
		return Sample{}, err
	}
	defer p.Close()
	if err := warmUp(ctx, p, size); err != nil {
		return Sample{}, err
	}
	msg := payload(size)
	var (
		mu sync.Mutex
		l  = NewLatencies()
		fe firstErr
		wg sync.WaitGroup
	)
	start := time.Now()
	_, err = atRate(ctx, cfg, func(at time.Time) error {
		ack, err := p.Publish(ctx, msg)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		wg.Add(1)
		go func() { // owned by pushLatencyHub: ends when the ack completes or ctx ends
			defer wg.Done()
			if _, err := ack.Wait(ctx); err != nil {
				fe.set(fmt.Errorf("confirm: %w", err))
				return
			}
			d := time.Since(at)
			mu.Lock()
			l.Record(d)
			mu.Unlock()
		}()
		return nil
	})
	wg.Wait()
	if err == nil {
		err = fe.get()
	}
	if err != nil {
		return Sample{}, err
	}
	return latencySample(l, time.Since(start)), nil
}

// pushLatencyRaw appends one message per call at a fixed rate and records, per message, the
// time from its schedule until Append returned.
func (e *env) pushLatencyRaw(ctx context.Context, cfg Config, st core.Storage, size int) (Sample, error) {
	stream, err := e.createRaw(ctx, st, fmt.Sprintf("lat-raw-%d", size))
	if err != nil {
		return Sample{}, err
	}
	if _, err := st.Append(ctx, stream, 0, [][]byte{make([]byte, size)}); err != nil {
		return Sample{}, fmt.Errorf("warm-up append: %w", err)
	}
	msg := payload(size)
	var (
		mu sync.Mutex
		l  = NewLatencies()
		fe firstErr
		wg sync.WaitGroup
	)
	start := time.Now()
	_, err = atRate(ctx, cfg, func(at time.Time) error {
		wg.Add(1)
		go func() { // owned by pushLatencyRaw: ends when Append returns
			defer wg.Done()
			if _, err := st.Append(ctx, stream, 0, [][]byte{msg}); err != nil {
				fe.set(fmt.Errorf("append: %w", err))
				return
			}
			d := time.Since(at)
			mu.Lock()
			l.Record(d)
			mu.Unlock()
		}()
		return fe.get()
	})
	wg.Wait()
	if err == nil {
		err = fe.get()
	}
	if err != nil {
		return Sample{}, err
	}
	return latencySample(l, time.Since(start)), nil
}

// e2eHub publishes stamped messages at a fixed rate through the hub while a consumer reads
// them, and records for each the time from its schedule to its arrival at the handler.
func (e *env) e2eHub(ctx context.Context, cfg Config, size int) (Sample, error) {
	stream := e.stream(fmt.Sprintf("e2e-hub-%d", size))
	p, err := e.publisher(ctx, stream, max(cfg.Window, cfg.Rate), cfg.Batch)
	if err != nil {
		return Sample{}, err
	}
	defer p.Close()
	if err := warmUp(ctx, p, size); err != nil {
		return Sample{}, err
	}
	rec := newReceiver()
	cons, err := client.NewConsumer(e.cl, stream, func(_ context.Context, m core.Message) error {
		rec.receive(m.Data)
		return nil
	}, client.WithPullWait(time.Second), client.WithPullLimit(cfg.Limit), client.WithConsumerRequestTimeout(requestTimeout))
	if err != nil {
		return Sample{}, fmt.Errorf("consumer: %w", err)
	}
	// waitCtx ends the wait for the messages early when the consumer stops on its own.
	waitCtx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	var consErr firstErr
	consDone := make(chan struct{})
	go func() { // owned by e2eHub: cons.Close ends it
		defer close(consDone)
		if err := cons.Run(ctx); err != nil && ctx.Err() == nil {
			consErr.set(fmt.Errorf("consumer: %w", err))
		}
		stopWaiting()
	}()
	defer func() {
		_ = cons.Close()
		<-consDone
	}()
	if err := rec.warmedUp(waitCtx); err != nil {
		return Sample{}, errors.Join(err, consErr.get())
	}
	msg := payload(size)
	start := time.Now()
	n, err := atRate(ctx, cfg, func(at time.Time) error {
		if _, err := p.Publish(ctx, stamp(msg, at)); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		return nil
	})
	if err != nil {
		return Sample{}, err
	}
	if err := rec.wait(waitCtx, n); err != nil {
		if cerr := consErr.get(); cerr != nil {
			return Sample{}, cerr
		}
		return Sample{}, err
	}
	s := latencySample(rec.l, time.Since(start))
	s.Duplicates = rec.duplicates()
	return s, nil
}

// e2eRaw appends stamped messages at a fixed rate with Storage.Append while a reader polls
// Storage.Fetch (sleeping cfg.PollInterval when caught up), and records for each message the
// time from its schedule to its arrival at the reader.
func (e *env) e2eRaw(ctx context.Context, cfg Config, st core.Storage, size int) (Sample, error) {
	stream, err := e.createRaw(ctx, st, fmt.Sprintf("e2e-raw-%d", size))
	if err != nil {
		return Sample{}, err
	}
	if _, err := st.Append(ctx, stream, 0, [][]byte{make([]byte, size)}); err != nil {
		return Sample{}, fmt.Errorf("warm-up append: %w", err)
	}
	rec := newReceiver()
	var (
		fe firstErr
		wg sync.WaitGroup
	)
	// waitCtx ends the wait for the messages early when the reader fails.
	waitCtx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	readCtx, stopReader := context.WithCancel(ctx)
	readDone := make(chan struct{})
	go func() { // owned by e2eRaw: stopReader ends it
		defer close(readDone)
		var from uint64
		for {
			ms, err := st.Fetch(readCtx, stream, 0, from, cfg.Limit)
			if err != nil {
				if readCtx.Err() == nil {
					fe.set(fmt.Errorf("reader: fetch from %d: %w", from, err))
					stopWaiting()
				}
				return
			}
			if len(ms) == 0 {
				if core.Sleep(readCtx, cfg.PollInterval) != nil {
					return
				}
				continue
			}
			for _, m := range ms {
				rec.receive(m.Data)
			}
			from = ms[len(ms)-1].Index + 1
		}
	}()
	defer func() {
		stopReader()
		<-readDone
	}()
	if err := rec.warmedUp(waitCtx); err != nil {
		return Sample{}, errors.Join(err, fe.get())
	}
	msg := payload(size)
	start := time.Now()
	n, err := atRate(ctx, cfg, func(at time.Time) error {
		m := stamp(msg, at)
		wg.Add(1)
		go func() { // owned by e2eRaw: ends when Append returns
			defer wg.Done()
			if _, err := st.Append(ctx, stream, 0, [][]byte{m}); err != nil {
				fe.set(fmt.Errorf("append: %w", err))
			}
		}()
		return fe.get()
	})
	wg.Wait()
	if err == nil {
		err = fe.get()
	}
	if err != nil {
		return Sample{}, err
	}
	if err := rec.wait(waitCtx, n); err != nil {
		if ferr := fe.get(); ferr != nil {
			return Sample{}, ferr
		}
		return Sample{}, err
	}
	s := latencySample(rec.l, time.Since(start))
	s.Duplicates = rec.duplicates()
	return s, nil
}

// receiver records the latency of stamped messages and lets a caller wait for a count.
// Delivery is at least once: a message the publisher sent again (its confirm was lost) can
// arrive twice. A message counts, and its latency is recorded, on its first arrival only;
// later arrivals of the same stamp are counted as duplicates.
type receiver struct {
	mu   sync.Mutex
	l    *Latencies
	seen map[uint64]struct{} // the stamps received
	n    int                 // distinct stamped messages received
	dups int                 // stamped messages received again
	warm int                 // warm-up (unstamped) messages received
	grew chan struct{}       // closed and replaced on every receive
}

func newReceiver() *receiver {
	return &receiver{l: NewLatencies(), seen: map[uint64]struct{}{}, grew: make(chan struct{})}
}

func (r *receiver) receive(m []byte) {
	d, ok := sinceStamp(m)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !ok:
		r.warm++
	case r.isDuplicate(m):
		r.dups++
	default:
		r.l.Record(d)
		r.n++
	}
	close(r.grew)
	r.grew = make(chan struct{})
}

// isDuplicate reports whether the stamp of m was received before, and remembers it. Every
// message of a run is stamped with its own scheduled time, so the stamp identifies it.
func (r *receiver) isDuplicate(m []byte) bool {
	ts := binary.BigEndian.Uint64(m)
	if _, dup := r.seen[ts]; dup {
		return true
	}
	r.seen[ts] = struct{}{}
	return false
}

// duplicates returns how many stamped messages arrived more than once (each extra arrival
// counts).
func (r *receiver) duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dups
}

// wait returns once n distinct stamped messages arrived, or an error when ctx ends first.
func (r *receiver) wait(ctx context.Context, n int) error {
	return r.until(ctx, func() bool { return r.n >= n }, func() error {
		if r.dups > 0 {
			return fmt.Errorf("received %d of %d messages (and %d duplicates)", r.n, n, r.dups)
		}
		return fmt.Errorf("received %d of %d messages", r.n, n)
	})
}

// warmedUp returns once the unstamped warm-up message arrived: the reader is connected and
// positioned, so its start-up is not measured.
func (r *receiver) warmedUp(ctx context.Context) error {
	return r.until(ctx, func() bool { return r.warm > 0 }, func() error {
		return errors.New("the warm-up message did not arrive")
	})
}

// until waits until done (called with r.mu held) or ctx ends, then returning fail()'s error.
func (r *receiver) until(ctx context.Context, done func() bool, fail func() error) error {
	for {
		r.mu.Lock()
		ok, grew := done(), r.grew
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-grew:
		case <-ctx.Done():
			r.mu.Lock()
			err := fail()
			r.mu.Unlock()
			return fmt.Errorf("%w: %w", err, ctx.Err())
		}
	}
}
