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

// Consumer defaults.
const (
	DefaultPullLimit      = 1000
	DefaultPullWait       = 5 * time.Second
	DefaultHandlerRetries = 3
)

// Handler handles one message. A nil error means the message is done: the consumer moves
// past it and will save the next index. m.Data belongs to the handler (it shares memory with
// the reply frame it came in, which nothing else writes). ctx ends when the consumer stops
// (Close, Run's ctx, Client.Close): a handler must then return soon, since Close waits for
// it; the message it returns an error for is delivered again by the next Run.
type Handler func(ctx context.Context, m core.Message) error

// ErrorPolicy says what a [Consumer] does with a message whose handler still fails after
// its retries.
type ErrorPolicy int

const (
	// Stop makes Run save the index of that message (so it is the first handled again) and
	// return the handler's error. It is the default.
	Stop ErrorPolicy = iota
	// Skip logs the error, counts the message as skipped and moves past it.
	Skip
)

func (p ErrorPolicy) String() string {
	switch p {
	case Stop:
		return "stop"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("ErrorPolicy(%d)", int(p))
}

// HandlerError is returned by [Consumer.Run] under the Stop policy: the handler failed on
// the message at Index after all its attempts.
type HandlerError struct {
	Stream   string
	Index    uint64
	Attempts int
	Err      error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("client: consumer of %q: handler failed on index %d after %d attempt(s): %v", e.Stream, e.Index, e.Attempts, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

type consumerConfig struct {
	clientID       string
	partition      int
	index          core.IndexStorage
	start          uint64
	pullLimit      int
	pullMaxBytes   int
	pullWait       time.Duration
	requestTimeout time.Duration
	backoff        Backoff
	retries        int
	handlerBackoff Backoff
	policy         ErrorPolicy
	logger         *slog.Logger
	onSessionError func(error)
	onSessionStart func()
	onPull         func(n int)
	unhandled      func() (uint64, bool)
	saveInterval   time.Duration
	noCreate       bool
}

// ConsumerOption configures a [Consumer]. Options are validated by [NewConsumer]; an
// invalid one returns an error matching [core.ErrInvalidOption].
type ConsumerOption func(*consumerConfig) error

// WithClientID sets the consumer's identity for its saved index. Without it the consumer
// keeps its position only in memory and starts at the start index.
func WithClientID(id string) ConsumerOption {
	return func(c *consumerConfig) error {
		if err := core.ValidateClientID(id); err != nil {
			return fmt.Errorf("%w: client: %w", core.ErrInvalidOption, err)
		}
		c.clientID = id
		return nil
	}
}

// WithIndexStorage keeps the saved index in a local store instead of the hub's index
// service. It needs WithClientID. The consumer does not close it.
func WithIndexStorage(s core.IndexStorage) ConsumerOption {
	return func(c *consumerConfig) error {
		if s == nil {
			return fmt.Errorf("%w: client: nil index storage", core.ErrInvalidOption)
		}
		c.index = s
		return nil
	}
}

// WithStartIndex sets where a consumer with no saved index starts (default 0: the oldest
// message), and, without a client id, where it starts again after its stream was deleted
// (see [Consumer]).
func WithStartIndex(i uint64) ConsumerOption {
	return func(c *consumerConfig) error { c.start = i; return nil }
}

// WithPullLimit sets the most messages one pull asks for (default DefaultPullLimit); the
// hub may send fewer (see [WithPullMaxBytes]).
func WithPullLimit(n int) ConsumerOption {
	return func(c *consumerConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: client: pull limit %d, want >= 1", core.ErrInvalidOption, n)
		}
		c.pullLimit = n
		return nil
	}
}

// WithPullMaxBytes sets how much message data one pull asks for, at most (default
// [DefaultPullMaxBytes]; the hub may cap it lower). The hub sends a pull's messages in as
// many frames as it takes and ends the reply after the frame in which the data reaches n, so
// a page holds at most about n plus one frame (64 KiB). The consumer keeps no more than that
// (plus the framing of the pull limit's messages) of one reply: a hub that sends more fails
// the session with [ErrProtocol], and the consumer drops the reply and reconnects.
func WithPullMaxBytes(n int) ConsumerOption {
	return func(c *consumerConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: client: pull max bytes %d, want >= 1", core.ErrInvalidOption, n)
		}
		c.pullMaxBytes = n
		return nil
	}
}

// WithPullWait sets how long the hub holds a pull that finds no message (long poll,
// default DefaultPullWait; at most the hub's own maximum). With a [Client] created by
// [Dial] it is also at most half the client's idle timeout ([WithIdleTimeout]), so that the
// hub's answer keeps the connection from counting as idle. With 0 the consumer polls,
// pausing the backoff's Min between empty pulls.
func WithPullWait(d time.Duration) ConsumerOption {
	return func(c *consumerConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: client: pull wait %v, want >= 0", core.ErrInvalidOption, d)
		}
		c.pullWait = d
		return nil
	}
}

// WithConsumerRequestTimeout sets how long the consumer waits for a reply beyond the pull
// wait (default DefaultRequestTimeout). A timeout ends the session; the consumer
// reconnects and resumes.
func WithConsumerRequestTimeout(d time.Duration) ConsumerOption {
	return func(c *consumerConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: client: request timeout %v, want > 0", core.ErrInvalidOption, d)
		}
		c.requestTimeout = d
		return nil
	}
}

