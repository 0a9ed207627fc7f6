package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/core"
)

// Options configure a Store. The zero value (or nil) is valid.
type Options struct {
	// Prefix is prepended to every Sluice stream name to form the Kinesis stream name
	// (default "sluice-"). It may hold only ASCII letters, digits, '.', '_' and '-' (as
	// Kinesis stream names), and the result must be at most 128 characters; New refuses
	// another prefix with core.ErrInvalidOption.
	Prefix string
	// MaxRetries is how many times a throttled or failed call is retried before the error is
	// returned (0 means the default, 8; a negative value means no retries). Backoff is exponential with full jitter, from RetryBase (default
	// 50ms) up to RetryMax (default 2s).
	MaxRetries int
	RetryBase  time.Duration
	RetryMax   time.Duration
	// ActiveTimeout bounds how long CreateStream waits for a new stream to become ACTIVE,
	// and DeleteStream for a deleted one to be gone (default 2 minutes). When it passes, they
	// fail with an error matching core.ErrUnavailable.
	ActiveTimeout time.Duration
	// GetRecordsLimit is the Limit of each GetRecords call (default 1000, at most 10000).
	GetRecordsLimit int32
	// Index is the IndexStorage that holds the consumer indexes of this Store's streams
	// (Kinesis has none of its own; [Open] sets it from index=). When it implements
	// [core.IndexDeleter], DeleteStream deletes the stream's saved indexes there too. The Store
	// neither uses it otherwise nor closes it.
	Index core.IndexStorage
	// VolatileIndex says that the consumer indexes of this Store's streams do not survive a
	// restart (Open sets it for an index= backend that does not declare Persistent, such as
	// memory://): Capabilities then does not declare Persistent either, which promises that
	// saved indexes survive too.
	VolatileIndex bool
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Prefix == "" {
		r.Prefix = "sluice-"
	}
	switch {
	case r.MaxRetries == 0:
		r.MaxRetries = 8
	case r.MaxRetries < 0:
		r.MaxRetries = 0 // retry checks attempt >= MaxRetries: the first failure is returned
	}
	if r.RetryBase <= 0 {
		r.RetryBase = 50 * time.Millisecond
	}
	if r.RetryMax <= 0 {
		r.RetryMax = 2 * time.Second
	}
	if r.ActiveTimeout <= 0 {
		r.ActiveTimeout = 2 * time.Minute
	}
	if r.GetRecordsLimit <= 0 || r.GetRecordsLimit > 10000 {
		r.GetRecordsLimit = 1000
	}
	return r
}

// backoff is the longest sleep after the attempt-th retryable failure (0 the first):
// RetryBase doubled per attempt, at most RetryMax. Both are positive (withDefaults).
func (o *Options) backoff(attempt int) time.Duration {
	if attempt >= 62 || o.RetryBase > o.RetryMax>>attempt {
		return o.RetryMax // also where RetryBase<<attempt would overflow
	}
	return o.RetryBase << attempt
}

// Store is a core.Storage on Amazon Kinesis Data Streams. It is safe for concurrent use.
// It assumes it is the only writer of its streams (see the package doc).
type Store struct {
	client *kinesis.Client
	opts   Options

	// calls holds the public calls and the partition writers; Close cancels them after a
	// grace period.
	calls core.Calls
	stop  chan struct{} // closed by Close: writers finish what they hold and exit

	mu      sync.Mutex
	streams map[string]*streamState
	// forgets counts the calls of forget: a state loaded while one ran may describe the
	// stream that forget dropped (see state).
	forgets uint64
	// writers holds, per stream partition, the exited channel of the writer started last,
	// until that writer exits (see startWriter).
	writers map[writerKey]chan struct{}

	// aheadBytes counts the bytes of messages read ahead that the partitions' iterCaches keep
	// (at most maxAheadTotal); expiredAt is when Fetch last dropped the expired ones of all
	// partitions, in Unix nanoseconds.
	aheadBytes atomic.Int64
	expiredAt  atomic.Int64

	hooks testHooks
}

// testHooks let tests act at points where the Store races with others; nil ones are
// skipped. Tests set them before the Store is used.
type testHooks struct {
	listed func(stream string) // after each ListShards page that state loads
	queue  func(stream string) // in Append, after it found the partition, before it queues
}

var (
	_ core.Storage          = (*Store)(nil)
	_ core.StreamDeleter    = (*Store)(nil)
	_ core.PartitionCounter = (*Store)(nil)
)

// streamState caches what the Store knows of one stream.
type streamState struct {
	name   string // Kinesis stream name
	shards []types.Shard
	parts  []*partition
}

// partition is the per-shard bookkeeping: the next index to assign and a sparse map from
// record first-index to sequence number, used to seek.
type partition struct {
	shardID string
	hashKey string
	key     string // partition key
	seeks   seekMap
	iters   iterCache

	writer sync.Once // starts the writer goroutine on first Append
	reqs   chan *appendReq
	// exited is closed when the writer returned (after Close or forget), or at once when
	// forget dropped the state before its writer started (see startWriter).
	exited chan struct{}
	// dropped is closed (under Store.mu) by forget: the writer answers what is queued and
	// returns. deletedHere, set before, says whether this Store's DeleteStream dropped it.
	dropped     chan struct{}
	deletedHere bool

	mu        sync.Mutex // guards the fields below (held by the writer while it writes)
	recovered bool
	next      uint64
	lastSeq   string // sequence number of the last record written, for SequenceNumberForOrdering
}

