package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

// Publisher defaults.
const (
	DefaultWindow = 256
	// DefaultRequestTimeout is how long a publisher waits for a push confirm, and a consumer
	// for a reply beyond its pull wait, before it treats the connection as broken. It is
	// Kafka's request.timeout.ms: a publisher that times out reconnects and resends its whole
	// window, which loads a broker that is only slow even more, so the bound is generous. A
	// connection that is closed or reset is noticed at once, without waiting for it.
	DefaultRequestTimeout = 30 * time.Second
	DefaultCloseTimeout   = 10 * time.Second
	DefaultMaxBatch       = 64
)

// ErrTimeout matches the error recorded when a request was not answered within its timeout.
// The publisher and consumer retry after it; it reaches callers only through logs and
// [Consumer.Run] when retries are exhausted.
var ErrTimeout = errors.New("client: request timed out")

// ErrGaveUp matches the error of an [Ack] whose message the hub refused as many times as
// [WithMaxRejections] allows.
var ErrGaveUp = errors.New("client: gave up on the message")

// ErrRejected matches a request the hub answered with status ERROR or an "error" reply.
var ErrRejected = errors.New("client: hub rejected the request")

// ErrRefused matches the error of a push request that the hub refused with status ERROR (its
// backend did not store the messages), which a [Publisher] sends again (see
// [WithMaxRejections]); it also matches [ErrRejected]. A session that fails, for example
// because the hub would not create the stream, does not match it.
var ErrRefused = fmt.Errorf("%w (status ERROR)", ErrRejected)

// ErrProtocol matches the error of a session that failed because the hub broke the protocol
// (docs/protocol.md), for example with a sluice_pull_batch reply larger than its request
// allows; the error matches [core.ErrUnavailable] too. The consumer drops what it received
// on that session and reconnects; a [Conn] fails for good.
var ErrProtocol = errors.New("client: hub broke the protocol")

type publisherConfig struct {
	window         int
	requestTimeout time.Duration
	closeTimeout   time.Duration
	backoff        Backoff
	maxBatch       int
	outboxPath     string
	logger         *slog.Logger
	onSessionError func(error)
	maxMessage     int
	maxRejections  int
	partition      int
}

// PublisherOption configures a [Publisher]. Options are validated by [NewPublisher]; an
// invalid one returns an error matching [core.ErrInvalidOption].
type PublisherOption func(*publisherConfig) error

// MaxWindow is the largest window a publisher takes ([WithWindow]): room for each message
// in flight is set aside when the publisher starts.
const MaxWindow = 1 << 16

// WithWindow sets how many messages may be published and not yet confirmed (default
// DefaultWindow, at most MaxWindow). When the window is full, Publish blocks until a confirm
// frees room.
func WithWindow(n int) PublisherOption {
	return func(c *publisherConfig) error {
		if n < 1 || n > MaxWindow {
			return fmt.Errorf("%w: client: window %d, want 1 to %d", core.ErrInvalidOption, n, MaxWindow)
		}
		c.window = n
		return nil
	}
}

// WithRequestTimeout sets how long the publisher waits for the confirm of one push request
// (default DefaultRequestTimeout). Each request has its own timer. A timeout ends the
// publisher's session: it opens a new one and resends every unconfirmed message in order.
// The TCP connection, which other sessions of the [Client] share, stays open (see [Client]).
func WithRequestTimeout(d time.Duration) PublisherOption {
	return func(c *publisherConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: client: request timeout %v, want > 0", core.ErrInvalidOption, d)
		}
		c.requestTimeout = d
		return nil
	}
}

// WithCloseTimeout bounds how long Close waits for unconfirmed messages (default
// DefaultCloseTimeout).
func WithCloseTimeout(d time.Duration) PublisherOption {
	return func(c *publisherConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: client: close timeout %v, want >= 0", core.ErrInvalidOption, d)
		}
		c.closeTimeout = d
		return nil
	}
}

// WithBackoff sets the backoff between reconnect attempts, and before the messages of a
// request the hub refused are sent again (default DefaultBackoff).
func WithBackoff(b Backoff) PublisherOption {
	return func(c *publisherConfig) error {
		if err := b.validate(); err != nil {
			return err
		}
		c.backoff = b
		return nil
	}
}

// WithMaxBatch sets how many queued messages one request may carry (default
// DefaultMaxBatch); a request never exceeds a frame, nor holds more messages than the hub
// can confirm in one frame (an index for each: some 6,500, see [wire.MaxPushBatch]). With 1
// the publisher sends plain Ockam stream_push requests, which any Ockam stream service
// understands; with more it uses the Sluice sluice_push_batch extension.
func WithMaxBatch(n int) PublisherOption {
	return func(c *publisherConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: client: max batch %d, want >= 1", core.ErrInvalidOption, n)
		}
		c.maxBatch = n
		return nil
	}
}

// WithOutbox keeps every unconfirmed message in a bbolt file at path: Publish returns only
// after the message is durable there, a confirmed message is removed, and a publisher opened
// on the same file (after a crash or restart) sends the messages left in it first, in their
// original order. Those messages hold no window slot (Publish does not wait for them), but
// they count against the window's messages in flight: no more than the window are sent
// before confirms come back. They are read from the file as they are sent: however many
// the outbox holds, the publisher keeps in memory about a window of them (and a small
// record of each other one). One outbox file belongs to one partition of one stream
// ([WithPartition]); it cannot be shared by two publishers at once: NewPublisher on a file
// another publisher (of this process or another) holds open fails after waiting a second.
func WithOutbox(path string) PublisherOption {
	return func(c *publisherConfig) error {
		if path == "" {
			return fmt.Errorf("%w: client: empty outbox path", core.ErrInvalidOption)
		}
		c.outboxPath = path
		return nil
	}
}

// WithPartition makes the publisher append to partition p of its stream (default 0). With
// p 0 it behaves as without the option: it sends stream_create, which creates a missing
// stream with one partition, as Ockam's stream clients do.
//
// For p above 0 the stream must exist with more than p partitions (sluice create
// -partitions N): the publisher never creates it, since it cannot know how many partitions
// it should have. Each session asks the hub for the route to the partition without creating
// anything (sluice_stream_open, or for a hub that does not know it the fallback described
// at [WithoutCreate]). When the stream does not exist, or has no partition p, retrying
// cannot help: the publisher fails for good. So it does when the stream is deleted while it
// runs: the hub then refuses its pushes, and after a refusal the publisher asks again. Every
// message not yet confirmed fails, its [Ack] and the next [Publisher.Flush] returning an
// error matching [core.ErrStreamNotFound] or [core.ErrInvalidArgument] that says what to
// do, and so does every later Publish. With an outbox the failed messages stay in it, for a
// publisher opened on it once the stream is fixed. An outbox belongs to one partition of
// one stream.
func WithPartition(p int) PublisherOption {
	return func(c *publisherConfig) error {
		if err := validPartition(p); err != nil {
			return err
		}
		c.partition = p
		return nil
	}
}

