package pulsar

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/sluicehq/sluice/core"
)

// Defaults of [Options].
const (
	DefaultTenant    = "public"
	DefaultNamespace = "default"
	// DefaultMaxMessageSize is Pulsar's default maxMessageSize (5 MiB) less 8 KiB left for
	// the message metadata and frame.
	DefaultMaxMessageSize = 5<<20 - 8<<10
	// DefaultMaxPartitions bounds the partitions of one stream.
	DefaultMaxPartitions = 256
	// DefaultMaxProducers bounds the producers a Store keeps: as many as the partitions of
	// the largest stream by default, so appending to all of them does not churn producers.
	DefaultMaxProducers = 256
	// DefaultOperationTimeout bounds client operations (lookups, producer and reader
	// creation) and sends of a client built by [Open].
	DefaultOperationTimeout = 30 * time.Second
	// DefaultConnectionTimeout bounds each TCP connection the client built by [Open] dials
	// to a broker. pulsar-client-go's default is none (the system's connect timeout,
	// minutes, for a host or port behind a firewall that drops the dial).
	DefaultConnectionTimeout = 10 * time.Second
	// DefaultMaxReaderBytes bounds the messages the idle readers of a Store hold: what
	// their receive queues prefetched, estimated, and the copies they keep (see
	// Options.MaxReaderBytes).
	DefaultMaxReaderBytes = 64 << 20
)

// Options configure a [Store]. The zero value (or nil) means the defaults.
type Options struct {
	// Tenant and Namespace hold the stream topics (default "public" and "default").
	Tenant, Namespace string
	// TopicPrefix starts every topic name: stream "s" is the partitioned topic
	// persistent://<tenant>/<namespace>/<prefix>s. Default "".
	TopicPrefix string
	// MaxMessageSize is the largest message Append accepts (default DefaultMaxMessageSize).
	// Set it below the broker's maxMessageSize less about 8 KiB.
	MaxMessageSize int
	// MaxPartitions is the most partitions CreateStream accepts (default
	// DefaultMaxPartitions, at most core.MaxPartitions).
	MaxPartitions int
	// MaxProducers bounds the producers the Store keeps, one per partition topic it appends
	// to (default DefaultMaxProducers). Beyond it, the least recently used producer that no
	// append is using is closed; a later append to that partition creates a new one (a lookup
	// and a producer round trip). A producer is never closed under an append: while more
	// appends to different partitions are in flight than MaxProducers, the Store holds one
	// producer per append in flight, and closes the extra ones at a later append.
	MaxProducers int
	// MaxReaderBytes bounds the memory of the readers the Store keeps idle between Fetch
	// calls (default DefaultMaxReaderBytes): the messages each reader's receive queue holds
	// prefetched, estimated as its queue size times the mean size of the messages it
	// returned, plus the copies of the last messages it returned. A reader is created with
	// a receive queue of up to 1000 messages (pulsar-client-go's default) that fits in a
	// 16th of MaxReaderBytes at the mean message size last seen on its partition, at least
	// one message. Beyond MaxReaderBytes, the least recently used idle readers are closed
	// (a later Fetch from their position creates a reader: a lookup and a subscribe round
	// trip). Message payloads are counted, not the client's fixed overhead per message.
	MaxReaderBytes int
	// InfiniteRetention makes CreateStream set a topic-level retention policy that keeps
	// every message (needs topic-level policies on the broker), on the topic it creates and,
	// once per Store, on one that exists already (its creator may have failed to set it).
	// Without it the namespace must keep messages that no subscription holds; see the
	// package doc, "Limitations".
	InfiniteRetention bool
	// HTTPClient talks to the admin REST API (default: a client with a 30s timeout).
	HTTPClient *http.Client
}

// Store is a core.Storage and core.IndexStorage on Apache Pulsar. It is safe for concurrent
// use. Create it with [New] or [Open].
type Store struct {
	client    pulsar.Client
	ownClient bool
	admin     *admin
	// serviceURL is the service URL of a Store built by Open ("" for New): Open checks it.
	serviceURL string
	opts       Options

	calls core.Calls // public calls and the goroutines they start; cancelled by Close
	// sdk runs the calls of pulsar-client-go that take no context (creating and closing
	// producers and readers), which Close waits for only up to closeWait.
	sdk sdkCalls

	mu        sync.Mutex
	streams   map[string]int  // partition counts seen
	retained  map[string]bool // topics whose infinite retention this store set (InfiniteRetention)
	producers map[string]*producerSlot
	uses      uint64        // producer lookups so far: the clock of producerSlot.used
	idle      []*idleReader // least recently used first
	idleBytes int           // the sum of the idle readers' bytes: at most opts.MaxReaderBytes
	// sizes is, by partition topic, the mean size of the messages the last reader of that
	// topic returned (at most maxSizeHints topics): a new reader's queue is sized by it.
	sizes map[string]int
	// appended is, by partition topic, one past the highest index that this store's own
	// appends got a receipt for: a Fetch reads up to it without asking the broker. Another
	// Store that deletes the stream makes it stale; a Fetch that finds out forgets it.
	appended map[string]uint64
	// checking holds the streams whose existence an append waiting for its receipts is
	// asking the admin API about (see appendWatch).
	checking map[string]bool
	// sendTimeout is the SendTimeout of the producers (DefaultOperationTimeout; tests raise
	// it to show that an append does not wait for it).
	sendTimeout time.Duration

	index indexState
}

var (
	_ core.Storage          = (*Store)(nil)
	_ core.IndexStorage     = (*Store)(nil)
	_ core.StreamDeleter    = (*Store)(nil)
	_ core.PartitionCounter = (*Store)(nil)
	_ core.AsyncAppender    = (*Store)(nil)
	_ core.IndexDeleter     = (*Store)(nil)
)

// producerSlot is a producer being created (ready open) or created.
type producerSlot struct {
	topic string
	ready chan struct{}
	p     pulsar.Producer
	err   error

	// pulsar-client-go's producer Close closes the channel that a SendAsync running at the
	// same time may be sending on, which panics: closeSlot waits for the appends handing
	// messages to p (beginSend..endSend), and an append that comes after it started does
	// not send. Neither waits for the other: a SendAsync may wait for receipts, whose
	// callbacks may start appends.
	sendMu  sync.Mutex
	sends   int           // appends between beginSend and endSend
	closing bool          // closeSlot started: beginSend refuses
	drained chan struct{} // made by the first closeSlot when sends > 0; closed when they end

	// Guarded by Store.mu.
	users int    // appends holding the slot: from their lookup to their last receipt
	used  uint64 // Store.uses at the last lookup: the least recently used is evicted first
}

// New returns a Store that uses client for messages and the admin REST API at adminURL
// ("http://host:8080"; http or https, a host, maybe a path prefix, no query: anything else
// is core.ErrInvalidOption) for topic management. The caller keeps ownership of client: Close
// does not close it. opts may be nil. New does no I/O.
func New(ctx context.Context, client pulsar.Client, adminURL string, opts *Options) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("pulsar: %w: nil client", core.ErrInvalidOption)
	}
	return newStore(client, false, adminURL, opts)
}