// New returns a Store using client, which it does not close.
func New(client *kinesis.Client, opts *Options) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("kinesis: %w: nil client", core.ErrInvalidOption)
	}
	o := opts.withDefaults()
	// Kinesis stream names take the characters of Sluice stream names.
	if err := core.ValidateStreamName(o.Prefix + "x"); err != nil {
		return nil, fmt.Errorf("kinesis: %w: prefix %q: %w", core.ErrInvalidOption, o.Prefix, err)
	}
	if len(o.Prefix)+core.MaxStreamNameLen > 128 {
		return nil, fmt.Errorf("kinesis: %w: prefix %q is too long: prefix plus a %d-character stream name must fit Kinesis's 128", core.ErrInvalidOption, o.Prefix, core.MaxStreamNameLen)
	}
	return &Store{client: client, opts: o, streams: map[string]*streamState{}, stop: make(chan struct{})}, nil
}

// Capabilities: indexes are not dense (a failed append burns its indexes), data is
// persistent (and so are saved indexes, unless Options.VolatileIndex), messages up to 1 MiB
// less a small header.
func (s *Store) Capabilities() core.Capabilities {
	return core.Capabilities{
		Name:           "kinesis",
		Persistent:     !s.opts.VolatileIndex,
		MaxMessageSize: maxMessageSize,
		MaxPartitions:  core.MaxPartitions,
	}
}

// closeGrace is how long Close lets in-flight writes finish before cancelling them.
const closeGrace = 10 * time.Second

// Close stops the partition writers: appends being written finish, appends still queued
// fail with core.ErrClosed, and later calls return core.ErrClosed. It waits up to 10 seconds
// for the writers and the calls in flight, then cancels them: a call cancelled so fails with
// an error matching core.ErrClosed (and context.Canceled). It waits up to 10 seconds more
// for them to end, and returns an error matching core.ErrUnavailable if some are still
// running then. It does not close the client. Later calls wait until the first has
// finished and return nil.
func (s *Store) Close() error {
	return s.calls.Shutdown(func() error {
		close(s.stop)
		if err := s.calls.Drain(closeGrace); err != nil {
			return fmt.Errorf("kinesis: close: %w", err)
		}
		return nil
	})
}

// begin registers a public call (see [core.Calls.Begin]); it fails with core.ErrClosed
// after Close. The caller must call end when the call returns.
func (s *Store) begin(ctx context.Context) (context.Context, func(), error) {
	cctx, end, err := s.calls.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("kinesis: %w", err)
	}
	return cctx, end, nil
}

// callErr returns err, the error of a public call whose context (from begin) is ctx, as the
// caller must read it; public calls apply it before they end. When Close cancelled the call
// it matches core.ErrClosed too (see core.CallErr): the error of the SDK call that Close
// interrupted says only "context canceled", which a caller would take for its own
// cancellation. A context error while ctx has not ended is a timeout of the backend's own
// (the SDK's, a dial timeout, not the caller's deadline): it is core.ErrUnavailable and
// matches no context error (see core.OwnTimeout).
func callErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return err
		}
		if errors.Is(err, core.ErrUnavailable) {
			return core.OwnTimeout(err)
		}
		return fmt.Errorf("%w (%w: a timeout of the backend's own, not the caller's)", core.OwnTimeout(err), core.ErrUnavailable)
	case errors.Is(err, core.ErrClosed) || !errors.Is(context.Cause(ctx), core.ErrClosed):
		return err
	}
	return fmt.Errorf("%w (%w: cancelled by Close)", err, core.ErrClosed)
}

// CreateStream creates the Kinesis stream with one shard per partition and waits until it is
// ACTIVE. An existing stream is not an error: its open-shard count is returned. A stream of
// that name that is being deleted is waited for, then created again.
func (s *Store) CreateStream(ctx context.Context, stream string, partitions int) (_ int, err error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	defer func() { err = callErr(ctx, err) }()
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("kinesis: create stream: %w", err)
	}
	if err := core.ValidatePartitionCount(partitions, core.MaxPartitions); err != nil {
		return 0, fmt.Errorf("kinesis: create stream %q: %w", stream, err)
	}
	name := s.opts.Prefix + stream
	for attempt := 1; ; attempt++ {
		err = s.retry(ctx, func() error {
			_, err := s.client.CreateStream(ctx, &kinesis.CreateStreamInput{
				StreamName:        aws.String(name),
				ShardCount:        aws.Int32(int32(partitions)),
				StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeProvisioned},
			}, markCredentials)
			return err
		})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return 0, mapErr("create", stream, err)
		}
		if err == nil {
			// A new stream: what is cached under its name (deleted by someone else) is not its.
			s.forget(stream, nil)
		}
		err = s.waitActive(ctx, stream, name)
		// A stream that existed but was being deleted (by another Store) is gone now:
		// create it again.
		if errors.Is(err, core.ErrStreamNotFound) && attempt < 3 {
			continue
		}
		if err != nil {
			return 0, err
		}
		break
	}
	st, err := s.state(ctx, stream)
	if err != nil {
		return 0, err
	}
	return len(st.parts), nil
}