// WithConsumerBackoff sets the backoff between reconnect attempts (default DefaultBackoff).
func WithConsumerBackoff(b Backoff) ConsumerOption {
	return func(c *consumerConfig) error {
		if err := b.validate(); err != nil {
			return err
		}
		c.backoff = b
		return nil
	}
}

// WithHandlerRetries sets how many times a failed handler is retried on the same message,
// waiting b between attempts, before the error policy applies (default
// DefaultHandlerRetries with DefaultBackoff).
func WithHandlerRetries(n int, b Backoff) ConsumerOption {
	return func(c *consumerConfig) error {
		if n < 0 {
			return fmt.Errorf("%w: client: handler retries %d, want >= 0", core.ErrInvalidOption, n)
		}
		if err := b.validate(); err != nil {
			return err
		}
		c.retries, c.handlerBackoff = n, b
		return nil
	}
}

// WithErrorPolicy sets what happens when the handler still fails after its retries
// (default Stop).
func WithErrorPolicy(p ErrorPolicy) ConsumerOption {
	return func(c *consumerConfig) error {
		if p != Stop && p != Skip {
			return fmt.Errorf("%w: client: unknown error policy %d", core.ErrInvalidOption, int(p))
		}
		c.policy = p
		return nil
	}
}

// WithSaveInterval makes the consumer save its position at most every d instead of after
// every page (default 0: after every page), like Kafka's auto.commit.interval.ms. A page
// handled sooner than d after the last save leaves the position unsaved until the first
// page after d has passed, a pull that finds no new message (the stream went idle) or the
// end of Run, whichever comes first. Each save is a write on the hub (on bbolt, a commit),
// so a consumer of a busy stream saves far less often; in exchange a crash delivers again
// up to about d worth of messages.
func WithSaveInterval(d time.Duration) ConsumerOption {
	return func(c *consumerConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: client: save interval %v, want >= 0", core.ErrInvalidOption, d)
		}
		c.saveInterval = d
		return nil
	}
}

// WithUnhandled tells the consumer about messages that its handler hands on and returns
// before they are handled (into a routing worker's mailbox, for example): f returns the
// lowest index among those not handled yet, and whether there is one. The consumer never
// saves a position past it, so a crash never loses such a message. What it could not save
// yet it saves after a later page, when the stream goes idle, and when Run ends (which waits
// up to a second for them to be handled). [routing.Tracker.Lowest] is such a function.
func WithUnhandled(f func() (index uint64, ok bool)) ConsumerOption {
	return func(c *consumerConfig) error {
		if f == nil {
			return fmt.Errorf("%w: client: nil unhandled function", core.ErrInvalidOption)
		}
		c.unhandled = f
		return nil
	}
}

