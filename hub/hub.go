package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/loglimit"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// Local addresses of the hub's services.
const (
	// StreamAddress is the local address of the stream service (stream_create*).
	StreamAddress = "stream"
	// IndexAddress is the local address of the index service (stream_index*, sluice_index_*).
	IndexAddress = "stream_index"
)

// Hub serves the Ockam stream protocol (and Sluice's extensions) on a routing node, storing
// streams in a backend. Create it with [New], serve TCP with [Hub.Listen] (or
// [Hub.ListenOn]), and stop it with [Hub.Shutdown] or [Hub.Close]. A Hub is safe for
// concurrent use.
//
// The hub does not own the backend: closing the hub does not close it.
type Hub struct {
	backend *core.Backend
	node    *routing.Node
	ownNode bool
	cfg     config
	log     *slog.Logger
	m       counters

	// denseIndex is the backend's Capabilities().DenseIndex: a pull that gets a message
	// above the index it asked for skipped messages deleted by retention.
	denseIndex bool

	// ctx is cancelled by a hard stop (Close, or Shutdown whose ctx expired); every backend
	// call made by the hub derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	fetchSem   chan struct{} // bounds concurrent backend fetches for pulls
	pullSem    chan struct{} // bounds pulls in progress (one goroutine each), taken before it starts
	indexSem   chan struct{} // bounds concurrent index service backend calls
	indexSlots chan struct{} // bounds index requests queued or running, taken on arrival
	taskSem    chan struct{} // bounds creates and stream infos in progress (one goroutine each)

	imu         sync.Mutex
	indexQueues map[indexKey][]indexCall // pending index requests per busy key

	parked parkedPulls // long polls parked per connection (WithMaxParkedPullsPerConnection)

	backlogs  backlogs     // replies waiting for their destination (see reply)
	nBacklogs atomic.Int32 // len(backlogs.m), read without the lock on every reply

	limits *loglimit.Limiter // rate-limits the log lines of connections refused and backend failures

	removeFallback func() // removes h.fallback as the node's fallback, if it still is

	tcpRef  atomic.Pointer[tcp.Transport] // h.tcp, for slowConsumer and connGone
	nwmu    sync.Mutex
	noWork  map[string]error // by partition address: why the fallback registered no worker
	lookups partitionLookups // the backend's recent partition counts, for the fallback
	cwmu    sync.Mutex
	watches map[string]connWatch // by local address: is it a connection, and its Done
	gumu    sync.Mutex
	givenUp map[string]time.Time // by local address: connections given up as slow consumers lately (see abortSlow)

	mu           sync.Mutex
	closing      bool // no new requests are accepted
	detached     bool // Shutdown has taken the workers off the node: no more are registered
	pullsStopped bool // no new pull goroutines are started
	partitions   map[string]*partition
	streams      map[string]int // partition counts of the streams created through this hub
	tasks        sync.WaitGroup // pull and create goroutines
	writers      sync.WaitGroup // partition writers (p.run), retired ones included
	tcp          *tcp.Transport // created by the first Listen
	ready        bool           // "hub ready" was logged (see logReady)
	shutdownOnce sync.Once

	// retireHook, set by tests only (under mu), is called by retireIfIdle with h.mu held
	// after the node let an idle worker go and before it checks the worker again.
	retireHook func(p *partition)
}