// WithMaxMessageSize lowers the largest message Publish accepts (default and upper bound
// MaxMessageSize). Set it to the hub's limit when that is lower (a hub answers a message
// above its limit with status ERROR, which the publisher would retry).
func WithMaxMessageSize(n int) PublisherOption {
	return func(c *publisherConfig) error {
		if n < 1 || n > MaxMessageSize {
			return fmt.Errorf("%w: client: max message size %d outside [1, %d]", core.ErrInvalidOption, n, MaxMessageSize)
		}
		c.maxMessage = n
		return nil
	}
}

// WithMaxRejections makes the publisher give up on a message once the hub refused (status
// ERROR: it tried to store the message and failed) n requests that held that message alone:
// its Ack completes with an error matching [ErrGaveUp] and the message leaves the outbox. A
// refused request ends neither the session nor the connection: only its messages are sent
// again, after a backoff ([WithBackoff]) during which the publisher sends nothing new, while
// the requests already in flight go on. A refused message, in a batch or alone, is sent
// again only in requests of its own, until it is confirmed or given up on, also on the
// sessions after a lost one; a refused batch says nothing of which of its messages the hub
// refuses, so it counts for none of them. So when the publisher gives up on a message, the
// hub has refused it exactly n times alone and at most once in a batch. Lost connections,
// timeouts and requests the hub did not take (an `error` or `sluice_error` reply, which a hub that is shutting
// down sends) never count: those messages are resent. The default, 0, retries forever
// (at-least-once); a limit trades that for not blocking behind a message the hub will never
// take.
func WithMaxRejections(n int) PublisherOption {
	return func(c *publisherConfig) error {
		if n < 0 {
			return fmt.Errorf("%w: client: max rejections %d, want >= 0", core.ErrInvalidOption, n)
		}
		c.maxRejections = n
		return nil
	}
}

