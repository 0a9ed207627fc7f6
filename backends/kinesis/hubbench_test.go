package kinesis_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/backends/kinesis"
	"github.com/sluicehq/sluice/core"
	sluiceclient "github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// benchChunk is how many messages each path moves before the other takes its turn, so both
// see the same machine load.
const benchChunk = 500

// rawBatch is how many records the raw producer puts per PutRecords call: a typical
// batching producer (the hub's publisher keeps a window of 256 pushes in flight).
const rawBatch = 100

// BenchmarkHubVsRaw compares the hub path (core/client publisher and pulls over loopback TCP
// through a hub on the kinesis backend) with the raw SDK (PutRecords of rawBatch one-message
// records; GetRecords) on the same kinesis-mock in the same run, and reports both rates and
// the ratio hub/raw.
func BenchmarkHubVsRaw(b *testing.B) {
	c := client(b, nil)
	ctx := context.Background()
	s := openStore(b, c, nil)
	idx, err := core.Open(ctx, "bbolt://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	_, addr := hubtest.Start(b, &core.Backend{Storage: s, Index: idx.Index})
	cl, err := sluiceclient.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })

	for _, size := range []int{256, 1024} {
		msg := make([]byte, size)
		b.Run(fmt.Sprintf("push/size=%d", size), func(b *testing.B) {
			hubStream, raw := benchStreams(b, s, c, "push")
			pub, err := sluiceclient.NewPublisher(ctx, cl, hubStream)
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			hubtest.Alternate(b, size, benchChunk,
				func(b *testing.B, n int) time.Duration { return hubtest.PublishN(b, pub, msg, n) },
				func(b *testing.B, n int) time.Duration { return hubtest.Timed(func() { raw.put(b, n, msg) }) })
		})
		b.Run(fmt.Sprintf("pull/size=%d", size), func(b *testing.B) {
			hubStream, raw := benchStreams(b, s, c, "pull")
			conn, err := cl.Open(ctx, 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.CreateStream(ctx, hubStream, 1); err != nil {
				b.Fatal(err)
			}
			// Each path reads the chunk just written (untimed) to its stream.
			hubtest.Alternate(b, size, benchChunk, hubtest.AppendThenPull(s, conn, hubStream, msg),
				func(b *testing.B, n int) time.Duration {
					raw.put(b, n, msg)
					return hubtest.Timed(func() { raw.get(b, n) })
				})
		})
	}
}

// rawStream drives one Kinesis stream with the SDK alone.
type rawStream struct {
	c       *awskinesis.Client
	name    string
	shard   string
	hashKey string
	iter    *string
}

// benchStreams creates a one-partition Sluice stream for the hub path and a one-shard Kinesis
// stream for the raw path.
func benchStreams(b *testing.B, s *kinesis.Store, c *awskinesis.Client, label string) (string, *rawStream) {
	ctx := context.Background()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	hubStream := "bench-" + label + "-" + suffix
	if _, err := s.CreateStream(ctx, hubStream, 1); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.DeleteStream(context.Background(), hubStream) })
	r := &rawStream{c: c, name: "raw-" + label + "-" + suffix}
	if _, err := c.CreateStream(ctx, &awskinesis.CreateStreamInput{StreamName: aws.String(r.name), ShardCount: aws.Int32(1)}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.DeleteStream(context.Background(), &awskinesis.DeleteStreamInput{StreamName: aws.String(r.name)})
	})
	for {
		out, err := c.ListShards(ctx, &awskinesis.ListShardsInput{StreamName: aws.String(r.name)})
		if err == nil && len(out.Shards) == 1 {
			r.shard, r.hashKey = aws.ToString(out.Shards[0].ShardId), aws.ToString(out.Shards[0].HashKeyRange.StartingHashKey)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return hubStream, r
}

// put writes n one-message records with PutRecords, rawBatch per call, failing on any
// failed record (none are expected on kinesis-mock).
func (r *rawStream) put(b *testing.B, n int, msg []byte) {
	ctx := context.Background()
	for n > 0 {
		k := min(rawBatch, n)
		entries := make([]types.PutRecordsRequestEntry, k)
		for i := range entries {
			entries[i] = types.PutRecordsRequestEntry{Data: msg, PartitionKey: aws.String("p0"), ExplicitHashKey: aws.String(r.hashKey)}
		}
		out, err := r.c.PutRecords(ctx, &awskinesis.PutRecordsInput{StreamName: aws.String(r.name), Records: entries})
		if err != nil {
			b.Fatal(err)
		}
		if aws.ToInt32(out.FailedRecordCount) > 0 {
			b.Fatalf("PutRecords: %d records failed", aws.ToInt32(out.FailedRecordCount))
		}
		n -= k
	}
}

// get reads n records with GetRecords, continuing from where the last call stopped.
func (r *rawStream) get(b *testing.B, n int) {
	ctx := context.Background()
	if r.iter == nil {
		out, err := r.c.GetShardIterator(ctx, &awskinesis.GetShardIteratorInput{StreamName: aws.String(r.name), ShardId: aws.String(r.shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			b.Fatal(err)
		}
		r.iter = out.ShardIterator
	}
	for got := 0; got < n; {
		out, err := r.c.GetRecords(ctx, &awskinesis.GetRecordsInput{ShardIterator: r.iter, Limit: aws.Int32(int32(min(1000, n-got)))})
		if err != nil {
			b.Fatal(err)
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			b.Fatalf("raw GetRecords: caught up after %d of %d", got, n)
		}
		got += len(out.Records)
		r.iter = out.NextShardIterator
	}
}
