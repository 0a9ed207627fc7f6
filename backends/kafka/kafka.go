package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/core"
)

// Defaults for [Options].
const (
	// DefaultPrefix starts every topic and consumer group name this package uses.
	DefaultPrefix = "sluice."
	// DefaultMaxMessageSize fits one message, with its record and batch headers, in
	// Kafka's default max.message.bytes (1048588) and franz-go's default
	// ProducerBatchMaxBytes (1000012).
	DefaultMaxMessageSize = 999_000
	// DefaultMaxPartitions is the most partitions CreateStream accepts by default.
	DefaultMaxPartitions = core.MaxPartitions
	// DefaultFetchMaxBytes bounds the bytes one Fetch asks the broker for. Kafka still
	// returns a whole record batch larger than this, so it never blocks progress.
	DefaultFetchMaxBytes = 1 << 20
	// DefaultCloseTimeout is how long Close waits for in-flight calls before cancelling them.
	DefaultCloseTimeout = 10 * time.Second
)

// Options configure a [Store]. The zero value (or nil) means the defaults.
type Options struct {
	// Prefix starts every topic name (Prefix + stream) and consumer group id
	// (Prefix + client_id). Default [DefaultPrefix].
	Prefix string
	// ReplicationFactor of new topics; 0 means the broker's default.replication.factor.
	ReplicationFactor int16
	// TopicConfig is applied to new topics (for example "retention.ms": "-1").
	TopicConfig map[string]string
	// MaxMessageSize is the largest message Append accepts. Raise it only together with
	// the topic's max.message.bytes and the client's ProducerBatchMaxBytes. Default
	// [DefaultMaxMessageSize].
	MaxMessageSize int
	// MaxPartitions is the most partitions CreateStream accepts (at most
	// core.MaxPartitions). Default [DefaultMaxPartitions].
	MaxPartitions int
	// FetchMaxBytes bounds the bytes one Fetch requests. Default [DefaultFetchMaxBytes].
	FetchMaxBytes int32
	// CloseTimeout bounds how long Close waits for in-flight calls before it cancels them.
	// Default [DefaultCloseTimeout].
	CloseTimeout time.Duration
}

func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Prefix == "" {
		r.Prefix = DefaultPrefix
	}
	if err := core.ValidateStreamName(r.Prefix + "x"); err != nil {
		return r, fmt.Errorf("kafka: %w: prefix %q: %w", core.ErrInvalidOption, r.Prefix, err)
	}
	if len(r.Prefix)+core.MaxStreamNameLen > 249 {
		return r, fmt.Errorf("kafka: %w: prefix %q is too long: Kafka topic names have at most 249 characters", core.ErrInvalidOption, r.Prefix)
	}
	switch {
	case r.ReplicationFactor == 0:
		r.ReplicationFactor = -1 // broker default (KIP-464)
	case r.ReplicationFactor < 0:
		return r, fmt.Errorf("kafka: %w: replication factor %d", core.ErrInvalidOption, r.ReplicationFactor)
	}
	if r.MaxMessageSize == 0 {
		r.MaxMessageSize = DefaultMaxMessageSize
	}
	if r.MaxMessageSize < 0 {
		return r, fmt.Errorf("kafka: %w: max message size %d", core.ErrInvalidOption, r.MaxMessageSize)
	}
	if r.MaxPartitions == 0 {
		r.MaxPartitions = DefaultMaxPartitions
	}
	if r.MaxPartitions < 0 || r.MaxPartitions > core.MaxPartitions {
		return r, fmt.Errorf("kafka: %w: max partitions %d is outside [1, %d]", core.ErrInvalidOption, r.MaxPartitions, core.MaxPartitions)
	}
	if r.FetchMaxBytes == 0 {
		r.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if r.FetchMaxBytes < 0 {
		return r, fmt.Errorf("kafka: %w: fetch max bytes %d", core.ErrInvalidOption, r.FetchMaxBytes)
	}
	if r.CloseTimeout <= 0 {
		r.CloseTimeout = DefaultCloseTimeout
	}
	return r, nil
}