func newStore(client pulsar.Client, own bool, adminURL string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Tenant == "" {
		o.Tenant = DefaultTenant
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxPartitions == 0 {
		o.MaxPartitions = DefaultMaxPartitions
	}
	if o.MaxProducers == 0 {
		o.MaxProducers = DefaultMaxProducers
	}
	if o.MaxReaderBytes == 0 {
		o.MaxReaderBytes = DefaultMaxReaderBytes
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	switch {
	case o.MaxMessageSize < 0:
		return nil, fmt.Errorf("pulsar: %w: MaxMessageSize %d is negative", core.ErrInvalidOption, o.MaxMessageSize)
	case o.MaxPartitions < 0 || o.MaxPartitions > core.MaxPartitions:
		return nil, fmt.Errorf("pulsar: %w: MaxPartitions %d is outside [1, %d]", core.ErrInvalidOption, o.MaxPartitions, core.MaxPartitions)
	case o.MaxProducers < 0:
		return nil, fmt.Errorf("pulsar: %w: MaxProducers %d is negative", core.ErrInvalidOption, o.MaxProducers)
	case o.MaxReaderBytes < 0:
		return nil, fmt.Errorf("pulsar: %w: MaxReaderBytes %d is negative", core.ErrInvalidOption, o.MaxReaderBytes)
	case strings.ContainsAny(o.Tenant+o.Namespace+o.TopicPrefix, "/ "):
		return nil, fmt.Errorf("pulsar: %w: tenant %q, namespace %q and topic prefix %q must not contain '/' or spaces",
			core.ErrInvalidOption, o.Tenant, o.Namespace, o.TopicPrefix)
	}
	if err := checkAdminURL(adminURL); err != nil {
		return nil, err
	}
	s := &Store{
		client:    client,
		ownClient: own,
		admin:     &admin{base: strings.TrimRight(adminURL, "/"), hc: o.HTTPClient, tenant: o.Tenant, ns: o.Namespace},
		opts:      o,
		streams:   map[string]int{},
		retained:  map[string]bool{},
		producers: map[string]*producerSlot{},
		sizes:     map[string]int{},
		appended:  map[string]uint64{},
		checking:  map[string]bool{},

		sendTimeout: DefaultOperationTimeout,
		index:       indexState{sem: make(chan struct{}, 1)},
	}
	return s, nil
}

// checkAdminURL checks that adminURL is an http:// or https:// URL with a host, the paths of
// the admin API can be appended to: it may have a path (a proxy's prefix), not a query or
// a fragment.
func checkAdminURL(adminURL string) error {
	u, err := url.Parse(adminURL)
	if err != nil {
		return fmt.Errorf("pulsar: %w: admin URL %q: %w", core.ErrInvalidOption, adminURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("pulsar: %w: admin URL %q must start with http:// or https://", core.ErrInvalidOption, adminURL)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("pulsar: %w: admin URL %q names no host (want http://host:8080)", core.ErrInvalidOption, adminURL)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("pulsar: %w: admin URL %q must not have a query or fragment (want http://host:8080)", core.ErrInvalidOption, adminURL)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("pulsar: %w: admin URL %q: port %q is not a number in [1, 65535]", core.ErrInvalidOption, adminURL, p)
		}
	}
	return nil
}

// Capabilities: sparse indexes (ledger and entry ids, see the package doc), persistent,
// consumer indexes kept in Pulsar.
func (s *Store) Capabilities() core.Capabilities {
	return core.Capabilities{
		Name:               "pulsar",
		DenseIndex:         false,
		Persistent:         true,
		MaxMessageSize:     s.opts.MaxMessageSize,
		MaxPartitions:      s.opts.MaxPartitions,
		NativeIndexStorage: true,
	}
}

// topic returns the partitioned topic name of a base name (a stream or the index topic),
// without the persistent://tenant/namespace/ part.
func (s *Store) topic(base string) string { return s.opts.TopicPrefix + base }

// partitionTopic returns the full name of one partition's topic.
func (s *Store) partitionTopic(base string, partition int) string {
	return "persistent://" + s.opts.Tenant + "/" + s.opts.Namespace + "/" + s.topic(base) + "-partition-" + itoa(partition)
}

// begin begins a public call (see core.Calls.Begin): its error is mapped for op on stream.
func (s *Store) begin(ctx context.Context, op, stream string) (context.Context, func(), error) {
	cctx, end, err := s.calls.Begin(ctx)
	if err != nil {
		return nil, nil, s.mapErr(ctx, op, stream, err)
	}
	return cctx, end, nil
}

// CreateStream creates the stream as a partitioned topic with partitions partitions through
// the admin API, or returns the partition count of the existing one. A non-partitioned topic
// of the same name (for example auto-created by a producer) is reported as
// core.ErrInvalidArgument.
func (s *Store) CreateStream(ctx context.Context, stream string, partitions int) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, s.mapErr(ctx, "create stream", stream, err)
	}
	if err := core.ValidatePartitionCount(partitions, s.opts.MaxPartitions); err != nil {
		return 0, s.mapErr(ctx, "create stream", stream, err)
	}
	ctx, done, err := s.begin(ctx, "create stream", stream)
	if err != nil {
		return 0, err
	}
	defer done()
	n, err := s.createTopic(ctx, stream, partitions)
	return n, s.mapErr(ctx, "create stream", stream, err)
}

func (s *Store) createTopic(ctx context.Context, base string, partitions int) (int, error) {
	if n, err := s.admin.partitions(ctx, s.topic(base)); err != nil || n > 0 {
		if err != nil {
			return 0, err
		}
		return s.existingTopic(ctx, base, n)
	}
	err := s.admin.createPartitioned(ctx, s.topic(base), partitions)
	var aerr *adminError
	if errors.As(err, &aerr) && aerr.Status == http.StatusConflict {
		// Created concurrently, or a non-partitioned topic of that name exists.
		n, gerr := s.admin.partitions(ctx, s.topic(base))
		if gerr != nil {
			return 0, gerr
		}
		if n == 0 {
			return 0, fmt.Errorf("%w: a non-partitioned topic %q exists; delete it or pick another stream name: %w",
				core.ErrInvalidArgument, s.topic(base), err)
		}
		return s.existingTopic(ctx, base, n)
	}
	if err != nil {
		return 0, err
	}
	return s.existingTopic(ctx, base, partitions)
}

// existingTopic completes a CreateStream of a topic that exists with n partitions: it sets
// the infinite retention asked for unless this Store did so since the topic was created or
// found. A topic found existing may be one whose creator failed to set it (a CreateStream
// that created the topic, then failed or was cancelled, and is now retried, or another
// Store's), so its retention is set again rather than assumed.
func (s *Store) existingTopic(ctx context.Context, base string, n int) (int, error) {
	if s.opts.InfiniteRetention {
		s.mu.Lock()
		done := s.retained[base]
		s.mu.Unlock()
		if !done {
			if err := s.admin.setInfiniteRetention(ctx, s.topic(base)); err != nil {
				return 0, fmt.Errorf("set infinite retention: %w", err)
			}
			s.mu.Lock()
			s.retained[base] = true
			s.mu.Unlock()
		}
	}
	s.rememberStream(base, n)
	return n, nil
}

