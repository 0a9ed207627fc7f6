package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// Default service addresses of a hub.
const (
	DefaultStreamService = "stream"
	DefaultIndexService  = "stream_index"
)

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

type clientConfig struct {
	streamService string
	indexService  string
	logger        *slog.Logger
	dialTimeout   time.Duration
	idleTimeout   time.Duration
}

// Option configures a [Client]. Options are validated by [Dial] and [New]; an invalid one
// returns an error matching [core.ErrInvalidOption].
type Option func(*clientConfig) error

// WithStreamService sets the hub's local address of the stream service (default "stream").
func WithStreamService(addr string) Option {
	return func(c *clientConfig) error {
		if addr == "" {
			return fmt.Errorf("%w: client: empty stream service address", core.ErrInvalidOption)
		}
		c.streamService = addr
		return nil
	}
}

// WithIndexService sets the hub's local address of the index service (default
// "stream_index").
func WithIndexService(addr string) Option {
	return func(c *clientConfig) error {
		if addr == "" {
			return fmt.Errorf("%w: client: empty index service address", core.ErrInvalidOption)
		}
		c.indexService = addr
		return nil
	}
}

// WithLogger sets the logger of the client and of the node Dial creates (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *clientConfig) error {
		if l == nil {
			return fmt.Errorf("%w: client: nil logger", core.ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithDialTimeout bounds each attempt to connect to the hub (default 5s).
func WithDialTimeout(d time.Duration) Option {
	return func(c *clientConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: client: dial timeout %v, want > 0", core.ErrInvalidOption, d)
		}
		c.dialTimeout = d
		return nil
	}
}

// DefaultIdleTimeout is the default for [WithIdleTimeout].
const DefaultIdleTimeout = 60 * time.Second

// WithIdleTimeout makes a client created by [Dial] close a TCP connection on which nothing
// arrived for d (default DefaultIdleTimeout), so that a connection that silently stopped
// working is replaced. Consumers keep their connection busy with long polls, whose wait is
// capped at d/2 so that the hub answers well within d (see [WithPullWait]); an idle
// publisher lets its connection close and dials again, without a warning or a backoff, when
// it has a message to send.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *clientConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: client: idle timeout %v, want > 0", core.ErrInvalidOption, d)
		}
		c.idleTimeout = d
		return nil
	}
}

// ErrClosedBeforeAnswer matches the error of a session whose TCP connection to the hub (see
// [Dial]) closed before anything arrived on it, sooner than the client's idle timeout could
// have closed it: the hub, or something between it and the client, accepted the connection
// and closed it without a reply (with [Dial], also a dial reset by that peer before it
// returned). A hub at its connection limit (hub.WithMaxConnections,
// "sluice hub -max-connections") does that. The error matches [core.ErrUnavailable] too;
// publishers and consumers retry.
var ErrClosedBeforeAnswer = errors.New("client: the hub closed the connection before answering (it may be at its connection limit)")

// link is one way to reach the hub node: the route prefix to it, a channel closed when that
// way breaks (nil when the transport cannot tell) and why it broke (nil when not known), a
// way to release it, and what is known of its TCP connection (nil unless the client was
// made by Dial).
type link struct {
	route wire.Route
	done  <-chan struct{}
	cause func() error
	close func()
	conn  *connState
}

// connState is what a client made by Dial knows of one TCP connection to the hub: when it
// was opened, whether anything arrived on it, and its Done channel.
type connState struct {
	opened time.Time
	idle   time.Duration // the connection's idle timeout
	done   <-chan struct{}
	heard  atomic.Bool
}

// unanswered reports whether the link's connection closed, or is closing, without anything
// having arrived on it, sooner than its idle timeout could have closed it.
func (l link) unanswered() bool {
	st := l.conn
	return st != nil && !st.heard.Load() && (st.idle <= 0 || time.Since(st.opened) < st.idle)
}

// lostErr is the error of a session whose link closed (see LostConnection).
func (l link) lostErr() error {
	var cause error
	if l.cause != nil {
		cause = l.cause()
	}
	return LostConnection(cause, !l.unanswered())
}