// Store keeps streams in Kafka topics and consumer indexes in Kafka committed offsets. It
// implements [core.Storage], [core.IndexStorage], [core.StreamDeleter],
// [core.PartitionCounter] and [core.AsyncAppender], and is safe for concurrent use.
type Store struct {
	cl   *kgo.Client
	adm  *kadm.Client
	own  bool // cl was built by Dial: Close closes it
	opts Options
	dec  kgo.Decompressor

	metaMu sync.RWMutex
	meta   map[string]*topicMeta // by topic; positive entries only

	keyLocks [64]chan struct{} // SaveIndex serialization, by key hash

	ahead readAhead // messages fetched past a Fetch's limit, for the next Fetch

	purges atomic.Uint64 // topics purged from the producer so far (see Store.purge)

	calls core.Calls // cancelled by Close after CloseTimeout
}

var (
	_ core.Storage          = (*Store)(nil)
	_ core.IndexStorage     = (*Store)(nil)
	_ core.StreamDeleter    = (*Store)(nil)
	_ core.PartitionCounter = (*Store)(nil)
	_ core.AsyncAppender    = (*Store)(nil)
)

// topicMeta is what Append and Fetch need to know about a topic.
type topicMeta struct {
	id      [16]byte
	leaders []int32 // leader broker id per partition
}

// ClientOpts returns the franz-go options a client needs for a Store: acks from all
// in-sync replicas (with idempotent production, the franz-go default), the manual
// partitioner (every record names its partition), no linger, no compression (Sluice
// payloads are encrypted and do not compress) and no automatic topic creation. [Dial] uses
// them; pass them to kgo.NewClient when building a client for [New] yourself.
func ClientOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	}
}

// Dial connects to the Kafka cluster at seeds ("host:port") and returns a Store that owns
// its client: Close closes it. extra options are applied after [ClientOpts] (for example
// kgo.SASL, kgo.DialTLSConfig, kgo.ClientID). Dial checks that a broker answers; an
// unreachable cluster returns an error matching [core.ErrUnavailable].
func Dial(ctx context.Context, seeds []string, opts *Options, extra ...kgo.Opt) (*Store, error) {
	if len(seeds) == 0 {
		return nil, fmt.Errorf("kafka: %w: no seed brokers", core.ErrInvalidOption)
	}
	kopts := append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, ClientOpts()...)
	cl, err := kgo.NewClient(append(kopts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w: %w", core.ErrInvalidOption, err)
	}
	if err := checkClient(cl); err != nil { // extra may have changed what ClientOpts set
		cl.Close()
		return nil, err
	}
	s, err := newStore(cl, true, opts)
	if err != nil {
		cl.Close()
		return nil, err
	}
	if err := s.ping(ctx); err != nil {
		s.Close()
		if errors.Is(err, core.ErrUnavailable) {
			err = fmt.Errorf("%w (is Kafka running at %s?)", err, strings.Join(seeds, ","))
		}
		return nil, err
	}
	return s, nil
}

// New returns a Store on the caller's client, which Close does not close. The client must
// use the manual partitioner, acks from all in-sync replicas and idempotent production
// (see [ClientOpts]); otherwise New returns an error matching [core.ErrInvalidOption]. New
// does no I/O.
func New(ctx context.Context, cl *kgo.Client, opts *Options) (*Store, error) {
	if cl == nil {
		return nil, fmt.Errorf("kafka: %w: nil client", core.ErrInvalidOption)
	}
	if err := checkClient(cl); err != nil {
		return nil, err
	}
	return newStore(cl, false, opts)
}

// checkClient refuses a client whose settings break what a Store promises: every record
// names its partition, is acknowledged by all in-sync replicas, and is written once.
func checkClient(cl *kgo.Client) error {
	if p := cl.OptValue(kgo.RecordPartitioner); fmt.Sprintf("%T", p) != fmt.Sprintf("%T", kgo.ManualPartitioner()) {
		return fmt.Errorf("kafka: %w: the client's partitioner is %T; build it with kgo.RecordPartitioner(kgo.ManualPartitioner()) (see ClientOpts)", core.ErrInvalidOption, p)
	}
	if a, _ := cl.OptValue(kgo.RequiredAcks).(kgo.Acks); a != kgo.AllISRAcks() {
		return fmt.Errorf("kafka: %w: the client does not require acks from all in-sync replicas; build it with kgo.RequiredAcks(kgo.AllISRAcks()) (see ClientOpts)", core.ErrInvalidOption)
	}
	if off, _ := cl.OptValue(kgo.DisableIdempotentWrite).(bool); off {
		return fmt.Errorf("kafka: %w: the client disables idempotent production, whose retries can write a message twice; build it without kgo.DisableIdempotentWrite (see ClientOpts)", core.ErrInvalidOption)
	}
	return nil
}

