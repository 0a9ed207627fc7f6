package hub

import (
	"time"

	"github.com/sluicehq/sluice/core/wire"
)

// partitionOf returns the worker of (stream, partition), nil when there is none.
func partitionOf(h *Hub, stream string, partition int) *partition {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.partitions[partitionAddr(stream, partition)]
}

// QueueLen returns how many push requests wait in the queue of (stream, partition).
func QueueLen(h *Hub, stream string, partition int) int {
	p := partitionOf(h, stream, partition)
	if p == nil {
		return 0
	}
	return len(p.pushes)
}

// Parked returns how many long polls wait (parked) on (stream, partition).
func Parked(h *Hub, stream string, partition int) int {
	p := partitionOf(h, stream, partition)
	if p == nil {
		return 0
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return len(p.waiters)
}

// IsClosing reports whether h stopped accepting requests.
func IsClosing(h *Hub) bool { return h.isClosing() }

// PushesClosed reports whether the worker of (stream, partition) stopped taking pushes (the
// hub is shutting down).
func PushesClosed(h *Hub, stream string, partition int) bool {
	p := partitionOf(h, stream, partition)
	if p == nil {
		return false
	}
	p.qmu.RLock()
	defer p.qmu.RUnlock()
	return p.closing
}

// SetWarnEvery sets the least time between two log lines of h about one recurring
// condition: connections refused at the connection limit, a backend call failing.
func SetWarnEvery(h *Hub, d time.Duration) {
	h.limits.SetInterval(d)
}

// WithReplyTimeout sets how long a reply destination may go without taking a reply before
// it is a slow consumer (replyTimeout). Tests that check that one stalled client does not
// hold up others lengthen it, so a regression stalls them for minutes, not seconds.
func WithReplyTimeout(d time.Duration) Option {
	return func(c *config) error {
		c.replyTimeout = d
		return nil
	}
}

// WithWriteTimeout sets the TCP transport's write timeout (tcp.WithWriteTimeout; 0: none),
// so that a test can tell a socket the hub closes from one the write timeout closes.
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) error {
		c.writeTimeout = d
		return nil
	}
}

// WakeRacingExpiry does to the long polls parked on (stream, partition) what a wake does
// when their timers fire at the same moment: the wake takes them and hands them back to
// pull goroutines, and each timer's expire runs all the same. It returns how many there were.
func WakeRacingExpiry(h *Hub, stream string, partition int) int {
	p := partitionOf(h, stream, partition)
	if p == nil {
		return 0
	}
	p.wmu.Lock()
	var ws []*waiter
	for w := range p.waiters {
		p.unpark(w)
		ws = append(ws, w)
	}
	p.wmu.Unlock()
	p.resume(ws)
	for _, w := range ws {
		p.expire(w)
	}
	return len(ws)
}

// SetLookupTTL sets how long h's fallback goes by a partition count it asked the backend for
// (lookupTTL).
func SetLookupTTL(h *Hub, d time.Duration) { h.lookups.setTTL(d) }

// GiveUpSlowConsumer does what the hub does when a reply to to times out: it gives to up
// as a slow consumer.
func GiveUpSlowConsumer(h *Hub, to wire.Address) { h.slowConsumer(to, "test") }