// waitActive waits until stream name is ACTIVE, within ActiveTimeout.
func (s *Store) waitActive(ctx context.Context, stream, name string) error {
	wctx, cancel := context.WithTimeout(ctx, s.opts.ActiveTimeout)
	defer cancel()
	for {
		out, err := s.client.DescribeStreamSummary(wctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)}, markCredentials)
		if err != nil && !isThrottle(err) {
			return s.waitErr(ctx, wctx, "did not become ACTIVE", stream, name, err)
		}
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return nil
		}
		if err := core.Sleep(wctx, 100*time.Millisecond); err != nil {
			return s.waitErr(ctx, wctx, "did not become ACTIVE", stream, name, err)
		}
	}
}

// waitErr is the error of waitActive or waitGone, whose wait context wctx is ctx (the
// call's) bounded by ActiveTimeout, after err. ActiveTimeout passing is not the caller's
// deadline: it is core.ErrUnavailable (the stream may be ready later), never an error
// matching context.DeadlineExceeded. An ended ctx is the call's error (core.ErrClosed when
// Close cancelled the call).
func (s *Store) waitErr(ctx, wctx context.Context, what, stream, name string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("kinesis: stream %q %s: %w", name, what, core.CallErr(ctx))
	case wctx.Err() != nil:
		return fmt.Errorf("kinesis: stream %q %s within %s (Options.ActiveTimeout); call again later: %w", name, what, s.opts.ActiveTimeout, core.ErrUnavailable)
	}
	return mapErr("describe", stream, err)
}

// maxStateLoads bounds how many times state loads a stream's shard list in one call when
// forget runs meanwhile each time.
const maxStateLoads = 3

// state returns the cached stream state, loading the shard list on first use. A list loaded
// while forget ran (the stream was found deleted, or deleted and created again) may be the
// old stream's: state loads it again (up to maxStateLoads times in all) before caching it.
// Caching one state per stream keeps one writer per partition (and startWriter lets the
// writer of a state loaded after forget start only once the forgotten one exited).
func (s *Store) state(ctx context.Context, stream string) (*streamState, error) {
	for loads := 1; ; loads++ {
		s.mu.Lock()
		st := s.streams[stream]
		forgets := s.forgets
		s.mu.Unlock()
		if st != nil {
			return st, nil
		}
		st, err := s.loadState(ctx, stream)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		cur := s.streams[stream]
		if cur == nil && (s.forgets == forgets || loads >= maxStateLoads) {
			s.streams[stream] = st
			cur = st
		}
		s.mu.Unlock()
		if cur != nil {
			return cur, nil
		}
	}
}

// loadState lists the open shards of stream.
func (s *Store) loadState(ctx context.Context, stream string) (*streamState, error) {
	name := s.opts.Prefix + stream
	var shards []types.Shard
	var token *string
	for {
		in := &kinesis.ListShardsInput{}
		if token != nil {
			in.NextToken = token
		} else {
			in.StreamName = aws.String(name)
			in.ShardFilter = &types.ShardFilter{Type: types.ShardFilterTypeAtLatest}
		}
		var out *kinesis.ListShardsOutput
		err := s.retry(ctx, func() (err error) { out, err = s.client.ListShards(ctx, in, markCredentials); return err })
		if err != nil {
			return nil, mapErr("list shards", stream, err)
		}
		if s.hooks.listed != nil {
			s.hooks.listed(stream)
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			break
		}
		token = out.NextToken
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("kinesis: stream %q has no open shards: %w", name, core.ErrStreamNotFound)
	}
	sort.Slice(shards, func(i, j int) bool { return aws.ToString(shards[i].ShardId) < aws.ToString(shards[j].ShardId) })
	st := &streamState{name: name, shards: shards}
	for i, sh := range shards {
		st.parts = append(st.parts, &partition{
			shardID: aws.ToString(sh.ShardId),
			hashKey: aws.ToString(sh.HashKeyRange.StartingHashKey),
			key:     "p" + strconv.Itoa(i),
			dropped: make(chan struct{}),
			iters:   iterCache{total: &s.aheadBytes},
		})
	}
	return st, nil
}

// partition returns the cached state of stream and its partition p, for the call op.
func (s *Store) partition(ctx context.Context, op, stream string, p int) (*streamState, *partition, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, nil, fmt.Errorf("kinesis: %s: %w", op, err)
	}
	st, err := s.state(ctx, stream)
	if err != nil {
		return nil, nil, err
	}
	if err := core.ValidatePartition(stream, p, len(st.parts)); err != nil {
		return nil, nil, fmt.Errorf("kinesis: %s %q: %w", op, stream, err)
	}
	return st, st.parts[p], nil
}

// Partitions returns the number of open shards of stream.
func (s *Store) Partitions(ctx context.Context, stream string) (_ int, err error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	defer func() { err = callErr(ctx, err) }()
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("kinesis: partitions: %w", err)
	}
	st, err := s.state(ctx, stream)
	if err != nil {
		return 0, err
	}
	return len(st.parts), nil
}