func (s *Store) rememberStream(base string, n int) {
	s.mu.Lock()
	s.streams[base] = n
	s.mu.Unlock()
}

// partitions returns the partition count of a stream, asking the admin API when it is
// not known yet; a missing stream returns core.ErrStreamNotFound.
func (s *Store) partitions(ctx context.Context, stream string) (int, error) {
	s.mu.Lock()
	n, ok := s.streams[stream]
	s.mu.Unlock()
	if ok {
		return n, nil
	}
	n, err := s.admin.partitions(ctx, s.topic(stream))
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: no partitioned topic %s/%s/%s", core.ErrStreamNotFound, s.opts.Tenant, s.opts.Namespace, s.topic(stream))
	}
	s.rememberStream(stream, n)
	return n, nil
}

// checkPartition checks that partition exists in stream. A partition beyond the count the
// Store remembers makes it ask the admin API again (one round trip, on that failure only):
// another Store, or pulsar-admin topics update-partitioned-topic, may have added partitions
// since, and the remembered count would refuse them for as long as the Store lives. A
// stream gone meanwhile is forgotten and returns core.ErrStreamNotFound.
func (s *Store) checkPartition(ctx context.Context, stream string, partition int) error {
	n, err := s.partitions(ctx, stream)
	if err != nil {
		return err
	}
	if partition >= n && partition < core.MaxPartitions {
		m, err := s.admin.partitions(ctx, s.topic(stream))
		if err != nil {
			return err
		}
		if m == 0 {
			s.forgetDeleted(stream)
			return fmt.Errorf("%w: no partitioned topic %s/%s/%s: the stream was deleted (by another Store?)",
				core.ErrStreamNotFound, s.opts.Tenant, s.opts.Namespace, s.topic(stream))
		}
		if m > n {
			s.rememberStream(stream, m)
			n = m
		}
	}
	return core.ValidatePartition(stream, partition, n)
}

// Partitions returns the partition count of an existing stream.
func (s *Store) Partitions(ctx context.Context, stream string) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, s.mapErr(ctx, "partitions", stream, err)
	}
	ctx, done, err := s.begin(ctx, "partitions", stream)
	if err != nil {
		return 0, err
	}
	defer done()
	n, err := s.partitions(ctx, stream)
	return n, s.mapErr(ctx, "partitions", stream, err)
}

// DeleteStream deletes the stream's partitioned topic and all its messages (forcibly:
// producers and readers of other clients are disconnected), and the consumer indexes saved
// for it (first: should deleting the topic fail, its consumers start again from the
// beginning rather than skip messages of a stream created again under its name).
func (s *Store) DeleteStream(ctx context.Context, stream string) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return s.mapErr(ctx, "delete stream", stream, err)
	}
	ctx, done, err := s.begin(ctx, "delete stream", stream)
	if err != nil {
		return err
	}
	defer done()
	n, err := s.partitions(ctx, stream)
	if err != nil {
		return s.mapErr(ctx, "delete stream", stream, err)
	}
	if err := s.deleteIndexes(ctx, stream); err != nil {
		return s.mapErr(ctx, "delete stream", stream, fmt.Errorf("delete its saved indexes: %w", err))
	}
	for _, sl := range s.forgetStream(stream, n) {
		// Not on this goroutine: the producer may still be being created, which takes no
		// context, and DeleteStream ends with ctx.
		s.sdk.Go(func() { closeSlot(sl) })
	}
	return s.mapErr(ctx, "delete stream", stream, s.admin.deletePartitioned(ctx, s.topic(stream)))
}

// forgetStream forgets what the Store knows of stream, whose n partitions are deleted: its
// partition count, the end of its own appends, its idle readers (closed) and its producers,
// which it returns for the caller to close.
func (s *Store) forgetStream(stream string, n int) []*producerSlot {
	s.mu.Lock()
	delete(s.streams, stream)
	delete(s.retained, stream) // a topic created again needs its retention set again
	var slots []*producerSlot
	for p := range n {
		t := s.partitionTopic(stream, p)
		delete(s.appended, t)
		if sl, ok := s.producers[t]; ok {
			slots = append(slots, sl)
			delete(s.producers, t)
		}
	}
	s.mu.Unlock()
	prefix := s.partitionTopic(stream, 0)
	prefix = prefix[:len(prefix)-1]
	s.dropReaders(func(topic string) bool { return strings.HasPrefix(topic, prefix) })
	return slots
}

// deletedStream checks, after an append to or a fetch of stream failed with err, whether the
// stream still exists (one admin round trip, on failures only): another Store may have
// deleted it, and this one still has its partition count, its producers and readers, which
// then fail with send timeouts or "partition metadata not found", errors that say nothing
// of the cause and that a caller would retry for ever. If it is gone, the Store forgets it
// (a CreateStream makes it anew, with fresh producers) and the error matches
// core.ErrStreamNotFound; otherwise err is returned as it is. The caller is inside
// calls.Begin.
func (s *Store) deletedStream(ctx context.Context, stream string, err error) error {
	if err == nil || ctx.Err() != nil || s.calls.Closed() || errors.Is(err, core.ErrStreamNotFound) ||
		errors.Is(err, ErrIndexOutOfRange) || errors.Is(err, core.ErrInvalidArgument) || errors.Is(err, core.ErrMessageTooLarge) {
		return err
	}
	if m, aerr := s.admin.partitions(ctx, s.topic(stream)); aerr != nil || m > 0 {
		return err
	}
	s.forgetDeleted(stream)
	return fmt.Errorf("%w: no partitioned topic %s/%s/%s: the stream was deleted (by another Store?): %w",
		core.ErrStreamNotFound, s.opts.Tenant, s.opts.Namespace, s.topic(stream), err)
}

// forgetDeleted forgets stream, which the admin API said does not exist, if the Store
// knows it: its partition count, producers (closed: an append waiting on one fails at once
// instead of at the send timeout) and readers.
func (s *Store) forgetDeleted(stream string) {
	s.mu.Lock()
	n, known := s.streams[stream]
	s.mu.Unlock()
	if !known {
		return
	}
	for _, sl := range s.forgetStream(stream, n) {
		s.sdk.Go(func() { closeSlot(sl) }) // not on the producer's goroutine, which may be this one's caller
	}
}

// appendCheckWait is how long an append waits for its receipts before it asks the admin API
// whether its stream still exists (see appendWatch).
const appendCheckWait = time.Second

// appendWatch watches an append to a stream that is inside calls.Begin. When its receipts
// take longer than appendCheckWait, it asks the admin API whether the stream still exists,
// and again every appendCheckWait while they do not come (one question at a time per
// stream): a producer whose topic another Store deleted often keeps
// reconnecting, and its sends would fail only at the send timeout (30 s). If the stream is
// gone, the Store forgets it (closing its producers) and the watch calls fail with an error
// matching core.ErrStreamNotFound.
type appendWatch struct {
	mu   sync.Mutex
	over bool
	t    *time.Timer
}

