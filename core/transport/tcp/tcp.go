package tcp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/loglimit"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// Defaults used when no option sets the value.
const (
	DefaultMaxConnections   = 1024
	DefaultWriteQueueSize   = 256
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	// DefaultCloseTimeout is long enough for a peer that reads to take a full default
	// write queue (256 frames of up to 64 KiB) over a link of about 100 Mbit/s.
	DefaultCloseTimeout = 2 * time.Second
)

var (
	// ErrTooManyConnections: a dial would exceed the maximum number of connections. It
	// matches core.ErrUnavailable.
	ErrTooManyConnections = fmt.Errorf("tcp: too many connections: %w", core.ErrUnavailable)
	// ErrConnectionClosed: the connection a message was routed to is closed. It matches
	// core.ErrUnavailable; resending opens a new connection when routed by TCP address.
	ErrConnectionClosed = fmt.Errorf("tcp: connection closed: %w", core.ErrUnavailable)
	// ErrHTTPRequest: an accepted connection started with an HTTP request, not a frame; the
	// transport answered it 400 and closed it (see the package doc). A refused hook
	// (WithRefusedHook) is given it.
	ErrHTTPRequest = errors.New("tcp: the connection sent an HTTP request to a routing v1 port")
	// ErrHTTPServer: the peer of a dialled connection answered with HTTP, not a frame: the
	// address dialled is an HTTP server's, not a Sluice node's (a hub's -metrics-addr, say).
	// The transport closed the connection; the cause that Watch gives is an
	// *HTTPServerError, which matches it. Dialling the address again cannot help.
	ErrHTTPServer = errors.New("tcp: the peer is an HTTP server, not a Sluice node")
	// errMalformedFrame marks frames that close their connection.
	errMalformedFrame = fmt.Errorf("tcp: malformed frame: %w", wire.ErrMalformed)
)

// HTTPServerError is why a dialled connection was closed whose peer answered with HTTP (see
// ErrHTTPServer, which it matches).
type HTTPServerError struct {
	Remote string // the peer's address
	Status string // its status line ("HTTP/1.1 400 Bad Request"), or the start of it: at most 64 bytes
}

func (e *HTTPServerError) Error() string {
	return fmt.Sprintf("%v: %s answered %q (a hub's -metrics-addr, say); check the address", ErrHTTPServer, e.Remote, e.Status)
}

// Is reports whether target is ErrHTTPServer.
func (e *HTTPServerError) Is(target error) bool { return target == ErrHTTPServer }

// Option configures a Transport.
type Option func(*options) error

type options struct {
	logger           *slog.Logger
	maxConns         int
	writeQueue       int
	idleTimeout      time.Duration
	handshakeTimeout time.Duration
	dialTimeout      time.Duration
	writeTimeout     time.Duration
	closeTimeout     time.Duration
	relay            bool
	onRefused        func(remote string, err error)
	onUndeliverable  func(remote string, msg wire.TransportMessage, err error)
}

func positive(name string, v int) error {
	if v < 1 {
		return fmt.Errorf("%w: tcp: %s %d, want >= 1", core.ErrInvalidOption, name, v)
	}
	return nil
}

func nonNegative(name string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: tcp: %s %v, want >= 0 (0 disables it)", core.ErrInvalidOption, name, d)
	}
	return nil
}

// WithLogger sets the logger (default: the node's logger).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: tcp: nil logger", core.ErrInvalidOption)
		}
		o.logger = l
		return nil
	}
}

// WithMaxConnections limits the number of open connections, accepted and dialled together
// (default DefaultMaxConnections).
func WithMaxConnections(n int) Option {
	return func(o *options) error { o.maxConns = n; return positive("max connections", n) }
}

// WithRefusedHook calls f for each accepted connection that the transport closes at once
// because it is at WithMaxConnections (err matches ErrTooManyConnections; f is called from
// the goroutine that accepts connections) or because it sent an HTTP request (err is
// ErrHTTPRequest; f is called from the connection's reading goroutine, before the reply is
// written): f must not block. With f set the transport logs such a refusal at Debug instead
// of its own warning (rate-limited: see the package documentation), so that the owner (a
// hub, say) can count refusals and warn about them its own way.
func WithRefusedHook(f func(remote string, err error)) Option {
	return func(o *options) error {
		if f == nil {
			return fmt.Errorf("%w: tcp: nil refused hook", core.ErrInvalidOption)
		}
		o.onRefused = f
		return nil
	}
}

// WithUndeliverableHook calls f for each message read from a connection that the transport
// does not deliver: the node could not (err is the node's error; it matches
// routing.ErrNoRoute when no worker is registered at the message's first onward address
// and the node's fallback made none), or it is routed to a remote address while relaying
// is off (err matches routing.ErrNoRoute too; see WithRelay). msg's return route starts
// with the connection's local address, so f can answer it; its payload is f's to keep.
// With f set the transport logs such a message at Debug instead of its own warning
// (rate-limited: see the package documentation), so that the owner (a hub, say) can answer
// it, count it and warn about it its own way. f is called from the connection's reading
// goroutine, which reads nothing meanwhile: it must not block.
func WithUndeliverableHook(f func(remote string, msg wire.TransportMessage, err error)) Option {
	return func(o *options) error {
		if f == nil {
			return fmt.Errorf("%w: tcp: nil undeliverable hook", core.ErrInvalidOption)
		}
		o.onUndeliverable = f
		return nil
	}
}