// LostConnection returns the error of a request whose TCP connection to the hub closed, as
// a session of this package reports it, for code that talks to a hub over a transport of
// its own: cause is why the connection closed (see [tcp.Transport.Watch]; nil when not
// known) and answered whether anything arrived on it. A peer that answered with HTTP is no
// hub: the error then matches [tcp.ErrHTTPServer]. Otherwise a connection closed before
// any answer gives [ErrClosedBeforeAnswer], and any other is lost, saying why without
// wrapping the cause (what a session's error wraps decides how publishers and consumers
// handle it). The error always matches [core.ErrUnavailable].
func LostConnection(cause error, answered bool) error {
	switch {
	case errors.Is(cause, tcp.ErrHTTPServer):
		return fmt.Errorf("client: %w: %w", cause, core.ErrUnavailable)
	case !answered:
		return fmt.Errorf("%w: %w", ErrClosedBeforeAnswer, core.ErrUnavailable)
	case cause != nil:
		return fmt.Errorf("client: connection to the hub lost (%v): %w", cause, core.ErrUnavailable)
	}
	return fmt.Errorf("client: connection to the hub lost: %w", core.ErrUnavailable)
}

// Client connects a local [routing.Node] to a hub. Publishers and consumers made from it
// share its node and, with [Dial], one TCP connection to the hub, as Kafka and NATS clients
// share one connection per broker. Each of them talks to the hub in its own sessions (a
// private local address for replies), so that a failure of one does not disturb the others:
// a request that times out or that the hub refuses ends only the session it was sent on,
// whose owner opens a new one. Only the connection closing (the hub went away, or nothing
// arrived on it for the idle timeout, see [WithIdleTimeout]) ends every session on it; each
// then reconnects on its own. A Client is safe for concurrent use.
type Client struct {
	node    *routing.Node
	ownNode bool
	cfg     clientConfig
	dial    func(ctx context.Context) (link, error)
	idle    time.Duration // idle timeout of the client's TCP connections (Dial); 0: none known

	mu       sync.Mutex
	closed   bool
	stopped  chan struct{}          // made by the first Close, closed when it has finished
	closeErr error                  // the first Close's result, set before stopped is closed
	children map[io.Closer]struct{} // publishers and consumers not closed yet

	connMu sync.Mutex
	conns  map[string]*connState // TCP connections (Dial) by local address; closed ones pruned
}

// connState returns the state of the TCP connection at local address addr, whose Done
// channel is done, recording it when it is new; it forgets connections that have closed.
func (c *Client) connState(addr string, done <-chan struct{}) *connState {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if st := c.conns[addr]; st != nil {
		return st
	}
	for a, st := range c.conns {
		select {
		case <-st.done:
			delete(c.conns, a)
		default:
		}
	}
	if c.conns == nil {
		c.conns = map[string]*connState{}
	}
	st := &connState{opened: time.Now(), idle: c.idle, done: done}
	c.conns[addr] = st
	return st
}

// track registers a publisher or consumer, closed by Client.Close if still open.
func (c *Client) track(x io.Closer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("client: %w", core.ErrClosed)
	}
	if c.children == nil {
		c.children = map[io.Closer]struct{}{}
	}
	c.children[x] = struct{}{}
	return nil
}

func (c *Client) untrack(x io.Closer) {
	c.mu.Lock()
	delete(c.children, x)
	c.mu.Unlock()
}