// start starts w. fail runs on a goroutine of s.calls.
func (w *appendWatch) start(s *Store, ctx context.Context, stream string, fail func(error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(appendCheckWait, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.over {
			return
		}
		s.mu.Lock()
		busy := s.checking[stream]
		s.checking[stream] = true
		s.mu.Unlock()
		if busy {
			w.t.Reset(appendCheckWait) // another append asks: look again after it
			return
		}
		// The append's call has not ended (stop was not called): Close waits for this, and
		// it ends with the call's ctx.
		s.calls.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.checking, stream)
				s.mu.Unlock()
			}()
			if m, err := s.admin.partitions(ctx, s.topic(stream)); err == nil && m == 0 {
				s.forgetDeleted(stream)
				fail(fmt.Errorf("%w: no partitioned topic %s/%s/%s: the stream was deleted (by another Store?) while the append waited for its receipts",
					core.ErrStreamNotFound, s.opts.Tenant, s.opts.Namespace, s.topic(stream)))
				return
			}
			// The stream is there (or the admin API did not say): ask again in a while, as
			// long as the append waits, so that a deletion after this question is seen too.
			w.mu.Lock()
			if !w.over {
				w.t.Reset(appendCheckWait)
			}
			w.mu.Unlock()
		})
	})
}

// stop ends w; the append calls it before its call ends.
func (w *appendWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.over = true
	if w.t != nil {
		w.t.Stop()
	}
}

// producer returns the cached producer slot of a partition topic, creating the producer on
// first use, and holds it for the caller: the slot is not evicted until the caller calls
// releaseProducer, which it must do once (after the last receipt of what it sent, or at once
// when producer fails). Every lookup also closes the least recently used producers that no
// append holds beyond Options.MaxProducers. The caller is inside calls.Begin.
func (s *Store) producer(ctx context.Context, topic string) (*producerSlot, error) {
	s.mu.Lock()
	sl, ok := s.producers[topic]
	if !ok {
		sl = &producerSlot{topic: topic, ready: make(chan struct{})}
		s.producers[topic] = sl
		s.sdk.Go(func() { // takes no context: see sdkCalls
			p, err := s.client.CreateProducer(pulsar.ProducerOptions{
				Topic:              topic,
				DisableBatching:    true, // one message per entry: the index is the entry's position
				MaxPendingMessages: 1000,
				SendTimeout:        s.sendTimeout,
			})
			if err != nil {
				// CreateProducer returns a nil *producer in a non-nil pulsar.Producer with
				// its error: keep neither, or closeSlot would call Close on it.
				p = nil
				s.dropProducer(sl)
			}
			sl.p, sl.err = p, err
			close(sl.ready)
		})
	}
	sl.users++
	s.uses++
	sl.used = s.uses
	var evicted []*producerSlot
	if len(s.producers) > s.opts.MaxProducers {
		evicted = s.evictProducersLocked()
	}
	s.mu.Unlock()
	for _, e := range evicted {
		// Not on this goroutine: Close waits for the broker, and an append must not.
		s.sdk.Go(func() { closeSlot(e) })
	}
	select {
	case <-sl.ready:
		if sl.err != nil {
			s.releaseProducer(sl)
			return nil, sl.err
		}
		return sl, nil
	case <-ctx.Done():
		s.releaseProducer(sl)
		return nil, ctx.Err()
	}
}

// evictProducersLocked forgets the least recently used producers that no append holds until
// at most Options.MaxProducers are left (or none is free), and returns them for closing.
// The caller holds s.mu. A forgotten producer has no message in flight: every append that
// used it got all its receipts, so the messages of a later append, on a new producer, are
// stored after them.
func (s *Store) evictProducersLocked() []*producerSlot {
	var out []*producerSlot
	for len(s.producers) > s.opts.MaxProducers {
		var lru *producerSlot
		for _, sl := range s.producers {
			if sl.users == 0 && (lru == nil || sl.used < lru.used) {
				lru = sl
			}
		}
		if lru == nil {
			break // every producer is in use: the next lookup tries again
		}
		delete(s.producers, lru.topic)
		out = append(out, lru)
	}
	return out
}

// releaseProducer ends a hold taken by producer.
func (s *Store) releaseProducer(sl *producerSlot) {
	s.mu.Lock()
	sl.users--
	s.mu.Unlock()
}

// dropProducer forgets sl if it is still the producer of its topic, so the next Append
// creates a new one (after the broker closed or fenced it, or its creation failed). It
// reports whether it did: the caller that forgot a slot closes it.
func (s *Store) dropProducer(sl *producerSlot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.producers[sl.topic] != sl {
		return false
	}
	delete(s.producers, sl.topic)
	return true
}

func closeSlot(sl *producerSlot) {
	<-sl.ready
	if sl.p == nil {
		return
	}
	sl.sendMu.Lock()
	sl.closing = true
	var drained chan struct{}
	if sl.sends > 0 {
		if sl.drained == nil { // another closeSlot of sl may be waiting already
			sl.drained = make(chan struct{})
		}
		drained = sl.drained
	}
	sl.sendMu.Unlock()
	if drained != nil {
		<-drained // no SendAsync runs while the producer closes (see sendMu)
	}
	sl.p.Close()
}

// beginSend reports whether an append may hand messages to sl's producer, which closeSlot
// has not started closing; if so, the append calls endSend once it has.
func (sl *producerSlot) beginSend() bool {
	sl.sendMu.Lock()
	defer sl.sendMu.Unlock()
	if sl.closing {
		return false
	}
	sl.sends++
	return true
}

// endSend ends what beginSend began.
func (sl *producerSlot) endSend() {
	sl.sendMu.Lock()
	defer sl.sendMu.Unlock()
	if sl.sends--; sl.sends == 0 && sl.drained != nil {
		close(sl.drained)
		sl.drained = nil
	}
}

// emptyMessageProperties mark an empty message; see appendTopic.
var emptyMessageProperties = map[string]string{"sluice-empty": "1"}

// Append sends msgs, in order, with one producer per partition topic (batching off) and
// returns once the broker has acknowledged every one of them (the send receipt: the entry
// is written to the bookies' journals). On error nothing is reported; messages whose receipt
// arrived before the error stay in the stream (at-least-once callers retry). It is
// [Store.AppendAsync] followed by a wait for its outcome.
func (s *Store) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	type result struct {
		idx []uint64
		err error
	}
	ch := make(chan result, 1)
	s.AppendAsync(ctx, stream, partition, msgs, func(idx []uint64, err error) { ch <- result{idx, err} })
	r := <-ch // AppendAsync reports ctx's end without waiting for receipts
	return r.idx, r.err
}

