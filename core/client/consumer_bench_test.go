package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// BenchmarkConsume measures consumer throughput through an in-process hub on bbolt over
// loopback TCP: b.N messages already in the stream, read from index 0 by a consumer that
// saves its position on the hub's index service after every page. Every op is one message
// handled; the time runs from Run until the handler has seen the last one.
func BenchmarkConsume(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"1KiB", 1024}} {
		b.Run(size.name, func(b *testing.B) {
			h := startBboltHub(b)
			c := dial(b, h.Addr)
			preload(b, c, "bench", b.N, size.n)
			var handled atomic.Int64
			done := make(chan struct{})
			cons, err := client.NewConsumer(c, "bench", func(_ context.Context, m core.Message) error {
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}, client.WithClientID("bench"))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size.n))
			b.ResetTimer()
			stop := runConsumer(b, cons)
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("handled %d of %d messages", handled.Load(), b.N)
			}
			b.StopTimer()
			if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			st := cons.Stats()
			if st.PullErrors != 0 || st.Reconnects != 0 {
				b.Logf("pull errors %d, reconnects %d", st.PullErrors, st.Reconnects)
			}
		})
	}
}

// preload appends n messages of size bytes to stream (partition 0) with a plain Conn.
func preload(b *testing.B, c *client.Client, stream string, n, size int) {
	b.Helper()
	ctx := b.Context()
	conn, err := c.Open(ctx, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.CreateStream(ctx, stream, 1); err != nil {
		b.Fatal(err)
	}
	batch := make([][]byte, 0, 512)
	for i := range n {
		batch = append(batch, msg(0, uint32(i), size))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := conn.Push(ctx, stream, 0, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