// DeleteStream deletes the Kinesis stream, stops its partitions' writers, forgets its cached
// state, and waits until Kinesis no longer knows the stream (it is DELETING for a while), so
// that a CreateStream of the same name afterwards creates a new stream. A stream that is
// already being deleted is waited for the same way; one that does not exist returns
// ErrStreamNotFound. It first deletes the indexes saved for the stream when Options.Index
// implements [core.IndexDeleter] (bbolt, memory and pulsar do).
func (s *Store) DeleteStream(ctx context.Context, stream string) (err error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	defer func() { err = callErr(ctx, err) }()
	if err := core.ValidateStreamName(stream); err != nil {
		return fmt.Errorf("kinesis: delete stream: %w", err)
	}
	name := s.opts.Prefix + stream
	// A missing stream is reported without a DeleteStream call: kinesis-mock answers the call
	// with ResourceNotFoundException, yet still removes the name when its deletion delay
	// has passed, which would take a stream created again under the name meanwhile.
	err = s.retry(ctx, func() error {
		_, err := s.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)}, markCredentials)
		return err
	})
	if err != nil {
		err = mapErr("delete", stream, err)
		if errors.Is(err, core.ErrStreamNotFound) {
			s.forget(stream, nil) // deleted by someone else
		}
		return err
	}
	if d, ok := s.opts.Index.(core.IndexDeleter); ok {
		// First: should deleting the stream fail, its consumers start again from the
		// beginning rather than skip messages of a stream created again under its name.
		if err := d.DeleteIndexes(ctx, stream); err != nil {
			return fmt.Errorf("kinesis: delete stream %q: delete its saved indexes: %w", stream, err)
		}
	}
	s.drop(stream, nil, true)
	err = s.retry(ctx, func() error {
		_, err := s.client.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name), EnforceConsumerDeletion: aws.Bool(true)}, markCredentials)
		return err
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) { // in use: deleting already
		return mapErr("delete", stream, err)
	}
	return s.waitGone(ctx, stream, name)
}

// forget drops the cached state of stream and stops its partitions' writers. With only set,
// it does so only while only is the state cached (not one loaded since). The appends queued
// for those writers were never written: Append queues them again on the state loaded next.
func (s *Store) forget(stream string, only *streamState) { s.drop(stream, only, false) }

// drop is forget; with deletedHere (DeleteStream deletes the stream) the appends queued
// fail with core.ErrStreamNotFound instead.
func (s *Store) drop(stream string, only *streamState, deletedHere bool) {
	s.mu.Lock()
	s.forgets++
	st := s.streams[stream]
	if only != nil && st != only {
		s.mu.Unlock()
		return
	}
	delete(s.streams, stream)
	if st != nil {
		// Under mu: startWriter, which looks under mu, starts no writer for a part dropped.
		for _, part := range st.parts {
			part.deletedHere = deletedHere
			close(part.dropped)
		}
	}
	s.mu.Unlock()
	if st != nil {
		for _, part := range st.parts {
			part.iters.clear() // gives its bytes back to the Store's budget
		}
	}
}

// errStale answers the appends queued for the writer of a partition whose state forget
// dropped: they were never written, and Append queues them again on the state loaded next.
var errStale = errors.New("kinesis: the stream's cached state was dropped")

// dropErr is the answer to an append queued for the writer of part after forget dropped
// part's state: errStale, or core.ErrStreamNotFound when this Store deleted the stream.
func (part *partition) dropErr(stream string) error {
	if part.deletedHere {
		return fmt.Errorf("kinesis: append %q: the stream was deleted: %w", stream, core.ErrStreamNotFound)
	}
	return errStale
}

// checkGone returns err, first forgetting st, the cached state of stream, when err says that
// the stream does not exist (someone else deleted it: a stream created again under its name
// has other shards, and sequence numbers that the old ones must not be mixed with), or that
// Kinesis refused an argument, which the cache gave: a sequence number of a stream of that
// name that someone else deleted and created again between two calls ("did not come from
// this stream"). The next call loads the stream's state again.
func (s *Store) checkGone(stream string, st *streamState, err error) error {
	if errors.Is(err, core.ErrStreamNotFound) || errors.Is(err, core.ErrInvalidArgument) {
		s.forget(stream, st)
	}
	return err
}

// waitGone waits until Kinesis answers that stream name does not exist, within
// ActiveTimeout.
func (s *Store) waitGone(ctx context.Context, stream, name string) error {
	wctx, cancel := context.WithTimeout(ctx, s.opts.ActiveTimeout)
	defer cancel()
	for {
		_, err := s.client.DescribeStreamSummary(wctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)}, markCredentials)
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound):
			return nil
		case err != nil && !isThrottle(err):
			return s.waitErr(ctx, wctx, "was not deleted", stream, name, err)
		}
		if err := core.Sleep(wctx, 100*time.Millisecond); err != nil {
			return s.waitErr(ctx, wctx, "was not deleted", stream, name, err)
		}
	}
}

