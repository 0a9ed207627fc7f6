package routing

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/loglimit"
	"github.com/sluicehq/sluice/core/wire"
)

var (
	// ErrClosed: the node (or the worker's mailbox) was closed. It matches core.ErrClosed.
	ErrClosed = fmt.Errorf("routing: closed: %w", core.ErrClosed)
	// ErrNoRoute: a message cannot be delivered: its onward route is empty, no worker is
	// registered at its first (local) address, or no transport handles its address type.
	ErrNoRoute = errors.New("routing: no route")
	// ErrAddressInUse: Register was called for an address that is already registered.
	ErrAddressInUse = errors.New("routing: address already in use")
)

// DefaultMailboxSize is the capacity of a worker's mailbox when no option sets it.
const DefaultMailboxSize = 1024

// MaxAddressLen is the longest local address name Register accepts.
const MaxAddressLen = 255

// Worker handles the messages delivered to its local address.
type Worker interface {
	// HandleMessage handles one message. The node calls it from the worker's mailbox
	// goroutine, one message at a time. ctx is cancelled when the worker is unregistered or
	// the node closes. A returned error is logged (at Warn, at most one line every 10
	// seconds for all the node's workers, which counts the failures since the previous
	// line; the others at Debug); it does not stop the worker.
	HandleMessage(ctx context.Context, msg *Message) error
}

// WorkerFunc adapts a function to the Worker interface.
type WorkerFunc func(ctx context.Context, msg *Message) error

// HandleMessage calls f(ctx, msg).
func (f WorkerFunc) HandleMessage(ctx context.Context, msg *Message) error { return f(ctx, msg) }

// Sender accepts messages synchronously, without a mailbox. Transports and transport
// connections implement it. Send must not block longer than ctx allows.
type Sender interface {
	Send(ctx context.Context, msg wire.TransportMessage) error
}

// PayloadCopier is implemented by a Sender or Transport whose Send never retains
// msg.Payload after it returns: it copies what it keeps (into a frame, a stream message, a
// ciphertext). [Node.SendBorrowed] hands such a destination the caller's payload without
// copying it. CopiesPayload must return the same value on every call.
type PayloadCopier interface {
	CopiesPayload() bool
}

// copiesPayload reports whether s declared, with PayloadCopier, that it does not retain
// payloads.
func copiesPayload(s Sender) bool {
	c, ok := s.(PayloadCopier)
	return ok && c.CopiesPayload()
}

// Transport carries messages whose first onward address has the type it was registered for.
// The node closes its transports when it closes.
type Transport interface {
	Sender
	Close() error
}

// Message is a TransportMessage as delivered to a worker, with the context to answer it.
// Its routes are read-only (see [Node.Send]).
type Message struct {
	wire.TransportMessage
	// Address is the local address the message was delivered to, i.e. the value of
	// OnwardRoute[0].
	Address string

	node    *Node
	release func() // see Release; nil when the sender did not ask for its buffer back
}

// Release hands m's payload back to the sender that lent its buffer with [Node.SendOwned],
// which may then reuse it. Call it once neither the payload nor anything sliced from it
// (decoded fields, routes) will be read again. Calling it is optional: a payload never
// released is left to the garbage collector. Calls after the first do nothing; a message
// sent with Send or SendBorrowed has nothing to release.
func (m *Message) Release() {
	if r := m.release; r != nil {
		m.release = nil
		r()
	}
}

// Node returns the node that delivered m.
func (m *Message) Node() *Node { return m.node }

// Self returns the local address m was delivered to.
func (m *Message) Self() wire.Address { return wire.Local(m.Address) }

// Reply sends payload back along m's return route, with the worker's address as the return
// route (see [Reply]).
func (m *Message) Reply(ctx context.Context, payload []byte) error {
	return m.node.Send(ctx, Reply(m.TransportMessage, m.Self(), payload))
}