// WithWriteQueueSize sets the number of frames each connection queues for its writer
// (default DefaultWriteQueueSize).
func WithWriteQueueSize(n int) Option {
	return func(o *options) error { o.writeQueue = n; return positive("write queue size", n) }
}

// WithIdleTimeout closes a connection on which no frame arrives for d (default
// DefaultIdleTimeout; 0 disables it).
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) error { o.idleTimeout = d; return nonNegative("idle timeout", d) }
}

// WithHandshakeTimeout closes an accepted connection whose first frame does not arrive
// within d (default DefaultHandshakeTimeout; 0 disables it).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) error { o.handshakeTimeout = d; return nonNegative("handshake timeout", d) }
}

// WithDialTimeout bounds each dial (default DefaultDialTimeout; 0 sets no bound of the
// transport's own: a dial then lasts until it connects, fails, or the transport closes).
// Callers waiting for a dial stop waiting when their ctx ends; the dial goes on for the
// others.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) error { o.dialTimeout = d; return nonNegative("dial timeout", d) }
}

// WithWriteTimeout closes a connection when one write of queued frames to the socket takes
// longer than d (default DefaultWriteTimeout; 0 disables it). A connection that is closing
// has d in all, from when it starts to close, to write the frames still queued on it.
func WithWriteTimeout(d time.Duration) Option {
	return func(o *options) error { o.writeTimeout = d; return nonNegative("write timeout", d) }
}

// WithCloseTimeout bounds how long Close and Shutdown let the connections write the frames
// already queued on them (default DefaultCloseTimeout). Connections that have not finished
// by then are closed, which interrupts a write blocked on a peer that stopped reading, and
// the frames they had not written are dropped. d must be > 0: Close must not block forever,
// and a caller that wants no wait at all calls Shutdown with a context that is done.
func WithCloseTimeout(d time.Duration) Option {
	return func(o *options) error {
		o.closeTimeout = d
		if d <= 0 {
			return fmt.Errorf("%w: tcp: close timeout %v, want > 0", core.ErrInvalidOption, d)
		}
		return nil
	}
}

// WithRelay lets peers route messages through this node to TCP addresses: a message read
// from a connection whose first onward address is a TCP address is sent on (dialling that
// address). By default such messages are dropped and logged, so that a peer cannot make
// this node open connections to arbitrary hosts.
func WithRelay(allow bool) Option {
	return func(o *options) error { o.relay = allow; return nil }
}

// Transport is a TCP transport attached to one node. It is safe for concurrent use.
type Transport struct {
	node *routing.Node
	// unregister takes the transport off node (routing.Node.RegisterTransport's remove).
	unregister func()
	log        *slog.Logger
	opts       options
	// limits rate-limits the warnings that peers cause, one per connection or message
	// otherwise: connections refused, messages dropped (when no hook takes them).
	limits *loglimit.Limiter

	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // accept loops, dials and connection goroutines
	stopped chan struct{}  // closed once the first Close or Shutdown saw wg reach zero

	mu        sync.Mutex
	closed    bool
	listeners []net.Listener
	conns     map[*conn]struct{}  // open connections
	writing   map[*conn]struct{}  // connections whose writer has not returned (closing ones too)
	dialed    map[string]*conn    // by "host:port" as written in the TCP address
	pending   map[string]*dialing // dials in progress

	hooks testHooks
}

// dialing is a dial in progress; c and err are set before done is closed.
type dialing struct {
	done chan struct{}
	c    *conn
	err  error
}

// testHooks stop the transport at the points where it races with its peer or its callers.
// Tests set them before the transport is used; nil hooks are skipped.
type testHooks struct {
	// dial replaces net.Dialer's DialContext.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
	// dialed runs when a dial succeeded, before its waiters get the connection.
	dialed func(c *conn)
	// beforeQueue runs when enqueue has encoded a frame, before it queues it.
	beforeQueue func(c *conn)
	// found runs when Disconnect or Abort has found the connection, before it closes it.
	found func(c *conn)
}

var (
	_ routing.Transport = (*Transport)(nil)
	_ routing.Sender    = (*conn)(nil)
)

// New creates a TCP transport and registers it with node for wire.AddressTCP. The node
// closes it when the node closes; it may also be closed earlier. Invalid options return an
// error matching core.ErrInvalidOption.
func New(node *routing.Node, opts ...Option) (*Transport, error) {
	if node == nil {
		return nil, fmt.Errorf("%w: tcp: nil node", core.ErrInvalidArgument)
	}
	o := options{
		logger:           node.Logger(),
		maxConns:         DefaultMaxConnections,
		writeQueue:       DefaultWriteQueueSize,
		idleTimeout:      DefaultIdleTimeout,
		handshakeTimeout: DefaultHandshakeTimeout,
		dialTimeout:      DefaultDialTimeout,
		writeTimeout:     DefaultWriteTimeout,
		closeTimeout:     DefaultCloseTimeout,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		node:    node,
		log:     o.logger,
		opts:    o,
		limits:  loglimit.New(0),
		ctx:     ctx,
		cancel:  cancel,
		stopped: make(chan struct{}),
		conns:   make(map[*conn]struct{}),
		writing: make(map[*conn]struct{}),
		dialed:  make(map[string]*conn),
		pending: make(map[string]*dialing),
	}
	unregister, err := node.RegisterTransport(wire.AddressTCP, t)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("tcp: %w", err)
	}
	t.unregister = unregister
	return t, nil
}