func newStore(cl *kgo.Client, own bool, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		cl:   cl,
		adm:  kadm.NewClient(cl),
		own:  own,
		opts: o,
		dec:  kgo.DefaultDecompressor(),
		meta: map[string]*topicMeta{},
	}
	for i := range s.keyLocks {
		s.keyLocks[i] = make(chan struct{}, 1)
	}
	return s, nil
}

// Client returns the franz-go client the Store uses.
func (s *Store) Client() *kgo.Client { return s.cl }

// Topic returns the Kafka topic that holds stream.
func (s *Store) Topic(stream string) string { return s.opts.Prefix + stream }

// Capabilities reports Kafka's guarantees: persistent, indexes are offsets (not dense:
// transaction markers and compaction leave gaps), committed offsets as native index storage.
func (s *Store) Capabilities() core.Capabilities {
	return core.Capabilities{
		Name:               "kafka",
		DenseIndex:         false,
		Persistent:         true,
		MaxMessageSize:     s.opts.MaxMessageSize,
		MaxPartitions:      s.opts.MaxPartitions,
		NativeIndexStorage: true,
	}
}

// begin registers a call (see [core.Calls.Begin]): it fails with ErrClosed after Close and
// with ctx's error if ctx is done, naming op and stream. The returned context is also
// cancelled (cause ErrClosed) when Close gives up waiting; end must be called when the call
// returns.
func (s *Store) begin(ctx context.Context, op, stream string) (context.Context, func(), error) {
	cctx, end, err := s.calls.Begin(ctx)
	if err != nil {
		if stream != "" {
			return nil, nil, fmt.Errorf("kafka: %s %q: %w", op, stream, err)
		}
		return nil, nil, fmt.Errorf("kafka: %s: %w", op, err)
	}
	return cctx, end, nil
}

// CreateStream creates topic Prefix+stream with the given partitions and the configured
// replication factor, and waits until every partition has a leader. An existing topic is
// not changed: its partition count is returned.
func (s *Store) CreateStream(ctx context.Context, stream string, partitions int) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("kafka: create stream: %w", err)
	}
	if err := core.ValidatePartitionCount(partitions, s.opts.MaxPartitions); err != nil {
		return 0, fmt.Errorf("kafka: create stream %q: %w", stream, err)
	}
	ctx, end, err := s.begin(ctx, "create stream", stream)
	if err != nil {
		return 0, err
	}
	defer end()
	topic := s.Topic(stream)
	var cfg map[string]*string
	if len(s.opts.TopicConfig) > 0 {
		cfg = make(map[string]*string, len(s.opts.TopicConfig))
		for k, v := range s.opts.TopicConfig {
			cfg[k] = kadm.StringPtr(v)
		}
	}
	for attempt := 0; ; attempt++ {
		resp, err := s.adm.CreateTopic(ctx, int32(partitions), s.opts.ReplicationFactor, cfg, topic)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			// Wait until the broker we talk to has the topic with leaders.
			tm, merr := s.waitTopic(ctx, topic)
			if merr == nil {
				return len(tm.leaders), nil
			}
			// An existing topic that is being deleted: create it again.
			if errors.Is(err, kerr.TopicAlreadyExists) && errors.Is(merr, core.ErrStreamNotFound) && attempt < 20 {
				if werr := core.Sleep(ctx, 100*time.Millisecond); werr != nil {
					return 0, s.mapErr(ctx, "create stream", stream, werr)
				}
				continue
			}
			return 0, s.mapErr(ctx, "create stream", stream, merr)
		}
		return 0, s.mapErr(ctx, "create stream", stream, createError(err, resp.ErrMessage))
	}
}

// createError adds to err, a failed CreateTopic's, the broker's message about it (msg), which
// says why (a policy, a config, a name that collides), and for a name that collides with
// an existing topic's what to do.
func createError(err error, msg string) error {
	if msg == "" {
		return err
	}
	if errors.Is(err, kerr.InvalidTopicException) && strings.Contains(msg, "collides") {
		// Kafka metrics names replace '.' by '_', so it refuses topics that differ only there.
		return fmt.Errorf("%w: %s (Kafka takes '.' and '_' in topic names for the same character: name the stream so that it differs from the existing one elsewhere)", err, msg)
	}
	return fmt.Errorf("%w: %s", err, msg)
}

