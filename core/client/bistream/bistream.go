package bistream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/loglimit"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// AddressPrefix starts the local address of every stream sender (see [SenderAddress]).
const AddressPrefix = "bistream/"

// SenderAddress returns the local address at which a [Transport] publishes to stream to,
// with returnStream as the stream for replies: "bistream/<to>/<returnStream>". The address is
// the same for every Transport, so routes that contain it (for example a secure channel's
// route to its peer) stay valid when a Transport on the same node is closed and a new one is
// created. '/' never occurs in a stream name, so the address is unambiguous.
func SenderAddress(to, returnStream string) string {
	return AddressPrefix + to + "/" + returnStream
}

// ParseSenderAddress returns the destination and return streams of a local address made by
// [SenderAddress], and false if addr is not one.
func ParseSenderAddress(addr string) (to, returnStream string, ok bool) {
	rest, ok := strings.CutPrefix(addr, AddressPrefix)
	if !ok {
		return "", "", false
	}
	to, returnStream, ok = strings.Cut(rest, "/")
	if !ok || core.ValidateStreamName(to) != nil || (returnStream != "" && core.ValidateStreamName(returnStream) != nil) {
		return "", "", false
	}
	return to, returnStream, true
}

type config struct {
	pubOpts       []client.PublisherOption
	consOpts      []client.ConsumerOption
	outboxDir     string
	log           *slog.Logger
	maxPublishers int
}

// DefaultMaxPublishers is how many publishers a Transport keeps open by default (see
// [WithMaxPublishers]).
const DefaultMaxPublishers = 64

// Option configures a [Transport]. Options are validated by [New]; an invalid one returns an
// error matching [core.ErrInvalidOption].
type Option func(*config) error

// WithPublisherOptions adds options for every publisher the transport creates (one per
// destination stream).
func WithPublisherOptions(opts ...client.PublisherOption) Option {
	return func(c *config) error {
		c.pubOpts = append(c.pubOpts, opts...)
		return nil
	}
}

// WithConsumerOptions adds options for the consumer of every subscription. The client id is
// always the subscription id given to [Transport.Subscribe], and the error policy always
// client.Stop: a subscription skips what cannot be delivered by itself, and fails only a
// delivery cut short by a stop, which must come again after the restart.
func WithConsumerOptions(opts ...client.ConsumerOption) Option {
	return func(c *config) error {
		c.consOpts = append(c.consOpts, opts...)
		return nil
	}
}

// WithOutboxDir gives every publisher an on-device outbox (see client.WithOutbox) in dir,
// one file per destination stream ("<stream>.outbox"), so messages not yet confirmed by the
// hub survive a restart of the device: [New] reopens the outboxes in dir and resends what
// they hold, without waiting for the hub. When dir holds more outboxes than
// [WithMaxPublishers] allows (a directory written with a larger bound, or by a transport
// that stopped while retiring publishers), New reopens as many as the bound allows, in
// name order, and a goroutine of the transport reopens the others one at a time, each as
// soon as a publisher is retired to make room for it (as described there: the retirement
// waits until what its publisher holds is confirmed). An outbox waiting to be reopened
// keeps its messages on disk ([Stats].PendingOutboxes counts them); a message published to
// its stream meanwhile opens it at once, like a send to any new stream. The directory must
// exist; one Transport at a time may use it.
func WithOutboxDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return fmt.Errorf("%w: bistream: empty outbox directory", core.ErrInvalidOption)
		}
		c.outboxDir = dir
		return nil
	}
}

// WithMaxPublishers bounds the publishers the transport keeps open (default
// DefaultMaxPublishers; one per destination stream): at no time are more than n open,
// counting those being retired and those reopened from outboxes (see [WithOutboxDir]).
// Replies go to the return stream a message names, and anybody who can push to a
// subscribed stream can name any stream there (a secure channel listener answers every
// handshake message 1), so without a bound a device could be made to open a publisher, a
// connection's worth of state and an outbox file for every name. When a new publisher would
// pass the bound, the transport first retires the least recently used one (approximately:
// one used since the last search gets a second chance), preferring one with nothing in
// flight: it waits until what was published there is confirmed or has failed for good (the
// send to the new stream waits meanwhile, as Publish does when its window is full), then
// closes it, which frees its place. When every open publisher is being retired already, the
// send waits for one of those retirements to end. A send to a stream whose publisher is
// being retired waits until the retirement ends; the stream then gets a new publisher. A
// send that published to a publisher just as its retirement began waits until the hub
// confirmed the message, or the retirement closed the publisher first, in which case it
// publishes the message again through the stream's new publisher.
//
// The bound also limits the stream senders registered on the node (see [SenderAddress]) to
// twice n: the sender used least recently (approximately, as above) is unregistered to make
// room, and registered again when a message is routed to its address.
func WithMaxPublishers(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: bistream: max publishers %d, want >= 1", core.ErrInvalidOption, n)
		}
		c.maxPublishers = n
		return nil
	}
}

// WithLogger sets the logger for dropped messages and failed subscriptions (default: the
// node's, routing.Node.Logger, so that a message skipped for good is not skipped silently).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: bistream: nil logger", core.ErrInvalidOption)
		}
		c.log = l
		return nil
	}
}