// Forward sends m on to the rest of its onward route, with the worker's address prepended to
// the return route (see [Forward]).
func (m *Message) Forward(ctx context.Context) error {
	return m.node.Send(ctx, Forward(m.TransportMessage, m.Self()))
}

// Reply returns the reply to msg from the worker at self: onward = msg's return route,
// return = [self]. msg is not modified and its slices are not shared with the result
// except the addresses' values.
func Reply(msg wire.TransportMessage, self wire.Address, payload []byte) wire.TransportMessage {
	return wire.TransportMessage{
		OnwardRoute: append(wire.Route(nil), msg.ReturnRoute...),
		ReturnRoute: wire.Route{self},
		Payload:     payload,
	}
}

// Forward returns msg as forwarded by the worker at self: self (the first onward address) is
// removed from the onward route and prepended to the return route. msg is not modified.
// The return route grows by one address on every forward, and nothing here limits it: a
// transport refuses to send a route longer than wire.MaxRouteLen, with an error matching
// wire.ErrRouteTooLong.
func Forward(msg wire.TransportMessage, self wire.Address) wire.TransportMessage {
	var onward wire.Route
	if len(msg.OnwardRoute) > 1 {
		onward = append(wire.Route(nil), msg.OnwardRoute[1:]...)
	}
	return wire.TransportMessage{
		OnwardRoute: onward,
		ReturnRoute: msg.ReturnRoute.Prepend(self),
		Payload:     msg.Payload,
	}
}

// NewAddress returns a random local address name of 32 hex characters, like Ockam's.
func NewAddress() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// Option configures a Node.
type Option func(*options) error

type options struct {
	logger      *slog.Logger
	mailboxSize int
}

// WithLogger sets the logger for handler errors and dropped messages (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: routing: nil logger", core.ErrInvalidOption)
		}
		o.logger = l
		return nil
	}
}

// WithMailboxSize sets the capacity of each worker's mailbox (default DefaultMailboxSize).
func WithMailboxSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: routing: mailbox size %d, want >= 1", core.ErrInvalidOption, n)
		}
		o.mailboxSize = n
		return nil
	}
}

// Node routes messages between its workers and transports. It is safe for concurrent use.
type Node struct {
	log         *slog.Logger
	mailboxSize int
	// limits rate-limits the warnings about handlers that fail, which a peer sending
	// messages a worker refuses would otherwise cause one per message.
	limits *loglimit.Limiter

	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // mailbox goroutines
	stopped chan struct{}  // closed when the first Close returns

	// idle receives a token (without blocking) whenever a worker's queued count drops to
	// zero; Drain waits on it.
	idle chan struct{}

	mu         sync.RWMutex
	closed     bool
	local      map[string]*entry
	transports map[uint8]*registered
	fallback   func(ctx context.Context, address string) Worker
	fallbackN  uint64 // counts the fallbacks set, so that AddFallback's remove removes only its own
	// inFallback counts, per address, the sends that are between calling the fallback and
	// queueing their message: UnregisterIdle leaves such an address alone, since the
	// fallback may have returned the very worker it would remove.
	inFallback map[string]int
}

// SetFallback sets f to be consulted when Send finds no worker or sender at a local
// address. f returns a worker to register at that address (Send then delivers the message
// to it), or nil to fail Send with ErrNoRoute. If a worker was registered at the address
// meanwhile (by f itself or by another goroutine), that one is used and f's result is
// dropped. f runs in the sending goroutine without the node's lock held, possibly
// concurrently for the same address; it must honour ctx and may call Register. nil
// removes the fallback. Servers use it to create workers on demand, for example after a
// restart, for addresses that clients learned earlier.
func (n *Node) SetFallback(f func(ctx context.Context, address string) Worker) {
	n.mu.Lock()
	n.fallback = f
	n.fallbackN++
	n.mu.Unlock()
}