// AppendAsync implements [core.AsyncAppender]: it validates the call, copies msgs and
// hands them to the partition's producer (SendAsync, one entry per message) before it
// returns, and calls done once the broker acknowledged every message, with the entries'
// positions as indexes. The producer sends and acknowledges the messages of one partition
// in order and delivers the receipts serially, so the done of successful calls run in
// start order; done runs on the producer's goroutine and must not block. When ctx ends
// first, done reports ctx's error at once (the messages may still be written). Errors and
// partial failures are those of [Store.Append].
func (s *Store) AppendAsync(ctx context.Context, stream string, partition int, msgs [][]byte, done func([]uint64, error)) {
	if err := core.ValidateStreamName(stream); err != nil {
		done(nil, s.mapErr(ctx, "append", stream, err))
		return
	}
	ctx, exit, err := s.begin(ctx, "append", stream)
	if err != nil {
		done(nil, err)
		return
	}
	err = s.checkPartition(ctx, stream, partition)
	if err == nil {
		err = core.ValidateMessages(msgs, s.opts.MaxMessageSize)
	}
	if err != nil {
		err = s.mapErr(ctx, "append", stream, err) // before exit, which ends ctx
		exit()
		done(nil, err)
		return
	}
	// once guards done: the append's outcome and the watch race to report.
	var once sync.Once
	var watch appendWatch
	report := func(idx []uint64, err error) {
		once.Do(func() {
			watch.stop()
			if err != nil && ctx.Err() == nil && !s.calls.Closed() {
				// Was the stream deleted? Ask on a goroutine of the store: this may be the
				// producer's, which must not wait for the admin API (the done of a failed
				// call need not keep the order of the successful ones).
				s.calls.Go(func() {
					err := s.mapErr(ctx, "append", stream, s.deletedStream(ctx, stream, err))
					exit()
					done(nil, err)
				})
				return
			}
			err = s.mapErr(ctx, "append", stream, err) // before exit, which ends ctx
			exit()
			done(idx, err)
		})
	}
	watch.start(s, ctx, stream, func(err error) { report(nil, err) })
	s.appendTopicAsync(ctx, stream, partition, msgs, report)
}

// appendTopic appends msgs to one partition of base and waits for the outcome; see
// appendTopicAsync.
func (s *Store) appendTopic(ctx context.Context, base string, partition int, msgs [][]byte) ([]uint64, error) {
	type result struct {
		idx []uint64
		err error
	}
	ch := make(chan result, 1)
	s.appendTopicAsync(ctx, base, partition, msgs, func(idx []uint64, err error) { ch <- result{idx, err} })
	r := <-ch
	return r.idx, r.err
}

// appendTopicAsync sends msgs to one partition of base and calls done exactly once: when
// every receipt arrived, or with ctx's error as soon as ctx ends. It waits for the
// partition's producer, so it returns only when the messages are queued in it (or failed).
func (s *Store) appendTopicAsync(ctx context.Context, base string, partition int, msgs [][]byte, done func([]uint64, error)) {
	if len(msgs) == 0 {
		done([]uint64{}, nil)
		return
	}
	topic := s.partitionTopic(base, partition)
	sl, err := s.producer(ctx, topic)
	if err != nil {
		done(nil, err)
		return
	}
	// once guards done: the receipts and ctx's end race to report.
	var once sync.Once
	// The producer keeps a payload until its receipt, which can come after done reported
	// ctx's end: send copies, in one buffer.
	own := core.CopyMessages(msgs)
	receipts := make([]receipt, len(msgs))
	left := len(msgs)
	var mu sync.Mutex // guards left: receipts failed inside SendAsync run on this goroutine
	stop := context.AfterFunc(ctx, func() { once.Do(func() { done(nil, ctx.Err()) }) })
	finish := func() {
		stop()
		// Every message is acknowledged or failed: the producer may be evicted from now on.
		s.releaseProducer(sl)
		once.Do(func() { done(s.receiptIndexes(sl, receipts)) })
	}
	if !sl.beginSend() {
		// The producer is being closed (the Store forgot it): fail as a closed one does.
		stop()
		s.releaseProducer(sl)
		once.Do(func() { done(nil, pulsar.ErrProducerClosed) })
		return
	}
	defer sl.endSend()
	for i, m := range own {
		pm := &pulsar.ProducerMessage{Payload: m}
		if len(m) == 0 {
			// pulsar-client-go drops a non-batched message with no payload and no properties
			// as corrupt when it reads it; a property makes it deliver an empty payload.
			pm.Properties = emptyMessageProperties
		}
		sl.p.SendAsync(ctx, pm, func(id pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
			mu.Lock()
			receipts[i] = receipt{id, err}
			left--
			last := left == 0
			mu.Unlock()
			if last {
				finish()
			}
		})
	}
}

// receiptIndexes returns the indexes of receipts, or the first error among them. A
// producer closed or fenced by the broker, or whose topic is gone, is forgotten, so the next
// append creates a fresh one. It runs before done of an append still inside calls.Begin.
func (s *Store) receiptIndexes(sl *producerSlot, receipts []receipt) ([]uint64, error) {
	out := make([]uint64, len(receipts))
	for i, r := range receipts {
		if r.err != nil {
			var perr *pulsar.Error
			if errors.As(r.err, &perr) && (perr.Result() == pulsar.ProducerClosed || perr.Result() == pulsar.ProducerFenced ||
				perr.Result() == pulsar.TopicNotFound || perr.Result() == pulsar.TopicTerminated) {
				if s.dropProducer(sl) {
					// Already closed or fenced by the broker. Not on this goroutine, which
					// may be the producer's own.
					s.sdk.Go(func() { closeSlot(sl) })
				}
			}
			return nil, fmt.Errorf("message %d of %d: %w", i, len(receipts), r.err)
		}
		var err error
		if out[i], err = toIndex(r.id); err != nil {
			return nil, fmt.Errorf("message %d of %d: %w", i, len(receipts), err)
		}
	}
	s.mu.Lock()
	if end := out[len(out)-1] + 1; end > s.appended[sl.topic] {
		s.appended[sl.topic] = end
	}
	s.mu.Unlock()
	return out, nil
}

// appendedEnd returns one past the highest index of topic that this store appended (0:
// none).
func (s *Store) appendedEnd(topic string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appended[topic]
}

// readerAt returns the options of a reader of topic (partition partition) that starts at
// index from, with a receive queue of queue messages.
func readerAt(topic string, partition int, from uint64, queue int) pulsar.ReaderOptions {
	return pulsar.ReaderOptions{
		Topic:                   topic,
		StartMessageID:          fromIndex(from, partition),
		StartMessageIDInclusive: true,
		ReceiverQueueSize:       queue,
	}
}

// patience bounds a wait to ownAppendWait from its first use (one timer per Fetch, not
// per message). The zero value is ready; stop releases the timer and resets it.
type patience struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (p *patience) context(parent context.Context) context.Context {
	if p.ctx == nil {
		p.ctx, p.cancel = context.WithTimeout(parent, ownAppendWait)
	}
	return p.ctx
}

func (p *patience) over() bool { return p.ctx != nil && p.ctx.Err() != nil }

func (p *patience) stop() {
	if p.cancel != nil {
		p.cancel()
		p.ctx, p.cancel = nil, nil
	}
}

// gone handles a Fetch that found messages known to exist (below c.end) gone: another Store
// deleted the stream since, maybe re-creating it. A re-created partition starts in a new
// ledger, so all its indexes are above the deleted ones, and every message the Fetch
// collected (out, all below c.next) or the reader kept is of the deleted stream: gone drops
// them, forgets this store's appends to topic, and returns out emptied.
func (s *Store) gone(topic string, c *idleReader, out []core.Message) []core.Message {
	s.forgetAppended(topic)
	c.last = nil
	return out[:0]
}