// WithPublisherLogger sets the logger for reconnects and retries (default: discard).
func WithPublisherLogger(l *slog.Logger) PublisherOption {
	return func(c *publisherConfig) error {
		if l == nil {
			return fmt.Errorf("%w: client: nil logger", core.ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithPublisherSessionErrors calls f with the error of every failed session, before the
// publisher retries (what it logs as "session failed; reconnecting"): a lost or refused
// connection, a timeout, a request the hub did not take. f is also called with the error of
// every push request the hub refused (matching [ErrRefused]), which ends no session, before
// its messages are sent again. f runs in the publisher's goroutine and must return quickly.
// It lets an application say why messages are not being confirmed, as a NATS ErrorHandler
// does.
func WithPublisherSessionErrors(f func(error)) PublisherOption {
	return func(c *publisherConfig) error {
		if f == nil {
			return fmt.Errorf("%w: client: nil session error handler", core.ErrInvalidOption)
		}
		c.onSessionError = f
		return nil
	}
}

// PublisherStats are a publisher's counters since it was created.
type PublisherStats struct {
	// Published counts messages accepted by Publish (plus those recovered from the outbox).
	Published uint64
	// Sent counts message transmissions, resends included.
	Sent uint64
	// Confirmed counts messages confirmed by the hub.
	Confirmed uint64
	// Retried counts session failures (timeout, lost connection, a request the hub did not
	// take) after which the publisher reconnected and resent every unconfirmed message.
	Retried uint64
	// Refused counts messages in push requests the hub refused (status ERROR), once per
	// refusal. A refusal is no session failure: only those messages are sent again (see
	// [WithMaxRejections]).
	Refused uint64
	// Resent counts messages sent again after a session failure or a refusal.
	Resent uint64
	// DuplicatesPossible counts resent messages whose earlier transmission had left this
	// process: the hub may have stored them, so the stream may hold them twice. A refused
	// message counts too when it is sent again: a backend that reported a failure may have
	// stored it all the same (a Kafka produce that timed out, for example).
	DuplicatesPossible uint64
	// Timeouts counts requests whose timer fired before their confirm arrived.
	Timeouts uint64
	// Reconnects counts sessions opened after the first one.
	Reconnects uint64
	// Recovered counts messages loaded from the outbox at start.
	Recovered uint64
	// GaveUp counts messages dropped after WithMaxRejections refusals.
	GaveUp uint64
	// InFlight is the number of messages published and not yet confirmed, now.
	InFlight int
}

// entry is one message between Publish and its confirm.
type entry struct {
	seq  uint64
	data []byte
	// stored: recovered from the outbox, whose copy of the message (size bytes) is read
	// into data when the message is sent (see loadLocked); until then data is nil.
	stored  bool
	size    int
	slab    *slab  // the slab data is in; nil when data has an allocation of its own
	ack     Ack    // Publish returns &ack: one allocation for both
	slot    bool   // holds a window slot
	ready   bool   // durable in the outbox (always true without one)
	sentGen uint64 // session generation of the last transmission; 0 = never sent
	retry   bool   // refused (status ERROR) in generation sentGen: send it again
	refused int    // ERROR replies to requests holding only this message
	// alone: refused (status ERROR), alone or in a batch: from then on sent in requests of
	// its own until it is done, so that each later refusal counts against it
	// (WithMaxRejections), also after a session failure.
	alone bool
	done  bool
}

// pushRequest is one push request in flight.
type pushRequest struct {
	id      uint64
	gen     uint64
	entries []*entry
	timer   *time.Timer
}

// Publisher appends messages to one stream through a hub with at-least-once delivery.
//
// It numbers every request uniquely, keeps up to a window of messages in flight, times out
// each request on its own timer, reconnects with exponential backoff and jitter, re-creates
// the stream, and resends unconfirmed messages in their original order. A confirmed message
// is durable in the hub's backend. Messages may be stored more than once (counted in
// [PublisherStats].DuplicatesPossible); a receiver that must process each message once drops
// duplicates (a secure channel does).
//
// Order: messages are sent, and appended, in the order Publish accepted them. After a
// session failure every unconfirmed message is sent again from the oldest, so the first
// occurrences of a publisher's messages in the stream keep their order. One exception: when
// the hub refuses a request (status ERROR: its backend failed), requests already in flight
// behind it may be appended before the refused messages are sent again.
//
// A refused request ends neither the session nor the connection: only its messages are sent
// again, after a backoff during which the publisher sends nothing new (so that the exception
// stays limited to requests already in flight), and the other requests in flight are not
// sent twice. See [WithMaxRejections]. Unless the stream no longer exists: after a
// refusal the publisher asks the hub (sluice_stream_open, also with WithMaxBatch(1)), and
// a stream deleted while the session was up ends the session; the next one creates it
// again (partition 0) or the publisher fails for good ([WithPartition]).
//
// Methods are safe for concurrent use. Close stops it.
type Publisher struct {
	c         *Client
	stream    string
	cfg       publisherConfig
	log       *slog.Logger
	slots     chan struct{}
	kick      chan struct{}
	ctx       context.Context // ends at Close; owns the run loop and every request
	cancel    context.CancelFunc
	stopped   chan struct{}
	closing   chan struct{}
	encBuf    []byte  // encoding of the request being sent; used by the run goroutine only
	slab      *slab   // where Publish copies small messages (guarded by mu)
	entries   []entry // where Publish takes its entries from (guarded by mu)
	closeOnce sync.Once
	closeErr  error
	ob        *outbox
	open      partitionOpener // finds the route to a partition above 0 (run goroutine only)
	noOpen    bool            // the hub does not know sluice_stream_open (run goroutine only, see checkStream)

	mu        sync.Mutex
	queue     []*entry // unconfirmed entries in publish order (done ones popped from the front)
	reqs      map[uint64]*pushRequest
	gen       uint64 // current session generation
	failedGen uint64 // generation that failed (== gen: the run loop must reconnect)
	failErr   error
	nextSeq   uint64
	nextReqID uint64
	closed    bool
	broken    error         // the stream or partition does not exist: the publisher failed for good
	progress  chan struct{} // closed and replaced when the queue front advances
	removeq   []uint64      // confirmed outbox sequence numbers to delete
	sess      *session      // current session; replies of others are ignored
	// A refused request (status ERROR) pauses sending for a backoff (paused, until
	// pauseTimer fires; pauseSeq tells its timer from older ones); refusals counts the
	// refusals since the last confirm, for that backoff; refusalErrs are the refusals the run
	// loop has not logged and reported yet.
	paused      bool
	pauseSeq    uint64
	pauseTimer  *time.Timer
	pauseUntil  time.Time
	refusals    int
	refusalErrs []error
	// undelivered counts the messages that failed (Ack with an error) since a Flush last
	// reported failures; undeliveredErr is the first one's error.
	undelivered    int
	undeliveredErr error
	// abandoned is the sequence number of the first message Close left unconfirmed (0:
	// none), and abandonedN how many it left: a Flush that returns after Close reports them.
	abandoned  uint64
	abandonedN int

	sessionProgress atomic.Bool // a confirm arrived since the run loop last looked

	slotTaken func() // a test hook: in Publish, after it took a window slot (nil: none)

	published, sent, confirmed, retried, refused, resent, dups, timeouts, reconnects, recovered, failedMsgs atomic.Uint64
}

// NewPublisher returns a publisher to stream (created on the hub if it does not exist; see
// [WithPartition] for a partition above 0) and starts its background loop, which connects
// lazily and keeps reconnecting until Close. With an outbox, the messages left in it are
// queued first. ctx bounds only the setup (opening the outbox); it is not retained.
func NewPublisher(ctx context.Context, c *Client, stream string, opts ...PublisherOption) (*Publisher, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: client: nil Client", core.ErrInvalidOption)
	}
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("client: publisher: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := publisherConfig{
		window:         DefaultWindow,
		requestTimeout: DefaultRequestTimeout,
		closeTimeout:   DefaultCloseTimeout,
		backoff:        DefaultBackoff,
		maxBatch:       DefaultMaxBatch,
		logger:         discardLogger,
		maxMessage:     MaxMessageSize,
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: client: nil publisher option", core.ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	p := &Publisher{
		c:        c,
		stream:   stream,
		cfg:      cfg,
		log:      cfg.logger.With("stream", stream),
		slots:    make(chan struct{}, cfg.window),
		kick:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		closing:  make(chan struct{}),
		reqs:     map[uint64]*pushRequest{},
		nextSeq:  1,
		progress: make(chan struct{}),
		open:     partitionOpener{role: "publisher", stream: stream, partition: cfg.partition},
	}
	if cfg.outboxPath != "" {
		ob, items, err := openOutbox(cfg.outboxPath, stream, cfg.partition)
		if err != nil {
			return nil, err
		}
		p.ob = ob
		for _, it := range items {
			p.queue = append(p.queue, &entry{seq: it.seq, size: it.size, stored: true, ready: true})
			p.nextSeq = it.seq + 1
		}
		p.recovered.Store(uint64(len(items)))
		p.published.Store(uint64(len(items)))
	}
	// Set before track: from then on Client.Close may close p (which cancels it and waits
	// for run) while this function is still running.
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if err := c.track(p); err != nil {
		p.cancel()
		if p.ob != nil {
			_ = p.ob.close()
		}
		return nil, err
	}
	go p.run()
	return p, nil
}

// Stream returns the name of the stream the publisher appends to.
func (p *Publisher) Stream() string { return p.stream }

// Publish queues data for the stream and returns an [Ack] that completes when the hub
// confirmed it. It blocks while the window is full, until there is room or ctx ends. data is
// copied. With an outbox, Publish returns only after data is durable in it.
//
// A message larger than fits one frame returns an error matching [core.ErrMessageTooLarge].
// Once Close has begun, Publish returns an error matching [core.ErrClosed] at once and queues
// nothing: every message Close waits for was queued before it began.
func (p *Publisher) Publish(ctx context.Context, data []byte) (*Ack, error) {
	if len(data) > p.cfg.maxMessage {
		return nil, fmt.Errorf("client: publish to %q: %w: message is %d bytes, the limit is %d", p.stream, core.ErrMessageTooLarge, len(data), p.cfg.maxMessage)
	}
	select {
	case <-p.closing:
		return nil, fmt.Errorf("client: publish to %q: %w", p.stream, core.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil { // select would pick at random when a slot is free too
		return nil, err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.closing:
		return nil, fmt.Errorf("client: publish to %q: %w", p.stream, core.ErrClosed)
	}
	if p.slotTaken != nil {
		p.slotTaken()
	}
	p.mu.Lock()
	// Close closes p.closing under mu before it reads what to wait for, so a message queued
	// here is waited for, and none is queued once Close has begun (also when the select above
	// took the slot although closing was closed too).
	err := p.broken
	select {
	case <-p.closing:
		err = fmt.Errorf("%w (Close has begun)", core.ErrClosed)
	default:
	}
	if err != nil {
		p.mu.Unlock()
		<-p.slots
		return nil, fmt.Errorf("client: publish to %q: %w", p.stream, err)
	}
	e := p.newEntryLocked()
	e.slot, e.ready = true, p.ob == nil
	p.copyLocked(e, data)
	e.seq = p.nextSeq
	p.nextSeq++
	p.queue = append(p.queue, e)
	p.mu.Unlock()
	p.published.Add(1)
	if p.ob != nil {
		// The entry holds its place in the queue (so the send order is the sequence order)
		// but is not sent before it is durable in the outbox.
		if err := p.ob.put(e.seq, e.data); err != nil {
			p.mu.Lock()
			e.done = true
			if p.closed {
				// Close closed the outbox under the put: the publisher is closed, which is
				// what callers that publish again elsewhere (bistream) look for.
				err = fmt.Errorf("%w before the message was stored in the outbox: %w", core.ErrClosed, err)
			} else {
				p.undeliveredLocked(err)
			}
			p.advanceLocked()
			p.mu.Unlock()
			<-p.slots
			e.ack.finish(0, err)
			p.signal()
			return nil, fmt.Errorf("client: publish to %q: %w", p.stream, err)
		}
		p.mu.Lock()
		e.ready = true
		if err := p.broken; err != nil { // failed for good meanwhile (failForever)
			e.done = true
			p.undeliveredLocked(err)
			p.advanceLocked()
			p.mu.Unlock()
			<-p.slots
			e.ack.finish(0, err)
			return &e.ack, nil
		}
		p.mu.Unlock()
	}
	p.signal()
	return &e.ack, nil
}

// slabSize is the size of the buffers Publish copies messages into: one buffer for many
// small messages instead of an allocation each. Messages above slabSize/8 get their own
// allocation.
const slabSize = 64 << 10

// slab is a buffer Publish copies small messages into. Once every message in it has left
// the queue (confirmed or failed) and Publish has moved on to another slab, it goes back to
// slabPool for the next one: a steady publisher copies into the same few buffers instead of
// allocating as many bytes as it publishes, which the garbage collector would have to chase.
type slab struct {
	buf  []byte // the messages copied so far; cap slabSize
	refs int    // entries whose data is in buf and still queued (guarded by the owner's mu)
}

// slabPool holds slabs no message refers to any more (*slab), shared by every Publisher.
var slabPool = sync.Pool{New: func() any { return &slab{buf: make([]byte, 0, slabSize)} }}

// entryChunk is how many entries Publish allocates at once.
const entryChunk = 64

// newEntryLocked returns a zero entry from the current chunk (p.mu held): one allocation for
// entryChunk messages. An Ack kept by a caller keeps its chunk, but not the messages: their
// data is released when they leave the queue.
func (p *Publisher) newEntryLocked() *entry {
	if len(p.entries) == 0 {
		p.entries = make([]entry, entryChunk)
	}
	e := &p.entries[0]
	p.entries = p.entries[1:]
	return e
}

// copyLocked sets e.data to a copy of data that the publisher owns (p.mu held).
func (p *Publisher) copyLocked(e *entry, data []byte) {
	if len(data) > slabSize/8 {
		e.data = append([]byte(nil), data...)
		return
	}
	s := p.slab
	if s == nil || cap(s.buf)-len(s.buf) < len(data) {
		if s != nil && s.refs == 0 {
			s.buf = s.buf[:0] // every message in it has left the queue: start it over
		} else {
			s = slabPool.Get().(*slab) // the old one is recycled by the last entry to leave
			p.slab = s
		}
	}
	start := len(s.buf)
	s.buf = append(s.buf, data...)
	s.refs++
	e.data, e.slab = s.buf[start:len(s.buf):len(s.buf)], s
}

// releaseLocked drops e's reference to its data once e has left the queue (p.mu held): the
// last entry to leave a slab that Publish no longer copies into returns it to slabPool.
// Nothing may read e.data afterwards.
func (p *Publisher) releaseLocked(e *entry) {
	s := e.slab
	e.data, e.slab = nil, nil
	if s == nil {
		return
	}
	s.refs--
	if s.refs == 0 && s != p.slab {
		s.buf = s.buf[:0]
		slabPool.Put(s)
	}
}

// PublishSync publishes data and waits for its confirm; it returns the index the hub
// assigned. If ctx ends first the message is still being delivered.
func (p *Publisher) PublishSync(ctx context.Context, data []byte) (uint64, error) {
	a, err := p.Publish(ctx, data)
	if err != nil {
		return 0, err
	}
	return a.Wait(ctx)
}

// Flush waits until every message published before the call is done — confirmed by the hub,
// or failed — or ctx ends. It returns nil only when every one of them was confirmed. When
// some failed (given up on after [WithMaxRejections] refusals, too large for the route, or
// not written to the outbox), it returns an error that says how many and wraps the first
// one's error (for example [ErrGaveUp]); each [Ack] says which. A failure is reported once,
// by the first Flush that returns after it (which may be one that did not wait for that
// message, when Flushes overlap). Messages that [Publisher.Close] left unconfirmed are
// reported by every Flush that returns after that Close and should have waited for them,
// with an error matching [core.ErrClosed]. A publisher that failed for good (see
// [WithPartition]) is not closed: Flush returns its error, as each message's Ack does.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	target := p.nextSeq
	p.mu.Unlock()
	stopped := p.stopped
	for {
		p.mu.Lock()
		doneUpTo := len(p.queue) == 0 || p.queue[0].seq >= target
		ch := p.progress
		var err error
		if doneUpTo {
			err = p.takeUndeliveredLocked()
			if err == nil && p.abandoned != 0 && p.abandoned < target {
				err = fmt.Errorf("client: flush %q: %w with %d message(s) unconfirmed", p.stream, core.ErrClosed, p.abandonedN)
			}
		}
		p.mu.Unlock()
		if doneUpTo {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("client: flush %q: %d message(s) unconfirmed: %w", p.stream, p.inFlight(), ctx.Err())
		case <-stopped:
			p.mu.Lock()
			broken := p.broken
			p.mu.Unlock()
			if broken == nil {
				return fmt.Errorf("client: flush %q: %w", p.stream, core.ErrClosed)
			}
			// Failed for good (failForever): the run loop has ended, but a message still
			// being written to the outbox is failed, with that error, by its Publish,
			// which then advances the queue. Wait for it (Close wakes us too).
			stopped = nil
		}
	}
}

// Close stops accepting messages (a Publish that has not queued its message when Close
// begins fails with [core.ErrClosed]), waits up to the close timeout for the unconfirmed ones,
// then stops the background loop and releases the outbox. Acks still pending complete with
// an error matching [core.ErrClosed]; with an outbox those messages stay in it. Close returns
// an error when messages were left unconfirmed, or failed without a Flush reporting it (see
// [Publisher.Flush]). A second Close returns the first's result.
// Close does not close the [Client]; [Client.Close] closes the publishers still open.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		// Under mu, where Publish queues: a message queued before is one Flush below waits
		// for; a Publish after sees closing and queues nothing.
		p.mu.Lock()
		close(p.closing)
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.closeTimeout)
		flushErr := p.Flush(ctx)
		cancel()
		if errors.Is(flushErr, context.DeadlineExceeded) {
			// The close timeout ran out: the messages left are counted and explained below
			// (a caller's Flush did not fail, as "flush ... deadline exceeded" would say).
			flushErr = nil
		}
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		<-p.stopped
		p.mu.Lock()
		left := p.queue
		p.queue = nil
		if len(left) > 0 { // wake the Flushes that wait for them (a failed publisher's)
			close(p.progress)
			p.progress = make(chan struct{})
		}
		// The entries left unconfirmed, taken under mu: a Publish still writing its message
		// to the outbox marks its entry done under mu when that write fails, or when the
		// publisher failed for good meanwhile.
		var unconfirmed []*entry
		for _, e := range left {
			if !e.done {
				if p.abandonedN == 0 {
					p.abandoned = e.seq
				}
				p.abandonedN++
				unconfirmed = append(unconfirmed, e)
			}
		}
		for _, r := range p.reqs {
			r.timer.Stop()
		}
		p.reqs = map[uint64]*pushRequest{}
		p.unpauseLocked()
		removals := p.takeRemovalsLocked()
		failed := p.takeUndeliveredLocked() // failed after Close's Flush, which reports none then
		p.mu.Unlock()
		var errs []error
		if flushErr != nil {
			errs = append(errs, flushErr)
		}
		if failed != nil {
			errs = append(errs, failed)
		}
		n := len(unconfirmed)
		for _, e := range unconfirmed {
			e.ack.finish(0, fmt.Errorf("client: publisher to %q: %w before the message was confirmed", p.stream, core.ErrClosed))
		}
		if p.ob != nil {
			if err := p.ob.remove(removals); err != nil {
				errs = append(errs, err)
			}
			if err := p.ob.close(); err != nil {
				errs = append(errs, fmt.Errorf("client: close outbox: %w", err))
			}
		}
		if n > 0 {
			fate := "their Acks report ErrClosed; the hub may have stored some of them: publish them again (on a new publisher) if they must be delivered, or use WithOutbox"
			if p.ob != nil {
				fate = "they stay in the outbox, and the next publisher opened on it sends them"
			}
			errs = append(errs, fmt.Errorf("client: publisher to %q closed with %d unconfirmed message(s) after waiting %v for their confirms (WithCloseTimeout); %s",
				p.stream, n, p.cfg.closeTimeout, fate))
		}
		p.closeErr = errors.Join(errs...)
		p.c.untrack(p)
	})
	return p.closeErr
}