// Partitions returns the partition count of an existing stream.
func (s *Store) Partitions(ctx context.Context, stream string) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("kafka: partitions: %w", err)
	}
	ctx, end, err := s.begin(ctx, "partitions", stream)
	if err != nil {
		return 0, err
	}
	defer end()
	tm, err := s.topicMeta(ctx, s.Topic(stream), true)
	if err != nil {
		return 0, s.mapErr(ctx, "partitions", stream, err)
	}
	return len(tm.leaders), nil
}

// DeleteStream deletes the stream's topic and all its messages, and waits until the
// broker no longer serves it. Committed offsets of consumer groups on it are removed by
// Kafka. A missing stream returns [core.ErrStreamNotFound].
func (s *Store) DeleteStream(ctx context.Context, stream string) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return fmt.Errorf("kafka: delete stream: %w", err)
	}
	ctx, end, err := s.begin(ctx, "delete stream", stream)
	if err != nil {
		return err
	}
	defer end()
	topic := s.Topic(stream)
	s.forget(topic)
	if _, err := s.adm.DeleteTopic(ctx, topic); err != nil {
		return s.mapErr(ctx, "delete stream", stream, err)
	}
	for {
		_, err := s.topicMeta(ctx, topic, true)
		if errors.Is(err, core.ErrStreamNotFound) {
			s.forget(topic)
			// The producer keeps the topic's ID: drop it, so that an Append to a stream
			// created again under this name does not fail with UNKNOWN_TOPIC_ID.
			s.purge(topic)
			return nil
		}
		if werr := core.Sleep(ctx, 50*time.Millisecond); werr != nil {
			return s.mapErr(ctx, "delete stream", stream, werr)
		}
	}
}

// Append produces msgs to one partition with acks from all in-sync replicas and
// idempotent production (franz-go batches the records, splitting batches larger than
// ProducerBatchMaxBytes), and reports each message's offset as its index. It copies msgs
// once, so the caller may reuse them as soon as Append returns. It is [Store.AppendAsync]
// followed by a wait for its outcome.
//
// If Append fails, some messages of the batch may still have been written (Kafka has no
// atomic multi-batch produce without transactions): they may appear in a later Fetch under
// indexes Append did not report. At-least-once callers retry, producing duplicates that
// end-to-end deduplication drops.
func (s *Store) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	type result struct {
		idx []uint64
		err error
	}
	ch := make(chan result, 1) // done never blocks, even after Append returned
	// Append may return (on a cancelled ctx) while the client still holds the records, so
	// they get their own copy of the bytes; AppendAsync keeps msgs until done instead.
	s.AppendAsync(ctx, stream, partition, core.CopyMessages(msgs), func(idx []uint64, err error) { ch <- result{idx, err} })
	select {
	case r := <-ch:
		return r.idx, r.err
	case <-ctx.Done():
		// Idempotent production cannot fail records already sent; they may still be
		// written. Return now, as the contract allows (see the method doc).
		select {
		case r := <-ch:
			return r.idx, r.err
		default:
		}
		return nil, s.mapErr(ctx, "append", stream, ctx.Err())
	case <-s.calls.Context().Done():
		select {
		case r := <-ch:
			return r.idx, r.err
		default:
		}
		return nil, fmt.Errorf("kafka: append %q: %w", stream, core.ErrClosed)
	}
}