// Stats counts what a Transport did since it was created.
type Stats struct {
	// Sent counts envelopes accepted by a publisher (not yet necessarily confirmed).
	Sent uint64
	// Delivered counts inner messages handed to the node.
	Delivered uint64
	// Malformed counts stream messages dropped because they are not a valid Envelope.
	Malformed uint64
	// Undeliverable counts inner messages dropped because they could not be delivered: the
	// node has no worker at their first onward address, that address is refused (not local,
	// or a stream sender: see [Transport.Subscribe]), or the worker or sender there failed.
	Undeliverable uint64
	// Publishers is the number of publishers open now, at most WithMaxPublishers. Retiring
	// is how many of them are being closed to stay within that bound (waiting for their
	// messages to be confirmed); Retired counts those closed so far.
	Publishers int
	Retiring   int
	Retired    uint64
	// PendingOutboxes is the number of outboxes left by an earlier run that wait to be
	// reopened until the bound leaves room for them (see WithOutboxDir).
	PendingOutboxes int
}

// Transport is the bi-directional stream transport of one node: it publishes messages
// routed to stream sender addresses and delivers the messages of subscribed streams to the
// node's workers. It is safe for concurrent use.
type Transport struct {
	node *routing.Node
	c    *client.Client
	cfg  config
	// limits rate-limits the warnings about stream messages dropped, which anybody who can
	// push to a subscribed stream could otherwise cause one per message.
	limits *loglimit.Limiter
	// removeFallback removes the Transport's fallback from node (and no other).
	removeFallback func()

	// closing is cancelled when Close begins: it cuts short the waits of retirements.
	closing       context.Context
	cancelClosing context.CancelFunc
	// closeDone is closed when the first Close has finished, after closeErr is set.
	closeDone chan struct{}
	closeErr  error
	// retirements counts the closeRetired calls under way; Close waits for them.
	retirements sync.WaitGroup
	// closeHook, set by tests only (before Close), wraps each publisher Close made by Close.
	closeHook func(closePublisher func() error) error
	// publishHook, set by tests only (before the first send), runs in each stream sender's
	// publish between taking the publisher and publishing to it.
	publishHook func(stream string)
	// retireHook, set by tests only (before the first send), runs in closeRetired just
	// before the retirement's Flush.
	retireHook func(stream string)
	// drained is closed when every outbox New found was reopened (or the transport closed
	// first): at once when there were no more than the bound allows, else by the goroutine
	// that reopens the others (see reopenPending), which Close waits for.
	drained chan struct{}

	mu      sync.Mutex
	closed  bool
	senders senderSet               // registered stream senders
	pubs    map[string]*publication // by destination stream
	// retiring holds the streams whose publisher is being closed to stay within the bound:
	// the stream gets no new publisher before it is, so that its messages stay in order and
	// its outbox has one user. Flush and Close include these publishers.
	retiring map[string]*retirement
	subs     map[*Subscription]struct{}
	// pending holds the streams whose outbox New found but left closed to stay within the
	// bound: reopenPending opens each, unless a send to the stream opened it first.
	pending map[string]bool
	// failedN counts the retirements since the last Flush that closed a publisher whose
	// messages were not all confirmed (some failed for good, or Close left some); failedErr
	// is the first one's error. The next Flush to finish reports them.
	failedN   int
	failedErr error

	sent, delivered, malformed, undeliverable, retired atomic.Uint64
}

// retirement is a publisher being closed to stay within the bound of WithMaxPublishers.
type retirement struct {
	pub *publication
	// done is closed once the retirement is over: the publisher was closed, or put back
	// (the sender that retired it gave up waiting). closed is set before.
	done chan struct{}
	// closed reports that the retirement closed the publisher. If messages published there
	// were not all confirmed, the transport's failedN counts it.
	closed bool
}

// publication is an open publisher to one stream.
type publication struct {
	p *client.Publisher
	// used is set when a sender publishes and cleared by the search for an idle publisher
	// to close, which passes over a publisher used since its last look (a second chance).
	used atomic.Bool
	// retired is set before the transport closes p to stay within its bound: a sender whose
	// Publish fails because p is closed then asks for the stream's publisher again.
	retired atomic.Bool
	// retirement is the last retirement of p, or nil (guarded by the transport's mu): a
	// Flush that waited for p waits for it to end, since its own Flush may have taken the
	// report of a failure (see Transport.Flush).
	retirement *retirement
}

// New returns a Transport that registers its stream senders on node and reaches the hub
// through c. node may be c.Node() or another node of the same process (a device can keep its
// workers on a node that outlives its connection to the hub). Neither is closed by
// [Transport.Close]. The Transport becomes the node's fallback (routing.Node.AddFallback),
// which registers the stream sender of a [SenderAddress] when a message is routed there: a
// node that has a fallback already (another Transport runs on it) is refused with an error
// matching core.ErrInvalidArgument; Close removes the Transport's fallback. New does not
// wait for the hub.
func New(node *routing.Node, c *client.Client, opts ...Option) (*Transport, error) {
	if node == nil || c == nil {
		return nil, fmt.Errorf("%w: bistream: New needs a node and a client", core.ErrInvalidOption)
	}
	cfg := config{log: node.Logger(), maxPublishers: DefaultMaxPublishers}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: bistream: nil option", core.ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	t := &Transport{
		node:      node,
		c:         c,
		cfg:       cfg,
		limits:    loglimit.New(0),
		closeDone: make(chan struct{}),
		senders:   senderSet{max: 2 * cfg.maxPublishers, byAddr: map[string]*sender{}},
		pubs:      map[string]*publication{},
		retiring:  map[string]*retirement{},
		subs:      map[*Subscription]struct{}{},
		drained:   make(chan struct{}),
		pending:   map[string]bool{},
	}
	removeFallback, err := node.AddFallback(t.fallback)
	if err != nil {
		return nil, fmt.Errorf("%w: bistream: %w (is another Transport running on it? close it first)", core.ErrInvalidArgument, err)
	}
	t.removeFallback = removeFallback
	t.closing, t.cancelClosing = context.WithCancel(context.Background())
	if newHook != nil {
		newHook(t)
	}
	if err := t.reopenOutboxes(); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