// Listen starts accepting connections on addr (e.g. "127.0.0.1:4000", or port 0 for any
// free port) and returns the address it listens on. It may be called more than once.
func (t *Transport) Listen(addr string) (net.Addr, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(t.ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: listen %s: %w", addr, err)
	}
	return t.ListenOn(ln)
}

// ListenOn starts accepting connections on ln, a listener the caller bound (for example
// before it did work that should not be done when the address is taken), and returns its
// address. The transport takes ln over: it closes it when it stops listening (see
// [Transport.StopListening]) or closes, and at once, with an error matching
// routing.ErrClosed, when it is closed already. It may be called more than once, and
// together with Listen.
func (t *Transport) ListenOn(ln net.Listener) (net.Addr, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ln.Close()
		return nil, fmt.Errorf("tcp: listen %s: %w", ln.Addr(), routing.ErrClosed)
	}
	t.listeners = append(t.listeners, ln)
	t.wg.Add(1)
	t.mu.Unlock()
	go t.acceptLoop(ln)
	return ln.Addr(), nil
}

func (t *Transport) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (e.g. out of file descriptors): back off like net/http.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("tcp: accept failed; retrying", "listener", ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if _, err := t.start(nc, "", true); err != nil {
			// The hook runs before the close: when the peer sees the connection closed,
			// the refusal has been counted.
			t.refused(nc, "tcp: refused connection", err, errors.Is(err, ErrTooManyConnections))
			nc.Close()
		}
	}
}

// refused logs msg about the accepted connection nc, which the transport closes at once
// because of err: when hook is true and WithRefusedHook gave a hook, at Debug, and then
// hands nc's remote address and err to the hook; otherwise at Warn, at most once every
// loglimit.Every (a line counts the connections refused since the previous one, the
// others are logged at Debug), as a flood of connections would otherwise flood the log.
func (t *Transport) refused(nc net.Conn, msg string, err error, hook bool) {
	remote := nc.RemoteAddr().String()
	if f := t.opts.onRefused; f != nil && hook {
		t.log.Debug(msg, "remote", remote, "local", nc.LocalAddr().String(), "err", err)
		f(remote, err)
		return
	}
	t.limits.LineOrDebug(t.log, slog.LevelWarn, msg, "connections", "last_remote", remote, "local", nc.LocalAddr().String(), "last_err", err)
}

// Connect returns the local address of a connection to hostport, dialling it unless one is
// already open. Messages routed to wire.TCP(hostport) use the same connection; messages
// routed to the returned local address too. ctx bounds how long Connect waits, not the dial:
// callers that want the same host:port meanwhile share one dial, which ends only by the
// dial timeout (WithDialTimeout) or Close.
func (t *Transport) Connect(ctx context.Context, hostport string) (wire.Address, error) {
	c, err := t.connFor(ctx, hostport)
	if err != nil {
		return wire.Address{}, err
	}
	return wire.Local(c.addr), nil
}

// CopiesPayload implements routing.PayloadCopier: Send encodes the message into a frame of
// its own before it returns.
func (t *Transport) CopiesPayload() bool { return true }

// Send writes msg, whose first onward address is a TCP address, to the connection for that
// host:port (dialling it if needed), with the TCP address removed from the onward route.
// The node calls it; programs normally call node.Send. A message too large for a frame
// returns an error matching wire.ErrFrameTooLarge, one with a route of more than
// wire.MaxRouteLen addresses an error matching wire.ErrRouteTooLong; neither is sent.
func (t *Transport) Send(ctx context.Context, msg wire.TransportMessage) error {
	if len(msg.OnwardRoute) == 0 || msg.OnwardRoute[0].Type != wire.AddressTCP {
		return fmt.Errorf("tcp: send: first onward address is not a TCP address: %w", routing.ErrNoRoute)
	}
	fwd := strip(msg)
	// Check the size and the routes before dialling: a message that can never be sent
	// should not open a connection.
	if err := fwd.Validate(); err != nil {
		return fmt.Errorf("tcp: send to %s: %w", msg.OnwardRoute[0], err)
	}
	hostport := string(msg.OnwardRoute[0].Value)
	for attempt := 0; ; attempt++ {
		c, err := t.connFor(ctx, hostport)
		if err != nil {
			return err
		}
		err = c.enqueue(ctx, fwd)
		// A connection found in the map may be closing (idle timeout, peer gone); it is
		// already out of the map then, so one more attempt dials a new one.
		if errors.Is(err, ErrConnectionClosed) && attempt == 0 {
			continue
		}
		return err
	}
}

// Done returns a channel that is closed when the connection at local address a closes (at
// once if no open connection of this transport has that address). Clients use it to notice
// a lost connection without waiting for their requests to time out.
func (t *Transport) Done(a wire.Address) <-chan struct{} {
	done, _ := t.Watch(a)
	return done
}

// Watch is Done with the reason: once done is closed, cause returns why the connection
// closed: nil when it closed normally (Disconnect, Shutdown, the peer closing it, or no
// open connection having address a), else the error that closed it, which matches
// ErrHTTPServer when the peer answered with HTTP. Before done is closed, cause returns nil.
func (t *Transport) Watch(a wire.Address) (done <-chan struct{}, cause func() error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.Type == wire.AddressLocal {
		for c := range t.conns {
			if c.addr == string(a.Value) {
				return c.done, c.closeCause
			}
		}
	}
	closed := make(chan struct{})
	close(closed)
	return closed, func() error { return nil }
}