// AppendAsync implements [core.AsyncAppender]: it validates the call, wraps msgs in
// records (without copying: the client holds them until done) and hands them to the
// client's producer before it returns, and calls done when
// the broker acknowledged (or the client failed) every record, with the records' offsets
// as indexes. franz-go produces the records of one partition in order and delivers their
// outcomes serially and in order, so the done of successful calls run in start order;
// done runs on the client's promise goroutine and must not block. Errors and partial
// failures are those of [Store.Append].
func (s *Store) AppendAsync(ctx context.Context, stream string, partition int, msgs [][]byte, done func([]uint64, error)) {
	if err := core.ValidateStreamName(stream); err != nil {
		done(nil, fmt.Errorf("kafka: append: %w", err))
		return
	}
	if err := core.ValidateMessages(msgs, s.opts.MaxMessageSize); err != nil {
		done(nil, fmt.Errorf("kafka: append %q: %w", stream, err))
		return
	}
	ctx, end, err := s.begin(ctx, "append", stream)
	if err != nil {
		done(nil, err)
		return
	}
	topic := s.Topic(stream)
	_, grown, err := s.partitionMeta(ctx, stream, partition)
	if err != nil {
		err = s.mapErr(ctx, "append", stream, err)
		end()
		done(nil, err)
		return
	}
	if grown {
		// The client's producer has the old partition count too, and fails a record for a
		// partition beyond it: make it look the topic up afresh (records of the topic it
		// buffers fail, as they would on a leader change, and their appends report it).
		s.purge(topic)
	}
	if len(msgs) == 0 {
		end()
		done([]uint64{}, nil)
		return
	}
	// franz-go keeps a record until the broker answers and calls every record's promise
	// before done runs, so msgs are not retained after done, as the contract requires.
	// One allocation for the records and one promise for the call, not one of each per
	// message: the hub appends many small messages.
	recs := make([]kgo.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = kgo.Record{Topic: topic, Partition: int32(partition), Value: m}
	}
	purges := s.purges.Load() // a purge from now on fails the records the client buffers
	var (
		mu      sync.Mutex
		pending = len(recs)
		failed  = len(recs) // position of the first record that failed
		ferr    error
	)
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		if err != nil {
			// Errors are rare: find the record's position by its address.
			for i := range recs[:failed] {
				if &recs[i] == r {
					failed, ferr = i, err
					break
				}
			}
		}
		pending--
		last := pending == 0
		mu.Unlock()
		if !last {
			return
		}
		// Map the error before end cancels ctx, so a success is never reported as cancelled.
		if ferr != nil {
			if errors.Is(ferr, kerr.UnknownTopicOrPartition) || errors.Is(ferr, kerr.UnknownTopicID) {
				// Not on the client's promise goroutine: this asks the broker (the done of a
				// failed call need not keep the order of the successful ones).
				s.calls.Go(func() {
					err := s.mapErr(ctx, "append", stream, s.lostTopic(ctx, topic, ferr))
					end()
					done(nil, err)
				})
				return
			}
			if s.purges.Load() != purges && !s.classified(ferr) {
				// franz-go's unexported "topic purged while buffered": nothing is wrong
				// with the stream or the messages.
				ferr = fmt.Errorf("%w: the client dropped the records it buffered for the stream's topic (a partition was added, or the stream was deleted or created again, while this append waited); append again: %w", core.ErrUnavailable, ferr)
			}
			err := s.mapErr(ctx, "append", stream, ferr)
			end()
			done(nil, err)
			return
		}
		end()
		idx := make([]uint64, len(recs))
		for i := range recs {
			idx[i] = uint64(recs[i].Offset)
		}
		done(idx, nil)
	}
	for i := range recs {
		s.cl.Produce(ctx, &recs[i], promise)
	}
}