// Append packs msgs into as few records as fit 1 MiB and writes them in order with PutRecord
// and SequenceNumberForOrdering, so the shard holds them in index order. Appends to one
// partition are group-committed: a writer goroutine per partition packs every append waiting
// at that moment into the same records, so concurrent appenders share PutRecord calls (each
// shard accepts 1000 records/s; a packed record carries up to 1 MiB). Throttling and transient
// failures are retried with backoff; a batch that finally fails burns its indexes (the next
// append continues after them), because a write whose reply was lost may still be in the
// shard. An append whose ctx ends after it was queued returns ctx.Err(), but its messages may
// still be written.
//
// An append still queued when the Store drops its cached state of the stream (a call found
// the stream deleted, or deleted and created again, by someone else) was never written: it
// is queued again on the state loaded next, and so goes to the stream as it is then (see
// # Limitations in the package doc).
func (s *Store) Append(ctx context.Context, stream string, p int, msgs [][]byte) (_ []uint64, err error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	defer func() { err = callErr(ctx, err) }()
	if err := core.ValidateMessages(msgs, maxMessageSize); err != nil {
		return nil, fmt.Errorf("kinesis: append %q: %w", stream, err)
	}
	// The writer may still read the messages after ctx ended and Append returned; the
	// caller may reuse its buffers by then (core.Storage): it writes a copy, in one buffer.
	var copied [][]byte
	for tries := 1; ; tries++ {
		st, part, err := s.partition(ctx, "append", stream, p)
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			return []uint64{}, nil
		}
		if copied == nil {
			copied = core.CopyMessages(msgs)
		}
		if s.hooks.queue != nil {
			s.hooks.queue(stream)
		}
		idx, err := s.appendTo(ctx, stream, p, st, part, copied)
		if !errors.Is(err, errStale) {
			return idx, err
		}
		select {
		case <-s.stop:
			return nil, fmt.Errorf("kinesis: append %q: %w", stream, core.ErrClosed)
		default:
		}
		if tries == maxAppendTries {
			// Each try loaded the stream's state again (ListShards): it keeps changing.
			return nil, fmt.Errorf("kinesis: append %q partition %d: the Store dropped its cached state of the stream %d times while the append waited to be written (the stream was deleted, or deleted and created again, meanwhile); nothing was written, call again: %w",
				stream, p, tries, core.ErrUnavailable)
		}
	}
}

// maxAppendTries bounds how many times Append queues its messages, on the state loaded
// again after forget dropped the one it was queued on.
const maxAppendTries = 3

// appendTo queues msgs for the writer of part, partition p of st, the state of stream, and
// waits for its answer. It returns errStale when forget dropped st before the writer took
// them (never written).
func (s *Store) appendTo(ctx context.Context, stream string, p int, st *streamState, part *partition, msgs [][]byte) ([]uint64, error) {
	req := &appendReq{ctx: ctx, msgs: msgs, done: make(chan struct{})}
	s.startWriter(stream, p, st, part)
	select {
	case part.reqs <- req:
	case <-s.stop:
		return nil, fmt.Errorf("kinesis: append %q: %w", stream, core.ErrClosed)
	case <-part.dropped:
		return nil, part.dropErr(stream)
	case <-ctx.Done():
		return nil, fmt.Errorf("kinesis: append %q: %w", stream, core.CallErr(ctx))
	}
	select {
	case <-req.done:
		return req.idx, req.err
	case <-part.exited:
		// Close or forget stopped the writer (or forget came before it started). It answers
		// every request it took before it returns, so one not answered now was queued after
		// its last look: never written.
		select {
		case <-req.done:
			return req.idx, req.err
		default:
		}
		select {
		case <-part.dropped:
			return nil, part.dropErr(stream)
		default:
			return nil, fmt.Errorf("kinesis: append %q: %w", stream, core.ErrClosed)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("kinesis: append %q: %w", stream, core.CallErr(ctx))
	}
}

type writerKey struct {
	stream string
	p      int
}

// startWriter starts the writer goroutine of part, partition p of st, unless it runs
// already. It stops when s.stop or part.dropped is closed. A writer of a forgotten state of
// the stream (forget closed its part.dropped) may still be writing its last group: the new
// writer waits until that one has exited before it learns the next index from the shard
// (recover), which would otherwise not hold the record in flight, and hand out its indexes
// again. A part that forget dropped before its writer started gets none (its exited is
// closed at once): registered, it would be waited for by the writer of the state loaded
// next, and would itself wait for that one.
func (s *Store) startWriter(stream string, p int, st *streamState, part *partition) {
	part.writer.Do(func() {
		part.reqs = make(chan *appendReq, 256)
		part.exited = make(chan struct{})
		key := writerKey{stream, p}
		s.mu.Lock()
		select {
		case <-part.dropped: // closed under mu
			s.mu.Unlock()
			close(part.exited)
			return
		default:
		}
		prev := s.writers[key]
		if s.writers == nil {
			s.writers = map[writerKey]chan struct{}{}
		}
		s.writers[key] = part.exited
		s.mu.Unlock()
		s.calls.Go(func() {
			defer func() {
				s.mu.Lock()
				if s.writers[key] == part.exited {
					delete(s.writers, key)
				}
				s.mu.Unlock()
				close(part.exited)
			}()
			if prev != nil {
				<-prev // it exits after its group: forget closed its dropped, or Close s.stop
			}
			s.writeLoop(stream, p, st, part)
		})
	})
}

// appendReq is one Append waiting for its partition's writer.
type appendReq struct {
	ctx  context.Context
	msgs [][]byte
	idx  []uint64
	err  error
	done chan struct{}
}

// maxGroupBytes bounds how much one group commit packs (four full records).
const maxGroupBytes = 4 * maxRecordSize

// writeLoop is the single writer of part, partition p of st. It takes every append waiting,
// writes them as one group, and answers each. Once Close or forget stopped it, it takes no
// more: it answers what is queued without writing it (see refuseQueued) and returns.
func (s *Store) writeLoop(stream string, p int, st *streamState, part *partition) {
	for {
		select { // first: a random pick below could take a request after either
		case <-s.stop:
			part.refuseQueued(fmt.Errorf("kinesis: append %q: %w", stream, core.ErrClosed))
			return
		case <-part.dropped:
			part.refuseQueued(part.dropErr(stream))
			return
		default:
		}
		var group []*appendReq
		select {
		case r := <-part.reqs:
			group = append(group, r)
		case <-s.stop:
			continue // answered above
		case <-part.dropped:
			continue
		}
		size := groupSize(group[0])
	more:
		for size < maxGroupBytes {
			select {
			case r := <-part.reqs:
				group = append(group, r)
				size += groupSize(r)
			default:
				break more
			}
		}
		s.writeGroup(stream, p, st, part, group)
	}
}

// refuseQueued answers every request queued for the writer with err (never written).
func (part *partition) refuseQueued(err error) {
	for {
		select {
		case r := <-part.reqs:
			r.err = err
			close(r.done)
		default:
			return
		}
	}
}

func groupSize(r *appendReq) int {
	n := 0
	for _, m := range r.msgs {
		n += len(m) + 4
	}
	return n
}

// writeGroup appends the messages of every live request in group, in order, and answers them.
// When the write finds the stream gone or changed, it forgets st before it answers, so that
// the requests queued behind the group go to the state loaded next (see checkGone).
func (s *Store) writeGroup(stream string, p int, st *streamState, part *partition, group []*appendReq) {
	live := group[:0]
	var msgs [][]byte
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.err = err // never written
			close(r.done)
			continue
		}
		live = append(live, r)
		msgs = append(msgs, r.msgs...)
	}
	if len(live) == 0 {
		return
	}
	first, err := s.write(stream, p, part, msgs)
	err = s.checkGone(stream, st, err)
	for _, r := range live {
		if err != nil {
			r.err = err
		} else {
			r.idx = make([]uint64, len(r.msgs))
			for i := range r.idx {
				r.idx[i] = first
				first++
			}
		}
		close(r.done)
	}
}

