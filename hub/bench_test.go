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
	"github.com/sluicehq/sluice/core/client"
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

// BenchmarkPushThroughput compares pipelined pushes through the hub with direct bbolt
// Append calls, benchWindow messages in flight on both paths, for the same message size.
// The hub path is what a device gets: a client.Publisher (window benchWindow) over
// loopback TCP to an in-process hub on bbolt, one Publish call per message. It runs in two
// modes: batch=1, where every message is its own Ockam stream_push request (what an
// ordinary Ockam client sends), and batch=64, the default, where the publisher puts the
// messages queued in its window into sluice_push_batch requests. The direct path is
// benchWindow goroutines calling Append with one message each, which bbolt group-commits.
// The two paths alternate in chunks of benchChunk messages within one benchmark run
// (hubtest.Alternate); it reports each path's msgs/s and the ratio hub/raw, raw being the
// direct path.
func BenchmarkPushThroughput(b *testing.B) {
	for _, size := range []int{64, 1024} {
		for _, batch := range []int{1, client.DefaultMaxBatch} {
			b.Run(fmt.Sprintf("size=%d/batch=%d", size, batch), func(b *testing.B) {
				direct := newDirectPusher(b, size)
				pub := newHubPublisher(b, batch)
				msg := make([]byte, size)
				hubtest.Alternate(b, size, benchChunk, func(b *testing.B, n int) time.Duration {
					return hubtest.PublishN(b, pub, msg, n)
				}, direct.push)
			})
		}
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

// newHubPublisher starts a hub on its own bbolt file and opens a publisher to it (window
// benchWindow) that puts up to maxBatch messages in one request.
func newHubPublisher(b *testing.B, maxBatch int) *client.Publisher {
	_, addr := hubtest.Start(b, benchBbolt(b))
	c, err := client.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	pub, err := client.NewPublisher(context.Background(), c, "bench",
		client.WithWindow(benchWindow), client.WithMaxBatch(maxBatch))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close() })
	return pub
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