// WithConsumerLogger sets the logger for reconnects and skipped messages (default:
// discard).
func WithConsumerLogger(l *slog.Logger) ConsumerOption {
	return func(c *consumerConfig) error {
		if l == nil {
			return fmt.Errorf("%w: client: nil logger", core.ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithConsumerSessionErrors calls f with the error of every failed session, before the
// consumer retries (what it logs as "session failed; reconnecting"): a lost or refused
// connection, a timeout, a refused request. f runs in Run's goroutine and must return
// quickly.
func WithConsumerSessionErrors(f func(error)) ConsumerOption {
	return func(c *consumerConfig) error {
		if f == nil {
			return fmt.Errorf("%w: client: nil session error handler", core.ErrInvalidOption)
		}
		c.onSessionError = f
		return nil
	}
}

// WithoutCreate makes the consumer never create its stream. Each session asks the hub for
// the route to the stream's partition with sluice_stream_open, which creates nothing; when
// the stream does not exist — at the start, or after a reconnect because the stream was
// deleted or the hub came back on another backend — [Consumer.Run] returns an error
// matching [core.ErrStreamNotFound] instead of creating it. Without this option a consumer
// creates a missing stream (stream_create), as Ockam's stream clients do. A hub that cannot
// tell whether the stream exists (it answers with status ERROR, or not at all) fails the
// session, which is retried.
//
// A hub that does not know sluice_stream_open (one older than it) answers it with an Ockam
// "error" reply; the session then falls back to asking sluice_stream_info whether the
// stream exists and, the first time it does, to sending stream_create (for a partition
// above 0, stream_create_partitioned with the count the hub reported) to learn the route
// from the Init (creating an existing stream only re-sends Init; later sessions reuse the
// worker's address). With such a hub only, a stream deleted between that check and that
// create is created again.
func WithoutCreate() ConsumerOption {
	return func(c *consumerConfig) error { c.noCreate = true; return nil }
}

// WithConsumerPartition makes the consumer read partition p of its stream (default 0). Its
// saved index is that partition's: the hub keeps one per client id, stream and partition.
//
// For p above 0 the stream must exist with more than p partitions (sluice create
// -partitions N): the consumer never creates it, whatever [WithoutCreate] says, since it
// cannot know how many partitions it should have. Each session asks the hub for the route
// to the partition as WithoutCreate does (sluice_stream_open, or the fallback described
// there). When the stream does not exist, or has no partition p, [Consumer.Run] returns an
// error matching [core.ErrStreamNotFound] or [core.ErrInvalidArgument] that says what to do.
// With p 0 the consumer behaves as without the option.
func WithConsumerPartition(p int) ConsumerOption {
	return func(c *consumerConfig) error {
		if err := validPartition(p); err != nil {
			return err
		}
		c.partition = p
		return nil
	}
}

// WithConsumerSessionStart calls f each time a session has started: the consumer reached
// the hub, found (or created) the stream and knows where to read from, and is about to pull.
// With [WithConsumerSessionErrors] it lets an application say when the hub can be reached
// again after a failure. f runs in Run's goroutine and must return quickly.
func WithConsumerSessionStart(f func()) ConsumerOption {
	return func(c *consumerConfig) error {
		if f == nil {
			return fmt.Errorf("%w: client: nil session start handler", core.ErrInvalidOption)
		}
		c.onSessionStart = f
		return nil
	}
}

// WithConsumerPullAnswered calls f each time the hub answered a pull, with the number of
// messages in the answer, before the handler sees them: n is 0 when the stream had no
// message from the consumer's position on, even once the hub had held the pull for the pull
// wait (see [WithPullWait]): the consumer has read all there is. A pull that failed calls
// [WithConsumerSessionErrors]'s function instead. With [WithConsumerSessionStart] it lets an
// application tell a stream that has no new message from a hub or backend that is slow to
// answer. f runs in Run's goroutine and must return quickly.
func WithConsumerPullAnswered(f func(n int)) ConsumerOption {
	return func(c *consumerConfig) error {
		if f == nil {
			return fmt.Errorf("%w: client: nil pull answer handler", core.ErrInvalidOption)
		}
		c.onPull = f
		return nil
	}
}

// ConsumerStats are a consumer's counters since it was created.
type ConsumerStats struct {
	Received      uint64 // messages received in pull responses
	Handled       uint64 // messages whose handler succeeded
	HandlerErrors uint64 // failed handler calls (each attempt)
	Skipped       uint64 // messages skipped under the Skip policy
	Duplicates    uint64 // messages received again below the current position (ignored)
	Saves         uint64 // acknowledged index saves
	PullErrors    uint64 // pulls that failed (timeout, lost connection, error reply)
	Reconnects    uint64 // sessions opened after the first one
}

// Consumer reads one stream partition through a hub, hands each message to a handler in
// index order, and saves its position (the next index) only after the handler succeeded
// (and, with [WithUnhandled], once what it handed on was handled too).
// It resumes from the saved index after a restart and from its in-memory position after a
// reconnect, so it never skips a message; a message may be handled again after a crash
// between the handler and the save (at-least-once).
//
// A stream deleted while the consumer reads it (by a tool, or through another hub) and
// created again starts over at index 0 on most backends (on Kinesis above every index of
// the old one), so the in-memory position means nothing in it.
// When the hub refuses a pull with an error reply, the consumer asks it whether the stream
// still has its partition (sluice_stream_open, which creates nothing); when the hub answers
// that it does not, or a later session finds the stream missing ([WithoutCreate],
// [WithConsumerPartition] above 0), the consumer forgets its position. Its next session
// loads the saved index again: on a backend that deletes a stream's saved indexes with it
// (see [core.StreamDeleter] and [core.IndexDeleter]; bbolt, memory and pulsar do) there is
// none, so it reads the stream created again from the start index ([WithStartIndex],
// default 0); where the saved index survived (a backend whose index storage cannot delete
// indexes, or [WithIndexStorage], whose local store the deletion does not reach) it resumes
// there. Without a client id it starts at the start index. A deletion the consumer never
// sees as a refused pull or a missing stream goes unnoticed: see Limitations in the package
// doc.
//
// Requests are pipelined: the pull of the next page is sent when a page arrives, before its
// messages are handled, and the save after a page travels with that pull instead of before
// it. At most one pull and one save are in flight; a save that fails ends the session like
// a failed pull.
type Consumer struct {
	c       *Client
	stream  string
	handler Handler
	cfg     consumerConfig
	log     *slog.Logger

	running   sync.Mutex // held by Run
	closeOnce sync.Once
	closed    chan struct{}

	mu      sync.Mutex
	next    uint64 // the next index to read
	known   bool   // next is initialised (from the saved index or the start index)
	unsaved bool   // next moved past the saved index
	reqID   uint64

	// open finds the partition's route without creating the stream (WithoutCreate, or a
	// partition above 0). Only Run's goroutine uses it.
	open partitionOpener
	// noOpen: the hub does not know sluice_stream_open, so streamGone does not ask it.
	// Only Run's goroutine uses it.
	noOpen bool

	received, handled, handlerErrors, skipped, dups, saves, pullErrors, reconnects atomic.Uint64
}

// NewConsumer returns a consumer of stream that passes each message to h. Call Run to
// start it.
func NewConsumer(c *Client, stream string, h Handler, opts ...ConsumerOption) (*Consumer, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: client: nil Client", core.ErrInvalidOption)
	}
	if h == nil {
		return nil, fmt.Errorf("%w: client: nil handler", core.ErrInvalidOption)
	}
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("client: consumer: %w", err)
	}
	cfg := consumerConfig{
		pullLimit:      DefaultPullLimit,
		pullMaxBytes:   DefaultPullMaxBytes,
		pullWait:       DefaultPullWait,
		requestTimeout: DefaultRequestTimeout,
		backoff:        DefaultBackoff,
		retries:        DefaultHandlerRetries,
		handlerBackoff: DefaultBackoff,
		logger:         discardLogger,
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: client: nil consumer option", core.ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.index != nil && cfg.clientID == "" {
		return nil, fmt.Errorf("%w: client: WithIndexStorage needs WithClientID", core.ErrInvalidOption)
	}
	cfg.pullWait = c.longPoll(cfg.pullWait)
	cons := &Consumer{
		c:       c,
		stream:  stream,
		handler: h,
		cfg:     cfg,
		log:     cfg.logger.With("stream", stream, "client_id", cfg.clientID),
		closed:  make(chan struct{}),
		open:    partitionOpener{role: "consumer", stream: stream, partition: cfg.partition},
	}
	if err := c.track(cons); err != nil {
		return nil, err
	}
	return cons, nil
}

// Position returns the next index the consumer will read and whether it is known yet.
func (c *Consumer) Position() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next, c.known
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{
		Received:      c.received.Load(),
		Handled:       c.handled.Load(),
		HandlerErrors: c.handlerErrors.Load(),
		Skipped:       c.skipped.Load(),
		Duplicates:    c.dups.Load(),
		Saves:         c.saves.Load(),
		PullErrors:    c.pullErrors.Load(),
		Reconnects:    c.reconnects.Load(),
	}
}

// Close stops a running Run and waits for it to return (and so for a handler in progress,
// whose ctx it cancels, and for Run's final save of its position, which takes at most a
// second, two with [WithUnhandled], also when the hub does not answer: see Run); Run is not
// started afterwards. A second Close returns nil.
// [Client.Close] closes the consumers still open. Neither may be called from the consumer's
// own handler, which Close would wait for: a handler that wants the consumer stopped
// returns an error (the Stop policy), or cancels Run's ctx and returns.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.c.untrack(c)
	})
	c.running.Lock() // waits for Run
	//lint:ignore SA2001 an empty critical section on purpose: taking the lock waits for Run to return
	c.running.Unlock()
	return nil
}