// write appends msgs to the partition's shard and returns the index of the first. Only the
// partition's writer goroutine calls it.
func (s *Store) write(stream string, p int, part *partition, msgs [][]byte) (uint64, error) {
	ctx := s.calls.Context()
	part.mu.Lock()
	defer part.mu.Unlock()
	if err := s.recover(ctx, stream, part); err != nil {
		return 0, err
	}
	if uint64(len(msgs)) > math.MaxUint64-part.next { // indexes next..maxIndex are left
		// Only records of another writer (or damaged ones) put numbering this close to the
		// end. Write nothing: the indexes would wrap to 0, below those handed out.
		return 0, fmt.Errorf("kinesis: append %q partition %d: no %d indexes left after index %d, the largest is %d (a record of another writer put numbering at the end of the index space): delete the stream and create it again", stream, p, len(msgs), part.next-1, uint64(maxIndex))
	}
	first := part.next
	// Burn the indexes up front: whatever happens below, they are never handed out again.
	part.next += uint64(len(msgs))
	records, firsts := packRecords(first, msgs)
	name := s.opts.Prefix + stream
	for i, rec := range records {
		var out *kinesis.PutRecordOutput
		err := s.retry(ctx, func() (err error) {
			in := &kinesis.PutRecordInput{
				StreamName:      aws.String(name),
				Data:            rec,
				PartitionKey:    aws.String(part.key),
				ExplicitHashKey: aws.String(part.hashKey),
			}
			if part.lastSeq != "" {
				in.SequenceNumberForOrdering = aws.String(part.lastSeq)
			}
			out, err = s.client.PutRecord(ctx, in, markCredentials)
			return err
		})
		if err != nil {
			return 0, mapErr("append", stream, err)
		}
		if got := aws.ToString(out.ShardId); got != part.shardID {
			return 0, fmt.Errorf("kinesis: append %q partition %d: record landed on shard %s, not %s (was the stream resharded?)", stream, p, got, part.shardID)
		}
		part.lastSeq = aws.ToString(out.SequenceNumber)
		part.seeks.add(firsts[i], part.lastSeq)
	}
	return first, nil
}