// Stats returns the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	return PublisherStats{
		Published:          p.published.Load(),
		Sent:               p.sent.Load(),
		Confirmed:          p.confirmed.Load(),
		Retried:            p.retried.Load(),
		Refused:            p.refused.Load(),
		Resent:             p.resent.Load(),
		DuplicatesPossible: p.dups.Load(),
		Timeouts:           p.timeouts.Load(),
		Reconnects:         p.reconnects.Load(),
		Recovered:          p.recovered.Load(),
		GaveUp:             p.failedMsgs.Load(),
		InFlight:           p.inFlight(),
	}
}

func (p *Publisher) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.queue {
		if !e.done {
			n++
		}
	}
	return n
}

// signal wakes the run loop without blocking.
func (p *Publisher) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// undeliveredLocked records that a message failed with err, for Flush (p.mu held; before
// advanceLocked pops it, so that a Flush that sees the queue move past it also sees the
// failure).
func (p *Publisher) undeliveredLocked(err error) {
	if p.undelivered == 0 {
		p.undeliveredErr = err
	}
	p.undelivered++
}

// takeUndeliveredLocked returns an error describing the failures recorded since the last
// call, or nil if there are none, and forgets them (p.mu held).
func (p *Publisher) takeUndeliveredLocked() error {
	n, first := p.undelivered, p.undeliveredErr
	p.undelivered, p.undeliveredErr = 0, nil
	if n == 0 {
		return nil
	}
	return fmt.Errorf("client: flush %q: %d message(s) not delivered: %w", p.stream, n, first)
}