// outboxSuffix ends the name of every outbox file in the outbox directory.
const outboxSuffix = ".outbox"

// newHook, set by tests only, runs in New between adding the fallback and reopening the
// outboxes.
var newHook func(*Transport)

// reopenOutboxes starts a publisher for the outboxes left in the outbox directory, so the
// messages in them are sent without waiting for the next message to their streams: as many
// as the bound allows, in name order, and a goroutine reopens the others (reopenPending),
// since making room means retiring a publisher, which waits for the hub. The transport is
// the node's fallback already, so a message routed to a stream's sender may have opened the
// stream's publisher (and its outbox) first: that one is kept.
func (t *Transport) reopenOutboxes() error {
	if t.cfg.outboxDir == "" {
		close(t.drained)
		return nil
	}
	entries, err := os.ReadDir(t.cfg.outboxDir) // sorted by name
	if err != nil {
		close(t.drained)
		return fmt.Errorf("bistream: outbox directory: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var later []string
	for _, e := range entries {
		stream, ok := strings.CutSuffix(e.Name(), outboxSuffix)
		if !ok || !e.Type().IsRegular() || core.ValidateStreamName(stream) != nil {
			continue
		}
		if _, open := t.pubs[stream]; open {
			continue
		}
		if len(t.pubs)+len(t.retiring) >= t.cfg.maxPublishers || t.retiring[stream] != nil {
			t.pending[stream] = true
			later = append(later, stream)
			continue
		}
		if _, err := t.newPublisherLocked(stream); err != nil {
			clear(t.pending)
			close(t.drained)
			return err
		}
	}
	if len(later) == 0 {
		close(t.drained)
		return nil
	}
	t.retirements.Add(1) // t.mu held and t not closed: Close waits for it
	go t.reopenPending(later)
	return nil
}

// reopenPending reopens, one after another, the outboxes of streams that New left closed to
// stay within the bound, each once a retirement made room for it (see publisher). It stops
// when the transport closes; the outboxes it did not reopen keep their messages on disk.
func (t *Transport) reopenPending(streams []string) {
	defer t.retirements.Done()
	defer close(t.drained)
	for _, stream := range streams {
		_, err := t.publisher(t.closing, stream, true)
		if err == nil {
			continue
		}
		t.mu.Lock()
		closed := t.closed
		delete(t.pending, stream)
		t.mu.Unlock()
		if closed {
			return
		}
		// The publisher could not be created (its outbox cannot be read, say): the file
		// stays, for a send to the stream or the next run to try again.
		t.cfg.log.Error("bistream: reopen an outbox", "stream", stream, "err", err)
	}
}

// Route returns the route prefix that sends through stream to, with returnStream as the
// stream for replies (usually a stream this node subscribes to; empty for none). Append the
// address of the worker on the receiving node:
//
//	r, err := t.Route("inbox-b", "inbox-a")
//	err = node.Send(ctx, wire.TransportMessage{OnwardRoute: append(r, wire.Local("echo")), ...})
//
// A message routed to [sender, rest...] is published to stream to as an [Envelope] whose
// inner message has rest... as its onward route and the message's return route as its
// return route; the receiving node's subscription delivers it with a return route that leads
// back through returnStream. Sending returns once the publisher accepted the envelope (it
// waits while the publisher's window is full, and while the publisher is being retired: see
// [WithMaxPublishers]); the publisher retries until the hub confirms it. An envelope too
// large for one stream message returns an error matching [core.ErrMessageTooLarge].
func (t *Transport) Route(to, returnStream string) (wire.Route, error) {
	addr, err := t.ensureSender(to, returnStream)
	if err != nil {
		return nil, err
	}
	return wire.Route{wire.Local(addr)}, nil
}

// RegisterRoute registers the stream sender at the first address of route, when that is a
// local [SenderAddress], and does nothing otherwise. Routes saved with the state of a
// previous process (a restored secure channel's PeerRoute) work without it, since the
// transport registers a sender when a message is routed to its address; RegisterRoute does
// it ahead of time, and returns an error matching [core.ErrClosed] after Close.
func (t *Transport) RegisterRoute(route wire.Route) error {
	if len(route) == 0 || route[0].Type != wire.AddressLocal {
		return nil
	}
	to, ret, ok := ParseSenderAddress(string(route[0].Value))
	if !ok {
		return nil
	}
	_, err := t.ensureSender(to, ret)
	return err
}

// ensureSender registers the sender for (to, returnStream) on the node, unless it is
// registered already. To stay within the bound of registered senders it unregisters the one
// used least recently first.
func (t *Transport) ensureSender(to, returnStream string) (string, error) {
	if err := core.ValidateStreamName(to); err != nil {
		return "", fmt.Errorf("bistream: destination stream: %w", err)
	}
	if returnStream != "" {
		if err := core.ValidateStreamName(returnStream); err != nil {
			return "", fmt.Errorf("bistream: return stream: %w", err)
		}
	}
	addr := SenderAddress(to, returnStream)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return "", fmt.Errorf("bistream: %w", core.ErrClosed)
	}
	if s, ok := t.senders.byAddr[addr]; ok {
		s.used.Store(true)
		return addr, nil
	}
	s := &sender{t: t, to: to, ret: returnStream, addr: addr}
	if err := t.node.RegisterSender(addr, s); err != nil {
		return "", fmt.Errorf("bistream: register sender %s: %w", addr, err)
	}
	if old := t.senders.add(s); old != nil {
		_ = t.node.Unregister(old.addr)
	}
	return addr, nil
}

// fallback is the node's fallback (see New): it registers the stream sender at a
// [SenderAddress] that a message is routed to, and returns nil (the node then finds the
// sender registered).
func (t *Transport) fallback(_ context.Context, addr string) routing.Worker {
	if to, ret, ok := ParseSenderAddress(addr); ok {
		if _, err := t.ensureSender(to, ret); err != nil && !errors.Is(err, core.ErrClosed) {
			t.cfg.log.Warn("bistream: register a stream sender", "address", addr, "err", err)
		}
	}
	return nil
}

// senderSet is the set of registered stream senders, at most max of them (guarded by the
// transport's mu). It evicts with the clock algorithm: a sender used since the hand last
// passed it gets a second chance.
type senderSet struct {
	max    int
	byAddr map[string]*sender
	ring   []*sender
	hand   int
}

// add adds s (not in the set) and returns the sender it evicted to make room, or nil.
func (ss *senderSet) add(s *sender) (evicted *sender) {
	s.used.Store(true)
	ss.byAddr[s.addr] = s
	if len(ss.ring) < ss.max {
		ss.ring = append(ss.ring, s)
		return nil
	}
	// Two rounds clear every flag, unless senders keep setting them meanwhile.
	for range 2 * len(ss.ring) {
		if !ss.ring[ss.hand].used.Swap(false) {
			break
		}
		ss.hand = (ss.hand + 1) % len(ss.ring)
	}
	evicted = ss.ring[ss.hand]
	delete(ss.byAddr, evicted.addr)
	ss.ring[ss.hand] = s
	ss.hand = (ss.hand + 1) % len(ss.ring)
	return evicted
}

// publisher returns the publisher to stream to, creating it on first use. When that would
// pass the bound of WithMaxPublishers, it first retires the least recently used publisher:
// it waits until everything published there is confirmed (or ctx ends), then closes it.
// Publishers being retired count towards the bound until they are closed; when every open
// publisher is being retired, publisher waits for one of those retirements to end.
//
// With restore, publisher only reopens the outbox New left closed (see reopenPending): it
// returns nil, nil when the stream got a publisher since.
func (t *Transport) publisher(ctx context.Context, to string, restore bool) (*publication, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, fmt.Errorf("bistream: publish to %q: %w", to, core.ErrClosed)
		}
		if restore && !t.pending[to] {
			t.mu.Unlock()
			return nil, nil
		}
		if pub, ok := t.pubs[to]; ok {
			t.mu.Unlock()
			return pub, nil
		}
		if r, ok := t.retiring[to]; ok {
			t.mu.Unlock()
			if err := waitRetirement(ctx, r); err != nil {
				return nil, fmt.Errorf("bistream: publish to %q: %w", to, err)
			}
			continue
		}
		if len(t.pubs)+len(t.retiring) < t.cfg.maxPublishers {
			pub, err := t.newPublisherLocked(to)
			t.mu.Unlock()
			return pub, err
		}
		if len(t.pubs) == 0 { // every open publisher is being retired: wait for one
			var r *retirement
			for _, r = range t.retiring {
				break
			}
			t.mu.Unlock()
			if err := waitRetirement(ctx, r); err != nil {
				return nil, fmt.Errorf("bistream: publish to %q: %w", to, err)
			}
			continue
		}
		stream, r := t.retireLocked()
		t.mu.Unlock()
		if err := t.closeRetired(ctx, stream, r); err != nil {
			return nil, fmt.Errorf("bistream: publish to %q: %w", to, err)
		}
	}
}

