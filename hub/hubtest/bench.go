package hubtest

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// Alternate compares two paths that move the same messages — through the hub, and directly
// with the broker's own client — in one benchmark run: they take turns in chunks of chunk
// messages until b.N, so a change in the machine's load affects both alike, and each pair of
// turns runs in the opposite order of the previous one, so that neither path always follows
// the other (and inherits the broker's after-work of the other's burst). Each path handles
// n messages and returns the time that counts (set-up it does untimed is left out). Alternate
// reports hub-msgs/s, raw-msgs/s and the ratio hub/raw; size is the message size for b.SetBytes.
func Alternate(b *testing.B, size, chunk int, viaHub, raw func(b *testing.B, n int) time.Duration) {
	b.Helper()
	b.SetBytes(int64(size))
	var tHub, tRaw time.Duration
	b.ResetTimer()
	for pair := 0; pair*chunk < b.N; pair++ {
		n := min(chunk, b.N-pair*chunk)
		if pair%2 == 0 {
			tRaw += raw(b, n)
			tHub += viaHub(b, n)
		} else {
			tHub += viaHub(b, n)
			tRaw += raw(b, n)
		}
	}
	b.StopTimer()
	rHub := float64(b.N) / tHub.Seconds()
	rRaw := float64(b.N) / tRaw.Seconds()
	b.ReportMetric(rHub, "hub-msgs/s")
	b.ReportMetric(rRaw, "raw-msgs/s")
	b.ReportMetric(rHub/rRaw, "hub/raw")
}

// PublishN publishes n copies of msg with p, waits until every one is confirmed and returns
// the time it took. It fails b if a message is not confirmed.
func PublishN(b *testing.B, p *client.Publisher, msg []byte, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	before := p.Stats().Confirmed
	start := time.Now()
	for range n {
		if _, err := p.Publish(ctx, msg); err != nil {
			b.Fatalf("Publish: %v", err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatalf("Flush: %v", err)
	}
	elapsed := time.Since(start)
	if got := p.Stats().Confirmed - before; got != uint64(n) {
		b.Fatalf("%d of %d messages confirmed", got, n)
	}
	return elapsed
}

// PullN pulls n messages of partition 0 of stream through conn ([client.Conn.Pull] with the
// default limit, one request in flight, as a consumer's), starting at *from and advancing it,
// and returns the time it took. It fails b if the stream ends first or an index is out of order.
func PullN(b *testing.B, conn *client.Conn, stream string, from *uint64, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	for got := 0; got < n; {
		page, err := conn.Pull(ctx, stream, 0, *from, min(client.DefaultPullLimit, n-got), 0)
		if err != nil {
			b.Fatalf("hub pull from %d: %v", *from, err)
		}
		if len(page) == 0 {
			b.Fatalf("hub pull from %d: empty after %d of %d", *from, got, n)
		}
		for _, m := range page {
			if m.Index < *from {
				b.Fatalf("hub pull from %d returned index %d", *from, m.Index)
			}
			*from = m.Index + 1
		}
		got += len(page)
	}
	return time.Since(start)
}

// AppendThenPull returns the hub path of a pull comparison for [Alternate]: each turn
// appends n copies of msg to partition 0 of stream with s (untimed), then pulls them
// through conn with [PullN] (timed), so it reads the chunk it just wrote.
func AppendThenPull(s core.Storage, conn *client.Conn, stream string, msg []byte) func(b *testing.B, n int) time.Duration {
	var from uint64
	var batch [][]byte
	return func(b *testing.B, n int) time.Duration {
		b.Helper()
		for len(batch) < n {
			batch = append(batch, msg)
		}
		if _, err := s.Append(context.Background(), stream, 0, batch[:n]); err != nil {
			b.Fatalf("append to %s: %v", stream, err)
		}
		return PullN(b, conn, stream, &from, n)
	}
}

// Timed returns how long f took: for the untimed-set-up-then-measure paths of [Alternate].
func Timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
