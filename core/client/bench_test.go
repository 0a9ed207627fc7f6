package client_test

import (
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/core/client"
)

// BenchmarkPublish measures publisher throughput (publish until confirmed) through an
// in-process hub on bbolt over loopback TCP. Every op is one message; ns/op is the inverse
// of the throughput with the default window and batching.
func BenchmarkPublish(b *testing.B) { benchmarkPublish(b, false) }

// BenchmarkPublishOutbox is BenchmarkPublish with an on-device bbolt outbox: every Publish
// is durable on the device before it returns (one publishing goroutine).
func BenchmarkPublishOutbox(b *testing.B) { benchmarkPublish(b, true) }

func benchmarkPublish(b *testing.B, outbox bool) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"1KiB", 1024}} {
		b.Run(size.name, func(b *testing.B) {
			h := startBboltHub(b)
			c := dial(b, h.Addr)
			var opts []client.PublisherOption
			if outbox {
				opts = append(opts, client.WithOutbox(filepath.Join(b.TempDir(), "outbox.db")))
			}
			p := newPublisher(b, c, "bench", opts...)
			data := make([]byte, size.n)
			ctx := b.Context()
			if _, err := p.PublishSync(ctx, data); err != nil { // connect outside the timing
				b.Fatal(err)
			}
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := p.Publish(ctx, data); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			st := p.Stats()
			if st.Resent != 0 {
				b.Logf("resent %d messages", st.Resent)
			}
		})
	}
}