// waitRetirement waits until r is over, or ctx ends.
func waitRetirement(ctx context.Context, r *retirement) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Transport) newPublisherLocked(to string) (*publication, error) {
	opts := t.cfg.pubOpts
	if t.cfg.outboxDir != "" {
		opts = append(opts[:len(opts):len(opts)], client.WithOutbox(filepath.Join(t.cfg.outboxDir, to+outboxSuffix)))
	}
	p, err := client.NewPublisher(context.Background(), t.c, to, opts...)
	if err != nil {
		return nil, fmt.Errorf("bistream: %w", err)
	}
	pub := &publication{p: p}
	t.pubs[to] = pub
	delete(t.pending, to)
	return pub, nil
}

// retireLocked removes from t.pubs, marks retired and returns the publisher to close to
// make room (t.mu held, t.pubs not empty, t not closed): the least recently used one with
// nothing in flight, else the least recently used one. Recency is approximate: a publisher
// used since the last search is passed over once (a second chance). The caller must call
// closeRetired.
func (t *Transport) retireLocked() (string, *retirement) {
	var busyStream string
	var busy *publication
	for range 2 { // the second pass finds those whose used flag the first one cleared
		for stream, pub := range t.pubs {
			if pub.used.Swap(false) {
				continue
			}
			if pub.p.Stats().InFlight > 0 {
				if busy == nil {
					busyStream, busy = stream, pub
				}
				continue
			}
			return stream, t.retireOneLocked(stream, pub)
		}
	}
	if busy == nil { // every one was used since the first pass: take any
		for stream, pub := range t.pubs {
			busyStream, busy = stream, pub
			break
		}
	}
	return busyStream, t.retireOneLocked(busyStream, busy)
}