// Fetch reads one partition from offset from with one direct Fetch request to the
// partition's leader (read_committed, no wait), so it never scans from the start and
// returns at once when caught up (from at or past the last stable offset). It skips
// offsets that hold no message (transaction markers, aborted or compacted records) and
// restarts at the log start offset when from was deleted by retention.
//
// Kafka answers with whole record batches up to a byte budget, often more messages than
// limit: the Store keeps those (up to 16 MiB over all partitions, for 2 seconds, following
// up to 4 reader positions per partition) and serves the next Fetch from the offset after
// the last one returned out of them; such a sequential Fetch that needs the broker asks it
// for Options.FetchMaxBytes. So a reader that pages through a partition pays one broker
// round trip per fetch budget, not per page. Each kept message is returned once.
func (s *Store) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("kafka: fetch: %w", err)
	}
	if err := core.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("kafka: fetch %q: %w", stream, err)
	}
	ctx, end, err := s.begin(ctx, "fetch", stream)
	if err != nil {
		return nil, err
	}
	defer end()
	topic := s.Topic(stream)
	tm, _, err := s.partitionMeta(ctx, stream, partition)
	if err != nil {
		return nil, s.mapErr(ctx, "fetch", stream, err)
	}
	out := make([]core.Message, 0, min(limit, 256))
	if limit == 0 || from > math.MaxInt64 {
		return out, nil
	}
	// Messages an earlier fetch read past its limit come first (see readAhead).
	key := partKey{topic, int32(partition)}
	// A prefetch in flight (see Store.prefetch) brings the messages that follow: wait for it
	// rather than ask the broker for them a second time.
	offset, retries, skips := int64(from), 0, 0
	ahead, sequential, pending := s.ahead.take(key, tm.id, offset, limit)
	for {
		out = append(out, ahead...)
		if len(out) > 0 {
			offset = int64(out[len(out)-1].Index) + 1
		}
		if len(out) == limit || pending == nil {
			break
		}
		select {
		case <-pending:
		case <-ctx.Done():
			if len(out) > 0 {
				return out, nil
			}
			return nil, s.mapErr(ctx, "fetch", stream, context.Cause(ctx))
		}
		ahead, _, pending = s.ahead.take(key, tm.id, offset, limit-len(out))
	}
	if len(out) == limit {
		s.prefetch(key, tm, partition, offset)
		return out, nil
	}
	// The broker's answer is the rest of the result; on failure, return what we have.
	// fetchFrom is where the reader's read-ahead entry, if take used one, now starts: put
	// replaces the entry that covers it.
	cached, fetchFrom := len(out), offset
	fail := func(err error) ([]core.Message, error) {
		if cached > 0 {
			return out[:cached], nil
		}
		return nil, s.mapErr(ctx, "fetch", stream, err)
	}
	// Ask for about 1 KiB per message wanted (Kafka returns a larger first batch whole),
	// or for the full budget when paging through the partition.
	maxBytes := s.opts.FetchMaxBytes
	if want := limit - len(out); !sequential && want < int(maxBytes)/1024 {
		maxBytes = min(maxBytes, int32(64<<10+want*1024))
	}
	for {
		rp, err := s.fetchOnce(ctx, topic, tm, int32(partition), offset, maxBytes)
		if err == nil {
			err = kerr.ErrorForCode(rp.ErrorCode)
		}
		switch {
		case err == nil:
		case errors.Is(err, kerr.OffsetOutOfRange):
			// The broker answers an out-of-range fetch without its log start offset (-1):
			// ask for it, to tell a from deleted by retention from one past the end.
			start := rp.LogStartOffset
			if start < 0 {
				if start, err = s.logStart(ctx, topic, int32(partition)); err != nil {
					return fail(err)
				}
			}
			if offset < start && skips < 5 { // bounded: retention may delete more meanwhile
				skips++
				offset = start // deleted by retention: the first message that exists
				continue
			}
			return out, nil // past the end
		case cached == 0 && retries < 5 && isStaleMeta(err):
			retries++
			if tm, err = s.topicMeta(ctx, topic, true); err != nil {
				return nil, s.mapErr(ctx, "fetch", stream, err)
			}
			// The topic may have been deleted and created again with fewer partitions.
			if err := core.ValidatePartition(stream, partition, len(tm.leaders)); err != nil {
				return nil, fmt.Errorf("kafka: fetch: %w", err)
			}
			if werr := core.Sleep(ctx, time.Duration(retries)*50*time.Millisecond); werr != nil {
				return nil, s.mapErr(ctx, "fetch", stream, werr)
			}
			continue
		default:
			if isStaleMeta(err) {
				s.forget(topic)
			}
			return fail(err)
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset:         offset,
			IsolationLevel: kgo.ReadCommitted(),
			Topic:          topic,
			Partition:      int32(partition),
		}, rp, s.dec, nil)
		if fp.Err != nil && len(fp.Records) == 0 {
			return fail(fp.Err)
		}
		var rest []*kgo.Record // read past limit
		for i, r := range fp.Records {
			if r.Offset < offset {
				continue
			}
			out = append(out, core.Message{Index: uint64(r.Offset), Data: r.Value[:len(r.Value):len(r.Value)]})
			if len(out) == limit {
				rest = fp.Records[i+1:]
				break
			}
		}
		if len(out) > cached {
			s.ahead.put(key, tm.id, fetchFrom, int64(out[len(out)-1].Index)+1, rest, len(rp.RecordBatches), next >= fp.LastStableOffset)
			return out, nil
		}
		if next <= offset || next >= fp.LastStableOffset {
			return out, nil
		}
		offset = next // only markers or aborted records so far: read on
	}
}

// lostTopic handles an append that the broker refused because it does not know the topic
// (UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION): the topic was deleted, maybe by another
// Store, maybe created again under the same name since. The client's producer keeps the
// deleted topic's ID and would fail every later append with UNKNOWN_TOPIC_ID, also once the
// topic exists again: lostTopic purges the topic from the producer (and the Store's caches),
// so that the next append looks it up afresh. It returns err, or an error matching
// core.ErrUnavailable when the topic exists again (append again), not core.ErrStreamNotFound.
func (s *Store) lostTopic(ctx context.Context, topic string, err error) error {
	s.forget(topic)
	s.purge(topic)
	if _, merr := s.topicMeta(ctx, topic, true); merr != nil {
		return err
	}
	return fmt.Errorf("%w: the stream was deleted and created again (by another Store?) while this append ran; append again: %w", core.ErrUnavailable, err)
}

