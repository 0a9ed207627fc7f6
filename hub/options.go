package hub

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// Defaults of the options.
const (
	// DefaultMaxBatchMessages is the default for [WithMaxBatch]: the most messages one
	// backend Append writes.
	DefaultMaxBatchMessages = 1024
	// DefaultMaxBatchBytes is the default for [WithMaxBatch]: the most bytes one backend
	// Append writes (a single larger push batch is still written whole).
	DefaultMaxBatchBytes = 4 << 20
	// DefaultQueueLen is the default for [WithQueueLen]: pushes waiting per partition before
	// the partition worker applies backpressure.
	DefaultQueueLen = 4096
	// DefaultMaxPullLimit is the default for [WithMaxPullLimit].
	DefaultMaxPullLimit = 10000
	// DefaultMaxPullBytes is the default for [WithMaxPullBytes].
	DefaultMaxPullBytes = 4 << 20
	// DefaultMaxPullWait is the default for [WithMaxPullWait].
	DefaultMaxPullWait = 60 * time.Second
	// DefaultMaxParkedPulls is the default for [WithMaxParkedPulls].
	DefaultMaxParkedPulls = 4096
	// DefaultMaxParkedPullsPerConnection is the default for
	// [WithMaxParkedPullsPerConnection]: enough for one connection to long-poll every
	// partition of the largest stream ([core.MaxPartitions]) at once.
	DefaultMaxParkedPullsPerConnection = core.MaxPartitions
	// DefaultMaxConnections is the default for [WithMaxConnections].
	DefaultMaxConnections = 1024
	// DefaultIdleTimeout is the default for [WithIdleTimeout].
	DefaultIdleTimeout = 5 * time.Minute
	// MinIdleTimeout is the shortest idle timeout [WithIdleTimeout] accepts, 0 aside: the
	// hub holds a long poll at most half the idle timeout, and a shorter one would have
	// every waiting client poll in a loop (a timeout of a few nanoseconds, none at all).
	MinIdleTimeout = time.Second
	// DefaultMaxConcurrentFetches is the default for [WithMaxConcurrentFetches].
	DefaultMaxConcurrentFetches = 64
	// DefaultMaxAppendsInFlight is the default for [WithMaxAppendsInFlight].
	DefaultMaxAppendsInFlight = 4
	// DefaultWorkerIdleTimeout is the default for [WithWorkerIdleTimeout].
	DefaultWorkerIdleTimeout = 5 * time.Minute

	// routeReserve is the room a pull response leaves for its routes when the hub derives the
	// largest message size from the frame size: a message that fits with routes this long
	// can always be pulled back.
	routeReserve = 512
)

// MaxFrameMessageSize is the largest message a hub accepts whatever the backend allows: a
// message of this size fits, with its index and a route of up to about 500 bytes, in one
// pull response frame.
const MaxFrameMessageSize = wire.MaxFrame - routeReserve

// Option configures a [Hub]. Options are validated by [New]; an invalid value makes New fail
// with an error matching [core.ErrInvalidOption].
type Option func(*config) error

type config struct {
	logger           *slog.Logger
	maxMessageSize   int
	maxBatchMessages int
	maxBatchBytes    int
	queueLen         int
	maxPullLimit     int
	maxPullBytes     int
	maxPullWait      time.Duration
	maxParked        int
	maxParkedPerConn int
	maxConns         int
	idleTimeout      time.Duration
	maxFetches       int
	maxInFlight      int
	workerIdle       time.Duration
	replyTimeout     time.Duration // see replyTimeout; tests lengthen it
	writeTimeout     time.Duration // the TCP transport's (tcp.WithWriteTimeout); tests change it
	node             *routing.Node
}