// AddFallback sets f as the node's fallback (see [Node.SetFallback]) unless the node has
// one, which returns an error matching [ErrAddressInUse]: for an owner of the fallback, such
// as a transport, that must not silently replace another. remove removes f, and only f: a
// fallback set after it stays.
func (n *Node) AddFallback(f func(ctx context.Context, address string) Worker) (remove func(), err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fallback != nil {
		return nil, fmt.Errorf("%w: the node has a fallback already", ErrAddressInUse)
	}
	n.fallback = f
	n.fallbackN++
	mine := n.fallbackN
	return func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.fallbackN == mine {
			n.fallback = nil
			n.fallbackN++
		}
	}, nil
}

// entry is one local address: a mailbox worker or a Sender.
type entry struct {
	sender Sender // set for RegisterSender entries
	copies bool   // sender implements PayloadCopier (and says true)

	worker  Worker
	mailbox chan delivery
	queued  atomic.Int64  // messages accepted into the mailbox and not yet handled (Drain)
	stop    chan struct{} // closed to stop the mailbox goroutine
	stopped atomic.Bool   // set just before stop is closed; cheaper to poll than stop
	cancel  context.CancelFunc
	once    sync.Once
}

// delivery is a message in a mailbox, with the release of its payload (see Node.SendOwned)
// and the Tracker that follows it, if any.
type delivery struct {
	msg     wire.TransportMessage
	release func()
	tracked *trackedLabel
}

// untrack tells d's Tracker that d was handled or not queued after all. A delivery dropped
// from a mailbox is never untracked: it stays pending.
func (d delivery) untrack() {
	d.tracked.done()
}

func (e *entry) shutdown() {
	e.once.Do(func() {
		if e.stop != nil {
			e.stopped.Store(true)
			close(e.stop)
			e.cancel()
		}
	})
}

// NewNode returns a running node. Invalid options return an error matching
// core.ErrInvalidOption.
func NewNode(opts ...Option) (*Node, error) {
	o := options{logger: slog.Default(), mailboxSize: DefaultMailboxSize}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{
		log:         o.logger,
		mailboxSize: o.mailboxSize,
		limits:      loglimit.New(0),
		ctx:         ctx,
		cancel:      cancel,
		stopped:     make(chan struct{}),
		idle:        make(chan struct{}, 1),
		local:       make(map[string]*entry),
		transports:  make(map[uint8]*registered),
		inFallback:  make(map[string]int),
	}, nil
}

// Logger returns the node's logger.
func (n *Node) Logger() *slog.Logger { return n.log }

// WarnLimited logs msg with args at Warn on the node's logger, at most once every
// loglimit.Every per msg for the whole node: the line adds the attribute count (a name,
// such as "messages") with the number of times msg came since the previous line, and the
// others are logged at Debug (see loglimit.Limiter.Line). Workers log with it what a peer
// can make happen once per message, so that a flood of them (forged messages, say) costs a
// line per interval, not a line per message; args then name the last one ("last_err").
// Close logs the lines that count what was held back.
func (n *Node) WarnLimited(msg, count string, args ...any) {
	n.limits.LineOrDebug(n.log, slog.LevelWarn, msg, count, args...)
}

// Done returns a channel that is closed when Close has stopped the node's workers, so that
// whoever waits for something the node would deliver can stop waiting.
func (n *Node) Done() <-chan struct{} { return n.ctx.Done() }

func validateAddress(address string) error {
	if address == "" || len(address) > MaxAddressLen {
		return fmt.Errorf("%w: routing: local address %q must be 1 to %d bytes", core.ErrInvalidArgument, address, MaxAddressLen)
	}
	return nil
}

func (n *Node) add(address string, e *entry) error {
	if err := validateAddress(address); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("routing: register %q: %w", address, ErrClosed)
	}
	if _, ok := n.local[address]; ok {
		return fmt.Errorf("routing: register %q: %w", address, ErrAddressInUse)
	}
	n.local[address] = e
	if e.worker != nil {
		ctx, cancel := context.WithCancel(n.ctx)
		e.cancel = cancel
		n.wg.Add(1)
		go n.run(ctx, address, e)
	}
	return nil
}