// forgetAppended forgets the end of this store's own appends to topic, which a Fetch found
// gone (a receipt that arrives meanwhile is forgotten too: the next Fetch asks the broker).
// It also forgets the topic's producer unless an append holds it: the client closes a
// producer whose topic vanished, and the next Append should not fail on it.
func (s *Store) forgetAppended(topic string) {
	s.mu.Lock()
	delete(s.appended, topic)
	sl := s.producers[topic]
	if sl != nil && sl.users == 0 {
		delete(s.producers, topic)
	} else {
		sl = nil
	}
	s.mu.Unlock()
	if sl != nil {
		s.sdk.Go(func() { closeSlot(sl) })
	}
}

// partitionEnd asks the broker, through the admin API (one round trip), for one past the
// index of the last persisted message of partition partition of base (0: none). Not through
// a reader's GetLastMessageID: that one takes no context, retries until the client's
// operation timeout, waits without limit while its reader reconnects (its topic deleted,
// the broker restarting), and never returns if the reader is closed between two tries, so
// a Fetch that gave up on it left a goroutine that Close waited for, or leaked. This one
// ends with ctx, so a Fetch and Close are prompt. A topic that does not exist returns an
// adminError with status 404. The caller is inside calls.Begin.
func (s *Store) partitionEnd(ctx context.Context, base string, partition int) (uint64, error) {
	var last struct {
		LedgerID *int64 `json:"ledgerId"`
		EntryID  *int64 `json:"entryId"`
	}
	path := s.admin.topicPath(s.topic(base)+"-partition-"+itoa(partition)) + "/lastMessageId"
	if err := s.admin.do(ctx, http.MethodGet, path, nil, &last); err != nil {
		return 0, fmt.Errorf("last message id: %w", err)
	}
	if last.LedgerID == nil || last.EntryID == nil {
		// Not read as 0:0, which would make a Fetch wait for a message that is not there.
		return 0, fmt.Errorf("last message id: admin GET %s: answer without ledgerId and entryId", path)
	}
	end, _, err := endIndex(pulsar.NewMessageID(*last.LedgerID, *last.EntryID, -1, int32(partition)))
	return end, err
}

// receipt is the outcome of one SendAsync.
type receipt struct {
	id  pulsar.MessageID
	err error
}

// Fetch returns up to limit messages of the partition with index >= from. It positions a
// reader at the message id the index maps to (inclusive), so it seeks instead of scanning,
// and it stops at the last message the broker reported as persisted, so a caught-up Fetch
// returns an empty slice after one round trip (and a Fetch that reached that message
// returns what it has without asking again). A reader left positioned by a Fetch is kept
// (up to 64, within Options.MaxReaderBytes) with a copy of the messages that Fetch
// returned, and serves the Fetch that continues from its position or re-reads part of
// what it returned (a caller that used only the first messages of a page), without
// creating a reader. Messages this store appended
// itself are read without asking the broker. A message known to exist that does not come
// within a second, or that the reader skips, means that another Store deleted the stream
// (maybe re-creating it): Fetch then returns what the partition holds, not the deleted
// messages. Where the partition ends is asked through the admin API, so a Fetch whose ctx
// ends, or that Close cancels, returns at once and leaves no question running. See the
// package doc, "Index semantics".
func (s *Store) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, s.mapErr(ctx, "fetch", stream, err)
	}
	if err := core.ValidateLimit(limit); err != nil {
		return nil, s.mapErr(ctx, "fetch", stream, err)
	}
	ctx, done, err := s.begin(ctx, "fetch", stream)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.checkPartition(ctx, stream, partition); err != nil {
		return nil, s.mapErr(ctx, "fetch", stream, err)
	}
	msgs, err := s.fetchTopic(ctx, stream, partition, from, limit)
	if err != nil {
		return nil, s.mapErr(ctx, "fetch", stream, s.deletedStream(ctx, stream, err))
	}
	return msgs, nil
}

func (s *Store) fetchTopic(ctx context.Context, base string, partition int, from uint64, limit int) ([]core.Message, error) {
	out := []core.Message{}
	if limit == 0 {
		return out, nil
	}
	topic := s.partitionTopic(base, partition)
	c := s.takeReader(topic, from)
	if c == nil {
		q := s.queueFor(topic)
		r, err := s.reader(ctx, readerAt(topic, partition, from, q))
		if err != nil {
			return nil, err
		}
		c = &idleReader{topic: topic, r: r, next: from, queue: q}
	}
	keep := false
	defer func() {
		if keep {
			s.putReader(c)
		} else {
			s.closeReader(c.r)
		}
	}()
	out = c.replay(out, from, limit)
	if len(out) == limit {
		keep = true // position and replay unchanged
		return out, nil
	}
	var wait patience // for a message known to exist (see idleReader.end)
	defer wait.stop()
	for len(out) < limit {
		if c.next >= c.end {
			if len(out) > 0 {
				break // what is known to exist; the next Fetch asks the broker
			}
			// What this store appended is persisted: read up to it without a round trip.
			own := s.appendedEnd(topic)
			if own > c.next {
				c.end = own
				continue
			}
			// Nothing known to be persisted from next on: ask the broker (one round trip).
			end, err := s.partitionEnd(ctx, base, partition)
			if err != nil {
				return nil, err
			}
			if end < own {
				// The broker lost what this store appended: another Store deleted the stream.
				out = s.gone(topic, c, out)
			}
			if end <= c.next {
				break // caught up
			}
			c.end = end
		}
		// A message in [next, end) exists, so Next does not block, unless another Store
		// deleted the stream since: wait at most ownAppendWait, then ask the broker.
		m, err := c.r.Next(wait.context(ctx))
		if err != nil && ctx.Err() == nil && wait.over() {
			wait.stop()
			// Read on through a new reader at next: if the stream was deleted, this one may
			// have lost it for good (pulsar-client-go stops reconnecting a reader whose topic
			// was not found). Then ask the broker where the partition ends.
			q := s.queueFor(topic)
			r, err := s.reader(ctx, readerAt(topic, partition, c.next, q))
			if err != nil {
				return nil, err
			}
			s.closeReader(c.r)
			c.r, c.queue = r, q
			end, err := s.partitionEnd(ctx, base, partition)
			if err != nil {
				return nil, err
			}
			if end < c.end {
				out = s.gone(topic, c, out)
				c.end = end
				if end <= c.next {
					break // the partition holds nothing from next on
				}
			}
			// Otherwise the partition reaches end-1 or beyond (a re-created one does: its
			// indexes are all above the deleted ones, and a skip is noticed below): keep
			// waiting.
			continue
		}
		if err != nil {
			return nil, err
		}
		i, err := toIndex(m.ID())
		if err != nil {
			return nil, err
		}
		if i < c.next { // a new reader may start one entry early; never return it
			continue
		}
		if i >= c.end {
			// The reader skipped messages known to exist: it reconnected to a re-created
			// stream. m is the first message of the new one from next on.
			out = s.gone(topic, c, out)
		}
		out = append(out, core.Message{Index: i, Data: m.Payload()})
		c.next = i + 1
		c.read++
		c.readBytes += len(m.Payload())
	}
	c.remember(out)
	keep = true
	return out, nil
}