func (t *Transport) retireOneLocked(stream string, pub *publication) *retirement {
	pub.retired.Store(true) // senders stop publishing to it and ask for the stream's publisher again
	delete(t.pubs, stream)
	r := &retirement{pub: pub, done: make(chan struct{})}
	pub.retirement = r
	t.retiring[stream] = r
	t.retirements.Add(1) // t.mu held and t not closed: Close waits for it
	return r
}

// closeRetired waits until what was published through a retired publisher is confirmed, or
// ctx ends, or the transport closes, and closes it. If ctx ends first the publisher is put
// back and the error returned. Once the transport is closing the publisher is closed
// whatever is left (Close closes it too and reports what was left unconfirmed).
func (t *Transport) closeRetired(ctx context.Context, stream string, r *retirement) error {
	defer t.retirements.Done()
	if t.retireHook != nil {
		t.retireHook(stream)
	}
	fctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(t.closing, cancel)
	err := r.pub.p.Flush(fctx)
	ended := fctx.Err() != nil // before cancel, which ends it
	stop()
	cancel()
	var failed error
	if err != nil && !ended {
		// Some messages failed for good (each one's Ack said so): nothing is left to wait for.
		t.cfg.log.Warn("bistream: retire a publisher", "stream", stream, "err", err)
		failed, err = err, nil
	}
	t.mu.Lock()
	if err != nil && !t.closed {
		delete(t.retiring, stream)
		r.pub.retired.Store(false)
		t.pubs[stream] = r.pub
		delete(t.pending, stream) // New may have found its outbox during the retirement
		t.mu.Unlock()
		close(r.done)
		return err
	}
	closing := t.closed
	t.mu.Unlock()
	t.retired.Add(1)
	cerr := r.pub.p.Close()
	if cerr != nil && !closing {
		t.cfg.log.Error("bistream: close a publisher to stay within the bound", "stream", stream, "err", cerr)
	} else if cerr == nil && t.cfg.outboxDir != "" {
		// Everything in it was confirmed, and the stream gets no new publisher before done
		// is closed: remove the empty outbox, or a flood of stream names would leave a file
		// for each, and New would open a publisher for each.
		path := filepath.Join(t.cfg.outboxDir, stream+outboxSuffix)
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			t.cfg.log.Warn("bistream: remove an empty outbox", "path", path, "err", rerr)
		}
	}
	r.closed = true
	t.mu.Lock()
	delete(t.retiring, stream)
	if err := errors.Join(failed, cerr); err != nil {
		if t.failedN == 0 {
			t.failedErr = fmt.Errorf("publisher to %q retired: %w", stream, err)
		}
		t.failedN++
	}
	t.mu.Unlock()
	close(r.done)
	return nil
}

// sender is the routing.Sender registered at a SenderAddress (see Transport.Route).
type sender struct {
	t       *Transport
	to, ret string // valid stream names (checked by ensureSender)
	addr    string
	pub     atomic.Pointer[publication] // the transport's publisher to to, once known
	used    atomic.Bool                 // set by Send, cleared by the eviction's clock hand
}

// Send publishes msg as an Envelope (see Transport.Route).
func (s *sender) Send(ctx context.Context, msg wire.TransportMessage) error {
	env := Envelope{ReturnStream: s.ret, Message: wire.TransportMessage{ReturnRoute: msg.ReturnRoute, Payload: msg.Payload}}
	if len(msg.OnwardRoute) > 1 {
		env.Message.OnwardRoute = msg.OnwardRoute[1:]
	}
	if len(env.Message.OnwardRoute) == 0 {
		return env.Validate() // s.ret is valid: the error is about the route
	}
	if err := env.Message.ValidateRoutes(); err != nil { // a subscriber could not decode it
		return fmt.Errorf("bistream: send through %s: %w", s.addr, err)
	}
	if !s.used.Load() {
		s.used.Store(true)
	}
	// Publish copies what it is given, so the encoding goes into a reused buffer.
	bp := envelopeBufs.Get().(*[]byte)
	buf := env.Append((*bp)[:0])
	err := s.publish(ctx, buf)
	if cap(buf) <= maxPooledEnvelope {
		*bp = buf
		envelopeBufs.Put(bp)
	}
	if err != nil {
		return fmt.Errorf("bistream: send through %s: %w", s.addr, err)
	}
	s.t.sent.Add(1)
	return nil
}

// publish publishes an encoded envelope with the transport's publisher to s.to.
func (s *sender) publish(ctx context.Context, buf []byte) error {
	for {
		pub := s.pub.Load()
		if pub == nil || pub.retired.Load() {
			var err error
			if pub, err = s.t.publisher(ctx, s.to, false); err != nil {
				return err
			}
			s.pub.Store(pub)
		}
		if !pub.used.Load() {
			pub.used.Store(true)
		}
		if s.t.publishHook != nil {
			s.t.publishHook(s.to)
		}
		ack, err := pub.p.Publish(ctx, buf)
		if errors.Is(err, core.ErrClosed) && pub.retired.Load() {
			continue // closed to stay within the bound: get the stream's publisher again
		}
		if err == nil && pub.retired.Load() {
			// Published while the publisher is being retired: the retirement's Flush may
			// have begun before, and then its Close gives the message only the close
			// timeout. Wait for its fate; if the retirement closed the publisher before
			// the hub confirmed it, publish it again through the stream's next publisher.
			if _, werr := ack.Wait(ctx); errors.Is(werr, core.ErrClosed) && pub.retired.Load() {
				continue
			} else if werr != nil && ctx.Err() != nil {
				return fmt.Errorf("the publisher to %q is being retired and had not confirmed the message: %w", s.to, werr)
			}
		}
		return err
	}
}