// New returns a hub serving the stream and index services for backend. Unless [WithNode]
// is given it creates its own routing node. backend.Storage and backend.Index must be set.
// Invalid options return an error matching [core.ErrInvalidOption].
func New(backend *core.Backend, opts ...Option) (*Hub, error) {
	if backend == nil || backend.Storage == nil || backend.Index == nil {
		return nil, invalid("backend with Storage and Index is required")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	// A client sends nothing while its long poll is held: a poll held as long as the idle
	// timeout would see its connection closed first. Grant at most half of it.
	if cfg.idleTimeout > 0 && cfg.maxPullWait > cfg.idleTimeout/2 {
		cfg.maxPullWait = cfg.idleTimeout / 2
	}
	caps := backend.Storage.Capabilities()
	limit := min(caps.MaxMessageSize, MaxFrameMessageSize)
	if limit <= 0 {
		limit = MaxFrameMessageSize
	}
	if cfg.maxMessageSize == 0 || cfg.maxMessageSize > limit {
		cfg.maxMessageSize = limit
	}
	h := &Hub{
		backend:     backend,
		denseIndex:  caps.DenseIndex,
		cfg:         cfg,
		log:         cfg.logger,
		fetchSem:    make(chan struct{}, cfg.maxFetches),
		pullSem:     make(chan struct{}, pullsPerFetch*cfg.maxFetches),
		indexSem:    make(chan struct{}, cfg.maxFetches),
		indexSlots:  make(chan struct{}, pullsPerFetch*cfg.maxFetches),
		taskSem:     make(chan struct{}, cfg.maxFetches),
		indexQueues: make(map[indexKey][]indexCall),
		partitions:  make(map[string]*partition),
		streams:     make(map[string]int),
		watches:     make(map[string]connWatch),
		noWork:      make(map[string]error),
		limits:      loglimit.New(warnEvery),
		lookups:     partitionLookups{ttl: lookupTTL},
	}
	h.backlogs.m = make(map[string]*backlog)
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if cfg.node != nil {
		h.node = cfg.node
	} else {
		n, err := routing.NewNode(routing.WithLogger(cfg.logger))
		if err != nil {
			h.cancel()
			return nil, fmt.Errorf("hub: %w", err)
		}
		h.node, h.ownNode = n, true
	}
	if err := h.node.Register(StreamAddress, routing.WorkerFunc(h.handleStream)); err != nil {
		h.abort()
		return nil, fmt.Errorf("hub: register stream service: %w", err)
	}
	if err := h.node.Register(IndexAddress, routing.WorkerFunc(h.handleIndex)); err != nil {
		h.abort(StreamAddress)
		return nil, fmt.Errorf("hub: register index service: %w", err)
	}
	// Clients keep routes to partition workers across hub restarts: create the worker on
	// first use when the backend has that partition. On a node it was given, the node's
	// fallback may be someone else's (a bistream.Transport's): refuse to replace it.
	remove, err := h.node.AddFallback(h.fallback)
	if err != nil {
		h.abort(StreamAddress, IndexAddress)
		return nil, fmt.Errorf("hub: the hub creates partition workers as the node's fallback: %w", err)
	}
	h.removeFallback = remove
	if !h.ownNode {
		// On a node it was given the hub serves what the node's transports deliver from
		// now on, whether or not it ever listens itself.
		h.mu.Lock()
		h.logReady(nil)
		h.mu.Unlock()
	}
	return h, nil
}

// logReady logs "hub ready", once, with what an operator reading a log of a problem wants
// to know first: which Sluice, which backend, the largest message, and the address the hub
// listens on (addr; nil for a hub on a node it was given, which is ready before it listens,
// if it ever does). h.mu is held.
func (h *Hub) logReady(addr net.Addr) {
	h.ready = true
	args := []any{"version", core.Version(), "backend", h.backend.Storage.Capabilities().String(), "max_message_size", h.cfg.maxMessageSize}
	if addr != nil {
		args = append(args, "address", addr.String())
	}
	h.log.Info("hub ready", args...)
}

// abort undoes a partly built hub. registered are the addresses it registered on the node;
// on a node it was given, the others may belong to another hub and are left alone.
func (h *Hub) abort(registered ...string) {
	h.cancel()
	if h.ownNode {
		_ = h.node.Close()
		return
	}
	for _, a := range registered {
		_ = h.node.Unregister(a)
	}
}

// Node returns the routing node the hub's workers are registered on.
func (h *Hub) Node() *routing.Node { return h.node }

// MaxMessageSize returns the largest message the hub accepts.
func (h *Hub) MaxMessageSize() int { return h.cfg.maxMessageSize }

// Metrics returns a snapshot of the hub's counters.
func (h *Hub) Metrics() Metrics {
	m := h.m.snapshot()
	if t := h.tcpRef.Load(); t != nil {
		m.Connections = uint64(t.Connections())
	}
	return m
}

// Shutdown stops the hub gracefully: it stops accepting connections (open ones stay) and
// requests (a request that arrives during the drain, a push included, gets an `error` or
// `sluice_error` reply: not taken, to send again), appends and confirms every push already
// queued (waking the long polls those appends satisfy), answers the long polls still
// parked with no messages, lets the pulls under way finish, then closes the TCP transport
// (flushing the replies queued on each connection) and, if the hub created it, the routing
// node (on a node it was given, it unregisters its workers instead). If ctx ends first (a
// hard stop), the remaining backend calls are cancelled (their pushes are confirmed with
// status ERROR), replies still waiting for a slow client are dropped, the connections get
// at most a second to write the replies already queued on them, and Shutdown returns an
// error matching ctx's error after closing everything: it does not wait for a client that
// does not read. Shutdown and Close may be called more than once; later calls wait for the
// first to finish and return nil. Shutdown does not close the backend.
func (h *Hub) Shutdown(ctx context.Context) error {
	var err error
	h.shutdownOnce.Do(func() { err = h.shutdown(ctx) })
	return err
}

// Close stops the hub at once: backend calls in flight are cancelled and their pushes are
// confirmed with status ERROR, then everything is closed as by Shutdown.
func (h *Hub) Close() error {
	h.cancel()
	return h.Shutdown(context.Background())
}

func (h *Hub) shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	parts := make([]*partition, 0, len(h.partitions))
	for _, p := range h.partitions {
		parts = append(parts, p)
	}
	transport := h.tcp
	h.mu.Unlock()

	var errs []error
	// No new connections; open ones stay so that their requests in flight are answered
	// (requests that arrive while we drain are refused).
	if transport != nil {
		if err := transport.StopListening(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range parts {
		p.closeQueue()
	}
	var ctxErr error
	for _, p := range parts {
		select {
		case <-p.done:
		case <-ctx.Done():
			if ctxErr == nil {
				ctxErr = ctx.Err()
				h.cancel() // abort appends in flight; their pushes get status ERROR
			}
			<-p.done
		}
	}
	h.writers.Wait() // writers of retired partitions: nothing is queued, they return at once
	h.mu.Lock()
	h.pullsStopped = true
	h.mu.Unlock()
	for _, p := range parts {
		p.releaseWaiters()
	}
	tasksDone := make(chan struct{})
	go func() { h.tasks.Wait(); close(tasksDone) }()
	select {
	case <-tasksDone:
	case <-ctx.Done():
		if ctxErr == nil {
			ctxErr = ctx.Err()
		}
		h.cancel()
		<-tasksDone
	}
	// Replies still waiting for a slow destination go out before the transport closes; a
	// hard stop drops them.
	if err := h.waitBacklogs(ctx); err != nil && ctxErr == nil {
		ctxErr = err
	}
	h.cancel()
	_ = h.waitBacklogs(context.Background()) // prompt: their sends see h.ctx cancelled

	// Replies are queued on the connections; closing the transport flushes them, for as
	// long as ctx allows (and at most the transport's close timeout). After a hard
	// stop the connections get hardStopFlush to write what is queued (the status ERROR
	// confirms of the appends it cut short among it).
	if transport != nil {
		flushCtx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			flushCtx, cancel = context.WithTimeout(context.Background(), hardStopFlush)
			defer cancel()
		}
		if err := transport.Shutdown(flushCtx); err != nil && !errors.Is(err, ctx.Err()) {
			errs = append(errs, err)
		}
	}
	if h.ownNode {
		if err := h.node.Close(); err != nil {
			errs = append(errs, err)
		}
	} else {
		h.removeFallback() // only the hub's own: the node's owner may have set another
		_ = h.node.Unregister(StreamAddress)
		_ = h.node.Unregister(IndexAddress)
		h.mu.Lock() // workers registered during the drain too
		// A first use already in the hub's fallback (removed above, but one may still be
		// looking up its stream) registers no worker after this: the worker would stay on
		// the node, answering every request to its address as not taken.
		h.detached = true
		for _, p := range h.partitions {
			_ = h.node.Unregister(p.addr)
		}
		h.mu.Unlock()
	}
	h.limits.Stop() // the failures and refusals still held back, before "hub stopped"
	h.mu.Lock()
	ready := h.ready
	h.mu.Unlock()
	if ready { // a hub that never served (its Listen failed) has nothing to sum up
		h.log.Info("hub stopped", "metrics", h.m.snapshot().String())
	}
	if ctxErr != nil {
		errs = append([]error{fmt.Errorf("hub: shutdown: %w", ctxErr)}, errs...)
	}
	return errors.Join(errs...)
}

// hardStopFlush is how long the connections may take, after a hard stop, to write the
// replies already queued on them before they are closed.
const hardStopFlush = time.Second

// Listen accepts TCP connections on addr (for example "127.0.0.1:4000", or port 0 for any
// free port) and returns the address it listens on. The first call creates the hub's TCP
// transport on its node, with the hub's connection limit and idle timeout; Shutdown closes
// the transport, which takes it off the node (one given [WithNode] can then have another). The first Listen that succeeds logs "hub ready" (with the version,
// the backend, the largest message and the address; a hub on a node it was given logs it
// in New instead), later ones "hub listening"; a hub that never was ready logs no "hub
// stopped" either. Listen may be called more than once. A hub built [WithNode] on a node
// that already has a TCP transport should listen with that transport instead. An addr that
// is no [HOST]:PORT returns an error matching core.ErrInvalidOption (see [CheckListenAddr]).
func (h *Hub) Listen(addr string) (net.Addr, error) {
	if err := CheckListenAddr(addr); err != nil {
		return nil, fmt.Errorf("hub: listen: %w", err)
	}
	return h.listen(addr, func(t *tcp.Transport) (net.Addr, error) { return t.Listen(addr) })
}

// ListenOn is [Hub.Listen] on ln, a listener the caller bound: a server can bind its
// address before it opens its backend, so that an address already in use fails at once
// and leaves nothing behind. The hub takes ln over: Shutdown closes it, and ListenOn
// closes it when it fails (also when the hub is closing). It returns ln's address.
func (h *Hub) ListenOn(ln net.Listener) (net.Addr, error) {
	return h.listen(ln.Addr().String(), func(t *tcp.Transport) (net.Addr, error) { return t.ListenOn(ln) }, ln)
}

// CheckListenAddr returns an error matching core.ErrInvalidOption when addr is not an
// address [Hub.Listen] can try: [HOST]:PORT, PORT a number (0: any free port) or a service
// name. Whether addr can be bound is found only when Listen binds it. A command line can
// check its listen flag with it before it starts anything.
func CheckListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil && port == "" {
		err = errors.New("no port")
	}
	if err == nil {
		_, err = net.LookupPort("tcp", port) // a number, or a service name (/etc/services)
	}
	if err != nil {
		return fmt.Errorf("%w: address %q is not [HOST]:PORT: %v", core.ErrInvalidOption, addr, err)
	}
	return nil
}