// StableRoute returns route with its first address replaced by the TCP address
// ("host:port") when that first address is the local address of a connection this transport
// dialled, and route itself otherwise. Routes learned from replies (e.g. the return route of
// a stream's Init) start with such a connection address, which dies with the connection;
// the stable form dials a new connection when needed, so it stays valid across reconnects.
// When it replaces the address, the result is a new slice. Call it while the connection is
// open, e.g. as soon as the Init arrives.
func (t *Transport) StableRoute(route wire.Route) wire.Route {
	if len(route) == 0 || route[0].Type != wire.AddressLocal {
		return route
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for hostport, c := range t.dialed {
		if c.addr == string(route[0].Value) {
			return route[1:].Prepend(wire.TCP(hostport))
		}
	}
	return route
}

// strip returns msg without its first onward address (the TCP or connection address).
func strip(msg wire.TransportMessage) wire.TransportMessage {
	msg.OnwardRoute = msg.OnwardRoute[1:]
	return msg
}

// connFor returns the connection to hostport, dialling it unless one is open or being
// dialled. The dial is shared by every caller that wants hostport meanwhile and is not tied
// to any caller's ctx: a caller whose ctx ends stops waiting, and the others still get the
// connection.
func (t *Transport) connFor(ctx context.Context, hostport string) (*conn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("tcp: connect %s: %w", hostport, routing.ErrClosed)
	}
	if c := t.dialed[hostport]; c != nil {
		t.mu.Unlock()
		return c, nil
	}
	d := t.pending[hostport]
	if d == nil {
		d = &dialing{done: make(chan struct{})}
		t.pending[hostport] = d
		t.wg.Add(1)
		go t.dial(d, hostport)
	}
	t.mu.Unlock()
	select {
	case <-d.done:
		return d.c, d.err
	case <-ctx.Done():
		return nil, fmt.Errorf("tcp: connect %s: %w", hostport, ctx.Err())
	}
}

// dial runs d: it connects to hostport, bounded by the dial timeout and by Close, and starts
// the connection, which start records in t.dialed.
func (t *Transport) dial(d *dialing, hostport string) {
	defer t.wg.Done()
	d.c, d.err = t.connect(hostport)
	if d.err == nil && t.hooks.dialed != nil {
		t.hooks.dialed(d.c)
	}
	t.mu.Lock()
	delete(t.pending, hostport)
	if d.err == nil && t.closed { // Close saw the connection and shuts it down
		d.c, d.err = nil, fmt.Errorf("tcp: connect %s: %w", hostport, routing.ErrClosed)
	}
	t.mu.Unlock()
	close(d.done)
}

func (t *Transport) connect(hostport string) (*conn, error) {
	if t.full() {
		return nil, fmt.Errorf("tcp: connect %s: %w (limit %d)", hostport, ErrTooManyConnections, t.opts.maxConns)
	}
	ctx := t.ctx
	if t.opts.dialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.opts.dialTimeout)
		defer cancel()
	}
	dial := (&net.Dialer{}).DialContext
	if t.hooks.dial != nil {
		dial = t.hooks.dial
	}
	nc, err := dial(ctx, "tcp", hostport)
	if err != nil {
		if t.ctx.Err() != nil {
			return nil, fmt.Errorf("tcp: connect %s: %w", hostport, routing.ErrClosed)
		}
		return nil, fmt.Errorf("tcp: connect %s: %w: %w", hostport, core.ErrUnavailable, err)
	}
	c, err := t.start(nc, hostport, false)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("tcp: connect %s: %w", hostport, err)
	}
	return c, nil
}

// Connections returns the number of open connections, accepted and dialled together (what
// WithMaxConnections limits).
func (t *Transport) Connections() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

func (t *Transport) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns) >= t.opts.maxConns
}

// start registers nc on the node, records it in t.dialed when it was dialled, and starts
// its goroutines. peer is the dialled host:port ("" for accepted connections).
func (t *Transport) start(nc net.Conn, peer string, accepted bool) (*conn, error) {
	ctx, cancel := context.WithCancel(t.ctx)
	c := &conn{
		t:        t,
		nc:       nc,
		peer:     peer,
		accepted: accepted,
		queue:    make(chan frame, t.opts.writeQueue),
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	// Registration happens under t.mu so that Close either sees the connection (and shuts
	// it down) or prevents it, and so that the connection is in t.dialed before its reader
	// can remove it; lock order is always t.mu, then the node's lock.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		cancel()
		return nil, routing.ErrClosed
	}
	if len(t.conns) >= t.opts.maxConns {
		cancel()
		return nil, fmt.Errorf("%w (limit %d)", ErrTooManyConnections, t.opts.maxConns)
	}
	addr, err := t.register(c)
	if err != nil {
		cancel()
		return nil, err
	}
	c.addr = addr
	t.conns[c] = struct{}{}
	t.writing[c] = struct{}{}
	if peer != "" {
		t.dialed[peer] = c
	}
	t.wg.Add(2)
	t.log.Debug("tcp: connection open", "address", addr, "remote", nc.RemoteAddr().String(), "accepted", accepted)
	go c.readLoop()
	go c.writeLoop()
	return c, nil
}

// register registers c on the node at a new random local address.
func (t *Transport) register(c *conn) (string, error) {
	for {
		addr := routing.NewAddress()
		err := t.node.RegisterSender(addr, c)
		if errors.Is(err, routing.ErrAddressInUse) {
			continue
		}
		return addr, err
	}
}