// advanceLocked pops done entries from the front of the queue and wakes Flush waiters.
func (p *Publisher) advanceLocked() {
	i := 0
	for i < len(p.queue) && p.queue[i].done {
		p.releaseLocked(p.queue[i]) // an Ack may keep its entry, but not its data
		p.queue[i] = nil
		i++
	}
	if i == 0 {
		return
	}
	p.queue = p.queue[i:]
	if len(p.queue) == 0 {
		p.queue = nil // let the old backing array go
	}
	close(p.progress)
	p.progress = make(chan struct{})
}

func (p *Publisher) takeRemovalsLocked() []uint64 {
	r := p.removeq
	p.removeq = nil
	return r
}

// run is the publisher's only background goroutine (owned by the Publisher, stopped by
// Close through p.ctx): it opens sessions, sends queued messages in order and reconnects
// after failures.
//
// A session that ends while nothing it sent is unconfirmed (typically its connection was
// closed for being idle) did not fail: no message needs resending. The publisher then opens
// the next session only when there is a message to send, at once, without a warning or a
// backoff.
func (p *Publisher) run() {
	defer close(p.stopped)
	failures := 0
	for first := true; ; first = false {
		if p.ctx.Err() != nil {
			return
		}
		if !first {
			p.reconnects.Add(1)
		}
		ready, err := p.session()
		if p.ctx.Err() != nil {
			return
		}
		if fe := (*fatalError)(nil); errors.As(err, &fe) {
			p.log.Error("sluice publisher: giving up", "err", err)
			p.failForever(err)
			return
		}
		if ready && p.nothingInFlight() {
			p.log.Debug("sluice publisher: session ended with nothing in flight; reconnecting when there is a message to send", "err", err)
			p.progressSince() // a confirm of that session says nothing about the next one
			failures = 0
			if !p.awaitWork() {
				return
			}
			continue
		}
		p.retried.Add(1)
		failures++
		if p.progressSince() {
			failures = 1
		}
		d := p.cfg.backoff.Delay(failures)
		p.log.Warn("sluice publisher: session failed; reconnecting", "err", err, "retry_in", d)
		if p.cfg.onSessionError != nil {
			p.cfg.onSessionError(err)
		}
		if core.Sleep(p.ctx, d) != nil {
			return
		}
	}
}