// listen makes listen accept connections for the hub's TCP transport (creating the
// transport on first use); addr names the address in errors. owned are listeners that
// listen takes over: they are closed when it fails before it calls listen.
func (h *Hub) listen(addr string, listen func(*tcp.Transport) (net.Addr, error), owned ...net.Listener) (net.Addr, error) {
	fail := func(err error) (net.Addr, error) {
		for _, ln := range owned {
			_ = ln.Close()
		}
		return nil, err
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return fail(fmt.Errorf("hub: listen %s: %w", addr, core.ErrClosed))
	}
	if h.tcp == nil {
		t, err := tcp.New(h.node,
			tcp.WithLogger(h.log),
			// Counts connections refused at the connection limit or for an HTTP request,
			// and rate-limits the warnings about them (see connRefused).
			tcp.WithRefusedHook(h.connRefused),
			// Answers the requests to stream partitions that do not exist, and counts and
			// rate-limits the warnings about messages to unknown addresses.
			tcp.WithUndeliverableHook(h.undeliverable),
			tcp.WithMaxConnections(h.cfg.maxConns),
			tcp.WithIdleTimeout(h.cfg.idleTimeout),
			tcp.WithWriteTimeout(h.cfg.writeTimeout))
		if err != nil {
			h.mu.Unlock()
			return fail(fmt.Errorf("hub: listen %s: %w", addr, err))
		}
		h.tcp = t
		h.tcpRef.Store(t)
	}
	t := h.tcp
	h.mu.Unlock()
	a, err := listen(t)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h.mu.Lock()
	if h.ready {
		h.log.Info("hub listening", "address", a.String())
	} else {
		h.logReady(a)
	}
	h.mu.Unlock()
	return a, nil
}