// Register registers w at the local address and starts its mailbox goroutine. An address
// that is taken returns ErrAddressInUse; an empty or too long one core.ErrInvalidArgument.
func (n *Node) Register(address string, w Worker) error {
	if w == nil {
		return fmt.Errorf("%w: routing: register %q: nil worker", core.ErrInvalidArgument, address)
	}
	return n.add(address, &entry{
		worker:  w,
		mailbox: make(chan delivery, n.mailboxSize),
		stop:    make(chan struct{}),
	})
}

// RegisterRandom registers w at a new random address (see NewAddress) and returns it.
func (n *Node) RegisterRandom(w Worker) (string, error) {
	for {
		a := NewAddress()
		err := n.Register(a, w)
		if errors.Is(err, ErrAddressInUse) {
			continue // 2^-128; keeps the contract anyway
		}
		return a, err
	}
}

// RegisterSender registers s at the local address. Messages routed to it are passed to
// s.Send synchronously, in the sending goroutine, with no mailbox.
func (n *Node) RegisterSender(address string, s Sender) error {
	if s == nil {
		return fmt.Errorf("%w: routing: register %q: nil sender", core.ErrInvalidArgument, address)
	}
	return n.add(address, &entry{sender: s, copies: copiesPayload(s)})
}

// RegisterTransport makes t carry the messages whose first onward address has type
// addrType (e.g. wire.AddressTCP). The node closes t when it closes, unless remove removed
// it before: remove takes t off the node, and only t (a transport registered for addrType
// after it stays), so that a transport that closes on its own can leave the node to
// another (messages for addrType then have no route until one registers). Local addresses
// (wire.AddressLocal) cannot have a transport.
func (n *Node) RegisterTransport(addrType uint8, t Transport) (remove func(), err error) {
	if addrType == wire.AddressLocal || t == nil {
		return nil, fmt.Errorf("%w: routing: register transport for address type %d", core.ErrInvalidArgument, addrType)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("routing: register transport: %w", ErrClosed)
	}
	if _, ok := n.transports[addrType]; ok {
		return nil, fmt.Errorf("routing: register transport for address type %d: %w", addrType, ErrAddressInUse)
	}
	reg := &registered{t}
	n.transports[addrType] = reg
	return func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.transports[addrType] == reg {
			delete(n.transports, addrType)
		}
	}, nil
}

// registered is one registration of a Transport: remove compares it, not the Transport
// (whose dynamic type need not be comparable, and which may be registered again).
type registered struct{ Transport }

// Unregister removes the worker or sender at address. A worker's mailbox goroutine stops
// after its current message (its ctx is cancelled); queued messages are dropped. Unregister
// does not wait for it, so a worker may unregister itself from HandleMessage. An unknown
// address returns an error matching ErrNoRoute.
func (n *Node) Unregister(address string) error {
	n.mu.Lock()
	e, ok := n.local[address]
	if ok {
		delete(n.local, address)
	}
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("routing: unregister %q: %w", address, ErrNoRoute)
	}
	e.shutdown()
	// What was queued for e is dropped, never counted as handled: a Drain waiting for e
	// would get no wake-up from dequeued.
	n.wakeDrain()
	return nil
}