// prefetch starts, on a goroutine owned by the Store (Close waits for it), a broker fetch
// that extends the read-ahead entry of a reader paging through a partition whose next offset
// is next, when that entry is running low (see readAhead.startPrefetch). So the next Fetch
// of that reader finds its messages in memory, as a Kafka consumer finds the fetch it keeps
// buffered, instead of waiting for the broker.
func (s *Store) prefetch(key partKey, tm *topicMeta, partition int, next int64) {
	e, from, ok := s.ahead.startPrefetch(key, tm.id, next)
	if !ok {
		return
	}
	ctx, end, err := s.begin(context.Background(), "prefetch", "")
	if err != nil {
		s.ahead.endPrefetch(key, e, from, from, nil, 0, false, false)
		return
	}
	go func() {
		defer end()
		rp, err := s.fetchOnce(ctx, key.topic, tm, int32(partition), from, s.opts.FetchMaxBytes)
		if err == nil {
			err = kerr.ErrorForCode(rp.ErrorCode)
		}
		if err != nil { // the reader's next Fetch asks the broker itself and reports it
			s.ahead.endPrefetch(key, e, from, from, nil, 0, false, false)
			return
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset:         from,
			IsolationLevel: kgo.ReadCommitted(),
			Topic:          key.topic,
			Partition:      int32(partition),
		}, rp, s.dec, nil)
		recs := fp.Records
		for len(recs) > 0 && recs[0].Offset < from {
			recs = recs[1:]
		}
		ok := fp.Err == nil || len(recs) > 0
		s.ahead.endPrefetch(key, e, from, next, recs, len(rp.RecordBatches), next >= fp.LastStableOffset, ok)
	}()
}

// fetchOnce sends one Fetch request for (topic, partition) at offset to the leader.
func (s *Store) fetchOnce(ctx context.Context, topic string, tm *topicMeta, partition int32, offset int64, maxBytes int32) (*kmsg.FetchResponseTopicPartition, error) {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = maxBytes
	req.IsolationLevel = 1 // read_committed
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rt.TopicID = tm.id
	rpart := kmsg.NewFetchRequestTopicPartition()
	rpart.Partition = partition
	rpart.FetchOffset = offset
	rpart.PartitionMaxBytes = maxBytes
	rt.Partitions = append(rt.Partitions, rpart)
	req.Topics = append(req.Topics, rt)

	if int(partition) >= len(tm.leaders) { // never index past the metadata, whatever the caller checked
		return nil, fmt.Errorf("%w: %s has %d partitions, not partition %d", core.ErrInvalidArgument, topic, len(tm.leaders), partition)
	}
	leader := tm.leaders[partition]
	if leader < 0 {
		return nil, kerr.LeaderNotAvailable
	}
	kresp, err := s.cl.Broker(int(leader)).Request(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	for i := range resp.Topics {
		t := &resp.Topics[i]
		if t.Topic != topic && t.TopicID != tm.id {
			continue
		}
		for j := range t.Partitions {
			if t.Partitions[j].Partition == partition {
				return &t.Partitions[j], nil
			}
		}
	}
	return nil, fmt.Errorf("fetch response has no partition %d of %s", partition, topic)
}

// logStart returns the log start offset of a partition: the offset of its oldest message
// that retention has not deleted.
func (s *Store) logStart(ctx context.Context, topic string, partition int32) (int64, error) {
	listed, err := s.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("log start offset: %w", err)
	}
	o, ok := listed.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("log start offset: no answer for partition %d of %s", partition, topic)
	}
	if o.Err != nil {
		return 0, fmt.Errorf("log start offset: %w", o.Err)
	}
	return o.Offset, nil
}