// isClosing reports whether the hub stopped accepting requests.
func (h *Hub) isClosing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// partition returns the worker of (stream, id), registering it on first use. A worker
// registered while the hub shuts down only answers that it takes no request (see
// partition.notTaken): it has no writer and parks no pull.
func (h *Hub) partition(stream string, id int) (*partition, error) {
	addr := partitionAddr(stream, id)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.detached { // not even a worker Shutdown took off the node: it would be put back
		return nil, fmt.Errorf("hub: register partition worker %q: %w", addr, errShuttingDown)
	}
	if p := h.partitions[addr]; p != nil {
		return p, nil
	}
	p := newPartition(h, stream, id)
	if h.closing {
		p.closeQueue()
		p.stopped = true
		close(p.done)
	}
	if err := h.node.Register(addr, p); err != nil {
		return nil, fmt.Errorf("hub: register partition worker %q: %w", addr, err)
	}
	h.partitions[addr] = p
	h.m.partitionWorkers.Add(1)
	if !h.closing {
		h.writers.Add(1)
		go func() { // owned by the hub: Shutdown waits for it, also once p is retired
			defer h.writers.Done()
			p.run()
		}()
	}
	return p, nil
}

// fallback is the node's fallback (see routing.Node.SetFallback): it registers the worker of
// a partition address "stream.<name>.<partition>" that this hub process has not registered
// yet when the stream has that partition. That is how every partition worker starts: a
// create only sends the Inits, so partitions that are never used cost nothing; and after a
// restart a client may go on using the route it learned from an Init without creating the
// stream again. When it registers none it notes why (noWorker), for the hub's TCP transport
// to answer the message with (see undeliverable).
func (h *Hub) fallback(ctx context.Context, addr string) routing.Worker {
	stream, id, ok := parsePartitionAddr(addr)
	if !ok {
		return nil
	}
	// The lookup runs in the sender's goroutine (a connection's reader): bound it.
	ctx, cancel := context.WithTimeout(ctx, h.cfg.replyTimeout)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	// A stream created through this hub needs no lookup (a create registers no workers:
	// each is registered here, on its first message).
	var err error
	n := h.knownPartitions(stream)
	if id >= n {
		n, err = h.recentPartitionCount(ctx, stream)
		switch {
		case errors.Is(err, core.ErrStreamNotFound):
			err = fmt.Errorf("stream %q does not exist (was it deleted?): %w", stream, err)
		case err != nil:
			h.logFailure(slog.LevelWarn, "partition lookup failed", "stream", stream, "partition", id, "err", err)
			err = loggedError{fmt.Errorf("cannot tell whether stream %q has partition %d: %w", stream, id, err)}
		case id >= n:
			err = fmt.Errorf("%w: stream %q has %d partition(s), none numbered %d", core.ErrStreamNotFound, stream, n, id)
		}
	}
	var p *partition
	if err == nil {
		p, err = h.partition(stream, id)
	}
	if err != nil {
		h.log.Debug("no partition worker for address", "address", addr, "err", err)
		h.noWorker(addr, err)
		return nil
	}
	h.log.Debug("partition worker registered on first use", "stream", stream, "partition", id)
	return p // already registered by h.partition; the node uses that registration
}

