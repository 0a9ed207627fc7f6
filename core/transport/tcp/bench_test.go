package tcp

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
)

// BenchmarkRoundTrip measures one request/reply over loopback TCP between two nodes.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			server, client := newBenchSide(b), newBenchSide(b)
			addr := server.listen(b)
			msg := wire.TransportMessage{
				OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("echo")},
				ReturnRoute: wire.Route{wire.Local("inbox")},
				Payload:     make([]byte, size),
			}
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := client.node.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				<-client.in
			}
		})
	}
}

// BenchmarkPipelined measures one-way throughput: many messages in flight, one receiver.
func BenchmarkPipelined(b *testing.B) {
	server, client := newBenchSide(b), newBenchSide(b)
	addr := server.listen(b)
	msg := wire.TransportMessage{
		OnwardRoute: wire.Route{wire.TCP(addr), wire.Local("inbox")},
		Payload:     make([]byte, 256),
	}
	ctx := context.Background()
	b.SetBytes(256)
	b.ReportAllocs()
	done := make(chan struct{})
	n := b.N
	go func() {
		for range n {
			<-server.in
		}
		close(done)
	}()
	b.ResetTimer()
	for range n {
		if err := client.node.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}
