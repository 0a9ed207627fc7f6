package hub_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// benchWindow is the number of pushes in flight in the throughput benchmarks, for the hub
// (pipelined requests on one connection) and for direct bbolt (concurrent Append calls, which
// bbolt group-commits) alike.
const benchWindow = 256

func benchBbolt(b *testing.B) *core.Backend {
	b.Helper()
	s, err := bbolt.New(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return &core.Backend{Storage: s, Index: s}
}

// BenchmarkPushThroughput compares pipelined single-message pushes through the hub (over
// loopback TCP, on bbolt) with direct bbolt Append calls of one message each, benchWindow in
// flight in both cases, for the same message size. The two paths alternate in chunks of
// benchChunk messages within one benchmark run, so a change in the machine's load affects
// both alike; it reports each path's msg/s and the ratio hub/direct.
func BenchmarkPushThroughput(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			direct := newDirectPusher(b, size)
			viaHub := newHubPusher(b, size)
			b.SetBytes(int64(size))
			var tDirect, tHub time.Duration
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(benchChunk, b.N-done)
				tDirect += direct.push(b, n)
				tHub += viaHub.push(b, n)
				done += n
			}
			b.StopTimer()
			rDirect := float64(b.N) / tDirect.Seconds()
			rHub := float64(b.N) / tHub.Seconds()
			b.ReportMetric(rDirect, "direct-msg/s")
			b.ReportMetric(rHub, "hub-msg/s")
			b.ReportMetric(rHub/rDirect, "hub/direct")
		})
	}
}

// benchChunk is how many messages each path pushes before the other takes its turn.
const benchChunk = 2000

type directPusher struct {
	storage core.Storage
	msg     []byte
}

func newDirectPusher(b *testing.B, size int) *directPusher {
	backend := benchBbolt(b)
	if _, err := backend.Storage.CreateStream(context.Background(), "bench", 1); err != nil {
		b.Fatal(err)
	}
	return &directPusher{storage: backend.Storage, msg: make([]byte, size)}
}

// push appends n messages with benchWindow concurrent Append calls and returns the time.
func (d *directPusher) push(b *testing.B, n int) time.Duration {
	ctx := context.Background()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		next     int
		firstErr error
	)
	start := time.Now()
	for range min(benchWindow, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= n || firstErr != nil {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				if _, err := d.storage.Append(ctx, "bench", 0, [][]byte{d.msg}); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return elapsed
}

type hubPusher struct {
	c     *hubtest.Conn
	route wire.Route
	msg   []byte
	id    uint64
}

func newHubPusher(b *testing.B, size int) *hubPusher {
	_, addr := hubtest.Start(b, benchBbolt(b))
	c := hubtest.Dial(b, addr)
	return &hubPusher{c: c, route: c.Create("bench").Route, msg: make([]byte, size)}
}

// push sends n pushes with up to benchWindow unconfirmed, waits for every confirm and
// returns the time.
func (h *hubPusher) push(b *testing.B, n int) time.Duration {
	slots := make(chan struct{}, benchWindow)
	recvErr := make(chan error, 1)
	start := time.Now()
	go func() { // ends after n confirms or the first error
		for range n {
			r, err := h.c.TryRecv(time.Minute)
			if err == nil && r.Protocol != wire.ProtocolPush {
				err = fmt.Errorf("reply %q, want %q", r.Protocol, wire.ProtocolPush)
			}
			if err == nil {
				var pc wire.PushConfirm
				if pc, err = wire.DecodePushConfirm(r.Data); err == nil && pc.Status != wire.StatusOK {
					err = fmt.Errorf("push %d: status %v", pc.RequestID, pc.Status)
				}
			}
			if err != nil {
				recvErr <- err
				return
			}
			<-slots
		}
		recvErr <- nil
	}()
	for range n {
		select {
		case slots <- struct{}{}:
		case err := <-recvErr:
			b.Fatal(err)
		}
		h.id++
		h.c.Send(h.route, wire.ProtocolPush, wire.PushRequest{RequestID: h.id, Data: h.msg})
	}
	if err := <-recvErr; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// reportPercentiles reports the p50 and p99 of ds in microseconds.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	p := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}

// BenchmarkPushConfirmLatency measures push -> confirm at light load: one 64-byte push at
// a time over loopback TCP, on bbolt.
func BenchmarkPushConfirmLatency(b *testing.B) {
	_, addr := hubtest.Start(b, benchBbolt(b))
	c := hubtest.Dial(b, addr)
	s := c.Create("latency")
	msg := make([]byte, 64)
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if pc := c.Push(s, uint64(i), msg); pc.Status != wire.StatusOK {
			b.Fatalf("push: %v", pc.Status)
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkAppendLatencyDirect is the baseline of BenchmarkPushConfirmLatency: one 64-byte
// bbolt Append at a time, without the hub.
func BenchmarkAppendLatencyDirect(b *testing.B) {
	backend := benchBbolt(b)
	ctx := context.Background()
	if _, err := backend.Storage.CreateStream(ctx, "latency", 1); err != nil {
		b.Fatal(err)
	}
	msg := [][]byte{make([]byte, 64)}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := backend.Storage.Append(ctx, "latency", 0, msg); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkPublishToConsume measures the time from sending a push to receiving the message
// on another connection that waits in a sluice_pull_wait long poll (goal: p50 <= 5 ms).
func BenchmarkPublishToConsume(b *testing.B) {
	_, addr := hubtest.Start(b, benchBbolt(b))
	producer := hubtest.Dial(b, addr)
	consumer := hubtest.Dial(b, addr)
	ps := producer.Create("e2e")
	cs := consumer.Create("e2e")
	msg := make([]byte, 64)
	ds := make([]time.Duration, 0, b.N)
	var next uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		consumer.Send(cs.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: uint64(i), Index: next, Limit: 10, WaitMS: 10_000})
		t0 := time.Now()
		producer.Send(ps.Route, wire.ProtocolPush, wire.PushRequest{RequestID: uint64(i), Data: msg})
		pr := consumer.ExpectPull(wire.ProtocolPullWait)
		ds = append(ds, time.Since(t0))
		if len(pr.Messages) != 1 {
			b.Fatalf("pull_wait got %d messages, want 1", len(pr.Messages))
		}
		next = pr.Messages[0].Index + 1
		if pc := producer.ExpectConfirm(); pc.Status != wire.StatusOK {
			b.Fatalf("push: %v", pc.Status)
		}
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}