// progressSince reports (and resets) whether a confirm arrived since the last call.
func (p *Publisher) progressSince() bool { return p.sessionProgress.Swap(false) }

// nothingInFlight reports whether the current session generation has no message sent and
// not yet confirmed: when it ended, no message was lost with it.
func (p *Publisher) nothingInFlight() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reqs) > 0 {
		return false
	}
	for _, e := range p.queue {
		if !e.done && e.sentGen == p.gen {
			return false
		}
	}
	return true
}

// awaitWork waits until a message is queued; it returns false when the publisher closes
// first.
func (p *Publisher) awaitWork() bool {
	for {
		p.mu.Lock()
		n := len(p.queue)
		p.mu.Unlock()
		if n > 0 {
			return true
		}
		select {
		case <-p.kick: // maybe stale: look again
		case <-p.ctx.Done():
			return false
		}
	}
}

// session opens one session, (re)sends every unconfirmed message in order and keeps sending
// new ones until the session fails or the publisher closes. ready reports whether the
// session was established (connected and the stream created) before it ended.
func (p *Publisher) session() (ready bool, err error) {
	s, err := p.c.openSession(p.ctx, p.onReply)
	if err != nil {
		return false, err
	}
	defer s.close()
	var route wire.Route
	if p.cfg.partition == 0 {
		route, err = s.createStream(p.ctx, p.stream, p.cfg.requestTimeout)
	} else {
		route, err = p.open.route(p.ctx, s, p.cfg.requestTimeout)
	}
	if err != nil {
		return false, err
	}
	// The room for message bytes in one request on this session's routes, and the most
	// messages one request may hold for its confirm, an index for each, to fit in a frame
	// (the hub refuses a batch whose confirm might not; its reply route holds its
	// connection's address instead of ours to the hub, hence the margin).
	budget := wire.FramePayloadBudget(route, s.self) - wire.DataSize(len(wire.ProtocolPushBatch)) - 3*wire.MaxUintLen
	maxBatch := min(p.cfg.maxBatch, wire.MaxPushBatch(wire.FramePayloadBudget(route, s.self)-confirmMargin))
	p.mu.Lock()
	p.gen++
	gen := p.gen
	p.sess = s
	for _, r := range p.reqs {
		r.timer.Stop()
	}
	clear(p.reqs)
	p.unpauseLocked() // the run loop backed off before this session; it resends everything
	p.mu.Unlock()
	for {
		if err := p.removeConfirmed(); err != nil {
			p.log.Error("sluice publisher: outbox", "err", err)
		}
		if p.reportRefusals() {
			if err := p.checkStream(s); err != nil {
				return true, err
			}
		}
		if err := p.sendQueued(s, route, gen, budget, maxBatch); err != nil {
			return true, err
		}
		select {
		case <-p.kick:
		case <-s.done():
			return true, s.err()
		case <-p.ctx.Done():
			return true, p.ctx.Err()
		}
		p.mu.Lock()
		failed, ferr := p.failedGen == gen, p.failErr
		p.mu.Unlock()
		if failed {
			return true, ferr
		}
	}
}

// failForever fails the publisher for good with err (the stream or partition does not
// exist, see WithPartition): every message not confirmed yet fails with err, and so does
// every later Publish. The messages stay in the outbox. Called by the run loop, which then
// ends. A message still being written to the outbox is failed by its Publish.
func (p *Publisher) failForever(err error) {
	p.mu.Lock()
	p.broken = err
	// The session has ended: a confirm of its requests that is still being handled must not
	// complete (and release the window slot of) a message failed here.
	for _, r := range p.reqs {
		r.timer.Stop()
	}
	clear(p.reqs)
	var failed []*entry
	for _, e := range p.queue {
		if !e.done && e.ready {
			e.done = true
			failed = append(failed, e)
			p.undeliveredLocked(err)
		}
	}
	p.advanceLocked()
	p.mu.Unlock()
	for _, e := range failed {
		e.ack.finish(0, err)
		if e.slot {
			<-p.slots
		}
	}
}

// removeConfirmed deletes confirmed messages from the outbox.
func (p *Publisher) removeConfirmed() error {
	if p.ob == nil {
		return nil
	}
	p.mu.Lock()
	r := p.takeRemovalsLocked()
	p.mu.Unlock()
	return p.ob.remove(r)
}

// confirmMargin is how many bytes shorter than a request's frame payload budget the
// publisher takes the budget of the hub's reply to be: the hub replies along the return
// route it got, which starts with its connection's address (32 bytes and its framing) where
// the publisher's route starts with the hub's TCP address.
const confirmMargin = 256

