package pulsar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"

	sluiceclient "github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// hubBenchChunk is how many messages each path moves before the other takes its turn, so
// both see the same machine load.
const hubBenchChunk = 500

// rawWindow is how many sends the raw producer keeps in flight: the hub publisher's
// window (sluiceclient.DefaultWindow).
const rawWindow = sluiceclient.DefaultWindow

// BenchmarkHubVsRaw compares the hub path with pulsar-client-go alone on the same broker in
// the same run, alternating chunks of hubBenchChunk messages between the two:
//
//   - push: a core/client Publisher (window 256) over loopback TCP to a hub on this
//     backend, against a raw producer with batching off (as the Store's) and SendAsync with
//     256 messages in flight, each path waiting for all its confirms or receipts;
//   - pull: Conn.Pull (limit 256) through the hub, against a raw reader started at the
//     earliest message, each reading the chunk just appended (untimed) to its topic. Both
//     readers (the raw one and the Store's) prefetch up to 1000 messages, so the broker
//     may have pushed part of a chunk to either before its timed read starts.
//
// It reports both rates and the ratio hub/raw, and for push the mean messages per backend
// Append (the hub appends one batch per partition at a time).
func BenchmarkHubVsRaw(b *testing.B) {
	p := broker(b)
	ctx := context.Background()
	s, err := openStore(b, ctx, "prefix=hubbench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	h, addr := hubtest.Start(b, backendOf(s))
	cl, err := sluiceclient.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	raw, err := pulsar.NewClient(pulsar.ClientOptions{URL: p.URL, Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(raw.Close)

	for _, size := range []int{256, 1024} {
		msg := make([]byte, size)
		b.Run(fmt.Sprintf("push/size=%d", size), func(b *testing.B) {
			hubStream, rawTopic := benchTopics(b, s, "push")
			pub, err := sluiceclient.NewPublisher(ctx, cl, hubStream, sluiceclient.WithWindow(rawWindow))
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			prod := rawProducer(b, raw, rawTopic)
			defer prod.Close()
			m0 := h.Metrics()
			hubtest.Alternate(b, size, hubBenchChunk,
				func(b *testing.B, n int) time.Duration { return hubtest.PublishN(b, pub, msg, n) },
				func(b *testing.B, n int) time.Duration { return hubtest.Timed(func() { rawSend(b, prod, n, msg) }) })
			// The messages per backend Append say how much of the window each one carried.
			m := h.Metrics()
			if appends := m.Appends - m0.Appends; appends > 0 {
				b.ReportMetric(float64(m.AppendedMessages-m0.AppendedMessages)/float64(appends), "msgs/append")
			}
		})
		b.Run(fmt.Sprintf("pull/size=%d", size), func(b *testing.B) {
			hubStream, rawTopic := benchTopics(b, s, "pull")
			conn, err := cl.Open(ctx, 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.CreateStream(ctx, hubStream, 1); err != nil {
				b.Fatal(err)
			}
			prod := rawProducer(b, raw, rawTopic)
			defer prod.Close()
			r, err := raw.CreateReader(pulsar.ReaderOptions{Topic: rawTopic, StartMessageID: pulsar.EarliestMessageID()})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			// Each path reads the chunk just written (untimed) to its topic.
			hubtest.Alternate(b, size, hubBenchChunk, hubtest.AppendThenPull(s, conn, hubStream, msg),
				func(b *testing.B, n int) time.Duration {
					rawSend(b, prod, n, msg)
					return hubtest.Timed(func() { rawRead(b, r, n) })
				})
		})
	}
}

// benchTopics creates a one-partition stream for the hub path and names a topic for the
// raw path (a plain topic, created by its first producer, as a raw user would).
func benchTopics(b *testing.B, s *Store, label string) (hubStream, rawTopic string) {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	suffix := hex.EncodeToString(id)
	hubStream = "bench-" + label + "-" + suffix
	if _, err := s.CreateStream(context.Background(), hubStream, 1); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.DeleteStream(context.Background(), hubStream) })
	return hubStream, "persistent://public/default/raw-" + label + "-" + suffix
}

// rawProducer creates a producer as the Store does (batching off: one entry per message)
// with rawWindow sends in flight.
func rawProducer(b *testing.B, c pulsar.Client, topic string) pulsar.Producer {
	prod, err := c.CreateProducer(pulsar.ProducerOptions{Topic: topic, DisableBatching: true, MaxPendingMessages: rawWindow})
	if err != nil {
		b.Fatal(err)
	}
	return prod
}

// rawSend sends n messages with SendAsync (blocking while rawWindow are in flight) and
// waits for every receipt.
func rawSend(b *testing.B, prod pulsar.Producer, n int, msg []byte) {
	errs := make(chan error, n)
	for range n {
		prod.SendAsync(context.Background(), &pulsar.ProducerMessage{Payload: msg}, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
			errs <- err
		})
	}
	for range n {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// rawRead reads the next n messages with the reader.
func rawRead(b *testing.B, r pulsar.Reader, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range n {
		if _, err := r.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