// Reader cache bounds: sequential pulls reuse the reader the previous Fetch left positioned
// at their from index, instead of creating one per call.
const (
	maxIdleReaders = 64
	// ownAppendWait is how long a Fetch waits for a message that this store's own appends
	// say exists before it asks the broker whether it still does (another Store may have
	// deleted the stream). The message is persisted, so it normally comes at once; the
	// question only costs a round trip.
	ownAppendWait = time.Second
	// readerQueueSize is how many messages a reader prefetches at most: pulsar-client-go's
	// default. With fewer small messages, a Fetch of a page waits for the broker's dispatch
	// of the next flow permits (100 made the hub's pulls several times slower). Larger
	// messages get fewer (see queueFor).
	readerQueueSize = 1000
	// maxSizeHints bounds the topics whose mean message size the Store remembers.
	maxSizeHints = 4096
	// queueShares: a reader's receive queue is sized to hold Options.MaxReaderBytes /
	// queueShares (see "Memory of idle readers").
	queueShares = 16
	// maxReplayBytes bounds the copy of its last returned messages an idle reader keeps
	// (the hub sends at most a 64 KiB frame of a page it fetched).
	maxReplayBytes = 1 << 20
)

// idleReader is a reader that has returned every message below next and none from next on.
type idleReader struct {
	topic string
	r     pulsar.Reader
	next  uint64
	// end is one past a message known to be persisted (0: none known): the last one the
	// broker reported, or the last one this store appended (it has the receipt). While
	// next < end the reader's next message is below end, unless another Store deleted
	// the stream since.
	end uint64
	// last holds copies of every message with index in [last[0].Index, next): the end of
	// what the reader returned, for a Fetch that re-reads it.
	last []core.Message
	// queue is the reader's ReceiverQueueSize: the most messages it holds prefetched.
	queue int
	// read and readBytes count the messages the reader returned and their payload bytes.
	read, readBytes int
	// bytes is what the idle reader counts in Store.idleBytes (see Store.putReader).
	bytes int
}

// meanSize returns the mean payload size of the messages c returned, and false if it
// returned none.
func (c *idleReader) meanSize() (int, bool) {
	if c.read == 0 {
		return 0, false
	}
	return c.readBytes / c.read, true
}

// keptBytes returns the size of the copies c keeps.
func (c *idleReader) keptBytes() int {
	n := 0
	for _, m := range c.last {
		n += len(m.Data)
	}
	return n
}

// covers reports whether c can serve a Fetch from index from: from is its position, or
// within the messages it keeps.
func (c *idleReader) covers(from uint64) bool {
	return from == c.next || (len(c.last) > 0 && c.last[0].Index <= from && from < c.next)
}

// replay appends to out copies of up to limit kept messages with index >= from.
func (c *idleReader) replay(out []core.Message, from uint64, limit int) []core.Message {
	k, _ := slices.BinarySearchFunc(c.last, from, func(m core.Message, from uint64) int { return cmp.Compare(m.Index, from) })
	for _, m := range c.last[k : k+min(len(c.last)-k, limit)] { // k+limit could overflow
		out = append(out, core.Message{Index: m.Index, Data: bytes.Clone(m.Data)})
	}
	return out
}

// remember keeps copies of the end of msgs, the messages a Fetch returned (ending at
// c.next), up to maxReplayBytes. It keeps what it had when msgs is empty.
func (c *idleReader) remember(msgs []core.Message) {
	if len(msgs) == 0 {
		return
	}
	k, size := len(msgs), 0
	for k > 0 && size+len(msgs[k-1].Data) <= maxReplayBytes {
		k--
		size += len(msgs[k].Data)
	}
	buf := make([]byte, 0, size)
	last := make([]core.Message, 0, len(msgs)-k)
	for _, m := range msgs[k:] {
		buf = append(buf, m.Data...)
		last = append(last, core.Message{Index: m.Index, Data: buf[len(buf)-len(m.Data) : len(buf) : len(buf)]})
	}
	c.last = last
}

// takeReader removes and returns an idle reader of topic that covers from, or nil.
func (s *Store) takeReader(topic string, from uint64) *idleReader {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.idle {
		if c.topic == topic && c.covers(from) {
			s.idle = append(s.idle[:i], s.idle[i+1:]...)
			s.idleBytes -= c.bytes
			return c
		}
	}
	return nil
}

// Memory of idle readers. pulsar-client-go bounds a reader's receive queue in messages
// only, and says nothing of what it holds: an idle reader holds up to its queue size of the
// messages after its position once they exist (the broker pushes them as they are
// appended, up to the flow permits it has). So the Store estimates an idle reader's queue
// as its queue size times the mean size of the messages it returned (the next ones are
// most likely alike), and bounds it two ways:
//
//   - Per reader, by sizing the queue: a reader gets as many messages as fit in a 16th
//     (queueShares) of Options.MaxReaderBytes, at the mean size last seen on its topic:
//     1000 messages (pulsar-client-go's default) up to 4 KiB with the default 64 MiB, 64
//     of 64 KiB, at least 1. A queue of a fixed number of bytes keeps about as many bytes
//     in flight whatever the message size, and small messages keep pulsar-client-go's
//     default, so their speed (a queue of 100 of them made the hub's pulls several times
//     slower). A 16th, not a 64th (maxIdleReaders), because sequential Fetch of pages of
//     16 messages of 64 KiB was about a quarter slower with a queue of 16 than with 1000,
//     and as fast with 64: so about 64 idle readers fit in the bound with messages of
//     1 KiB (fewer as they keep more copies), about 16 with large ones.
//   - Over the Store, by closing the least recently used idle readers while the idle
//     readers' bytes (queue estimate and kept copies) exceed Options.MaxReaderBytes: the
//     queue estimate errs when sizes change, a queue of one message of up to 5 MiB exceeds
//     the per-reader size, and a reader created before its topic's message size was known
//     has the default queue. Such a reader, whose queue is estimated above twice the
//     per-reader size while a new one would get a smaller queue, is closed rather than kept
//     (it would evict many right-sized ones): the next Fetch pays one reader creation and
//     gets a right-sized queue.
//
// A reader that returned no message yet is estimated at its topic's last mean size, or, for
// a topic never read, as if a queue of the default size held a 64th of MaxReaderBytes (a
// caught-up reader of an empty partition is not thought to need more than its share).

// queueBytes returns the bytes a new reader's receive queue is sized to hold.
func (s *Store) queueBytes() int { return s.opts.MaxReaderBytes / queueShares }

// queueFor returns the receive queue size of a new reader of topic: what fits in
// queueBytes at the mean message size last seen on topic, at most readerQueueSize and at
// least 1.
func (s *Store) queueFor(topic string) int {
	s.mu.Lock()
	mean, ok := s.sizes[topic]
	s.mu.Unlock()
	return s.queueOf(mean, ok)
}

func (s *Store) queueOf(mean int, known bool) int {
	if !known {
		return readerQueueSize
	}
	return max(1, min(readerQueueSize, s.queueBytes()/max(mean, 1)))
}