func defaultConfig() config {
	return config{
		logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		maxBatchMessages: DefaultMaxBatchMessages,
		maxBatchBytes:    DefaultMaxBatchBytes,
		queueLen:         DefaultQueueLen,
		maxPullLimit:     DefaultMaxPullLimit,
		maxPullBytes:     DefaultMaxPullBytes,
		maxPullWait:      DefaultMaxPullWait,
		maxParked:        DefaultMaxParkedPulls,
		maxParkedPerConn: DefaultMaxParkedPullsPerConnection,
		maxConns:         DefaultMaxConnections,
		idleTimeout:      DefaultIdleTimeout,
		writeTimeout:     tcp.DefaultWriteTimeout,
		maxFetches:       DefaultMaxConcurrentFetches,
		maxInFlight:      DefaultMaxAppendsInFlight,
		workerIdle:       DefaultWorkerIdleTimeout,
		replyTimeout:     replyTimeout,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("hub: %w: "+format, append([]any{core.ErrInvalidOption}, args...)...)
}

// WithLogger sets the structured logger (default: discard). The hub logs connections at
// Debug, request failures at Warn and backend failures at Error.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMaxMessageSize caps the size of one message (default and maximum: the smaller of the
// backend's Capabilities().MaxMessageSize and [MaxFrameMessageSize]). Pushes of larger
// messages are confirmed with status ERROR.
func WithMaxMessageSize(n int) Option {
	return func(c *config) error {
		if n <= 0 || n > MaxFrameMessageSize {
			return invalid("max message size %d is outside [1, %d]", n, MaxFrameMessageSize)
		}
		c.maxMessageSize = n
		return nil
	}
}

// WithMaxBatch bounds one backend Append made from concurrent pushes to a partition: at most
// messages messages and about bytes bytes (defaults [DefaultMaxBatchMessages],
// [DefaultMaxBatchBytes]). A single sluice_push_batch request is never split.
func WithMaxBatch(messages, bytes int) Option {
	return func(c *config) error {
		if messages < 1 || bytes < 1 {
			return invalid("max batch %d messages / %d bytes: both must be >= 1", messages, bytes)
		}
		c.maxBatchMessages, c.maxBatchBytes = messages, bytes
		return nil
	}
}

// WithQueueLen sets how many push requests may wait per partition (default
// [DefaultQueueLen]). When the queue is full the partition's mailbox waits, which slows the
// connections that push to it (backpressure); nothing is dropped.
func WithQueueLen(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("queue length %d must be >= 1", n)
		}
		c.queueLen = n
		return nil
	}
}

// WithMaxPullLimit caps the limit of one pull (default [DefaultMaxPullLimit]). A
// stream_pull or sluice_pull_wait response also never exceeds one frame; a sluice_pull_batch
// response spans as many frames as its limit and [WithMaxPullBytes] allow.
func WithMaxPullLimit(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max pull limit %d must be >= 1", n)
		}
		c.maxPullLimit = n
		return nil
	}
}

// WithMaxPullBytes caps the max_bytes of a sluice_pull_batch request (default
// [DefaultMaxPullBytes]): the hub stops a batch after the frame in which the message data
// sent reaches it, so a batch holds at most this plus one frame.
func WithMaxPullBytes(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max pull bytes %d must be >= 1", n)
		}
		c.maxPullBytes = n
		return nil
	}
}

// WithMaxPullWait caps how long the hub holds a long poll (the wait_ms of a
// sluice_pull_wait or sluice_pull_batch request; default [DefaultMaxPullWait]). The hub
// never holds one longer than half its idle timeout ([WithIdleTimeout]), so that a held
// poll is answered, and its client polls again, before the idle timeout closes the
// connection. 0 answers every poll at once (the client polls in a loop).
func WithMaxPullWait(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("max pull wait %v is negative", d)
		}
		c.maxPullWait = d
		return nil
	}
}

// WithMaxParkedPulls caps the long polls (sluice_pull_wait and sluice_pull_batch requests
// that found nothing to read) parked on one partition at once (default
// [DefaultMaxParkedPulls]). A long poll that would park beyond the cap is answered at once
// with no messages, as if its wait had expired, and its client pulls again. Parked polls
// whose connection has closed do not count: they are dropped, unanswered.
func WithMaxParkedPulls(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max parked pulls %d must be >= 1", n)
		}
		c.maxParked = n
		return nil
	}
}

// WithMaxParkedPullsPerConnection caps the long polls parked at once for one TCP
// connection of the hub's transport, over all partitions (default
// [DefaultMaxParkedPullsPerConnection]), so that one client cannot park a great many on
// as many partitions, each under [WithMaxParkedPulls]. A long poll beyond it is answered
// as one beyond WithMaxParkedPulls is: at once, with no messages, as if its wait had
// expired (counted in Metrics.PullWaitsRefused), and its client pulls again. Long polls
// whose replies go elsewhere than to such a connection (through another transport of a
// node given with [WithNode]) are not counted. Parked polls stop counting when they are
// answered, or dropped because their connection has closed.
func WithMaxParkedPullsPerConnection(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max parked pulls per connection %d must be >= 1", n)
		}
		c.maxParkedPerConn = n
		return nil
	}
}

