package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/conformance"
)

// BenchmarkStorage is the conformance benchmark through the Store.
func BenchmarkStorage(b *testing.B) { conformance.BenchmarkStorage(b, harness(b)) }

// BenchmarkRaw measures plain franz-go on the same broker, for the ratio against the
// Store and the hub path: ProduceSync of one record (acks=all, idempotent, linger 0, no
// compression — the Store's settings) and consuming the produced records with a
// direct-partition consumer.
func BenchmarkRaw(b *testing.B) {
	k := cluster(b)
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, size := range []int{256, 1024} {
		topic := fmt.Sprintf("sluicebench.raw-%d-%d", size, time.Now().UnixNano())
		if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
			b.Fatalf("create topic: %v", err)
		}
		value := make([]byte, size)
		produced := 0
		b.Run(fmt.Sprintf("Produce/size=%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
					b.Fatalf("produce: %v", err)
				}
				produced++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(fmt.Sprintf("ProduceConcurrent/size=%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
						b.Errorf("produce: %v", err)
						return
					}
				}
			})
			produced += b.N
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(fmt.Sprintf("Consume/size=%d", size), func(b *testing.B) {
			// Consume b.N records, wrapping around the produced ones with new consumers.
			for ; produced < 1000; produced++ {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
					b.Fatalf("produce: %v", err)
				}
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			got := 0
			for got < b.N {
				c, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
					topic: {0: kgo.NewOffset().At(0)},
				}), kgo.FetchMaxWait(100*time.Millisecond))
				if err != nil {
					b.Fatal(err)
				}
				for read := 0; read < produced && got < b.N; {
					fs := c.PollFetches(ctx)
					if err := fs.Err0(); err != nil {
						c.Close()
						b.Fatalf("poll: %v", err)
					}
					n := fs.NumRecords()
					read += n
					got += n
				}
				c.Close()
			}
			b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "msgs/s")
		})
		if _, err := adm.DeleteTopic(ctx, topic); err != nil {
			b.Errorf("delete topic: %v", err)
		}
	}
}