// CopiesPayload implements routing.PayloadCopier: Send encodes the payload into an envelope
// (which the publisher copies again).
func (*sender) CopiesPayload() bool { return true }

// envelopeBufs holds buffers for encoding envelopes (*[]byte), shared by every sender.
var envelopeBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledEnvelope is the largest buffer kept in envelopeBufs, so that one large message
// does not pin a large buffer.
const maxPooledEnvelope = 16 << 10

// Flush waits until every message published so far is confirmed by the hub (durable in its
// backend), or ctx ends, including the messages of publishers being closed to stay within
// WithMaxPublishers and those in the outboxes New found (it first waits until every one was
// reopened: see WithOutboxDir). It returns nil only when all of them were confirmed. As with
// client.Publisher.Flush, a message that failed for good is reported once, by the first
// Flush that returns after it; that includes the messages of publishers retired with
// failures since the previous Flush. After [Transport.Close] began, Flush waits until it
// finished and returns an error matching core.ErrClosed when Close reported messages left
// unconfirmed (or any other error).
func (t *Transport) Flush(ctx context.Context) error {
	select {
	case <-t.drained:
	case <-ctx.Done():
		return fmt.Errorf("bistream: %d outboxes of an earlier run not reopened yet: %w", t.Stats().PendingOutboxes, ctx.Err())
	}
	t.mu.Lock()
	closed := t.closed
	pubs := make([]*publication, 0, len(t.pubs)+len(t.retiring))
	for _, pub := range t.pubs {
		pubs = append(pubs, pub)
	}
	for _, r := range t.retiring {
		pubs = append(pubs, r.pub)
	}
	t.mu.Unlock()
	if closed {
		// Close takes the publishers away and closes them: what it left unconfirmed, it
		// reported. So does Flush.
		select {
		case <-t.closeDone:
		case <-ctx.Done():
			return fmt.Errorf("bistream: flush while the transport closes: %w", ctx.Err())
		}
		if t.closeErr != nil {
			return fmt.Errorf("bistream: flush: the transport is %w, and its Close reported: %w", core.ErrClosed, t.closeErr)
		}
		pubs = nil
	}
	for _, pub := range pubs {
		err := pub.p.Flush(ctx)
		t.mu.Lock()
		r := pub.retirement // also one that began after the snapshot
		t.mu.Unlock()
		if r != nil && (err == nil || (errors.Is(err, core.ErrClosed) && ctx.Err() == nil)) {
			// Nothing is left to wait for, so the retirement ends at once, and knows what
			// became of the messages: its own Flush may have taken the report of a failure,
			// or it closed the publisher before this Flush saw them confirmed. What it
			// knows is taken below.
			select {
			case <-r.done:
				if r.closed {
					err = nil
				}
			case <-ctx.Done():
				err = errors.Join(err, ctx.Err())
			}
		}
		if err != nil {
			return fmt.Errorf("bistream: %w", err)
		}
	}
	t.mu.Lock()
	n, err := t.failedN, t.failedErr
	t.failedN, t.failedErr = 0, nil
	t.mu.Unlock()
	switch {
	case n == 1:
		return fmt.Errorf("bistream: %w", err)
	case n > 1:
		return fmt.Errorf("bistream: %d retired publishers left messages unconfirmed; the first: %w", n, err)
	}
	return nil
}

// PublisherStats returns the counters of the publisher to stream to (also while it is being
// retired), and false if the transport has no publisher open there: it never published
// there, it closed the publisher to stay within WithMaxPublishers, or the stream's outbox
// waits to be reopened (see WithOutboxDir).
func (t *Transport) PublisherStats(to string) (client.PublisherStats, bool) {
	t.mu.Lock()
	pub, ok := t.pubs[to]
	if r, retiring := t.retiring[to]; !ok && retiring {
		pub, ok = r.pub, true
	}
	t.mu.Unlock()
	if !ok {
		return client.PublisherStats{}, false
	}
	return pub.p.Stats(), true
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	open, retiring, pending := len(t.pubs)+len(t.retiring), len(t.retiring), len(t.pending)
	t.mu.Unlock()
	return Stats{Sent: t.sent.Load(), Delivered: t.delivered.Load(), Malformed: t.malformed.Load(), Undeliverable: t.undeliverable.Load(),
		Publishers: open, Retiring: retiring, Retired: t.retired.Load(), PendingOutboxes: pending}
}

// Close stops every subscription (each saves its position), then closes every publisher,
// including those being closed to stay within WithMaxPublishers, which waits up to its
// close timeout for the hub to confirm what was published (the publishers close
// concurrently, so Close takes about one close timeout, not one per publisher), and
// unregisters the stream senders and the node's fallback. It does not close the node or the
// client. It returns the errors of the publishers' Close (messages left unconfirmed stay in
// the outbox when there is one). When Close returns, no publisher, outbox or goroutine of the
// transport is left. Close may be called more than once, also concurrently: later calls wait
// until the first has finished and return its result.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.closeDone
		return t.closeErr
	}
	t.closed = true
	subs := make([]*Subscription, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	defer close(t.closeDone)
	t.cancelClosing() // retirements stop waiting for confirms

	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() { _ = s.Close() })
	}
	wg.Wait()
	// The senders are unregistered first so nothing is published after the publishers close.
	t.removeFallback()
	t.mu.Lock()
	senders := t.senders.byAddr
	t.senders = senderSet{}
	pubs := make([]*publication, 0, len(t.pubs)+len(t.retiring))
	for _, pub := range t.pubs {
		pubs = append(pubs, pub)
	}
	for _, r := range t.retiring {
		pubs = append(pubs, r.pub)
	}
	t.pubs = map[string]*publication{}
	t.mu.Unlock()
	for addr := range senders {
		_ = t.node.Unregister(addr)
	}
	errs := make([]error, len(pubs))
	for i, pub := range pubs {
		wg.Go(func() {
			var err error
			if t.closeHook != nil {
				err = t.closeHook(pub.p.Close)
			} else {
				err = pub.p.Close()
			}
			if err != nil {
				errs[i] = fmt.Errorf("bistream: %w", err)
			}
		})
	}
	wg.Wait()
	t.retirements.Wait() // each closes its publisher too, and removes an empty outbox
	t.limits.Stop()      // the subscriptions are closed: the warnings held back, now
	t.closeErr = errors.Join(errs...)
	return t.closeErr
}

