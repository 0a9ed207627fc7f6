package conformance

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// BenchmarkStorage measures the backend h opens: Append of 64 B and 1 KiB messages in
// batches of 1 and 64, concurrent single-message appenders, and Fetch with limit 100. It
// reports MB/s (through b.SetBytes for Append; for Fetch, which may return fewer than limit
// messages, from the bytes it read) and msgs/s. Call it from the backend's own benchmark:
//
//	func BenchmarkStorage(b *testing.B) { conformance.BenchmarkStorage(b, harness(b)) }
//
// [Harness].Timeout bounds it as it bounds a subtest, so that a hung broker fails the
// benchmark instead of hanging it: Open gets a context that expires after Timeout; each
// run of a sub-benchmark (the testing package may run one several times to size b.N) gets
// a context of its own, used by every call it makes, that expires Timeout after the run
// starts; so does the cleanup, which deletes the benchmark's streams (when the backend
// implements [core.StreamDeleter]) and closes the backend, waiting for Close only until
// then. Keep -benchtime well below Timeout (default [DefaultTimeout]).
func BenchmarkStorage(b *testing.B, h Harness) {
	if h.Open == nil {
		b.Fatal("conformance: Harness.Open is nil")
	}
	if err := h.checkPrefix(); err != nil {
		b.Fatal(err)
	}
	timeout := h.timeout()
	// runCtx returns a context that expires after timeout, cancelled when b ends.
	runCtx := func(b *testing.B) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		b.Cleanup(cancel)
		return ctx
	}
	be, err := h.Open(runCtx(b))
	if err != nil {
		b.Fatalf("Harness.Open: %v", err)
	}
	if be == nil || be.Storage == nil {
		if be != nil {
			_ = closeWithin(runCtx(b), timeout, "Backend.Close", be.Close)
		}
		b.Fatalf("Harness.Open returned a backend without Storage")
	}
	s := be.Storage
	prefix := h.prefix() + randomHex(4) + "-bench-"
	var streams []string
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if d, ok := s.(core.StreamDeleter); ok {
			for _, n := range streams {
				_ = d.DeleteStream(ctx, n) // best effort
			}
		}
		if err := closeWithin(ctx, timeout, "Backend.Close", be.Close); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	create := func(ctx context.Context, b *testing.B, label string) string {
		n := fmt.Sprintf("%s%s-%d", prefix, label, len(streams))
		streams = append(streams, n)
		if _, err := s.CreateStream(ctx, n, 1); err != nil {
			b.Fatalf("CreateStream(%q): %v", n, err)
		}
		return n
	}
	maxSize := s.Capabilities().MaxMessageSize

	for _, size := range []int{64, 1024} {
		if size > maxSize {
			continue
		}
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("Append/size=%d/batch=%d", size, batch), func(b *testing.B) {
				ctx := runCtx(b)
				n := create(ctx, b, "append")
				msgs := make([][]byte, batch)
				for i := range msgs {
					msgs[i] = make([]byte, size)
				}
				b.SetBytes(int64(size * batch))
				ops := 0
				for b.Loop() {
					if _, err := s.Append(ctx, n, 0, msgs); err != nil {
						b.Fatalf("Append: %v", err)
					}
					ops++
				}
				reportRate(b, ops*batch)
			})
		}
		b.Run(fmt.Sprintf("AppendConcurrent/size=%d", size), func(b *testing.B) {
			ctx := runCtx(b)
			n := create(ctx, b, "appendpar")
			b.SetBytes(int64(size))
			b.SetParallelism(4) // 4 x GOMAXPROCS appenders: latency-bound brokers need many
			b.RunParallel(func(pb *testing.PB) {
				msg := [][]byte{make([]byte, size)}
				for pb.Next() {
					if _, err := s.Append(ctx, n, 0, msg); err != nil {
						b.Errorf("Append: %v", err)
						return
					}
				}
			})
			reportRate(b, b.N)
		})
	}

	b.Run("Fetch/size=1024/limit=100", func(b *testing.B) {
		const size, limit, total = 1024, 100, 1000
		if size > maxSize {
			b.Skipf("MaxMessageSize %d < %d", maxSize, size)
		}
		ctx := runCtx(b)
		n := create(ctx, b, "fetch")
		batch := make([][]byte, limit)
		for i := range batch {
			batch[i] = make([]byte, size)
		}
		for i := 0; i < total/limit; i++ {
			if _, err := s.Append(ctx, n, 0, batch); err != nil {
				b.Fatalf("Append: %v", err)
			}
		}
		// No b.SetBytes: a Fetch may return fewer than limit messages (Pulsar's does), so the
		// bytes per Fetch are counted, not assumed.
		from := uint64(0)
		msgs, bytes := 0, 0
		b.ResetTimer()
		for b.Loop() {
			ms, err := s.Fetch(ctx, n, 0, from, limit)
			if err == nil && len(ms) == 0 {
				ms, err = s.Fetch(ctx, n, 0, 0, limit) // wrap around to the start
			}
			if err != nil {
				b.Fatalf("Fetch: %v", err)
			}
			if len(ms) == 0 {
				b.Fatalf("Fetch(from=0) returned nothing after %d messages were appended", total)
			}
			msgs += len(ms)
			for _, m := range ms {
				bytes += len(m.Data)
			}
			from = ms[len(ms)-1].Index + 1
		}
		reportRate(b, msgs)
		if s := b.Elapsed().Seconds(); s > 0 {
			b.ReportMetric(float64(bytes)/1e6/s, "MB/s")
		}
	})
}

// reportRate reports msgs/s over the benchmark's elapsed time.
func reportRate(b *testing.B, msgs int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(msgs)/s, "msgs/s")
	}
}