// sendQueued sends, in queue order, every ready entry not yet sent in generation gen,
// grouped into requests of at most maxBatch messages whose bytes fit budget, while no more
// than the window's messages are in flight. It stops at the first entry that is not ready
// (still being written to the outbox) so that the order holds. A message that alone
// exceeds budget (only possible with unusually long routes) fails with
// core.ErrMessageTooLarge.
func (p *Publisher) sendQueued(s *session, route wire.Route, gen uint64, budget, maxBatch int) error {
	for {
		p.mu.Lock()
		if p.failedGen == gen { // stop sending on a failed session: the next one resends
			err := p.failErr
			p.mu.Unlock()
			return err
		}
		if p.paused { // after a refusal: nothing is sent before its messages (resume)
			p.mu.Unlock()
			return nil
		}
		var batch []*entry
		var tooLarge []*entry // or refused too often: they fail
		size := 0
		// Messages sent on this session and not answered yet: with the batch, at most a
		// window of them. Only messages recovered from the outbox, which hold no window
		// slot, can make more wait here; a confirm wakes the loop (onReply signals when
		// there is an outbox).
		inFlight := 0
		for _, e := range p.queue {
			if e.done {
				continue
			}
			if e.sentGen == gen && !e.retry {
				inFlight++
				continue
			}
			if !e.ready {
				break
			}
			if e.alone && len(batch) > 0 {
				break // it goes in a request of its own, next
			}
			sz := wire.DataSize(e.len())
			if len(batch) == 0 && (sz > budget || p.cfg.maxRejections > 0 && e.refused >= p.cfg.maxRejections) {
				e.done = true
				tooLarge = append(tooLarge, e)
				continue
			}
			if len(batch) > 0 && (len(batch) >= maxBatch || size+sz > budget) || inFlight+len(batch) >= p.cfg.window {
				break
			}
			batch = append(batch, e)
			size += sz
			if e.alone {
				break // refused before: find out whether the hub refuses it (refusedLocked)
			}
		}
		if len(tooLarge) > 0 {
			errs := make([]error, len(tooLarge))
			for i, e := range tooLarge { // before advanceLocked releases their data
				if wire.DataSize(e.len()) > budget {
					errs[i] = fmt.Errorf("client: publish to %q: %w: message is %d bytes, at most %d fit in a frame on route %s", p.stream, core.ErrMessageTooLarge, e.len(), budget, route)
				} else {
					p.failedMsgs.Add(1)
					errs[i] = fmt.Errorf("client: publish to %q: %w: the hub refused it %d times", p.stream, ErrGaveUp, e.refused)
				}
				p.undeliveredLocked(errs[i])
			}
			p.advanceLocked()
			for i, e := range tooLarge {
				if p.ob != nil {
					p.removeq = append(p.removeq, e.seq)
				}
				e.ack.finish(0, errs[i])
				if e.slot {
					<-p.slots
				}
			}
		}
		if len(batch) == 0 {
			p.mu.Unlock()
			return nil
		}
		if err := p.loadLocked(batch); err != nil {
			p.mu.Unlock()
			return err
		}
		p.nextReqID++
		r := &pushRequest{id: p.nextReqID, gen: gen, entries: batch}
		msgs := make([][]byte, len(batch))
		var resent, dups uint64
		for i, e := range batch {
			msgs[i] = e.data
			if e.sentGen != 0 {
				resent++
				dups++
			}
			e.sentGen, e.retry = gen, false
		}
		id := r.id
		r.timer = time.AfterFunc(p.cfg.requestTimeout, func() { p.onTimeout(gen, id) })
		p.reqs[id] = r
		p.mu.Unlock()

		p.sent.Add(uint64(len(batch)))
		p.resent.Add(resent)
		p.dups.Add(dups)
		// The request is encoded into a buffer reused from request to request (only this
		// session's goroutine sends): the node copies it unless the transport does.
		proto := wire.ProtocolPushBatch
		if p.cfg.maxBatch == 1 {
			proto = wire.ProtocolPush
			p.encBuf = wire.AppendPayload(p.encBuf[:0], proto, wire.PushRequest{RequestID: id, Data: msgs[0]})
		} else {
			p.encBuf = wire.AppendPayload(p.encBuf[:0], proto, wire.PushBatchRequest{RequestID: id, Messages: msgs})
		}
		if err := s.sendBorrowed(p.ctx, route, p.encBuf); err != nil {
			return fmt.Errorf("client: send %s to %q: %w", proto, p.stream, err)
		}
	}
}

// len returns the length of e's message, also while it is still only in the outbox.
func (e *entry) len() int {
	if e.stored {
		return e.size
	}
	return len(e.data)
}