// WithMaxConnections caps the concurrent TCP connections of the hub's transport (see
// [Hub.Listen]; default [DefaultMaxConnections]). A connection accepted beyond the cap is
// closed at once, without a reply; each is counted in Metrics.ConnectionsRefused, and the
// hub warns about them, at most once every 10 s (see the package doc, "Metrics and logs").
func WithMaxConnections(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max connections %d must be >= 1", n)
		}
		c.maxConns = n
		return nil
	}
}

// WithIdleTimeout closes a TCP connection that received nothing for d (default
// [DefaultIdleTimeout]; 0 disables; otherwise at least [MinIdleTimeout]). Clients that
// long-poll keep their connection busy: the hub holds a long poll at most d/2 (it lowers
// [WithMaxPullWait] to that), so a waiting consumer polls again before its connection
// counts as idle.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("idle timeout %v is negative", d)
		}
		if d > 0 && d < MinIdleTimeout {
			return invalid("idle timeout %v is below %v (long polls are held at most half of it): use 0 to disable it, or at least %v", d, MinIdleTimeout, MinIdleTimeout)
		}
		c.idleTimeout = d
		return nil
	}
}

// WithMaxConcurrentFetches caps the backend calls running at once for pulls (Fetch), and
// separately for the index service (GetIndex, SaveIndex) (default
// [DefaultMaxConcurrentFetches] each); more requests wait their turn.
//
// It also bounds the requests in progress, so that a flood of requests, or a slow backend,
// costs the hub no more goroutines and memory than that: at most 4n pulls (each from its
// fetch until its reply is queued on the connection), 4n index requests (queued or
// running) and n stream creates, sluice_stream_info and sluice_stream_open requests. A
// worker that receives a request beyond these waits, with the rest of its mailbox, until
// one finishes; its mailbox fills up and the connections that send to it are slowed down
// (backpressure).
func WithMaxConcurrentFetches(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max concurrent fetches %d must be >= 1", n)
		}
		c.maxFetches = n
		return nil
	}
}

// WithMaxAppendsInFlight sets how many backend appends each partition keeps in flight at
// once when the backend implements [core.AsyncAppender] (default
// [DefaultMaxAppendsInFlight]). While appends are in flight the partition keeps batching
// the pushes that arrive and starts the next append as soon as one of the n slots is free,
// so consecutive appends overlap their round trips to the broker; pushes are still
// confirmed in the order their appends were started, and each message's index is greater
// than those of every message pushed before it to the partition. 1 appends one batch at a
// time, as for backends without [core.AsyncAppender] (which ignore this option).
func WithMaxAppendsInFlight(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1024 {
			return invalid("max appends in flight %d is outside [1, 1024]", n)
		}
		c.maxInFlight = n
		return nil
	}
}

// WithWorkerIdleTimeout retires a partition worker that has been idle for d: no push
// queued or being appended, no pull running or parked (default
// [DefaultWorkerIdleTimeout]; 0 never retires one). A worker checks every d whether it was
// idle since its previous check, so it is retired between d and 2d after it was last
// busy. Retiring releases its goroutines, mailbox and push queue; the next message for its
// address registers a new worker, as after a restart (see the package doc, "Services").
// A shorter d frees the memory of partitions used now and then sooner, at the cost of
// creating their workers again more often; each creation may cost a partition-count
// lookup in the backend (see "Limitations").
func WithWorkerIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("worker idle timeout %v is negative", d)
		}
		c.workerIdle = d
		return nil
	}
}

// WithNode registers the hub's workers on an existing routing node instead of a node of its
// own, for example to share it with secure channel listeners. The hub then never closes the
// node; on shutdown it unregisters its workers, removes its fallback and closes the TCP
// transport its Listen created, which takes it off the node. The hub is the node's
// fallback (see routing.Node.AddFallback): New fails with an error matching
// routing.ErrAddressInUse on a node that has one already.
func WithNode(n *routing.Node) Option {
	return func(c *config) error {
		if n == nil {
			return invalid("nil routing node")
		}
		c.node = n
		return nil
	}
}