// recover learns the next index of a partition on first use by reading the shard's newest
// records. Called with part.mu held.
func (s *Store) recover(ctx context.Context, stream string, part *partition) error {
	if part.recovered {
		return nil
	}
	name := s.opts.Prefix + stream
	// Look back over growing windows; the first window that holds any record holds the last.
	now := time.Now()
	for _, back := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 0} {
		it, err := s.iterator(ctx, name, part.shardID, iterFrom{at: now.Add(-back), atSet: back != 0})
		if err != nil {
			return mapErr("recover", stream, err)
		}
		var r recovery
		err = s.readToEnd(ctx, it, func(recs []kinesisRecord) bool {
			for i := range recs {
				r.add(&recs[i])
			}
			return true
		})
		if err != nil {
			return mapErr("recover", stream, err)
		}
		if r.last == nil && r.suspect == "" {
			continue
		}
		part.next = r.next
		if r.last != nil {
			part.lastSeq = aws.ToString(r.last.SequenceNumber)
			part.seeks.add(r.lastFirst, part.lastSeq)
		}
		if r.suspect != "" {
			// The records do not say where numbering stopped: another writer's record in
			// Sluice's format, or a corrupt one of ours whose indexes are unknown. Continue
			// as in an empty shard (see timeStart), above anything read, so no index handed
			// out before is handed out again.
			part.next = max(part.next, timeStart(time.Now()))
			slog.Warn("kinesis: the newest records of a partition were not written by this backend in order; its indexes continue at the current time in nanoseconds, above any handed out before",
				"stream", stream, "shard", part.shardID, "record", r.suspect, "next_index", part.next)
		}
		part.recovered = true
		return nil
	}
	// The shard holds no Sluice record: none was written, retention deleted them all, or
	// the stream was deleted and created again under its name. Starting at 0 would reuse
	// indexes handed out before in the last two cases: a consumer whose saved index survived
	// (an index store that DeleteStream cannot clear, or a deletion by someone else) would
	// skip the new messages below it. Start at the time instead (see timeStart).
	part.next = timeStart(time.Now())
	part.recovered = true
	return nil
}

// recovery reads a window of a shard's records, oldest first, to learn the next index.
type recovery struct {
	last      *kinesisRecord // the newest record that decodes and ends at or above every earlier one
	lastFirst uint64         // its first index
	next      uint64         // one past the highest index of any record that decodes
	// suspect describes a record in Sluice's format (version byte) after which the
	// window's records do not tell the next index: a corrupt one (also one above maxIndex)
	// or one ending below an earlier one. Cleared by a later good record.
	suspect string
}

func (r *recovery) add(rec *kinesisRecord) {
	first, err := recordFirstIndex(rec.Data)
	if err != nil {
		return // another format: skipped, as Fetch does
	}
	seq := aws.ToString(rec.SequenceNumber)
	lastIdx := first
	if err := unpackRecord(rec.Data, func(idx uint64, _ []byte) bool { lastIdx = idx; return true }); err != nil {
		r.suspect = fmt.Sprintf("sequence number %s: %v", seq, err)
		return
	}
	switch { // unpackRecord refused indexes above maxIndex: lastIdx+1 does not wrap
	case lastIdx+1 < r.next:
		r.suspect = fmt.Sprintf("sequence number %s: indexes %d..%d, below %d of an earlier record", seq, first, lastIdx, r.next-1)
	default:
		// A record written twice by a retried write ends at r.next-1: in order.
		r.last, r.lastFirst, r.next, r.suspect = rec, first, lastIdx+1, ""
	}
}

// timeStart is the first index of a partition whose shard holds no Sluice record: the time
// in nanoseconds since 1970. It is above every index handed out before under the stream's
// name: those started at such a time (or at 0, before this rule) and grew by one per message,
// and a shard accepts at most 1 MiB, so about a million messages, per second: far less than
// one per nanosecond. Indexes are not dense; this only makes them larger. It assumes that the
// clocks of the hosts that wrote the stream agree to within the time between the last
// append of the old stream and the first of the new (a DeleteStream and a CreateStream).
func timeStart(now time.Time) uint64 { return uint64(now.UnixNano()) }