// Run pulls and handles messages until ctx ends (it returns ctx.Err()), Close is called (it
// returns nil), under the Stop policy a handler fails for good (it returns a
// *[HandlerError]), or, with [WithoutCreate] or [WithConsumerPartition] above 0, the stream
// does not exist (it returns an error matching [core.ErrStreamNotFound]) or has no such
// partition (an error matching [core.ErrInvalidArgument]). Connection failures, timeouts
// and hub errors are retried with backoff; they never end Run and a failed pull is never
// taken for "no messages". A session that ends because the stream no longer exists (see
// [Consumer]) makes the consumer forget its position, also when Run ends with
// [core.ErrStreamNotFound]: the next session, or the next Run, starts from the saved index
// or the start index. Once ctx has ended, Run stops waiting for the hub at once and
// starts no new session; it only tries once, for at most a second, to save a position it has
// not saved yet (with [WithUnhandled] it first waits up to a second for what the handler
// handed on). Run must not be called twice at the same time.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.TryLock() {
		return fmt.Errorf("%w: client: consumer of %q is already running", core.ErrInvalidArgument, c.stream)
	}
	defer c.running.Unlock()
	select {
	case <-c.closed:
		return nil
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // owned by Run: ends when Run returns (cancel) or Close is called
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	failures := 0
	for first := true; ; first = false {
		if ctx.Err() != nil { // ended during the backoff, or before Run started
			return c.exit(ctx)
		}
		if !first {
			c.reconnects.Add(1)
		}
		progressed, err := c.session(ctx)
		if ctx.Err() != nil {
			return c.exit(ctx)
		}
		var he *HandlerError
		var fe *fatalError
		if errors.As(err, &fe) {
			c.forget() // the stream (or the partition) it was read in, if any, is gone
			return err
		}
		if errors.As(err, &he) {
			return err
		}
		if progressed {
			failures = 0
		}
		failures++
		d := c.cfg.backoff.Delay(failures)
		c.log.Warn("sluice consumer: session failed; reconnecting", "err", err, "retry_in", d)
		if c.cfg.onSessionError != nil {
			c.cfg.onSessionError(err)
		}
		if core.Sleep(ctx, d) != nil {
			continue // handled at the top of the next iteration
		}
	}
}

// exit ends Run after ctx ended: it saves the position if it moved since the last save and
// returns Run's result.
func (c *Consumer) exit(ctx context.Context) error {
	if err := c.finalSave(); err != nil {
		// Harmless: the messages after the last saved index are handled again.
		c.log.Warn("sluice consumer: saving the position at exit failed", "err", err)
	}
	select {
	case <-c.closed:
		return nil
	default:
		return ctx.Err()
	}
}

// streamRoute returns the route to the stream partition's worker on session s. Without
// WithoutCreate, for partition 0, it creates the stream (stream_create) and takes the route
// from the Init. Otherwise it asks the hub for the route without creating the stream (see
// partitionOpener.route), and returns a *fatalError when the stream does not exist or has
// no such partition.
func (c *Consumer) streamRoute(ctx context.Context, s *session) (wire.Route, error) {
	if !c.cfg.noCreate && c.cfg.partition == 0 {
		return s.createStream(ctx, c.stream, c.cfg.requestTimeout)
	}
	return c.open.route(ctx, s, c.cfg.requestTimeout)
}