// remove forgets c; called once by c.shutdown.
func (t *Transport) remove(c *conn) {
	t.mu.Lock()
	delete(t.conns, c)
	if c.peer != "" && t.dialed[c.peer] == c {
		delete(t.dialed, c.peer)
	}
	t.mu.Unlock()
	if c.addr != "" {
		_ = t.node.Unregister(c.addr)
	}
}

// StopListening closes the listeners, so that no new connection is accepted, and leaves
// open connections and dialling alone; a later Listen may listen again. Servers call it at
// the start of a graceful shutdown. It returns the first error of a listener's Close.
func (t *Transport) StopListening() error {
	t.mu.Lock()
	lns := t.listeners
	t.listeners = nil
	t.mu.Unlock()
	var errs []error
	for _, ln := range lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Disconnect closes the connection at local address a (as returned by Connect), after
// writing the frames already queued on it (bounded by the write timeout, and cut short by
// Close and Shutdown), so that the next Connect or Send to its host:port dials a new
// connection. Clients use it to drop a connection that stopped answering. Frames that
// arrive on the connection from then on are dropped; one read just before may still be
// delivered after Disconnect returns (Disconnect does not wait for its delivery, which may be
// what called Disconnect). An address that names no open connection of this transport
// returns an error matching routing.ErrNoRoute, as does one whose connection another call
// closed meanwhile (see Abort).
func (t *Transport) Disconnect(a wire.Address) error {
	if c := t.find(a); c == nil || !c.shutdown(nil) {
		return fmt.Errorf("tcp: disconnect %s: no open connection at this address: %w", a, routing.ErrNoRoute)
	}
	return nil
}

// Abort closes the connection at local address a at once: unlike Disconnect it does not
// let the connection write the frames queued on it, which are dropped, and it closes the
// socket before it returns, interrupting a write blocked on a peer that stopped reading.
// Servers use it to give up a slow consumer: a peer that does not read would otherwise keep
// the socket, and the goroutines and queued frames of its connection, for up to the write
// timeout after the connection stopped counting against WithMaxConnections (it stops
// counting when it starts to close). Frames that arrive on the connection are dropped, as
// with Disconnect. An address that names no open connection of this transport returns an
// error matching routing.ErrNoRoute; so does one whose connection another call (Abort,
// Disconnect, Shutdown, ...) closed meanwhile: of concurrent calls for one connection, only
// the one that closed it returns nil.
func (t *Transport) Abort(a wire.Address) error {
	c := t.find(a)
	if c == nil || !c.shutdown(nil) {
		return fmt.Errorf("tcp: abort %s: no open connection at this address: %w", a, routing.ErrNoRoute)
	}
	// The writer's Write (or its last flush) returns at once with an error, and the
	// reader's Read too; both then return. Closing twice (the writer closes it as it
	// returns) is harmless.
	_ = c.nc.Close()
	return nil
}

// find returns the open connection at local address a, or nil.
func (t *Transport) find(a wire.Address) *conn {
	if a.Type != wire.AddressLocal {
		return nil
	}
	t.mu.Lock()
	var found *conn
	for c := range t.conns {
		if c.addr == string(a.Value) {
			found = c
			break
		}
	}
	t.mu.Unlock()
	if found != nil && t.hooks.found != nil {
		t.hooks.found(found)
	}
	return found
}

// Close is Shutdown with a context that is never done: it stops the listeners, lets every
// connection write the frames already queued on it for up to the close timeout
// (WithCloseTimeout), closes the connections and waits for all the transport's goroutines.
// It returns the first error of a listener's Close. The node's Close calls it.
func (t *Transport) Close() error { return t.Shutdown(context.Background()) }

// Shutdown closes the transport, bounded by ctx. It stops the listeners and the dials in
// progress, makes later sends fail (with an error matching routing.ErrClosed or
// ErrConnectionClosed), lets every connection write the frames already queued on it, then
// closes the connections and waits until all the transport's goroutines have returned.
//
// Writing the queued frames is cut short when ctx ends or the close timeout
// (WithCloseTimeout) has passed, whichever comes first: the connections that have not
// finished by then are closed at once, which interrupts a write blocked on a peer that
// stopped reading, and the frames they had not written are dropped (and logged). So
// Shutdown returns soon after that point, however the peers behave; with a ctx that is
// already done it drops what is queued and returns at once. Connections closed earlier
// (Disconnect, idle timeout, ...) whose writer is still flushing are cut short the same
// way.
//
// It returns an error matching ctx.Err() when ctx ended before every connection had
// finished writing, joined with the first error of a listener's Close; a close timeout
// that passes is not an error. Shutdown and Close may be called more than once and
// concurrently: later calls wait, bounded as above by their own ctx and the close timeout,
// until the transport has stopped, and return nil (or ctx's error). Servers call it with
// their shutdown context; [Transport.StopListening] first, if open connections should
// still be served meanwhile.
func (t *Transport) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	first := !t.closed
	var lns []net.Listener
	var conns []*conn
	if first {
		t.closed = true
		lns = t.listeners
		t.listeners = nil
		conns = make([]*conn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
	}
	t.mu.Unlock()

	var errs []error
	if first {
		// Sends to TCP addresses now find no route on the node, rather than a closed
		// transport, until another transport registers.
		t.unregister()
		for _, ln := range lns {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		for _, c := range conns {
			c.shutdown(nil)
		}
		t.cancel()
		// No goroutine is added once closed is set (Listen, connFor and start check it
		// under t.mu), so wg only counts down from here.
		go func() {
			t.wg.Wait()
			// The warnings held back are logged now: the transport's logger need not
			// outlive it.
			t.limits.Stop()
			close(t.stopped)
		}()
	}
	if err := t.awaitStopped(ctx); err != nil {
		errs = append([]error{err}, errs...)
	}
	return errors.Join(errs...)
}

// awaitStopped waits until the transport's goroutines have returned. When ctx ends or the
// close timeout passes first, it closes the sockets of the connections whose writer is
// still running, then waits for the goroutines, which end promptly once their sockets are
// closed. It returns an error matching ctx.Err() when ctx cut a writer short.
func (t *Transport) awaitStopped(ctx context.Context) error {
	select {
	case <-t.stopped:
		return nil
	default:
	}
	timer := time.NewTimer(t.opts.closeTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-t.stopped:
		return nil
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.mu.Lock()
	cut := make([]*conn, 0, len(t.writing))
	for c := range t.writing {
		cut = append(cut, c)
	}
	t.mu.Unlock()
	for _, c := range cut {
		// Safe while the writer is in Write: Write returns an error at once.
		_ = c.nc.Close()
	}
	<-t.stopped
	if len(cut) == 0 {
		return nil
	}
	if err != nil {
		t.log.Warn("tcp: shutdown context ended; closed connections that had not finished writing their queued frames", "connections", len(cut), "err", err)
		return fmt.Errorf("tcp: shutdown: %d connection(s) closed before writing all queued frames: %w", len(cut), err)
	}
	t.log.Warn("tcp: close timeout passed; closed connections that had not finished writing their queued frames", "connections", len(cut), "close_timeout", t.opts.closeTimeout)
	return nil
}

// conn is one TCP connection, registered on the node at addr.
type conn struct {
	t        *Transport
	nc       net.Conn
	addr     string // local address on the node
	peer     string // dialled host:port, "" when accepted
	accepted bool

	queue  chan frame    // encoded frames for the writer
	done   chan struct{} // closed by shutdown
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	// sendMu orders senders against the writer's last drain: a sender holds it shared from
	// its check of done until its frame is queued; the writer takes it once done is closed,
	// so that every frame queued at all is queued before that drain.
	sendMu sync.RWMutex

	// flushBy is the write deadline of every write once c is closing (done is closed): the
	// write timeout from when it started to close, so that a closing connection has that
	// long for all it still writes. Set by shutdown before it closes done; zero when the
	// write timeout is disabled.
	flushBy time.Time

	// cause is why c closed (nil: normally). Set by shutdown before it closes done, read
	// (Watch) once done is closed.
	cause error
}

// Send implements routing.Sender: the node calls it for messages whose first onward address
// is c's local address.
func (c *conn) Send(ctx context.Context, msg wire.TransportMessage) error {
	return c.enqueue(ctx, strip(msg))
}

var (
	_ routing.PayloadCopier = (*conn)(nil)
	_ routing.PayloadCopier = (*Transport)(nil)
)

// CopiesPayload implements routing.PayloadCopier: Send encodes the message into a frame of
// its own before it returns.
func (c *conn) CopiesPayload() bool { return true }

// frame is an encoded frame queued for the writer. pooled, when not nil, is the buffer of
// b taken from framePool, returned to it once the frame is written.
type frame struct {
	b      []byte
	pooled *[]byte
}

// pooledFrameMin is the size from which a frame's buffer comes from framePool: large frames
// (push batches, pull replies) are the bulk of a busy connection's bytes, and allocating
// and clearing 64 KiB for each would keep the garbage collector busy. Smaller frames are
// cheap to allocate.
const pooledFrameMin = 4 << 10

// framePool holds buffers that fit any frame.
var framePool = sync.Pool{New: func() any {
	b := make([]byte, 0, wire.FrameHeaderLen+wire.MaxFrame)
	return &b
}}

// release returns f's buffer to the pool; f must not be used afterwards.
func (f frame) release() {
	if f.pooled != nil {
		*f.pooled = f.b[:0]
		framePool.Put(f.pooled)
	}
}

// enqueue encodes msg (already stripped of the hop address) into a frame and queues it.
func (c *conn) enqueue(ctx context.Context, msg wire.TransportMessage) error {
	var f frame
	size := wire.FrameHeaderLen + msg.Size()
	if size >= pooledFrameMin && size <= wire.FrameHeaderLen+wire.MaxFrame {
		f.pooled = framePool.Get().(*[]byte)
		f.b = (*f.pooled)[:0]
	} else {
		f.b = make([]byte, 0, size)
	}
	var err error
	if f.b, err = wire.AppendFrame(f.b, msg); err != nil {
		f.release()
		return fmt.Errorf("tcp: send via %s: %w", c.nc.RemoteAddr(), err)
	}
	if c.t.hooks.beforeQueue != nil {
		c.t.hooks.beforeQueue(c)
	}
	// The writer's last drain waits for RUnlock (see sendMu); the select returns as soon
	// as done is closed, so that wait is short.
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	select {
	case <-c.done:
		f.release()
		return fmt.Errorf("tcp: send via %s: %w", c.nc.RemoteAddr(), ErrConnectionClosed)
	default:
	}
	// Room first, so that an ended ctx does not lose a race with free room (a select
	// picks at random among the cases that are ready): ctx bounds only the wait for room.
	select {
	case c.queue <- f:
		return nil
	default:
	}
	select {
	case c.queue <- f:
		return nil
	case <-c.done:
		f.release()
		return fmt.Errorf("tcp: send via %s: %w", c.nc.RemoteAddr(), ErrConnectionClosed)
	case <-ctx.Done():
		f.release()
		return fmt.Errorf("tcp: send via %s: write queue full: %w", c.nc.RemoteAddr(), ctx.Err())
	}
}

// write writes f through bw and releases it (bufio has copied or written it when Write
// returns). An error is sticky in bw: Flush reports it.
func write(bw *bufio.Writer, f frame) {
	_, _ = bw.Write(f.b)
	f.release()
}

// shutdown starts closing c: the writer flushes what is queued, then closes the socket,
// which ends the reader. cause nil means a normal close. A connection closed for an error
// is warned about: a dialled one each time; an accepted one (which any peer can open, and
// close with a bad frame) at most once every loglimit.Every, a line counting the
// connections since the previous one, the others at Debug. It reports whether this call
// closed c: false when c was closing already.
func (c *conn) shutdown(cause error) (closed bool) {
	c.once.Do(func() {
		closed = true
		switch {
		case cause != nil && c.accepted:
			c.t.limits.LineOrDebug(c.t.log, slog.LevelWarn, "tcp: closing connection", "connections",
				"last_address", c.addr, "last_remote", c.nc.RemoteAddr().String(), "last_err", cause)
		case cause != nil:
			c.t.log.Warn("tcp: closing connection", "address", c.addr, "remote", c.nc.RemoteAddr().String(), "err", cause)
		default:
			c.t.log.Debug("tcp: closing connection", "address", c.addr, "remote", c.nc.RemoteAddr().String())
		}
		// Out of the maps first, so that nobody picks a connection that is closing.
		c.t.remove(c)
		if d := c.t.opts.writeTimeout; d > 0 {
			c.flushBy = time.Now().Add(d) // read by the writer once done is closed
		}
		c.cause = cause
		close(c.done)
		c.cancel()
	})
	return closed
}

func (c *conn) readLoop() {
	defer c.t.wg.Done()
	timeout := c.t.opts.idleTimeout
	if c.accepted && c.t.opts.handshakeTimeout > 0 {
		timeout = c.t.opts.handshakeTimeout
	}
	var hdr [wire.FrameHeaderLen]byte
	self := wire.Local(c.addr)
	// Buffered: a frame's header and body, and the small frames behind it, come in with
	// one read system call instead of two per frame.
	br := bufio.NewReaderSize(c.nc, readBufferSize)
	armed := false // a read deadline is set
	for first := true; ; first = false {
		switch {
		case timeout > 0:
			_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
			armed = true
		case armed:
			// The handshake timeout no longer applies and the idle timeout is disabled.
			_ = c.nc.SetReadDeadline(time.Time{})
			armed = false
		}
		if first && c.accepted && sentHTTP(br) {
			c.refuseHTTP()
			return
		}
		if first && !c.accepted {
			if status, ok := answeredHTTP(br); ok {
				c.shutdown(&HTTPServerError{Remote: c.nc.RemoteAddr().String(), Status: status})
				return
			}
		}
		payload, pooled, err := readFrame(br, hdr[:])
		if err != nil {
			c.readFailed(err)
			return
		}
		// A connection that is closing (Disconnect, a slow consumer given up, Shutdown) is
		// gone from the node: a reply to what it sends now could not reach it. Its socket
		// stays open while the writer flushes what was queued, which may take up to the
		// write timeout for a peer that does not read: deliver nothing more, or the node
		// would serve (a hub: store the pushes of) requests it can never answer.
		select {
		case <-c.done:
			return
		default:
		}
		timeout = c.t.opts.idleTimeout
		msg, err := wire.DecodeTransportMessage(payload)
		if err != nil {
			c.shutdown(fmt.Errorf("%w: %w", errMalformedFrame, err))
			return
		}
		msg.ReturnRoute = msg.ReturnRoute.Prepend(self)
		if !c.t.opts.relay && len(msg.OnwardRoute) > 0 && msg.OnwardRoute[0].Type != wire.AddressLocal {
			c.undeliverable(msg, fmt.Errorf("tcp: message routed to remote address %s and relaying is off: %w", msg.OnwardRoute[0], routing.ErrNoRoute))
			continue
		}
		// A large frame's buffer comes back to the pool when its receiver releases it
		// (routing.Message.Release): the hub does once the pushes it carried are stored.
		var release func()
		if pooled != nil {
			release = func() { putFrame(pooled) }
		}
		if err := c.t.node.SendOwned(c.ctx, msg, release); err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.undeliverable(msg, err)
		}
	}
}

// undeliverable handles a message read from c that was not delivered because of err: it
// hands it to the undeliverable hook, if any (see WithUndeliverableHook), and logs it at
// Debug. Without a hook it warns, at most once every loglimit.Every (a line counts the
// messages dropped since the previous one; the others are logged at Debug): a peer that
// sends to an address that does not exist would otherwise cost a warning per frame.
func (c *conn) undeliverable(msg wire.TransportMessage, err error) {
	remote := c.nc.RemoteAddr().String()
	f := c.t.opts.onUndeliverable
	if f == nil {
		c.t.limits.LineOrDebug(c.t.log, slog.LevelWarn, "tcp: dropped incoming messages", "messages",
			"last_address", c.addr, "last_remote", remote, "last_msg", msg.String(), "last_err", err)
		return
	}
	if c.t.log.Enabled(context.Background(), slog.LevelDebug) { // msg.String costs
		c.t.log.Debug("tcp: incoming message not delivered", "address", c.addr, "remote", remote, "msg", msg.String(), "err", err)
	}
	f(remote, msg, err)
}

// closeCause returns why c closed once it has (see Transport.Watch), nil before.
func (c *conn) closeCause() error {
	select {
	case <-c.done:
		return c.cause
	default:
		return nil
	}
}

func (c *conn) readFailed(err error) {
	select {
	case <-c.done: // we are closing: the error is the consequence
		c.shutdown(nil)
		return
	default:
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		c.shutdown(nil)
	case errors.As(err, &ne) && ne.Timeout():
		c.shutdown(fmt.Errorf("tcp: no frame received within the timeout: %w", err))
	default:
		c.shutdown(err)
	}
}

// readFrame reads one frame from r and returns its body, which decoded messages alias. A
// body of at least pooledFrameMin bytes is read into a buffer from readPool, returned as
// pooled: the caller may hand it back with putFrame once nothing refers to the body (a
// pooled buffer never handed back is garbage collected). A smaller body is in a new slice
// and pooled is nil. hdr is a 2-byte scratch buffer. A zero length returns an error
// matching errMalformedFrame; a clean EOF before a frame returns io.EOF.
func readFrame(r io.Reader, hdr []byte) (body []byte, pooled *[]byte, err error) {
	if _, err := io.ReadFull(r, hdr[:wire.FrameHeaderLen]); err != nil {
		return nil, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr))
	if n == 0 {
		return nil, nil, fmt.Errorf("%w: zero frame length", errMalformedFrame)
	}
	if n >= pooledFrameMin {
		pooled = getFrame(n)
		body = *pooled
	} else {
		body = make([]byte, n)
	}
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, fmt.Errorf("tcp: truncated frame of %d bytes: %w", n, err)
	}
	return body, pooled, nil
}