func buildConfig(opts []Option) (clientConfig, error) {
	cfg := clientConfig{
		streamService: DefaultStreamService,
		indexService:  DefaultIndexService,
		logger:        discardLogger,
		dialTimeout:   5 * time.Second,
		idleTimeout:   DefaultIdleTimeout,
	}
	for _, o := range opts {
		if o == nil {
			return cfg, fmt.Errorf("%w: client: nil option", core.ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// New returns a Client that reaches the hub through route on an existing node: for example
// [wire.TCP("hub:4000")] when node has a TCP transport, a route through a forwarder, or an
// empty route when the hub's services are registered on node itself. The node is not
// closed by [Client.Close].
//
// Unlike [Dial], such a client cannot see a connection close: its sessions notice a lost
// link when a send fails or a request times out.
func New(node *routing.Node, route wire.Route, opts ...Option) (*Client, error) {
	if node == nil {
		return nil, fmt.Errorf("%w: client: nil node", core.ErrInvalidOption)
	}
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	route = route.Clone()
	return &Client{
		node: node,
		cfg:  cfg,
		dial: func(context.Context) (link, error) { return link{route: route, close: func() {}}, nil },
	}, nil
}

// Node returns the client's node.
func (c *Client) Node() *routing.Node { return c.node }

// longPoll returns the wait a long poll of up to d may ask the hub for: d, at most half the
// idle timeout of the connections of a client created by [Dial]. The idle clock runs from
// the last frame received, and a long poll on an idle stream is answered only when its wait
// ends: with a wait as long as the idle timeout, the connection would close first.
func (c *Client) longPoll(d time.Duration) time.Duration {
	if c.idle > 0 {
		return min(d, c.idle/2)
	}
	return d
}

// Close closes the publishers and consumers made from c that are still open, all at once
// (each as its own Close does: a publisher waits up to its close timeout for confirms, a
// consumer for its Run to end), so that against a hub that does not answer Close takes
// about the longest of their close timeouts, not their sum; it returns when every one of
// them has closed. Then it closes the node if the client created it (see [Dial]). Its error
// joins theirs, each saying which publisher or consumer it is from. Close may be called more
// than once, also concurrently: later calls wait until the first has finished and return
// its result, as [Publisher.Close] does. It must not be called from the handler of one of
// its consumers, which it would wait for (see [Consumer.Close]).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		stopped := c.stopped
		c.mu.Unlock()
		<-stopped
		return c.closeErr // written before stopped was closed
	}
	c.closed = true
	c.stopped = make(chan struct{})
	children := make([]io.Closer, 0, len(c.children))
	for x := range c.children {
		children = append(children, x)
	}
	c.mu.Unlock()
	errs := make([]error, len(children), len(children)+1)
	var wg sync.WaitGroup
	for i, x := range children {
		wg.Go(func() { // owned by Close, which waits for it
			if err := x.Close(); err != nil {
				errs[i] = fmt.Errorf("client: close %s: %w", describeChild(x), err)
			}
		})
	}
	wg.Wait()
	if c.ownNode {
		if err := c.node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("client: close node: %w", err))
		}
	}
	c.closeErr = errors.Join(errs...)
	close(c.stopped)
	return c.closeErr
}

// describeChild names a publisher or consumer of the client for an error.
func describeChild(x io.Closer) string {
	switch x := x.(type) {
	case *Publisher:
		return fmt.Sprintf("publisher to %q", x.stream)
	case *Consumer:
		return fmt.Sprintf("consumer of %q", x.stream)
	}
	return fmt.Sprintf("%T", x)
}

// maxRouteReserve is the room the client keeps for routes when it sizes a message: a
// message that fits with routes this long fits any ordinary session's frame.
const maxRouteReserve = 512

// MaxMessageSize is the largest message a Publisher accepts: it fits, with the request's
// envelope and routes of up to about 500 bytes, in one frame, and it fits a hub's pull
// response the same way.
const MaxMessageSize = wire.MaxFrame - maxRouteReserve

// reply is one reply delivered to a waiting request.
type reply struct {
	protocol string
	data     []byte
	ret      wire.Route
	// parts are the data of the earlier parts of a sluice_pull_batch reply, in order; data
	// is the last part's.
	parts [][]byte
}

// waitKey identifies a waiting request: replies of different protocols number their
// requests independently.
type waitKey struct {
	class string
	id    uint64
}

// session is one connection-lifetime conversation with the hub: a private local address for
// replies (registered for the session's lifetime, so late replies of an older session never
// reach a newer one) and a link to the hub.
type session struct {
	c       *Client
	addr    string
	self    wire.Route
	link    link
	handler func(s *session, protocol string, data []byte)

	mu        sync.Mutex
	waiters   map[waitKey]chan reply
	batches   map[waitKey]*batch // sluice_pull_batch requests waiting (see expectBatch)
	creates   []chan reply       // stream_create requests waiting for Init, in send order
	partInits chan reply         // collects InitPartitioned replies of the one partitioned create in flight
	doneCh    chan struct{}
	doneErr   error
	stop      chan struct{}
	once      sync.Once
}

// openSession connects to the hub and registers a reply address. handler receives replies
// no request waits for (push confirms); it runs on the session's worker goroutine.
//
// It works while Client.Close closes the publishers and consumers (so that they can flush
// and save their positions) and fails with core.ErrClosed once the node is closed.
func (c *Client) openSession(ctx context.Context, handler func(*session, string, []byte)) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.dialTimeout)
	l, err := c.dial(dctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("client: connect to the hub: %w", err)
	}
	s := &session{
		c:       c,
		link:    l,
		handler: handler,
		waiters: map[waitKey]chan reply{},
		doneCh:  make(chan struct{}),
		stop:    make(chan struct{}),
	}
	addr, err := registerReplies(c.node, s)
	if err != nil {
		l.close()
		return nil, fmt.Errorf("client: register reply address: %w", err)
	}
	s.addr = addr
	s.self = wire.Route{wire.Local(addr)}
	if l.done != nil {
		go func() { // owned by the session: ends when the link breaks or the session closes
			select {
			case <-l.done:
				s.fail(l.lostErr())
			case <-s.stop:
			}
		}()
	}
	return s, nil
}