// finalSave tries once, for at most a second (after up to a second waiting for what the
// handler handed on, WithUnhandled), to save a position that moved since the last save (Run
// is ending). Failure is harmless: the messages are handled again next time.
func (c *Consumer) finalSave() error {
	c.mu.Lock()
	unsaved, next := c.unsaved, c.next
	c.mu.Unlock()
	if !unsaved || c.cfg.clientID == "" {
		return nil
	}
	// Give what the handler handed on a moment to be handled.
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pos := c.savable(next)
	for pos < next && core.Sleep(wctx, 5*time.Millisecond) == nil {
		pos = c.savable(next)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c.cfg.index != nil {
		return c.save(ctx, nil, pos)
	}
	s, err := c.c.openSession(ctx, nil)
	if err != nil {
		return err
	}
	defer s.close()
	return c.save(ctx, s, pos)
}

// savable returns the furthest position the consumer may save: next, or the lowest index
// below it that the handler handed on and is not handled yet (WithUnhandled).
func (c *Consumer) savable(next uint64) uint64 {
	if c.cfg.unhandled != nil {
		if low, ok := c.cfg.unhandled(); ok && low < next {
			return low
		}
	}
	return next
}

func (c *Consumer) markSaved(next uint64) {
	c.saves.Add(1)
	c.mu.Lock()
	if c.next == next {
		c.unsaved = false
	}
	c.mu.Unlock()
}

func (c *Consumer) nextID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqID++
	return c.reqID
}

// session runs one session; progressed reports whether any message was handled or pulled.
//
// It pipelines its requests: when a page of messages arrives, the pull of the next page is
// sent before the handler sees the first message, and the save of the position after a
// page is sent without waiting for its acknowledgement, which is awaited together with the
// next pull (at most one pull and one save in flight). A save that fails ends the session
// like a failed pull; the position is saved again by the next session.
func (c *Consumer) session(ctx context.Context) (progressed bool, err error) {
	s, err := c.c.openSession(ctx, nil)
	if err != nil {
		return false, err
	}
	defer s.close()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	route, err := c.streamRoute(ctx, s)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	known, unsaved, next := c.known, c.unsaved, c.next
	c.mu.Unlock()
	if !known {
		next, err = c.loadIndex(ctx, s)
		if err != nil {
			return false, err
		}
		c.mu.Lock()
		c.next, c.known = next, true
		c.mu.Unlock()
	}
	p := &pipeline{c: c, s: s, route: route}
	defer p.release()
	// deferred: the position moved past the saved index and was not saved since, because of
	// the save interval or messages not handled yet (WithUnhandled). It is saved after a
	// later page or on an idle stream.
	deferred := false
	if unsaved {
		pos := c.savable(next)
		if err := c.save(ctx, s, pos); err != nil {
			return false, err
		}
		p.savedPos, p.hasSaved = pos, true
		deferred = pos < next
	}
	if c.cfg.onSessionStart != nil {
		c.cfg.onSessionStart()
	}
	for {
		if p.pull == nil {
			if err := p.startPull(ctx, next); err != nil {
				c.pullErrors.Add(1)
				return progressed, err
			}
		}
		from, msgs, pullFailed, err := p.awaitPull(ctx)
		if err != nil {
			if pullFailed {
				c.pullErrors.Add(1)
			}
			if pullFailed && errors.Is(err, ErrRejected) && c.streamGone(ctx, s) {
				c.forget()
				return progressed, fmt.Errorf("client: consumer of %q: the hub refused a pull and reports that the stream or its partition %d no longer exists (was it deleted?): %w; the consumer forgot its position %d and reads the stream again from its saved index, or its start index: %w",
					c.stream, c.cfg.partition, core.ErrStreamNotFound, next, err)
			}
			return progressed, err
		}
		if c.cfg.onPull != nil {
			c.cfg.onPull(len(msgs))
		}
		if from > next { // cannot happen: a pull never starts past the position
			continue
		}
		if len(msgs) == 0 {
			if deferred { // the stream is idle: save what was put off
				complete, err := p.saveUpTo(ctx, next)
				if err != nil {
					return progressed, err
				}
				deferred = !complete
			}
			if c.cfg.pullWait == 0 { // no long poll: do not spin on an idle stream
				if err := core.Sleep(ctx, c.cfg.backoff.Min); err != nil {
					return progressed, err
				}
			}
			continue
		}
		progressed = true
		c.received.Add(uint64(len(msgs)))
		// Prefetch: the next page travels while the handler works through this one. A
		// failed send ends the session after this page.
		prefetchErr := p.startPull(ctx, max(msgs[len(msgs)-1].Index+1, next))
		for _, m := range msgs {
			if m.Index < next {
				c.dups.Add(1)
				continue
			}
			if err := c.handle(ctx, m); err != nil {
				p.cancelPull()
				if ctx.Err() == nil {
					// Stop: the failed message is the next one; save the progress before it.
					if serr := p.awaitSave(ctx); serr != nil {
						c.log.Warn("sluice consumer: save before stopping failed", "err", serr)
					} else if serr := c.save(ctx, s, c.savable(next)); serr != nil {
						c.log.Warn("sluice consumer: save before stopping failed", "err", serr)
					}
				}
				return progressed, err
			}
			next = m.Index + 1
			c.mu.Lock()
			c.next, c.unsaved = next, true
			c.mu.Unlock()
		}
		if prefetchErr != nil {
			c.pullErrors.Add(1)
			return progressed, prefetchErr
		}
		if c.cfg.saveInterval > 0 && time.Since(p.savedAt) < c.cfg.saveInterval {
			deferred = true
			continue
		}
		complete, err := p.saveUpTo(ctx, next)
		if err != nil {
			return progressed, err
		}
		deferred = !complete
	}
}