// readPool holds buffers for received frame bodies that their receiver released (*[]byte).
// It is apart from framePool: a received frame that is never released (a pull reply the
// client hands to its application) should cost its own size, not a buffer that fits any
// frame.
var readPool sync.Pool

// getFrame returns a buffer of n bytes from readPool, or a new one whose capacity is n
// rounded up to a multiple of pooledFrameMin, so that it fits frames of about that size
// when it comes back.
func getFrame(n int) *[]byte {
	if bp, _ := readPool.Get().(*[]byte); bp != nil && cap(*bp) >= n {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, min((n+pooledFrameMin-1)/pooledFrameMin*pooledFrameMin, wire.MaxFrame))
	return &b
}

// putFrame hands a buffer from getFrame back to readPool. Nothing may refer to it after.
func putFrame(bp *[]byte) { readPool.Put(bp) }

// Buffer sizes of a connection's reader and writer. A frame longer than the writer's
// buffer is written straight through.
const (
	readBufferSize  = 16 << 10
	writeBufferSize = 32 << 10
)

// writeLoop writes the queued frames: it takes whatever is queued (waiting for the first
// frame only), writes it through a buffer, and flushes once the queue is empty, so that
// frames queued together leave in as few system calls as fit the buffer.
func (c *conn) writeLoop() {
	defer c.t.wg.Done()
	defer func() {
		c.t.mu.Lock()
		delete(c.t.writing, c)
		c.t.mu.Unlock()
		c.nc.Close()
	}()
	bw := bufio.NewWriterSize(deadlineWriter{c}, writeBufferSize)
	for {
		select {
		case f := <-c.queue:
			write(bw, f)
		case <-c.done:
			// Let senders that saw done open queue their frames; later ones fail.
			c.sendMu.Lock()
			c.sendMu.Unlock()
			c.flush(bw)
			return
		}
	collect:
		for {
			select {
			case f := <-c.queue:
				write(bw, f)
			default:
				break collect
			}
		}
		if err := bw.Flush(); err != nil {
			c.shutdown(fmt.Errorf("tcp: write: %w", err))
			return
		}
	}
}