// registerReplies registers s at a new random address as a routing.Sender: replies are
// handled in the goroutine that delivers them (the connection's reader), without a
// mailbox's goroutine hop, which matters on the path from a push confirm to the next push.
// handle never blocks: it hands each reply to a buffered channel or to a handler that only
// updates state.
func registerReplies(node *routing.Node, s *session) (string, error) {
	for {
		a := routing.NewAddress()
		err := node.RegisterSender(a, replySender{s})
		if errors.Is(err, routing.ErrAddressInUse) {
			continue // 2^-128
		}
		return a, err
	}
}

// replySender delivers the replies of a session's address to it.
type replySender struct{ s *session }

func (r replySender) Send(ctx context.Context, msg wire.TransportMessage) error {
	return r.s.handle(ctx, &routing.Message{TransportMessage: msg})
}

// done is closed when the session failed; err then says why.
func (s *session) done() <-chan struct{} { return s.doneCh }

func (s *session) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doneErr
}

// fail ends the session with err (the first error wins).
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.doneErr == nil {
		s.doneErr = err
		close(s.doneCh)
	}
	s.mu.Unlock()
}

// close unregisters the reply address and releases the link.
func (s *session) close() {
	s.once.Do(func() {
		close(s.stop)
		s.fail(fmt.Errorf("client: session closed: %w", core.ErrClosed))
		_ = s.c.node.Unregister(s.addr)
		s.link.close()
	})
}

// route returns the route to a hub-local address over this session's link.
func (s *session) route(service string) wire.Route {
	r := make(wire.Route, 0, len(s.link.route)+1)
	r = append(r, s.link.route...)
	return append(r, wire.Local(service))
}

// send sends payload along onward with the session's reply address as return route.
func (s *session) send(ctx context.Context, onward wire.Route, payload []byte) error {
	return s.sendMsg(ctx, wire.TransportMessage{OnwardRoute: onward, ReturnRoute: s.self, Payload: payload}, false)
}

// sendBorrowed is send for a payload whose buffer the caller reuses once it returns (see
// routing.Node.SendBorrowed).
func (s *session) sendBorrowed(ctx context.Context, onward wire.Route, payload []byte) error {
	return s.sendMsg(ctx, wire.TransportMessage{OnwardRoute: onward, ReturnRoute: s.self, Payload: payload}, true)
}

func (s *session) sendMsg(ctx context.Context, msg wire.TransportMessage, borrowed bool) error {
	select {
	case <-s.doneCh:
		return s.err()
	default:
	}
	var err error
	if borrowed {
		err = s.c.node.SendBorrowed(ctx, msg)
	} else {
		err = s.c.node.Send(ctx, msg)
	}
	if err != nil {
		if ctx.Err() == nil {
			if closed := errors.Is(err, tcp.ErrConnectionClosed) || errors.Is(err, routing.ErrNoRoute); closed && s.link.done != nil {
				// The connection closed, or is closing: it leaves the node just before its
				// Done channel closes. Say why, as the session's watcher does.
				select {
				case <-s.link.done:
					err = fmt.Errorf("client: send: %w: %w", s.link.lostErr(), err)
					s.fail(err)
					return err
				case <-ctx.Done():
				}
			}
			s.fail(fmt.Errorf("client: send: %w: %w", core.ErrUnavailable, err))
		}
		return err
	}
	return nil
}