// streamGone is called after the hub refused a pull on session s with an error reply (the
// partition worker's fetch failed, or the hub has no worker for the partition: see the
// hub's undeliverable). The reply's reason is text for people, so it asks the hub with
// sluice_stream_open, which creates nothing, whether the stream still has the consumer's
// partition, and reports true only when the hub answers that it does not. A hub that
// cannot tell (status ERROR), does not answer in time (which fails the session) or does not
// know sluice_stream_open (it is not asked again) leaves the position as it is.
func (c *Consumer) streamGone(ctx context.Context, s *session) bool {
	if c.noOpen {
		return false
	}
	routes, err := s.openStream(ctx, c.open.nextID(), c.stream, c.cfg.requestTimeout)
	switch {
	case errors.Is(err, errors.ErrUnsupported): // a hub older than sluice_stream_open
		c.noOpen = true
		return false
	case err != nil:
		c.log.Debug("sluice consumer: cannot tell whether the stream still exists after a refused pull", "err", err)
		return false
	}
	return len(routes) <= c.cfg.partition
}

// forget drops the consumer's in-memory position because the stream it was read in no
// longer exists: the next session loads the saved index again, or starts at the start
// index. The position is not saved at the end of Run either.
func (c *Consumer) forget() {
	c.mu.Lock()
	c.next, c.known, c.unsaved = 0, false, false
	c.mu.Unlock()
}

// pipeline holds a session's requests in flight: at most one pull and one index save.
type pipeline struct {
	c     *Consumer
	s     *session
	route wire.Route

	pull     *inflight
	pullFrom uint64
	save     *inflight
	saveAt   uint64
	savedAt  time.Time // when the last save was started
	savedPos uint64    // the position last saved (or being saved) in this session
	hasSaved bool      // savedPos is set
}

// saveUpTo saves the furthest position the consumer may save on its way to next (see
// savable), unless it is saved already: it starts the save once the save in flight, if any,
// is acknowledged (at most one save is in flight). complete reports whether that position
// is next; if not, the save of the rest is put off.
func (p *pipeline) saveUpTo(ctx context.Context, next uint64) (complete bool, err error) {
	pos := p.c.savable(next)
	if !p.hasSaved || pos != p.savedPos {
		if err := p.awaitSave(ctx); err != nil {
			return false, err
		}
		p.savedAt = time.Now()
		if err := p.startSave(ctx, pos); err != nil {
			return false, err
		}
		p.savedPos, p.hasSaved = pos, true
	}
	return pos == next, nil
}

// startPull sends a pull from index from.
func (p *pipeline) startPull(ctx context.Context, from uint64) error {
	c := p.c
	id := c.nextID()
	payload := pullPayload(id, from, c.cfg.pullLimit, uint64(c.cfg.pullWait/time.Millisecond), c.cfg.pullMaxBytes)
	k := waitKey{"pull", id}
	p.s.expectBatch(k, c.cfg.pullLimit, c.cfg.pullMaxBytes)
	r, err := startRequest(ctx, p.s, p.route, k, payload, c.cfg.pullWait+c.cfg.requestTimeout)
	if err != nil {
		return fmt.Errorf("client: pull %q from index %d: %w", c.stream, from, err)
	}
	p.pull, p.pullFrom = r, from
	return nil
}

func (p *pipeline) cancelPull() {
	if p.pull != nil {
		p.pull.release()
		p.pull = nil
	}
}

// awaitPull waits for the pull in flight and returns where it started and its messages,
// taking the acknowledgement of the save in flight meanwhile. pullFailed reports whether
// err is the pull's (else the save's or the session's).
func (p *pipeline) awaitPull(ctx context.Context) (from uint64, msgs []core.Message, pullFailed bool, err error) {
	c := p.c
	for {
		r, ok, err := p.pull.poll()
		if !ok && err == nil {
			var saveReply <-chan reply
			var saveTimer <-chan time.Time
			if p.save != nil {
				saveReply, saveTimer = p.save.ch, p.save.timer.C
			}
			select {
			case r = <-p.pull.ch:
			case <-p.pull.timer.C:
				r, _, err = p.pull.expired()
			case sr := <-saveReply:
				if err := p.saveDone(sr); err != nil {
					return 0, nil, false, err
				}
				continue
			case <-saveTimer:
				sr, _, serr := p.save.expired()
				if serr != nil {
					return 0, nil, false, fmt.Errorf("client: save index %d of %q for %q: %w", p.saveAt, c.stream, c.cfg.clientID, serr)
				}
				if err := p.saveDone(sr); err != nil {
					return 0, nil, false, err
				}
				continue
			case <-p.s.doneCh:
				r, ok = p.pull.take()
				if !ok {
					err = p.s.err()
				}
			case <-ctx.Done():
				return 0, nil, false, ctx.Err()
			}
		}
		from = p.pullFrom
		p.cancelPull()
		if err == nil {
			msgs, err = decodePull(r, from)
		}
		if err != nil {
			return from, nil, true, fmt.Errorf("client: pull %q from index %d: %w", c.stream, from, err)
		}
		return from, msgs, false, nil
	}
}