// deadlineWriter writes to the connection; every write gets the write timeout.
type deadlineWriter struct{ c *conn }

func (w deadlineWriter) Write(b []byte) (int, error) {
	w.c.armWrite()
	return w.c.nc.Write(b)
}

// armWrite sets the write deadline for the next write: the write timeout from now, or,
// once c is closing, flushBy. A peer that reads, but too slowly to take what is queued
// within the write timeout, thus keeps a closing connection's socket and frames (up to the
// write queue size times 64 KiB) for the write timeout, not for as long as it keeps reading.
func (c *conn) armWrite() {
	d := c.t.opts.writeTimeout
	if d <= 0 {
		return
	}
	select {
	case <-c.done:
		_ = c.nc.SetWriteDeadline(c.flushBy)
	default:
		_ = c.nc.SetWriteDeadline(time.Now().Add(d))
	}
}

// flush writes the frames still queued when the connection closes gracefully. No sender
// queues a frame any more (see sendMu), so it drains the queue to the end, within flushBy
// (see armWrite).
func (c *conn) flush(bw *bufio.Writer) {
	for {
		select {
		case f := <-c.queue:
			write(bw, f)
			continue
		default:
		}
		break
	}
	if err := bw.Flush(); err != nil {
		c.t.log.Debug("tcp: flush on close failed", "address", c.addr, "err", err)
	}
}