// handle is the session's worker: it routes each reply to the request waiting for it, or
// to the handler.
func (s *session) handle(_ context.Context, m *routing.Message) error {
	if st := s.link.conn; st != nil && !st.heard.Load() {
		st.heard.Store(true) // the hub answered on this connection
	}
	bp, err := wire.DecodeBasePayload(m.Payload)
	if err != nil {
		return fmt.Errorf("client: reply from %s: %w", m.ReturnRoute, err)
	}
	r := reply{protocol: bp.Protocol, data: bp.Data, ret: m.ReturnRoute}
	switch bp.Protocol {
	case wire.ProtocolCreate:
		s.mu.Lock()
		var ch chan reply
		if len(s.creates) > 0 {
			ch, s.creates = s.creates[0], s.creates[1:]
		}
		s.mu.Unlock()
		if ch != nil {
			ch <- r // buffered
		}
		return nil
	case wire.ProtocolPush, wire.ProtocolPushBatch:
		if s.handler == nil {
			id, ok := replyRequestID(bp.Data)
			if !ok {
				return fmt.Errorf("client: %s reply without a request id", bp.Protocol)
			}
			s.deliver(waitKey{"push", id}, r)
			return nil
		}
	case wire.ProtocolCreatePartitioned:
		s.mu.Lock()
		ch := s.partInits
		s.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r:
			default: // more partitions than the collector can hold: it reports an error
			}
		}
		return nil
	case wire.ProtocolPullWait, wire.ProtocolPull, wire.ProtocolIndexGet, wire.ProtocolIndexSave, wire.ProtocolStreamInfo:
		id, ok := replyRequestID(bp.Data)
		if !ok {
			return fmt.Errorf("client: %s reply without a request id", bp.Protocol)
		}
		s.deliver(waitKey{classOf(bp.Protocol), id}, r)
		return nil
	case wire.ProtocolPullBatch:
		id, more, ok := wire.PullBatchPartHeader(bp.Data)
		if !ok {
			return fmt.Errorf("client: %s reply without a request id", bp.Protocol)
		}
		k := waitKey{"pull", id}
		if more {
			if err := s.addPart(k, bp.Data, m.Size()); err != nil {
				s.fail(err)
			}
			return nil
		}
		s.deliver(k, r)
		return nil
	case wire.ProtocolRequestError:
		// A sluice_error names the request it answers: only that request fails.
		e, err := wire.DecodeRequestError(bp.Data)
		if err != nil {
			return fmt.Errorf("client: reply from %s: %w", m.ReturnRoute, err)
		}
		class := classOf(e.Protocol)
		if class == "push" && s.handler != nil {
			break // the publisher matches its own push requests
		}
		s.deliver(waitKey{class, e.RequestID}, r)
		return nil
	case wire.ProtocolError:
		// An error reply names no request (the hub sends one only for Ockam protocols and
		// payloads it cannot read). Fail the session: every waiting request gets an error
		// and the owner reconnects.
		e, derr := wire.DecodeErrorPayload(bp.Data)
		reason := "(undecodable error reply)"
		if derr == nil {
			reason = e.Reason
		}
		s.fail(fmt.Errorf("%w: %s", ErrRejected, reason))
		if s.handler != nil {
			s.handler(s, bp.Protocol, bp.Data)
		}
		return nil
	}
	if s.handler != nil {
		s.handler(s, bp.Protocol, bp.Data)
	}
	return nil
}

// classOf returns the waitKey class of the requests and replies of protocol.
func classOf(protocol string) string {
	switch protocol {
	case wire.ProtocolIndexGet, wire.ProtocolIndexSave:
		return "index"
	case wire.ProtocolStreamInfo:
		return "info"
	case wire.ProtocolPush, wire.ProtocolPushBatch:
		return "push"
	}
	return "pull"
}

// requestError returns the error of a sluice_error reply, which fails one request.
func requestError(r reply) error {
	e, err := wire.DecodeRequestError(r.data)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrRejected, e.Reason, core.ErrUnavailable)
}

// replyRequestID reads the request id that starts every reply of a numbered protocol.
func replyRequestID(b []byte) (uint64, bool) {
	r := wire.NewReader(b, "reply")
	id := r.ReadUint()
	return id, r.Err() == nil
}

// batch is a sluice_pull_batch request waiting for the last part of its reply.
type batch struct {
	parts [][]byte // the data of the parts received before the last, in order
	size  int      // bytes in parts
	max   int      // the most bytes parts may hold (maxBatchParts)
}

// expectBatch records that the request k (not sent yet) is a sluice_pull_batch for at most
// limit messages and maxBytes bytes of message data, so that the parts of its reply are
// kept, up to what such a request allows. forget, or the reply's last part, drops them.
func (s *session) expectBatch(k waitKey, limit, maxBytes int) {
	s.mu.Lock()
	if s.batches == nil {
		s.batches = map[waitKey]*batch{}
	}
	s.batches[k] = &batch{max: maxBatchParts(limit, maxBytes)}
	s.mu.Unlock()
}