// UnregisterIdle removes the worker at address if it is idle: nothing is queued in its
// mailbox, no HandleMessage is running, no Send is waiting for room in its mailbox and no
// Send is between consulting the fallback (see [Node.SetFallback]) for address and
// queueing its message. It reports whether it removed the worker. The check and the
// removal are atomic with respect to Send: a Send that races with UnregisterIdle either
// queued its message first (UnregisterIdle then returns false and the worker handles it)
// or finds the address free and goes to the fallback, which may register a new worker
// there. So no message is dropped, unlike with [Node.Unregister]. The removed worker's
// mailbox goroutine returns and its ctx is cancelled; UnregisterIdle does not wait for
// that. It returns false when called from the worker's own HandleMessage (the worker is
// busy). Whatever the worker started that outlives its handlers (goroutines, timers) is
// its owner's to account for.
//
// An unknown address returns an error matching ErrNoRoute, a [Sender]'s (which has no
// mailbox) one matching core.ErrInvalidArgument, and any address after Close one matching
// ErrClosed.
func (n *Node) UnregisterIdle(address string) (bool, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return false, fmt.Errorf("routing: unregister %q: %w", address, ErrClosed)
	}
	e, ok := n.local[address]
	switch {
	case !ok:
		n.mu.Unlock()
		return false, fmt.Errorf("routing: unregister %q: %w", address, ErrNoRoute)
	case e.worker == nil:
		n.mu.Unlock()
		return false, fmt.Errorf("%w: routing: unregister idle %q: a sender has no mailbox, use Unregister", core.ErrInvalidArgument, address)
	case e.queued.Load() > 0 || n.inFallback[address] > 0:
		// Send counts a message in queued under n.mu (read), so none is on its way in.
		n.mu.Unlock()
		return false, nil
	}
	delete(n.local, address)
	n.mu.Unlock()
	e.shutdown()
	return true, nil
}

// Send routes msg to the worker or sender at its first onward address when that is local,
// or to the transport for its type otherwise. Send takes ownership of msg: the caller must
// not modify its routes or payload afterwards. The receiver owns the payload (it may, for
// example, decrypt it in place) but must treat the routes as read-only: a sender may share
// one route, never modified, among many messages (a secure channel's route to its peer), so
// a receiver that needs a different route builds a new one ([Reply], [Forward],
// wire.Route.Prepend and Clone do).
//
// A full mailbox makes Send wait until there is room, ctx is done (ctx.Err() is returned),
// or the worker or node stops (ErrClosed). Errors: ErrNoRoute when there is nowhere to
// deliver msg; ErrClosed after Close; whatever a Sender or Transport returns.
func (n *Node) Send(ctx context.Context, msg wire.TransportMessage) error {
	return n.send(ctx, msg, false, nil)
}

// SendOwned is [Node.Send] for a payload in a buffer its sender wants back (a transport
// reading frames into pooled buffers): release is called once nothing refers to the payload
// any more. That is as soon as a Sender or Transport that implements [PayloadCopier] has
// returned, or when the worker that received the message calls [Message.Release]. Any
// other destination, and a message Send could not deliver, never releases it: it is left to
// the garbage collector, so a forgotten release costs an allocation, never a reuse too soon.
// A nil release makes SendOwned Send.
func (n *Node) SendOwned(ctx context.Context, msg wire.TransportMessage, release func()) error {
	return n.send(ctx, msg, false, release)
}

// SendBorrowed is [Node.Send] for a caller that keeps ownership of msg's payload, to reuse
// its buffer as soon as SendBorrowed returns. A Sender or Transport that implements
// [PayloadCopier] gets the payload as it is; any other destination (a worker's mailbox,
// a Sender that may keep it) gets a copy. The routes are handed over as with Send.
func (n *Node) SendBorrowed(ctx context.Context, msg wire.TransportMessage) error {
	return n.send(ctx, msg, true, nil)
}

