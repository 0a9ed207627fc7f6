package native

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/core"
)

// KafkaPollWait is how long Kafka.Fetch waits for records before it checks whether it is
// caught up.
const KafkaPollWait = 200 * time.Millisecond

// kafkaFetchMaxWait is how long the broker may hold a fetch with no new records. With 200 ms
// the publish-to-consume p50 measured on a single local broker was about 25 ms, with 10 ms
// about 3 ms, so the native reader uses the short wait.
const kafkaFetchMaxWait = 10 * time.Millisecond

// Kafka is a Kafka cluster used directly with franz-go: a stream is a topic of one
// partition (replication factor 1), Append is one ProduceSync with the producer settings of
// the Sluice Kafka store (acks=all, no linger, no compression: franz-go's default snappy
// would compress what Sluice stores as incompressible ciphertext), and Fetch reads
// with a direct partition consumer (fetch max wait 10 ms) that is kept per stream while
// reads are sequential, so sequential Fetches are served from franz-go's fetch buffer, as a
// Kafka consumer's are.
type Kafka struct {
	brokers []string
	prod    *kgo.Client
	admin   *kadm.Client

	mu        sync.Mutex
	consumers map[string]*kafkaConsumer
}

type kafkaConsumer struct {
	cl   *kgo.Client
	next uint64 // the offset the consumer will return next
}

var (
	_ core.Storage       = (*Kafka)(nil)
	_ core.StreamDeleter = (*Kafka)(nil)
)

// OpenKafka connects to the cluster at brokers ("host:port").
func OpenKafka(brokers []string) (*Kafka, error) {
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return nil, fmt.Errorf("native kafka: %w", err)
	}
	return &Kafka{brokers: brokers, prod: prod, admin: kadm.NewClient(prod), consumers: map[string]*kafkaConsumer{}}, nil
}

// CreateStream creates a topic of one partition.
func (k *Kafka) CreateStream(ctx context.Context, stream string, _ int) (int, error) {
	if _, err := k.admin.CreateTopic(ctx, 1, 1, nil, stream); err != nil {
		return 0, fmt.Errorf("native kafka: create topic %q: %w", stream, err)
	}
	return 1, nil
}

// Append produces msgs to partition 0 and waits for every acknowledgement (acks=all).
func (k *Kafka) Append(ctx context.Context, stream string, _ int, msgs [][]byte) ([]uint64, error) {
	rs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		rs[i] = &kgo.Record{Topic: stream, Partition: 0, Value: m}
	}
	res := k.prod.ProduceSync(ctx, rs...)
	if err := res.FirstErr(); err != nil {
		return nil, fmt.Errorf("native kafka: produce to %q: %w", stream, err)
	}
	idx := make([]uint64, len(res))
	for i, r := range res {
		idx[i] = uint64(r.Record.Offset)
	}
	return idx, nil
}

// Fetch returns up to limit records from offset from. It polls for KafkaPollWait at a
// time; when nothing arrived it asks the partition's end offset and returns no records only
// when from is at the end (caught up), so a slow first fetch is not taken for an empty stream.
func (k *Kafka) Fetch(ctx context.Context, stream string, _ int, from uint64, limit int) ([]core.Message, error) {
	c, err := k.consumer(stream, from)
	if err != nil {
		return nil, err
	}
	for {
		out, err := k.poll(ctx, c, stream, limit)
		if err != nil || len(out) > 0 {
			return out, err
		}
		ends, err := k.admin.ListEndOffsets(ctx, stream)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("native kafka: end offset of %q: %w", stream, err)
		}
		if end, ok := ends.Lookup(stream, 0); !ok || end.Offset <= int64(from) {
			return nil, nil
		}
	}
}

// poll returns what c's fetch buffer holds or receives within KafkaPollWait.
func (k *Kafka) poll(ctx context.Context, c *kafkaConsumer, stream string, limit int) ([]core.Message, error) {
	pctx, cancel := context.WithTimeout(ctx, KafkaPollWait)
	defer cancel()
	fs := c.cl.PollRecords(pctx, limit)
	for _, fe := range fs.Errors() {
		if errors.Is(fe.Err, context.DeadlineExceeded) && ctx.Err() == nil {
			continue // nothing arrived within the poll wait
		}
		return nil, fmt.Errorf("native kafka: fetch %q: %w", stream, fe.Err)
	}
	var out []core.Message
	for _, r := range fs.Records() {
		out = append(out, core.Message{Index: uint64(r.Offset), Data: r.Value})
	}
	if len(out) > 0 {
		k.mu.Lock()
		c.next = out[len(out)-1].Index + 1
		k.mu.Unlock()
	}
	return out, nil
}

// consumer returns the stream's consumer positioned at from, replacing one that is elsewhere.
func (k *Kafka) consumer(stream string, from uint64) (*kafkaConsumer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c := k.consumers[stream]; c != nil {
		if c.next == from {
			return c, nil
		}
		c.cl.Close()
		delete(k.consumers, stream)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{stream: {0: kgo.NewOffset().At(int64(from))}}),
		kgo.FetchMaxWait(kafkaFetchMaxWait))
	if err != nil {
		return nil, fmt.Errorf("native kafka: consumer: %w", err)
	}
	c := &kafkaConsumer{cl: cl, next: from}
	k.consumers[stream] = c
	return c, nil
}

// DeleteStream deletes the topic (and its consumer).
func (k *Kafka) DeleteStream(ctx context.Context, stream string) error {
	k.mu.Lock()
	if c := k.consumers[stream]; c != nil {
		c.cl.Close()
		delete(k.consumers, stream)
	}
	k.mu.Unlock()
	res, err := k.admin.DeleteTopics(ctx, stream)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		return fmt.Errorf("native kafka: delete topic %q: %w", stream, err)
	}
	return nil
}

// Capabilities names the client.
func (k *Kafka) Capabilities() core.Capabilities {
	return core.Capabilities{Name: "kafka-native", Persistent: true, MaxMessageSize: 1 << 20, MaxPartitions: 1}
}

// Close closes the consumers and the producer.
func (k *Kafka) Close() error {
	k.mu.Lock()
	for s, c := range k.consumers {
		c.cl.Close()
		delete(k.consumers, s)
	}
	k.mu.Unlock()
	k.prod.Close()
	return nil
}