// loadLocked reads from the outbox the messages of batch recovered from it and not read
// yet (p.mu held). So a publisher that starts on a large outbox holds in memory only the
// messages it is sending, at most about a window of them, not the whole file. The read
// holds p.mu (a Publish waits for it): one transaction for the batch, on pages that
// openOutbox read once already.
func (p *Publisher) loadLocked(batch []*entry) error {
	var seqs []uint64
	for _, e := range batch {
		if e.stored {
			seqs = append(seqs, e.seq)
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	data, err := p.ob.read(seqs)
	if err != nil {
		return fmt.Errorf("client: publish to %q: send the messages recovered from the outbox: %w", p.stream, err)
	}
	i := 0
	for _, e := range batch {
		if e.stored {
			e.data, e.stored = data[i], false
			i++
		}
	}
	return nil
}

// refusedLocked handles a push request that the hub refused (status ERROR: it tried to store
// the messages and failed) (p.mu held). The session and the connection are fine, so only
// that request's messages are sent again, on the same session, after a backoff: sending
// pauses until then, so that no message published after them is sent before them, while
// the requests already in flight go on. A refused message, in a batch or alone, is sent
// again in requests of its own until it is done, also on later sessions: a refused batch
// says nothing of which of its messages the hub refuses, so it counts for none of them;
// each refusal of a request holding the message alone counts against [WithMaxRejections].
func (p *Publisher) refusedLocked(r *pushRequest, err error) {
	p.refused.Add(uint64(len(r.entries)))
	if len(r.entries) == 1 {
		r.entries[0].refused++
	}
	for _, e := range r.entries {
		e.retry, e.alone = true, true
	}
	p.refusals++
	if !p.paused {
		d := p.cfg.backoff.Delay(p.refusals)
		p.paused = true
		p.pauseSeq++
		seq := p.pauseSeq
		p.pauseUntil = time.Now().Add(d)
		p.pauseTimer = time.AfterFunc(d, func() { p.resume(seq) })
	}
	p.refusalErrs = append(p.refusalErrs, err)
	p.signal()
}

// resume ends the pause seq after a refusal (on the pause's timer); a later pause, or a new
// session, made seq stale.
func (p *Publisher) resume(seq uint64) {
	p.mu.Lock()
	if p.pauseSeq == seq {
		p.paused = false
	}
	p.mu.Unlock()
	p.signal()
}

// unpauseLocked ends a pause after a refusal and stops its timer (p.mu held).
func (p *Publisher) unpauseLocked() {
	p.paused = false
	p.pauseSeq++
	if p.pauseTimer != nil {
		p.pauseTimer.Stop()
		p.pauseTimer = nil
	}
}

// reportRefusals logs the refused requests that the run loop has not reported yet and hands
// their errors to the session error handler ([WithPublisherSessionErrors]), in the run
// goroutine, before their messages are sent again. It reports whether there were any.
func (p *Publisher) reportRefusals() bool {
	p.mu.Lock()
	errs := p.refusalErrs
	p.refusalErrs = nil
	retryIn := max(time.Until(p.pauseUntil), 0)
	p.mu.Unlock()
	for _, err := range errs {
		p.log.Warn("sluice publisher: the hub refused a push request; sending its messages again", "err", err, "retry_in", retryIn)
		if p.cfg.onSessionError != nil {
			p.cfg.onSessionError(err)
		}
	}
	return len(errs) > 0
}

// checkStream is called by the run goroutine after the hub refused pushes on session s: it
// asks the hub whether the stream partition still exists (sluice_stream_open, which creates
// nothing). A status ERROR says nothing of why, and a stream deleted while the session is
// up gets every push refused: resent on the same session, its messages would be refused
// forever, the stream never created again nor found missing. For a stream that no longer
// exists it returns an error that ends the session: for partition 0 a plain one, so that
// the next session creates the stream again (stream_create) and resends; for a partition
// above 0 a *fatalError, so that the publisher fails for good, as when the stream is missing
// at the start (see WithPartition). When the hub cannot tell, the session goes on (a timeout
// of the request fails the session, which the run loop notices: so does an Ockam hub, which
// does not answer sluice_stream_open at all, and the next session's stream_create creates
// the stream again if it is gone). A hub that answers that it does not know
// sluice_stream_open is not asked again.
func (p *Publisher) checkStream(s *session) error {
	if p.cfg.partition > 0 {
		_, err := p.open.route(p.ctx, s, p.cfg.requestTimeout)
		if fe := (*fatalError)(nil); errors.As(err, &fe) {
			return err
		}
		return nil
	}
	if p.noOpen {
		return nil
	}
	routes, err := s.openStream(p.ctx, p.open.nextID(), p.stream, p.cfg.requestTimeout)
	switch {
	case errors.Is(err, errors.ErrUnsupported): // a hub older than sluice_stream_open
		p.noOpen = true
	case err == nil && routes == nil:
		return fmt.Errorf("client: publisher to %q: the hub refused pushes and reports that the stream no longer exists (was it deleted?); reconnecting to create it again: %w", p.stream, core.ErrStreamNotFound)
	}
	return nil
}

// onTimeout runs on the request's own timer.
func (p *Publisher) onTimeout(gen, id uint64) {
	p.mu.Lock()
	r, ok := p.reqs[id]
	if !ok || r.gen != gen {
		p.mu.Unlock()
		return
	}
	delete(p.reqs, id)
	p.timeouts.Add(1)
	p.failLocked(gen, fmt.Errorf("client: push request %d to %q: %w after %v", id, p.stream, ErrTimeout, p.cfg.requestTimeout))
	p.mu.Unlock()
}

// failLocked marks session generation gen as failed; the run loop reconnects.
func (p *Publisher) failLocked(gen uint64, err error) {
	if gen == p.gen && p.failedGen != gen {
		p.failedGen, p.failErr = gen, err
		p.signal()
	}
}

// onReply handles a reply that arrived at a session's address (on that session's worker).
func (p *Publisher) onReply(s *session, protocol string, data []byte) {
	var (
		id      uint64
		ok      bool
		indexes []uint64
		err     error
	)
	switch protocol {
	case wire.ProtocolPush:
		var c wire.PushConfirm
		c, err = wire.DecodePushConfirm(data)
		id, ok, indexes = c.RequestID, c.Status == wire.StatusOK, []uint64{c.Index}
	case wire.ProtocolPushBatch:
		var c wire.PushBatchConfirm
		c, err = wire.DecodePushBatchConfirm(data)
		id, ok, indexes = c.RequestID, c.Status == wire.StatusOK, c.Indexes
	case wire.ProtocolRequestError:
		// The hub did not take a push request (it is shutting down): nothing was stored or
		// refused. Resend, as after a lost connection; it does not count against the
		// messages (WithMaxRejections).
		var e wire.RequestError
		if e, err = wire.DecodeRequestError(data); err == nil {
			err = fmt.Errorf("client: push request %d to %q not taken: %w: %s: %w", e.RequestID, p.stream, ErrRejected, e.Reason, core.ErrUnavailable)
		}
	case wire.ProtocolError:
		e, derr := wire.DecodeErrorPayload(data)
		if derr == nil {
			err = fmt.Errorf("%w: %s", ErrRejected, e.Reason)
		} else {
			err = derr
		}
	default:
		err = fmt.Errorf("client: publisher to %q: unexpected reply protocol %q", p.stream, protocol)
	}
	p.mu.Lock()
	if p.sess != s {
		p.mu.Unlock()
		return // a late reply of an old session: its requests were resent already
	}
	if err != nil {
		p.failLocked(p.gen, err)
		p.mu.Unlock()
		return
	}
	r, found := p.reqs[id]
	if !found {
		p.mu.Unlock()
		return // answered after its timeout; the session is being replaced
	}
	delete(p.reqs, id)
	r.timer.Stop()
	if !ok {
		p.refusedLocked(r, fmt.Errorf("client: push request %d to %q: %w", id, p.stream, ErrRefused))
		p.mu.Unlock()
		return
	}
	if len(indexes) != len(r.entries) {
		p.failLocked(r.gen, fmt.Errorf("client: push request %d to %q: %d indexes confirmed for %d messages", id, p.stream, len(indexes), len(r.entries)))
		p.mu.Unlock()
		return
	}
	p.refusals = 0
	p.confirmed.Add(uint64(len(r.entries))) // before the Acks complete: a caller that waited sees it counted
	slots := 0
	for i, e := range r.entries {
		e.done = true
		if e.slot {
			slots++
		}
		if p.ob != nil {
			p.removeq = append(p.removeq, e.seq)
		}
		e.ack.finish(indexes[i], nil)
	}
	p.advanceLocked()
	p.mu.Unlock()
	p.sessionProgress.Store(true)
	for range slots {
		<-p.slots
	}
	if p.ob != nil {
		p.signal()
	}
}