// send is Send; borrowed means that msg's payload must be copied unless the destination
// copies it anyway; release, when not nil, is SendOwned's.
func (n *Node) send(ctx context.Context, msg wire.TransportMessage, borrowed bool, release func()) error {
	if len(msg.OnwardRoute) == 0 {
		return fmt.Errorf("routing: send: empty onward route: %w", ErrNoRoute)
	}
	first := msg.OnwardRoute[0]
	n.mu.RLock()
	if n.closed {
		n.mu.RUnlock()
		return fmt.Errorf("routing: send to %s: %w", first, ErrClosed)
	}
	if first.Type != wire.AddressLocal {
		t, ok := n.transports[first.Type]
		n.mu.RUnlock()
		if !ok {
			return fmt.Errorf("routing: send to %s: no transport for address type %d: %w", first, first.Type, ErrNoRoute)
		}
		copies := copiesPayload(t)
		if borrowed && !copies {
			msg.Payload = bytes.Clone(msg.Payload)
		}
		err := t.Send(ctx, msg)
		if release != nil && copies && err == nil {
			release()
		}
		return err
	}
	e, ok := n.local[string(first.Value)]
	if ok && e.worker != nil {
		// Counted while n.mu is held, so that UnregisterIdle sees it (see there).
		e.queued.Add(1) // before the message can be handled, so Drain never sees it missing
	}
	fallback := n.fallback
	n.mu.RUnlock()
	if !ok && fallback != nil {
		e, ok = n.fallbackEntry(ctx, string(first.Value), fallback)
		if !ok && n.isClosed() {
			// The node closed while the fallback ran: the worker it made, if any, could
			// not be registered. That is no sign that the address has no worker.
			return fmt.Errorf("routing: send to %s: %w", first, ErrClosed)
		}
	}
	if !ok {
		return fmt.Errorf("routing: send to %s: no worker at this address: %w", first, ErrNoRoute)
	}
	if e.sender != nil {
		if borrowed && !e.copies {
			msg.Payload = bytes.Clone(msg.Payload)
		}
		err := e.sender.Send(ctx, msg)
		if release != nil && e.copies && err == nil {
			release()
		}
		return err
	}
	if borrowed {
		msg.Payload = bytes.Clone(msg.Payload)
	}
	d := delivery{msg: msg, release: release, tracked: trackedFrom(ctx)}
	d.tracked.add()
	// Fast path first, so a cancelled ctx does not lose a race with free room.
	select {
	case e.mailbox <- d:
		return nil
	default:
	}
	select {
	case e.mailbox <- d:
		return nil
	case <-e.stop:
		n.dequeued(e)
		d.untrack()
		return fmt.Errorf("routing: send to %s: worker stopped: %w", first, ErrClosed)
	case <-ctx.Done():
		n.dequeued(e)
		d.untrack()
		return fmt.Errorf("routing: send to %s: mailbox full: %w", first, ctx.Err())
	}
}

// dequeued counts one message of e's mailbox as handled (or never queued) and wakes Drain
// when e has none left.
func (n *Node) dequeued(e *entry) {
	if e.queued.Add(-1) == 0 {
		n.wakeDrain()
	}
}

// wakeDrain leaves a token (without blocking) for a Drain waiting on n.idle.
func (n *Node) wakeDrain() {
	select {
	case n.idle <- struct{}{}:
	default:
	}
}

// Drain waits until every registered worker has handled the messages in its mailbox,
// including those its handlers send to other workers meanwhile, or until ctx ends (it then
// returns an error matching ctx.Err()). Messages keep being accepted while it waits, so stop what feeds the
// workers first: a device stopping without losing messages closes its subscriptions
// (bistream.Transport.Close), drains its node, saves its secure channel sessions, then
// closes the node, which would drop whatever is still queued. Drain must not be called from
// a HandleMessage (it would wait for itself).
func (n *Node) Drain(ctx context.Context) error {
	for {
		n.mu.RLock()
		busy := false
		for _, e := range n.local {
			if e.worker != nil && e.queued.Load() > 0 {
				busy = true
				break
			}
		}
		n.mu.RUnlock()
		if !busy {
			// Other Drains may be waiting for the token this one took: pass it on, so
			// that every Drain that waits sees the node idle, not only the first.
			n.wakeDrain()
			return nil
		}
		select {
		case <-n.idle:
		case <-ctx.Done():
			return fmt.Errorf("routing: drain: %w", ctx.Err())
		}
	}
}