// isStaleMeta reports whether err means our topic metadata is out of date.
func isStaleMeta(err error) bool {
	for _, e := range []error{kerr.NotLeaderForPartition, kerr.UnknownTopicID, kerr.UnknownTopicOrPartition,
		kerr.FencedLeaderEpoch, kerr.UnknownLeaderEpoch, kerr.LeaderNotAvailable, kerr.InconsistentTopicID,
		kerr.KafkaStorageError, kerr.ReplicaNotAvailable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return isConnErr(err)
}

// topicMeta returns the topic's metadata, from the cache unless refresh is set. A topic
// that does not exist returns an error matching core.ErrStreamNotFound.
func (s *Store) topicMeta(ctx context.Context, topic string, refresh bool) (*topicMeta, error) {
	if !refresh {
		s.metaMu.RLock()
		tm := s.meta[topic]
		s.metaMu.RUnlock()
		if tm != nil {
			return tm, nil
		}
	}
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil {
		return nil, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				s.forget(topic)
				return nil, fmt.Errorf("%w: %w", core.ErrStreamNotFound, err)
			}
			return nil, err
		}
		if len(t.Partitions) == 0 {
			return nil, kerr.LeaderNotAvailable
		}
		tm := &topicMeta{id: t.TopicID, leaders: make([]int32, len(t.Partitions))}
		for i := range tm.leaders {
			tm.leaders[i] = -1
		}
		for _, p := range t.Partitions {
			if p.Partition < 0 || int(p.Partition) >= len(tm.leaders) {
				return nil, fmt.Errorf("metadata of %s lists partition %d of %d", topic, p.Partition, len(t.Partitions))
			}
			if kerr.ErrorForCode(p.ErrorCode) == nil {
				tm.leaders[p.Partition] = p.Leader
			}
		}
		s.metaMu.Lock()
		s.meta[topic] = tm
		s.metaMu.Unlock()
		return tm, nil
	}
	return nil, fmt.Errorf("metadata response does not mention topic %s", topic)
}

// partitionMeta returns the metadata of stream's topic, which must have partition: from the
// cache, unless the cached metadata lacks the partition, which the topic may have gained
// since (partitions added with Kafka's tools, or the stream created again by another Store
// with more of them): a partition is refused with core.ErrInvalidArgument only after a fresh
// look. grown reports that the cached metadata lacked the partition and the fresh one has it.
func (s *Store) partitionMeta(ctx context.Context, stream string, partition int) (tm *topicMeta, grown bool, err error) {
	topic := s.Topic(stream)
	tm, err = s.topicMeta(ctx, topic, false)
	if err == nil && partition >= len(tm.leaders) {
		grown = true
		tm, err = s.topicMeta(ctx, topic, true)
	}
	if err != nil {
		return nil, false, err
	}
	if err := core.ValidatePartition(stream, partition, len(tm.leaders)); err != nil {
		return nil, false, err
	}
	return tm, grown, nil
}

// waitTopic polls fresh metadata until every partition of topic has a leader. A topic that
// is still missing after about a second returns core.ErrStreamNotFound.
func (s *Store) waitTopic(ctx context.Context, topic string) (*topicMeta, error) {
	for attempt := 0; ; attempt++ {
		tm, err := s.topicMeta(ctx, topic, true)
		ready := err == nil
		if ready {
			for _, l := range tm.leaders {
				if l < 0 {
					ready = false
				}
			}
		}
		if ready {
			return tm, nil
		}
		if err != nil && !(errors.Is(err, core.ErrStreamNotFound) && attempt < 50) &&
			!errors.Is(err, kerr.LeaderNotAvailable) {
			return nil, err
		}
		if err := core.Sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// purge makes the client's producer forget topic (its partition count and topic ID), so that
// the next append looks it up afresh. The records of topic that the client still buffers fail
// with franz-go's unexported "topic purged while buffered" error: purge counts in s.purges,
// before it purges, so that their appends tell it from an error that says something about
// the stream or its messages.
func (s *Store) purge(topic string) {
	s.purges.Add(1)
	s.cl.PurgeTopicsFromProducing(topic)
}

func (s *Store) forget(topic string) {
	s.metaMu.Lock()
	delete(s.meta, topic)
	s.metaMu.Unlock()
	s.ahead.forget(topic)
}

// ping checks that the cluster answers a metadata request.
func (s *Store) ping(ctx context.Context) error {
	ctx, end, err := s.begin(ctx, "connect", "")
	if err != nil {
		return err
	}
	defer end()
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, s.cl); err != nil {
		return s.mapErr(ctx, "connect", "", err)
	}
	return nil
}

// Close marks the Store closed (new calls return core.ErrClosed), waits up to
// Options.CloseTimeout for in-flight calls, then cancels them, and closes the client if
// Dial created it. It never blocks for much more than twice CloseTimeout. Later calls wait
// until the first has finished and return nil.
func (s *Store) Close() error {
	return s.calls.Shutdown(func() error {
		var err error
		if derr := s.calls.Drain(s.opts.CloseTimeout); derr != nil {
			err = fmt.Errorf("kafka: close: %w", derr)
		}
		if s.own {
			s.cl.Close()
		}
		return err
	})
}