// pullsPerFetch is how many pulls (and index requests) may be in progress per backend call
// allowed at once by WithMaxConcurrentFetches: a pull holds its slot while it fetches and
// while its reply waits for room on a connection.
const pullsPerFetch = 4

// knownPartitions returns the partition count of stream if it was created (or found)
// through this hub, and 0 otherwise.
func (h *Hub) knownPartitions(stream string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[stream]
}

// goTask runs f on a goroutine owned by the hub (waited for by Shutdown). It reports false,
// without running f, once the hub no longer starts tasks.
func (h *Hub) goTask(f func(ctx context.Context)) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pullsStopped {
		return false
	}
	h.tasks.Add(1)
	go func() {
		defer h.tasks.Done()
		f(h.ctx)
	}()
	return true
}

// acquire takes a slot of sem, waiting while none is free. It reports false, without a
// slot, when ctx (the caller's: a worker's mailbox context) or the hub's context ends
// first. Workers take a slot before they start a goroutine for a request, so a flood of
// requests waits in the worker's mailbox, which slows down the connections that send to
// it, instead of holding a goroutine each.
func (h *Hub) acquire(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-h.ctx.Done():
		return false
	}
}

// goBounded runs f on a task goroutine once it has a slot of sem (see acquire), and
// releases the slot when f returns. It reports false, without running f, when there is no
// slot (ctx or the hub's context ended) or the hub no longer starts tasks.
func (h *Hub) goBounded(ctx context.Context, sem chan struct{}, f func(ctx context.Context)) bool {
	if !h.acquire(ctx, sem) {
		return false
	}
	if !h.goTask(func(ctx context.Context) {
		defer func() { <-sem }()
		f(ctx)
	}) {
		<-sem
		return false
	}
	return true
}