// addPart keeps part, a sluice_pull_batch part before the last, for the request k; frame
// is the size of the transport message it came in, which part aliases. A part that nobody
// waits for any more is dropped. It returns an error matching ErrProtocol, and drops the
// request's parts, when part is for a request that is no batch pull or when the parts
// exceed what the request allows: the hub ignored the request's max_bytes or limit, and the
// caller fails the session rather than buffer whatever the hub sends.
//
// What the parts keep is what they are counted as: a part is counted as at least the
// framing of the one message it holds at least (maxBatchOverhead), and a part that is less
// than half of its frame (routes padded by the hub, or a small part) is copied, so that it
// does not keep the whole frame.
func (s *session) addPart(k waitKey, part []byte, frame int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters[k] == nil {
		return nil // nobody waits any more
	}
	b := s.batches[k]
	if b == nil {
		delete(s.waiters, k)
		return fmt.Errorf("%w: a sluice_pull_batch part answers request %d, which is no batch pull: %w", ErrProtocol, k.id, core.ErrUnavailable)
	}
	b.size += max(len(part), maxBatchOverhead)
	if b.size > b.max {
		delete(s.batches, k)
		delete(s.waiters, k) // later parts are dropped
		return fmt.Errorf("%w: the sluice_pull_batch reply to request %d is more than %d bytes before its last part, more than its max_bytes and limit allow: %w",
			ErrProtocol, k.id, b.max, core.ErrUnavailable)
	}
	if frame > 2*len(part) {
		part = bytes.Clone(part)
	}
	b.parts = append(b.parts, part)
	return nil
}

// deliver hands r to the request waiting for k, with the parts of a batch received before
// it, and forgets the request.
func (s *session) deliver(k waitKey, r reply) {
	s.mu.Lock()
	ch := s.waiters[k]
	if b := s.batches[k]; b != nil {
		r.parts = b.parts
	}
	delete(s.waiters, k)
	delete(s.batches, k)
	s.mu.Unlock()
	if ch != nil {
		ch <- r // buffered
	}
}

// forget drops the request waiting for k and the batch parts received for it.
func (s *session) forget(k waitKey) {
	s.mu.Lock()
	delete(s.waiters, k)
	delete(s.batches, k)
	s.mu.Unlock()
}

// call sends payload to onward and waits for the reply keyed k, the request's timeout,
// ctx, or the session's failure.
func (s *session) call(ctx context.Context, onward wire.Route, k waitKey, payload []byte, timeout time.Duration) (reply, error) {
	ch := make(chan reply, 1)
	s.mu.Lock()
	s.waiters[k] = ch
	s.mu.Unlock()
	defer s.forget(k)
	r, err := s.await(ctx, ch, func() error { return s.send(ctx, onward, payload) }, timeout)
	if err == nil && r.protocol == wire.ProtocolRequestError {
		return reply{}, requestError(r)
	}
	return r, err
}

func (s *session) await(ctx context.Context, ch chan reply, send func() error, timeout time.Duration) (reply, error) {
	if err := send(); err != nil {
		return reply{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-t.C:
		err := fmt.Errorf("%w after %v", ErrTimeout, timeout)
		s.fail(err)
		return reply{}, err
	case <-s.doneCh:
		return reply{}, s.err()
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// createStream sends stream_create for name and returns the route to the stream's worker
// (the return route of the Init reply).
func (s *session) createStream(ctx context.Context, name string, timeout time.Duration) (wire.Route, error) {
	ch := make(chan reply, 1)
	s.mu.Lock()
	s.creates = append(s.creates, ch)
	s.mu.Unlock()
	payload := wire.EncodePayload(wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some(name)})
	r, err := s.await(ctx, ch, func() error { return s.send(ctx, s.route(s.c.cfg.streamService), payload) }, timeout)
	if err != nil {
		return nil, fmt.Errorf("client: create stream %q: %w", name, err)
	}
	init, err := wire.DecodeInit(r.data)
	if err != nil {
		return nil, fmt.Errorf("client: create stream %q: %w", name, err)
	}
	if init.StreamName != name {
		return nil, fmt.Errorf("client: create stream %q: hub answered for stream %q", name, init.StreamName)
	}
	if len(r.ret) == 0 {
		return nil, fmt.Errorf("client: create stream %q: Init without a return route", name)
	}
	return r.ret.Clone(), nil
}