// isClosed reports whether Close has begun.
func (n *Node) isClosed() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.closed
}

// fallbackEntry asks the fallback for a worker at address and returns the entry registered
// there afterwards, with its message counted in queued when it is a worker (as send does).
// While it runs, UnregisterIdle leaves address alone: the fallback may return a worker
// that is registered already, which must not be removed before the message is counted.
func (n *Node) fallbackEntry(ctx context.Context, address string, fallback func(context.Context, string) Worker) (*entry, bool) {
	if validateAddress(address) != nil {
		return nil, false
	}
	n.mu.Lock()
	n.inFallback[address]++
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.inFallback[address]--; n.inFallback[address] == 0 {
			delete(n.inFallback, address)
		}
		n.mu.Unlock()
	}()
	if w := fallback(ctx, address); w != nil {
		if err := n.Register(address, w); err != nil && !errors.Is(err, ErrAddressInUse) {
			return nil, false
		}
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	e, ok := n.local[address]
	if ok && e.worker != nil {
		e.queued.Add(1)
	}
	return e, ok
}

// run is the mailbox goroutine of the worker at address.
func (n *Node) run(ctx context.Context, address string, e *entry) {
	defer n.wg.Done()
	for {
		if e.stopped.Load() { // stop has priority over queued messages
			return
		}
		select {
		case <-e.stop:
			return
		case d := <-e.mailbox:
			if n.handle(ctx, address, e.worker, d) {
				d.untrack()
			}
			n.dequeued(e)
		}
	}
}

// handle calls w's HandleMessage for d and reports whether d was handled: it was not when
// the handler failed because the worker is stopping (ctx ended), which leaves a Tracker
// following d with d pending. A handler that panicked or failed otherwise has handled d.
func (n *Node) handle(ctx context.Context, address string, w Worker, d delivery) (handled bool) {
	handled = true
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("routing: worker panicked", "address", address, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	m := &Message{TransportMessage: d.msg, Address: address, node: n, release: d.release}
	if err := w.HandleMessage(ctx, m); err != nil {
		handled = ctx.Err() == nil
		args := []any{"last_address", address, "last_err", err}
		if d.release == nil || m.release != nil {
			// Not released (its bytes may otherwise already belong to another message).
			args = append(args, "last_msg", m.String())
		}
		n.WarnLimited("routing: workers failed to handle messages", "messages", args...)
	}
	return handled
}

// Close closes every transport, stops every worker and waits for their mailbox goroutines
// to return; messages still in a mailbox are dropped (see Drain). It must not be called
// from a HandleMessage (it would wait for itself). It returns the errors of the transports'
// Close. Close may be called more than once, also concurrently: later calls wait until the
// first has finished (so no handler is running when any of them returns) and return nil.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		<-n.stopped
		return nil
	}
	n.closed = true
	defer close(n.stopped)
	transports := make([]Transport, 0, len(n.transports))
	for _, t := range n.transports {
		transports = append(transports, t)
	}
	n.mu.Unlock()

	var errs []error
	for _, t := range transports {
		if err := t.Close(); err != nil {
			errs = append(errs, err)
		}
	}

	n.mu.Lock()
	entries := n.local
	n.local = make(map[string]*entry)
	n.mu.Unlock()
	// Stop every worker before cancelling the handlers: a handler that returns on the
	// cancellation must find its worker stopped, or it would go on to handle what is queued.
	for _, e := range entries {
		e.shutdown()
	}
	n.wakeDrain() // the dropped messages never wake a waiting Drain (see Unregister)
	n.cancel()
	n.wg.Wait()
	n.limits.Stop() // the warnings held back, now: the node's logger need not outlive it
	return errors.Join(errs...)
}
