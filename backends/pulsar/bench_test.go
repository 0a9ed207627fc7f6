package pulsar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
)

// BenchmarkRaw measures pulsar-client-go alone on the same broker, as the baseline for the
// Store and hub benchmarks: a producer with batching off (as the Store uses) keeping up to
// 256 messages in flight, and a reader reading back what was produced. Compare msgs/s with
// BenchmarkConformance and the hub benchmarks of the same run.
func BenchmarkRaw(b *testing.B) {
	p := broker(b)
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: p.URL, Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for _, size := range []int{256, 1024} {
		id := make([]byte, 4)
		_, _ = rand.Read(id)
		topic := fmt.Sprintf("persistent://public/default/raw-bench-%d-%s", size, hex.EncodeToString(id))
		payload := make([]byte, size)
		var produced int
		b.Run(fmt.Sprintf("Produce/size=%d/inflight=256", size), func(b *testing.B) {
			prod, err := cl.CreateProducer(pulsar.ProducerOptions{Topic: topic, DisableBatching: true, MaxPendingMessages: 256})
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			ctx := context.Background()
			errs := make(chan error, b.N)
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				prod.SendAsync(ctx, &pulsar.ProducerMessage{Payload: payload}, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
					errs <- err
				})
			}
			for range b.N {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			produced += b.N
		})
		b.Run(fmt.Sprintf("Read/size=%d", size), func(b *testing.B) {
			if produced < b.N {
				b.Skipf("only %d messages produced", produced)
			}
			r, err := cl.CreateReader(pulsar.ReaderOptions{Topic: topic, StartMessageID: pulsar.EarliestMessageID(), ReceiverQueueSize: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := r.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkFetchLarge measures sequential Fetch of 64 KiB messages from four partitions in
// turn (four idle readers), pages of 16 messages, the case whose reader queues the Store
// sizes by message size. heap-MiB is the Go heap after the run, with the readers idle.
func BenchmarkFetchLarge(b *testing.B) {
	const size, limit, total, streams = 64 << 10, 16, 200, 4
	ctx := context.Background()
	s, err := openStore(b, ctx, "prefix=fetchlarge-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	names := make([]string, streams)
	batch := make([][]byte, limit)
	for i := range batch {
		batch[i] = make([]byte, size)
	}
	for i := range names {
		names[i] = fmt.Sprintf("s%d-%s", i, hex.EncodeToString(id))
		if _, err := s.CreateStream(ctx, names[i], 1); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.DeleteStream(context.Background(), names[i]) })
		for range total / limit {
			if _, err := s.Append(ctx, names[i], 0, batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	from := make([]uint64, streams)
	msgs := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := i % streams
		ms, err := s.Fetch(ctx, names[k], 0, from[k], limit)
		if err == nil && len(ms) == 0 {
			ms, err = s.Fetch(ctx, names[k], 0, 0, limit) // wrap around to the start
		}
		if err != nil || len(ms) == 0 {
			b.Fatalf("Fetch: %d messages, %v", len(ms), err)
		}
		msgs += len(ms)
		from[k] = ms[len(ms)-1].Index + 1
	}
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(msgs)/sec, "msgs/s")
		b.ReportMetric(float64(msgs)*size/1e6/sec, "MB/s")
	}
	b.StopTimer()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "heap-MiB")
}