// Fetch seeks to the record holding index from (a sparse in-memory map of record first
// indexes to sequence numbers, else a binary search over arrival timestamps), then reads
// forward with GetRecords. Records written twice by a retried append are skipped: only
// messages with increasing indexes are returned.
func (s *Store) Fetch(ctx context.Context, stream string, p int, from uint64, limit int) (_ []core.Message, err error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	defer func() { err = callErr(ctx, err) }()
	if err := core.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("kinesis: fetch %q: %w", stream, err)
	}
	st, part, err := s.partition(ctx, "fetch", stream, p)
	if err != nil {
		return nil, err
	}
	if limit == 0 {
		return []core.Message{}, nil
	}
	it, ahead, cached := part.iters.take(from)
	if !cached {
		if it, err = s.seekIterator(ctx, st.name, part, from); err != nil {
			return nil, s.checkGone(stream, st, mapErr("fetch", stream, err))
		}
	}
	out := []core.Message{}
	want := from            // the lowest index not yet seen, in out or in rest
	var rest []core.Message // messages read past limit, kept for the Fetch that continues
	restBytes := 0
	keep := func(m core.Message) {
		if len(out) < limit {
			out = append(out, m)
		} else {
			rest = append(rest, m)
			restBytes += len(m.Data)
		}
		want = m.Index + 1
	}
	for _, m := range ahead {
		keep(m)
	}
	for it != nil && len(out) < limit {
		var page *kinesis.GetRecordsOutput
		err := s.retry(ctx, func() (err error) {
			page, err = s.client.GetRecords(ctx, &kinesis.GetRecordsInput{
				ShardIterator: it,
				// Every record holds at least one message: never read more records than needed.
				Limit: aws.Int32(min(s.opts.GetRecordsLimit, int32(min(limit-len(out), 10000)))),
			}, markCredentials)
			return err
		})
		var expired *types.ExpiredIteratorException
		if cached && errors.As(err, &expired) {
			cached = false // a remembered iterator outlived Kinesis's five minutes: seek instead
			if it, err = s.seekIterator(ctx, st.name, part, want); err != nil {
				return nil, s.checkGone(stream, st, mapErr("fetch", stream, err))
			}
			continue
		}
		if err != nil {
			return nil, s.checkGone(stream, st, mapErr("fetch", stream, err))
		}
		for _, r := range page.Records {
			first, err := recordFirstIndex(r.Data)
			if err != nil {
				continue // not ours
			}
			// Only a record in index order is a seek position: a corrupt one, or another
			// writer's below what was read, lies after the messages it claims, and seeking
			// there would skip them. (A record stored twice by a retried write is below too.)
			inOrder := first >= want
			err = unpackRecord(r.Data, func(idx uint64, data []byte) bool {
				if idx >= want { // lower: a record stored twice by a retried write
					keep(core.Message{Index: idx, Data: slices.Clone(data)})
				}
				return true
			})
			if err == nil && inOrder {
				part.seeks.add(first, aws.ToString(r.SequenceNumber))
			}
		}
		it = page.NextShardIterator
		if len(page.Records) == 0 && aws.ToInt64(page.MillisBehindLatest) == 0 {
			break // caught up
		}
	}
	if it != nil && restBytes <= maxAheadBytes {
		next := from
		if len(out) > 0 {
			next = out[len(out)-1].Index + 1
		}
		// The Fetch from next continues without a seek. When the Store's budget is used up,
		// what readers that went away left may have expired: drop that and try again.
		if !part.iters.put(next, it, rest) && s.expireAhead() {
			part.iters.put(next, it, rest)
		}
	}
	return out, nil
}

// expireAhead drops, at most once a second, what the iterCaches of every partition keep past
// iterTTL, and reports whether it did.
func (s *Store) expireAhead() bool {
	now, last := time.Now().UnixNano(), s.expiredAt.Load()
	if now-last < int64(time.Second) || !s.expiredAt.CompareAndSwap(last, now) {
		return false
	}
	s.mu.Lock()
	states := make([]*streamState, 0, len(s.streams))
	for _, st := range s.streams {
		states = append(states, st)
	}
	s.mu.Unlock()
	for _, st := range states {
		for _, part := range st.parts {
			part.iters.expire()
		}
	}
	return true
}

// seekIterator returns a shard iterator at or before the record holding index from.
func (s *Store) seekIterator(ctx context.Context, name string, part *partition, from uint64) (*string, error) {
	start, err := s.seek(ctx, name, part, from)
	if err != nil {
		return nil, err
	}
	return s.iterator(ctx, name, part.shardID, start)
}

// iterFrom says where an iterator starts: at a sequence number, at a time, or (neither) at
// the trim horizon.
type iterFrom struct {
	seq   string
	at    time.Time
	atSet bool
}

func (s *Store) iterator(ctx context.Context, name, shard string, f iterFrom) (*string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(name), ShardId: aws.String(shard)}
	switch {
	case f.seq != "":
		in.ShardIteratorType = types.ShardIteratorTypeAtSequenceNumber
		in.StartingSequenceNumber = aws.String(f.seq)
	case f.atSet:
		in.ShardIteratorType = types.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(f.at)
	default:
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	}
	var out *kinesis.GetShardIteratorOutput
	err := s.retry(ctx, func() (err error) { out, err = s.client.GetShardIterator(ctx, in, markCredentials); return err })
	if err != nil {
		return nil, err
	}
	return out.ShardIterator, nil
}

// readToEnd calls fn with each page of records until fn returns false or the shard has no
// more records now (an empty page that is not behind the tip).
func (s *Store) readToEnd(ctx context.Context, it *string, fn func([]kinesisRecord) bool) error {
	for it != nil {
		var out *kinesis.GetRecordsOutput
		err := s.retry(ctx, func() (err error) {
			out, err = s.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(s.opts.GetRecordsLimit)}, markCredentials)
			return err
		})
		if err != nil {
			return err
		}
		if len(out.Records) > 0 && !fn(out.Records) {
			return nil
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			return nil
		}
		it = out.NextShardIterator
	}
	return nil
}

// retry runs call until it succeeds, fails with a non-retryable error, ctx ends, or
// MaxRetries is reached; it sleeps with exponential backoff and full jitter between tries.
func (s *Store) retry(ctx context.Context, call func() error) error {
	var err error
	for attempt := 0; ; attempt++ {
		if err = call(); err == nil || ctx.Err() != nil || !retryable(err) || attempt >= s.opts.MaxRetries {
			return err
		}
		if serr := core.Sleep(ctx, rand.N(s.opts.backoff(attempt))+time.Millisecond); serr != nil {
			return errors.Join(serr, err)
		}
	}
}