// startSave saves next as the consumer's index. On the hub's index service it only sends
// the request: awaitSave or awaitPull takes the acknowledgement.
func (p *pipeline) startSave(ctx context.Context, next uint64) error {
	c := p.c
	if c.cfg.clientID == "" || c.cfg.index != nil {
		return c.save(ctx, p.s, next)
	}
	id := c.nextID()
	r, err := startRequest(ctx, p.s, p.s.route(p.s.c.cfg.indexService), waitKey{"index", id}, saveIndexPayload(id, c.cfg.clientID, c.stream, c.cfg.partition, next), c.cfg.requestTimeout)
	if err != nil {
		return fmt.Errorf("client: save index %d of %q for %q: %w", next, c.stream, c.cfg.clientID, err)
	}
	p.save, p.saveAt = r, next
	return nil
}

// awaitSave waits for the acknowledgement of the save in flight, if any.
func (p *pipeline) awaitSave(ctx context.Context) error {
	if p.save == nil {
		return nil
	}
	r, err := p.save.wait(ctx)
	if err != nil {
		at := p.saveAt
		p.save.release()
		p.save = nil
		return fmt.Errorf("client: save index %d of %q for %q: %w", at, p.c.stream, p.c.cfg.clientID, err)
	}
	return p.saveDone(r)
}

// saveDone takes the reply to the save in flight.
func (p *pipeline) saveDone(r reply) error {
	c, at := p.c, p.saveAt
	p.save.release()
	p.save = nil
	if _, err := saveIndexResult(r, at, c.cfg.clientID, c.stream); err != nil {
		return err
	}
	c.markSaved(at)
	return nil
}

// release forgets the requests in flight (the session is ending).
func (p *pipeline) release() {
	p.cancelPull()
	if p.save != nil {
		p.save.release()
		p.save = nil
	}
}

// inflight is a request sent on a session whose reply is taken later, so that the
// consumer can work while it travels. Its timeout runs from the send; a reply that arrived
// in time is taken even when the consumer looks only after the timeout.
type inflight struct {
	s       *session
	k       waitKey
	ch      chan reply
	timer   *time.Timer
	timeout time.Duration
}

// startRequest sends payload to onward and returns the request in flight, whose reply is
// keyed k.
func startRequest(ctx context.Context, s *session, onward wire.Route, k waitKey, payload []byte, timeout time.Duration) (*inflight, error) {
	r := &inflight{s: s, k: k, ch: make(chan reply, 1), timeout: timeout}
	s.mu.Lock()
	s.waiters[k] = r.ch
	s.mu.Unlock()
	if err := s.send(ctx, onward, payload); err != nil {
		r.forget()
		return nil, err
	}
	r.timer = time.NewTimer(timeout)
	return r, nil
}

func (r *inflight) forget() { r.s.forget(r.k) }

// release stops the request's timer and forgets it; a late reply is dropped.
func (r *inflight) release() {
	r.timer.Stop()
	r.forget()
}

// take returns the reply if it arrived.
func (r *inflight) take() (reply, bool) {
	select {
	case rep := <-r.ch:
		return rep, true
	default:
		return reply{}, false
	}
}

// poll returns the reply if it arrived, or the timeout error if the timeout passed first;
// ok false with a nil error means the request is still in flight.
func (r *inflight) poll() (rep reply, ok bool, err error) {
	if rep, ok := r.take(); ok {
		return rep, true, nil
	}
	select {
	case <-r.timer.C:
		return r.expired()
	default:
		return reply{}, false, nil
	}
}

// expired is called when the timer fired: the reply if it arrived after all, else a
// timeout that fails the session.
func (r *inflight) expired() (reply, bool, error) {
	if rep, ok := r.take(); ok {
		return rep, true, nil
	}
	err := fmt.Errorf("%w after %v", ErrTimeout, r.timeout)
	r.s.fail(err)
	return reply{}, false, err
}