// goPull answers r on a task goroutine once a pull slot is free, waiting for one (it runs
// on the partition's mailbox goroutine: a flood of pulls waits in the mailbox). Without a
// slot (the worker or hub stops) or after shutdown it answers with no messages.
func (h *Hub) goPull(ctx context.Context, p *partition, r pullReq) {
	if !h.goBounded(ctx, h.pullSem, func(ctx context.Context) { p.pull(ctx, r) }) {
		p.sendPull(h.ctx, r, nil)
	}
}

// fetch calls the backend's Fetch, bounded by the fetch semaphore.
func (h *Hub) fetch(ctx context.Context, stream string, id int, from uint64, limit int) ([]core.Message, error) {
	select {
	case h.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.fetchSem }()
	return h.backend.Storage.Fetch(ctx, stream, id, from, limit)
}

// replyError sends an `error` reply with reason. cause is the error that made the request
// fail, or nil (see errorReplyLevel).
func (h *Hub) replyError(to, from wire.Route, reason string, cause error) {
	h.m.errors.Add(1)
	h.logErrorReply(cause, "error replies", "last_to", to.String(), "last_reason", reason)
	h.reply(to, from, wire.ProtocolError, wire.Error{Reason: reason})
}

// replyRequestError sends a sluice_error naming the failed request (id under protocol);
// cause is as for replyError.
func (h *Hub) replyRequestError(to, from wire.Route, protocol string, id uint64, reason string, cause error) {
	h.m.errors.Add(1)
	h.logErrorReply(cause, "request error replies", "last_to", to.String(), "last_protocol", protocol, "last_request_id", id, "last_reason", reason)
	h.reply(to, from, wire.ProtocolRequestError, wire.RequestError{RequestID: id, Protocol: protocol, Reason: reason})
}

// logErrorReply logs an error reply caused by cause at errorReplyLevel: at Debug, or at
// Warn at most once every warnEvery per msg, the line counting the replies since the
// previous one ("replies"; the others at Debug): a client that keeps sending requests the
// hub cannot read or serve would otherwise cost a line each.
func (h *Hub) logErrorReply(cause error, msg string, args ...any) {
	if level := errorReplyLevel(cause); level < slog.LevelWarn {
		h.log.Log(context.Background(), level, msg, args...)
		return
	}
	h.logLimited(slog.LevelWarn, msg, "replies", args...)
}

// errorReplyLevel is the log level of an error reply caused by cause: Debug for a request
// refused because the hub is stopping (every client sends it again; a busy hub refuses many,
// and the "hub stopped" line counts them in its metrics) and for a failure already logged
// where it happened (a backend call, see logged), Warn for any other (a request the hub
// cannot read or serve, which the log shows nowhere else).
func errorReplyLevel(cause error) slog.Level {
	if errors.Is(cause, errShuttingDown) || errors.As(cause, new(loggedError)) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// loggedError is an error the hub logged where it happened, with what it was doing (the
// stream, partition, client id): a backend call that failed. The request it fails is
// answered with an error reply logged at Debug only, so that one failure is one log line.
type loggedError struct{ err error }

func (e loggedError) Error() string { return e.err.Error() }
func (e loggedError) Unwrap() error { return e.err }