// estimateLocked sets c.bytes, the bytes c holds as an idle reader (see "Memory of idle
// readers"), learning its mean message size for the next readers of its topic, and
// returns the part of it that is its queue's and the queue size a new reader would get.
func (s *Store) estimateLocked(c *idleReader) (queued, queue int) {
	mean, known := c.meanSize()
	if known {
		if _, ok := s.sizes[c.topic]; !ok && len(s.sizes) >= maxSizeHints {
			for t := range s.sizes { // any one: it only costs its next reader a default queue
				delete(s.sizes, t)
				break
			}
		}
		s.sizes[c.topic] = mean
	} else {
		mean, known = s.sizes[c.topic]
	}
	if !known {
		mean = s.opts.MaxReaderBytes / maxIdleReaders / readerQueueSize
	}
	queued = c.queue * mean
	c.bytes = queued + c.keptBytes()
	return queued, s.queueOf(mean, known)
}

// putReader keeps c for a later Fetch, then closes the least recently used idle readers
// beyond maxIdleReaders and while they hold more than Options.MaxReaderBytes (c too, when
// it alone holds more). It closes c instead of keeping it when the store is closed, or when
// c's queue, sized before the size of its messages was known, holds more than twice the
// per-reader size while a new reader would get a smaller one (see "Memory of idle
// readers").
func (s *Store) putReader(c *idleReader) {
	s.mu.Lock()
	if s.calls.Closed() { // Close drops the idle readers after this
		s.mu.Unlock()
		s.closeReader(c.r)
		return
	}
	var evict []*idleReader
	if queued, queue := s.estimateLocked(c); queued > 2*s.queueBytes() && c.queue > queue {
		evict = append(evict, c)
	} else {
		s.idle = append(s.idle, c)
		s.idleBytes += c.bytes
	}
	for len(s.idle) > maxIdleReaders || (len(s.idle) > 0 && s.idleBytes > s.opts.MaxReaderBytes) {
		evict = append(evict, s.idle[0])
		s.idleBytes -= s.idle[0].bytes
		s.idle = s.idle[1:]
	}
	s.mu.Unlock()
	for _, c := range evict {
		s.closeReader(c.r)
	}
}

// dropReaders closes the idle readers whose topic satisfies match (all when match is nil),
// and forgets the message sizes seen on those topics.
func (s *Store) dropReaders(match func(topic string) bool) {
	s.mu.Lock()
	for t := range s.sizes {
		if match == nil || match(t) {
			delete(s.sizes, t)
		}
	}
	var drop []*idleReader
	kept := s.idle[:0]
	for _, c := range s.idle {
		if match == nil || match(c.topic) {
			drop = append(drop, c)
			s.idleBytes -= c.bytes
		} else {
			kept = append(kept, c)
		}
	}
	s.idle = kept
	s.mu.Unlock()
	for _, c := range drop {
		s.closeReader(c.r)
	}
}

// reader creates a reader, giving up when ctx ends (a reader created after that is closed).
func (s *Store) reader(ctx context.Context, o pulsar.ReaderOptions) (pulsar.Reader, error) {
	type result struct {
		r   pulsar.Reader
		err error
	}
	ch := make(chan result, 1)
	var handoff sync.Mutex
	abandoned := false
	s.sdk.Go(func() { // takes no context: see sdkCalls
		r, err := s.client.CreateReader(o)
		handoff.Lock()
		defer handoff.Unlock()
		if abandoned {
			if r != nil {
				r.Close()
			}
			return
		}
		ch <- result{r, err}
	})
	select {
	case res := <-ch:
		return res.r, res.err
	case <-ctx.Done():
		handoff.Lock()
		abandoned = true
		handoff.Unlock()
		select {
		case res := <-ch: // sent before we gave up
			if res.r != nil {
				s.closeReader(res.r)
			}
		default:
		}
		return nil, ctx.Err()
	}
}

// closeReader closes r on a goroutine of s.sdk: pulsar-client-go's Close takes no context
// and waits for the broker's answer (up to the client's operation timeout).
func (s *Store) closeReader(r pulsar.Reader) {
	s.sdk.Go(r.Close)
}

// closeWait bounds how long Close waits for the calls of pulsar-client-go that take no
// context (see sdkCalls) before it returns and leaves them to end on their own.
const closeWait = 5 * time.Second

// sdkCalls runs the calls of pulsar-client-go that take no context and that nothing can
// stop: CreateProducer, CreateReader and the Close of a producer or reader. Each returns
// within pulsar-client-go's bounds (its operation timeout per request: a creation makes a
// lookup and a producer or subscribe request, a producer's also a partition lookup; a
// close makes one request; a new connection's dial is bounded only by the client's
// ConnectionTimeout), but a broker that stopped answering makes each wait that long,
// and Store calls must end with their ctx and Close promptly: so they run on goroutines of
// their own, which a Store call starts (or Close, before it calls then) and never waits
// for. The zero value is ready.
type sdkCalls struct {
	mu    sync.Mutex
	n     int           // goroutines running
	idle  chan struct{} // made by wait; closed when n drops to 0
	after func()        // set by then; run by the goroutine that ends last
}

// Go runs f on a goroutine of w.
func (w *sdkCalls) Go(f func()) {
	w.mu.Lock()
	w.n++
	w.mu.Unlock()
	go func() { // owned by the Store: Close waits for it up to closeWait, then leaves it to end
		defer w.done()
		f()
	}()
}

func (w *sdkCalls) done() {
	w.mu.Lock()
	w.n--
	var after func()
	if w.n == 0 {
		if w.idle != nil {
			close(w.idle)
			w.idle = nil
		}
		after, w.after = w.after, nil
	}
	w.mu.Unlock()
	if after != nil {
		after()
	}
}

// wait waits until no goroutine of w runs, or until timeout passed, and reports whether
// none runs.
func (w *sdkCalls) wait(timeout time.Duration) bool {
	w.mu.Lock()
	if w.n == 0 {
		w.mu.Unlock()
		return true
	}
	if w.idle == nil {
		w.idle = make(chan struct{})
	}
	idle := w.idle
	w.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// then runs f once no goroutine of w runs: at once, on this goroutine, if none does,
// otherwise on the one that ends last. No goroutine may be started after then.
func (w *sdkCalls) then(f func()) {
	w.mu.Lock()
	if w.n > 0 {
		w.after = f
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	f()
}

// Close cancels in-flight calls and waits for them (each ends with its context), then closes
// the producers and idle readers, and, if the store built it (Open), the client. Calls of
// pulsar-client-go that take no context (creating a producer or reader that a call gave up
// on, closing one) run on goroutines of their own: Close waits for them at most closeWait
// (5 s), so it returns promptly even when the broker does not answer. What still runs then
// is only such goroutines: each ends when its pulsar-client-go call returns (bounded by
// the client's operation timeout per request, see sdkCalls), closes the producer or reader
// it created, and the last one closes the client of a store built by Open. With [New], they
// use the caller's client until then (a client closed earlier makes them fail sooner).
// Later calls of Close wait until the first has finished and return nil.
func (s *Store) Close() error {
	return s.calls.Shutdown(func() error {
		s.calls.Cancel()
		s.calls.Wait(0)
		s.mu.Lock()
		slots := s.producers
		s.producers = map[string]*producerSlot{}
		s.mu.Unlock()
		for _, sl := range slots {
			s.sdk.Go(func() { closeSlot(sl) })
		}
		s.dropReaders(nil)
		s.sdk.wait(closeWait)
		if s.ownClient {
			s.sdk.then(s.client.Close)
		}
		return nil
	})
}