// wait waits for the reply, the timeout, ctx, or the session's failure.
func (r *inflight) wait(ctx context.Context) (reply, error) {
	if rep, ok, err := r.poll(); ok || err != nil {
		return rep, err
	}
	select {
	case rep := <-r.ch:
		return rep, nil
	case <-r.timer.C:
		rep, _, err := r.expired()
		return rep, err
	case <-r.s.doneCh:
		if rep, ok := r.take(); ok {
			return rep, nil
		}
		return reply{}, r.s.err()
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// handle runs the handler on m with retries; under Skip a final failure returns nil.
func (c *Consumer) handle(ctx context.Context, m core.Message) error {
	attempts := 1 + c.cfg.retries
	var err error
	for a := 1; a <= attempts; a++ {
		if a > 1 {
			if serr := core.Sleep(ctx, c.cfg.handlerBackoff.Delay(a-1)); serr != nil {
				return serr
			}
		}
		if err = c.handler(ctx, m); err == nil {
			c.handled.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.handlerErrors.Add(1)
	}
	if c.cfg.policy == Skip {
		c.skipped.Add(1)
		c.log.Error("sluice consumer: handler failed; skipping the message", "index", m.Index, "attempts", attempts, "err", err)
		return nil
	}
	return &HandlerError{Stream: c.stream, Index: m.Index, Attempts: attempts, Err: err}
}

// loadIndex returns the saved index, or the start index when none was saved.
func (c *Consumer) loadIndex(ctx context.Context, s *session) (uint64, error) {
	if c.cfg.clientID == "" {
		return c.cfg.start, nil
	}
	if c.cfg.index != nil {
		i, err := c.cfg.index.GetIndex(ctx, c.cfg.clientID, c.stream, c.cfg.partition)
		if errors.Is(err, core.ErrIndexNotFound) {
			return c.cfg.start, nil
		}
		if err != nil {
			return 0, fmt.Errorf("client: consumer of %q: get index: %w", c.stream, err)
		}
		return i, nil
	}
	i, err := getIndex(ctx, s, c.nextID(), c.cfg.clientID, c.stream, c.cfg.partition, c.cfg.requestTimeout)
	if errors.Is(err, core.ErrIndexNotFound) {
		return c.cfg.start, nil
	}
	return i, err
}

// save saves next as the consumer's index and waits for the acknowledgement; s may be nil
// with WithIndexStorage.
func (c *Consumer) save(ctx context.Context, s *session, next uint64) error {
	if c.cfg.clientID == "" {
		c.mu.Lock()
		c.unsaved = false
		c.mu.Unlock()
		return nil
	}
	if c.cfg.index != nil {
		if err := c.cfg.index.SaveIndex(ctx, c.cfg.clientID, c.stream, c.cfg.partition, next); err != nil {
			return fmt.Errorf("client: consumer of %q: save index %d: %w", c.stream, next, err)
		}
		c.markSaved(next)
		return nil
	}
	if _, err := saveIndex(ctx, s, c.nextID(), c.cfg.clientID, c.stream, c.cfg.partition, next, c.cfg.requestTimeout); err != nil {
		return err
	}
	c.markSaved(next)
	return nil
}

// getIndex asks the hub's index service for the saved index.
func getIndex(ctx context.Context, s *session, id uint64, clientID, stream string, partition int, timeout time.Duration) (uint64, error) {
	req := wire.IndexGetRequest{RequestID: id, ClientID: clientID, StreamName: stream, Partition: uint64(partition)}
	r, err := s.call(ctx, s.route(s.c.cfg.indexService), waitKey{"index", id}, wire.EncodePayload(wire.ProtocolIndexGet, req), timeout)
	if err != nil {
		return 0, fmt.Errorf("client: get index of %q for %q: %w", stream, clientID, err)
	}
	rep, err := wire.DecodeIndexReply(r.data)
	if err != nil {
		return 0, fmt.Errorf("client: get index of %q for %q: %w", stream, clientID, err)
	}
	if rep.Status != wire.StatusOK {
		return 0, fmt.Errorf("client: get index of %q for %q: %w: %w", stream, clientID, ErrRejected, core.ErrUnavailable)
	}
	if !rep.Index.Valid {
		return 0, fmt.Errorf("client: get index of %q for %q: %w", stream, clientID, core.ErrIndexNotFound)
	}
	return rep.Index.Value, nil
}

// saveIndex saves index on the hub and returns the value saved after the monotonic save.
func saveIndex(ctx context.Context, s *session, id uint64, clientID, stream string, partition int, index uint64, timeout time.Duration) (uint64, error) {
	r, err := s.call(ctx, s.route(s.c.cfg.indexService), waitKey{"index", id}, saveIndexPayload(id, clientID, stream, partition, index), timeout)
	if err != nil {
		return 0, fmt.Errorf("client: save index %d of %q for %q: %w", index, stream, clientID, err)
	}
	return saveIndexResult(r, index, clientID, stream)
}

func saveIndexPayload(id uint64, clientID, stream string, partition int, index uint64) []byte {
	req := wire.IndexSaveRequest{RequestID: id, ClientID: clientID, StreamName: stream, Partition: uint64(partition), Index: index}
	return wire.EncodePayload(wire.ProtocolIndexSave, req)
}

// saveIndexResult returns the index saved according to the reply to a save of index.
func saveIndexResult(r reply, index uint64, clientID, stream string) (uint64, error) {
	if r.protocol == wire.ProtocolRequestError {
		return 0, fmt.Errorf("client: save index %d of %q for %q: %w", index, stream, clientID, requestError(r))
	}
	rep, err := wire.DecodeIndexReply(r.data)
	if err != nil {
		return 0, fmt.Errorf("client: save index %d of %q for %q: %w", index, stream, clientID, err)
	}
	if rep.Status != wire.StatusOK || !rep.Index.Valid {
		return 0, fmt.Errorf("client: save index %d of %q for %q: %w: %w", index, stream, clientID, ErrRejected, core.ErrUnavailable)
	}
	return rep.Index.Value, nil
}