// SubscriptionStats are a subscription's counters.
type SubscriptionStats struct {
	// Delivered counts inner messages handed to the node.
	Delivered uint64
	// Malformed counts stream messages that are not a valid Envelope (dropped).
	Malformed uint64
	// Undeliverable counts inner messages dropped because they could not be delivered (see
	// Stats.Undeliverable).
	Undeliverable uint64
	// Consumer holds the counters of the underlying consumer (pulls, saves, reconnects).
	Consumer client.ConsumerStats
}

// Subscription consumes one stream and delivers the inner message of each [Envelope] to
// the transport's node. Create it with [Transport.Subscribe]; stop it with Close.
type Subscription struct {
	t      *Transport
	stream string
	id     string // the subscription id
	cons   *client.Consumer
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed

	replyRoutes map[string]wire.Route // [reply sender] by return stream; used only by handle (one goroutine)
	// tracker follows the messages handle delivers into mailboxes, labelled with their
	// stream index: the consumer never saves its position past one not handled yet.
	tracker *routing.Tracker

	delivered, malformed, undeliverable atomic.Uint64
}

// Subscribe starts consuming stream (created on the hub if needed) with subscriptionID as
// the consumer's client_id: it resumes from the index saved for that id (the hub's index
// service, unless the consumer options say otherwise) and saves its position after each
// batch it delivered. A second subscription to the same stream with the same id on the
// Transport is refused (an error matching core.ErrInvalidArgument): it would deliver every
// message twice.
//
// Each stream message is decoded as an [Envelope]; its inner message is sent on the node to
// its onward route, with the address of the stream sender for (ReturnStream, stream)
// prepended to its return route, so that a reply published through that address reaches the
// original sender's subscription. Stream messages that are not valid envelopes, and inner
// messages that cannot be delivered, are logged, counted and skipped for good: inner
// messages for addresses that have no worker, or whose worker or sender failed to take
// them. So register the workers, listeners and restored secure channels
// (securechannel.RestoreSession) before subscribing. Anybody who can push to the stream
// chooses the inner onward route, so its first address must be a local address that is not
// a stream sender: an inner message routed to a TCP address (the node would dial it, as the
// TCP transport refuses to do for its peers unless it relays) or to a [SenderAddress] (the
// device would publish it into a stream the pusher chose) is refused, counted as
// undeliverable and skipped. The same holds for the first address of the return route of an
// envelope without a return stream, where whatever answers the message (a secure channel
// listener answers every handshake message 1) would send it. Only a delivery cut short
// because the subscription or the node is stopping fails, so that the message comes again.
//
// Delivery is at-least-once to the workers: the saved position moves past a message only
// once its inner message was handled, by a Sender (a secure channel, in the delivery itself)
// or by the worker whose mailbox it went into. The subscription labels what it puts into
// mailboxes with the stream index ([routing.Tracker]) and saves its position no further than
// the lowest one not handled yet, without waiting: delivery goes on meanwhile, and the rest
// of the position is saved after a later batch, when the stream goes idle, or when the
// subscription stops (which gives the workers up to a second). So neither a crash nor a stop
// loses a message: one still queued, or cut short, when the node closes or its worker is
// unregistered is never saved past (the saved position stays before it until a restart
// delivers it again). Messages may be delivered twice (a duplicate in the stream, or a crash before the
// position was saved); a secure channel drops such duplicates. A delivery cut short by
// Close (the worker's mailbox was full) fails the handling of that message, so the
// subscription does not move past it.
func (t *Transport) Subscribe(stream, subscriptionID string) (*Subscription, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("bistream: subscribe: %w", err)
	}
	s := &Subscription{t: t, stream: stream, id: subscriptionID, done: make(chan struct{}), tracker: routing.NewTracker()}
	// Stop whatever the options say: handle fails a message only when its delivery was cut
	// short by a stop, and such a message must come again, never be skipped.
	opts := append(t.cfg.consOpts[:len(t.cfg.consOpts):len(t.cfg.consOpts)], client.WithClientID(subscriptionID), client.WithUnhandled(s.tracker.Lowest), client.WithErrorPolicy(client.Stop))
	cons, err := client.NewConsumer(t.c, stream, s.handle, opts...)
	if err != nil {
		return nil, fmt.Errorf("bistream: subscribe to %q: %w", stream, err)
	}
	s.cons = cons
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	refuse := func(err error) (*Subscription, error) {
		cancel()
		if cerr := cons.Close(); cerr != nil {
			t.cfg.log.Warn("bistream: close the consumer of a subscription refused", "stream", stream, "err", cerr)
		}
		return nil, err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return refuse(fmt.Errorf("bistream: subscribe to %q: %w", stream, core.ErrClosed))
	}
	for o := range t.subs {
		if o.stream == stream && o.id == subscriptionID {
			t.mu.Unlock()
			return refuse(fmt.Errorf("%w: bistream: already subscribed to %q as %q: every message would be delivered twice; close that subscription first", core.ErrInvalidArgument, stream, subscriptionID))
		}
	}
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	go func() { // owned by the Subscription: Close stops it and waits
		defer close(s.done)
		err := cons.Run(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			s.err = err
			t.cfg.log.Error("bistream: subscription stopped", "stream", stream, "subscription", subscriptionID, "err", err)
		}
	}()
	return s, nil
}

// handle delivers one stream message.
func (s *Subscription) handle(ctx context.Context, m core.Message) error {
	retStream, hasRet, inner, err := decodeEnvelope(m.Data, s.replyRoutes)
	if err != nil {
		s.malformed.Add(1)
		s.t.malformed.Add(1)
		s.t.limits.LineOrDebug(s.t.cfg.log, slog.LevelWarn, "bistream: dropped stream messages that are not an envelope", "messages", "last_stream", s.stream, "last_index", m.Index, "last_err", err)
		return nil
	}
	if first := inner.OnwardRoute[0]; first.Type != wire.AddressLocal || bytes.HasPrefix(first.Value, addressPrefix) {
		s.dropUndeliverable(m.Index, "bistream: refused messages routed to a remote address or a stream sender", "last_to", inner.OnwardRoute.String())
		return nil
	}
	ret := inner.ReturnRoute
	if !hasRet && len(ret) > 0 {
		// No return stream: the pusher wrote the whole return route, and whatever answers the
		// message (a secure channel listener answers every handshake message 1) sends to its
		// first address. Refuse what the onward route may not be either: a remote address
		// (the device would dial it) or a stream sender (it would publish into a stream the
		// pusher chose).
		if first := ret[0]; first.Type != wire.AddressLocal || bytes.HasPrefix(first.Value, addressPrefix) {
			s.dropUndeliverable(m.Index, "bistream: refused messages whose return route starts with a remote address or a stream sender", "last_return", ret.String())
			return nil
		}
	}
	if hasRet {
		reply := s.replyRoute(retStream)
		if len(ret) == 0 {
			ret = reply // shared: routes are read-only for their receivers
		} else {
			ret = ret.Prepend(reply[0])
		}
	}
	err = s.t.node.Send(s.tracker.Context(ctx, m.Index), wire.TransportMessage{OnwardRoute: inner.OnwardRoute, ReturnRoute: ret, Payload: inner.Payload})
	if err != nil && (ctx.Err() != nil || errors.Is(err, routing.ErrClosed)) {
		// Cut short by the stop: not skipped, it comes again after the restart.
		return fmt.Errorf("bistream: deliver %s index %d: %w", s.stream, m.Index, err)
	}
	if err != nil {
		// Anything else would fail again: skip it rather than stop the subscription.
		s.dropUndeliverable(m.Index, "bistream: skipped for good messages that could not be delivered (register workers, listeners and restored secure channels before Subscribe)", "last_err", err)
		return nil
	}
	s.delivered.Add(1)
	s.t.delivered.Add(1)
	return nil
}

// addressPrefix is AddressPrefix as bytes.
var addressPrefix = []byte(AddressPrefix)

// dropUndeliverable counts and logs an inner message that handle skips (rate-limited per
// msg: see the package documentation); args name the message ("last_...").
func (s *Subscription) dropUndeliverable(index uint64, msg string, args ...any) {
	s.undeliverable.Add(1)
	s.t.undeliverable.Add(1)
	s.t.limits.LineOrDebug(s.t.cfg.log, slog.LevelWarn, msg, "messages", append([]any{"last_stream", s.stream, "last_index", index}, args...)...)
}

// replyRoute returns the route [address of the sender for replies to returnStream]
// (a valid stream name). The sender is registered when a reply is routed there (see
// Transport.fallback), not before: a name pushed into the stream costs nothing unless a
// worker answers. The route is never modified: messages whose own return route is empty
// share it. The consumer calls handle from one goroutine, so the cache needs no lock; it
// saves building the address of every message.
func (s *Subscription) replyRoute(returnStream []byte) wire.Route {
	if r, ok := s.replyRoutes[string(returnStream)]; ok {
		return r
	}
	if s.replyRoutes == nil || len(s.replyRoutes) >= maxReplyAddrs {
		s.replyRoutes = make(map[string]wire.Route)
	}
	ret := string(returnStream)
	r := wire.Route{wire.Local(SenderAddress(ret, s.stream))}
	s.replyRoutes[ret] = r
	return r
}

// maxReplyAddrs bounds a subscription's cache of reply senders (see replyRoute).
const maxReplyAddrs = 64

// Stream returns the subscribed stream.
func (s *Subscription) Stream() string { return s.stream }

// Position returns the next index the subscription will read, and whether it is known yet
// (after the saved index was loaded).
func (s *Subscription) Position() (uint64, bool) { return s.cons.Position() }

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	return SubscriptionStats{
		Delivered:     s.delivered.Load(),
		Malformed:     s.malformed.Load(),
		Undeliverable: s.undeliverable.Load(),
		Consumer:      s.cons.Stats(),
	}
}

// Done is closed when the subscription stopped: after Close, or when its consumer gave up
// (see Err).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why a subscription stopped on its own (a delivery that kept failing), or nil.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close stops the subscription and waits until its consumer saved its position. It is
// idempotent.
func (s *Subscription) Close() error {
	_ = s.cons.Close()
	s.cancel()
	<-s.done
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
	return nil
}
