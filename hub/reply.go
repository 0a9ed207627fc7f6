package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// How replies wait for their destination (a client's connection, or the first worker of
// its route). Work that other clients depend on (a partition's writer and mailbox, the
// services) never waits on one client: its replies are queued at once, or handed to that
// destination's backlog when its write queue stays full for replyTry. Replies that carry
// pulled messages are sent by the pull's own goroutine and wait for room (backpressure),
// at most replyTimeout. A destination that takes no reply for replyTimeout, or lets more
// than maxBacklog replies (maxBacklogBytes) pile up, is a slow consumer: see slowConsumer.
const (
	// replyTimeout is how long a destination may go without taking a reply.
	replyTimeout = 5 * time.Second
	// replyTry is how long a reply that must not wait tries to be queued before it goes to
	// the destination's backlog.
	replyTry = time.Millisecond
	// maxBacklog and maxBacklogBytes bound the replies held for one destination. A stream
	// of core.MaxPartitions partitions created at once (one Init each) fits easily.
	maxBacklog      = 4096
	maxBacklogBytes = 1 << 20
)

// backlog holds the replies to one destination that could not be queued on it at once, in
// order, and is drained by one goroutine (drainBacklog). While a destination has a
// backlog, its other replies that must not wait join the backlog, so they stay in order.
type backlog struct {
	msgs  []wire.TransportMessage // payloads owned by the backlog
	bytes int
	dead  bool // the destination was given up: what joins is dropped
}

// backlogs are the hub's backlogs, by destination (backlogKey).
type backlogs struct {
	mu    sync.Mutex
	m     map[string]*backlog
	empty chan struct{} // closed when m becomes empty, for waitBacklogs; nil when unused
}

func backlogKey(a wire.Address) string { return string(rune(a.Type)) + string(a.Value) }

// encodeReply encodes a protocol message into a buffer from replyBufs; hand both back with
// putReply once the payload is no longer used.
func encodeReply(protocol string, e wire.Encoder) (payload []byte, bp *[]byte) {
	bp = replyBufs.Get().(*[]byte)
	if n := wire.PayloadSize(protocol, e); cap(*bp) < n {
		*bp = make([]byte, 0, n)
	}
	return wire.AppendPayload((*bp)[:0], protocol, e), bp
}

// putReply returns the buffer of a payload made by encodeReply to replyBufs.
func putReply(payload []byte, bp *[]byte) {
	if cap(payload) <= maxPooledReply {
		*bp = payload[:0]
		replyBufs.Put(bp)
	}
}

// replyBufs holds the buffers replies are encoded in (*[]byte).
var replyBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledReply is the largest reply buffer kept in replyBufs: a pull reply fills at most
// one frame.
const maxPooledReply = wire.MaxFrame

// reply sends a protocol message along route to, with from as its return route, without
// waiting for the destination: it is queued at once (within replyTry), or else appended
// to the destination's backlog. It is what every goroutine that others depend on uses (a
// partition's writer and mailbox, the services, expiring long polls). It never blocks
// for longer than replyTry.
func (h *Hub) reply(to, from wire.Route, protocol string, e wire.Encoder) {
	if len(to) == 0 {
		h.log.Debug("no return route: reply dropped", "protocol", protocol)
		return
	}
	// The payload is encoded into a pooled buffer and lent to the node: the connection it
	// goes to copies it into a frame (the node copies it for any other destination).
	payload, bp := encodeReply(protocol, e)
	defer putReply(payload, bp)
	msg := wire.TransportMessage{OnwardRoute: to, ReturnRoute: from, Payload: payload}
	if h.nBacklogs.Load() > 0 && h.joinBacklog(msg) {
		return
	}
	// Not tied to the hub's ctx: confirmations of pushes appended during a shutdown must
	// still go out, and replyTry is short.
	ctx, cancel := context.WithTimeout(context.Background(), replyTry)
	err := h.node.SendBorrowed(ctx, msg)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		h.startBacklog(msg)
	default:
		h.log.Debug("reply not delivered", "protocol", protocol, "to", to.String(), "err", err)
	}
}

// replyWait sends a reply that carries pulled messages from the pull's own goroutine: it
// waits for room on the destination (backpressure), at most replyTimeout, and not after
// ctx ends (a hard stop). A destination that takes nothing for replyTimeout is a slow
// consumer.
func (h *Hub) replyWait(ctx context.Context, to, from wire.Route, protocol string, e wire.Encoder) {
	if len(to) == 0 {
		h.log.Debug("no return route: reply dropped", "protocol", protocol)
		return
	}
	payload, bp := encodeReply(protocol, e)
	defer putReply(payload, bp)
	msg := wire.TransportMessage{OnwardRoute: to, ReturnRoute: from, Payload: payload}
	sctx, cancel := context.WithTimeout(ctx, h.cfg.replyTimeout)
	err := h.node.SendBorrowed(sctx, msg)
	cancel()
	if err == nil {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		h.slowConsumer(to[0], "its write queue stayed full for "+h.cfg.replyTimeout.String())
		return
	}
	h.log.Debug("reply not delivered", "protocol", protocol, "to", to.String(), "err", err)
}

// joinBacklog appends msg (copying its payload) to the backlog of its destination, if that
// has one, and reports whether it did (a reply for a destination given up is dropped and
// counts as handled).
func (h *Hub) joinBacklog(msg wire.TransportMessage) bool {
	key := backlogKey(msg.OnwardRoute[0])
	h.backlogs.mu.Lock()
	b := h.backlogs.m[key]
	if b == nil {
		h.backlogs.mu.Unlock()
		return false
	}
	full := h.appendBacklog(b, msg)
	h.backlogs.mu.Unlock()
	if full {
		h.slowConsumer(msg.OnwardRoute[0], "it let more than the backlog limit of replies pile up")
	}
	return true
}

// appendBacklog appends a copy of msg to b unless b is dead, and reports whether b
// overflowed (b is then dead and emptied). h.backlogs.mu is held.
func (h *Hub) appendBacklog(b *backlog, msg wire.TransportMessage) (overflow bool) {
	if b.dead {
		return false
	}
	if len(b.msgs) >= maxBacklog || b.bytes+len(msg.Payload) > maxBacklogBytes {
		b.dead = true
		clear(b.msgs)
		b.msgs, b.bytes = nil, 0
		return true
	}
	msg.Payload = append([]byte(nil), msg.Payload...)
	b.msgs = append(b.msgs, msg)
	b.bytes += len(msg.Payload)
	return false
}

// startBacklog appends msg to the backlog of its destination, creating it (and its
// goroutine) when there is none. After a hard stop the reply is dropped.
func (h *Hub) startBacklog(msg wire.TransportMessage) {
	to := msg.OnwardRoute[0]
	key := backlogKey(to)
	h.backlogs.mu.Lock()
	if h.ctx.Err() != nil {
		h.backlogs.mu.Unlock()
		h.log.Debug("reply not delivered: hub stopped", "to", msg.OnwardRoute.String())
		return
	}
	b := h.backlogs.m[key]
	created := b == nil
	if created {
		b = &backlog{}
		h.backlogs.m[key] = b
		h.nBacklogs.Add(1)
	}
	full := h.appendBacklog(b, msg)
	h.backlogs.mu.Unlock()
	if created {
		go h.drainBacklog(key, b)
	}
	if full {
		h.slowConsumer(to, "it let more than the backlog limit of replies pile up")
	}
}

// drainBacklog sends b's replies in order, each waiting for room at most replyTimeout, and
// removes b once it is empty. A reply that cannot be sent makes it give up the destination:
// on a timeout the destination is a slow consumer; on any other error (the connection is
// gone, the hub stopped) the rest would fail the same way. Either drops the rest.
func (h *Hub) drainBacklog(key string, b *backlog) {
	for {
		h.backlogs.mu.Lock()
		if b.dead || len(b.msgs) == 0 {
			b.dead = true // a reply that finds b before it is removed is dropped
			delete(h.backlogs.m, key)
			h.nBacklogs.Add(-1)
			if len(h.backlogs.m) == 0 && h.backlogs.empty != nil {
				close(h.backlogs.empty)
				h.backlogs.empty = nil
			}
			h.backlogs.mu.Unlock()
			return
		}
		msg := b.msgs[0]
		b.msgs[0] = wire.TransportMessage{}
		b.msgs = b.msgs[1:]
		b.bytes -= len(msg.Payload)
		h.backlogs.mu.Unlock()

		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.replyTimeout)
		err := h.node.Send(ctx, msg)
		cancel()
		if err == nil {
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) && h.ctx.Err() == nil {
			h.slowConsumer(msg.OnwardRoute[0], "its write queue stayed full for "+h.cfg.replyTimeout.String())
		} else {
			h.log.Debug("reply not delivered; replies queued behind it dropped", "to", msg.OnwardRoute.String(), "err", err)
		}
		h.backlogs.mu.Lock()
		b.dead = true
		clear(b.msgs)
		b.msgs, b.bytes = nil, 0
		h.backlogs.mu.Unlock()
	}
}

// waitBacklogs waits until every backlog is drained or given up, or ctx ends.
func (h *Hub) waitBacklogs(ctx context.Context) error {
	h.backlogs.mu.Lock()
	if len(h.backlogs.m) == 0 {
		h.backlogs.mu.Unlock()
		return nil
	}
	if h.backlogs.empty == nil {
		h.backlogs.empty = make(chan struct{})
	}
	empty := h.backlogs.empty
	h.backlogs.mu.Unlock()
	select {
	case <-empty:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// slowConsumer gives up a reply destination that does not take its replies (why says
// how): when it is a connection of the hub's TCP transport, the connection is closed (as
// NATS closes a slow consumer), so that replies to it fail at once instead of waiting; its
// client reconnects and sends again what was not answered (a publisher resends the pushes
// not confirmed: nothing is lost, some may be stored twice). The connection is aborted,
// socket included, with the replies queued on it (tcp.Transport.Abort): its client does
// not read them, and flushing them would keep the socket open for up to the TCP write
// timeout after the connection stopped counting against WithMaxConnections. Replies to any
// other destination (a worker of the node, a connection of another transport) are dropped.
// Each kind is warned about at most once every 10 s, counting them (any client can make
// itself a slow consumer, connection after connection); Metrics.SlowConsumers counts all.
//
// Several replies waiting on one connection time out together: the first to call gives
// the connection up, and the others, which find it given up (see abortSlow), neither count
// nor log it again.
func (h *Hub) slowConsumer(to wire.Address, why string) {
	if t := h.tcpRef.Load(); t != nil && to.Type == wire.AddressLocal {
		switch h.abortSlow(t, to) {
		case slowAborted:
			h.m.slowConsumers.Add(1)
			h.logLimited(slog.LevelWarn, "slow consumer: connection closed", "connections", "last_address", to.String(), "last_reason", why)
			return
		case slowGivenUp:
			h.log.Debug("slow consumer: connection already closed", "address", to.String(), "reason", why)
			return
		}
	}
	h.m.slowConsumers.Add(1)
	h.logLimited(slog.LevelWarn, "slow consumer: replies dropped", "destinations", "last_to", to.String(), "last_reason", why)
}

// Outcomes of abortSlow.
const (
	slowNotConn = iota // to is no open connection of the transport, nor one given up lately
	slowAborted        // this call closed the connection
	slowGivenUp        // the connection was given up already, by an earlier call
)

// givenUpTTL is how long the hub remembers a connection it gave up as a slow consumer,
// so that the replies that timed out on it together with the one that gave it up do not
// count it again. Replies that wait on a connection fail at once when it is closed, so
// only those whose wait ended just before can still call slowConsumer for it: a reply
// timeout is plenty.
func (h *Hub) givenUpTTL() time.Duration { return max(h.cfg.replyTimeout, time.Second) }

// abortSlow closes the connection of t at to as a slow consumer (tcp.Transport.Abort)
// unless it was given up already; see the outcomes above. The lock makes one of concurrent
// calls for a connection close it and the others find it given up.
func (h *Hub) abortSlow(t *tcp.Transport, to wire.Address) int {
	key := string(to.Value)
	h.gumu.Lock()
	defer h.gumu.Unlock()
	if _, ok := h.givenUp[key]; ok {
		return slowGivenUp
	}
	if t.Abort(to) != nil {
		return slowNotConn
	}
	now := time.Now()
	for a, at := range h.givenUp { // bounded by the connections given up within the TTL
		if now.Sub(at) > h.givenUpTTL() {
			delete(h.givenUp, a)
		}
	}
	if h.givenUp == nil {
		h.givenUp = make(map[string]time.Time)
	}
	h.givenUp[key] = now
	return slowAborted
}

// connWatch is what the hub knows about a reply destination's first address: done is the
// Done channel of the TCP connection at that address when conn is true.
type connWatch struct {
	done <-chan struct{}
	conn bool
}

// connGone returns a channel that is closed when the TCP connection named by route's first
// address closes, or nil when that address is not an open connection of the hub's
// transport. Long polls use it to drop the waiters of connections that are gone.
func (h *Hub) connGone(route wire.Route) <-chan struct{} {
	t := h.tcpRef.Load()
	if t == nil || len(route) == 0 || route[0].Type != wire.AddressLocal {
		return nil
	}
	h.cwmu.Lock()
	defer h.cwmu.Unlock()
	if w, ok := h.watches[string(route[0].Value)]; ok {
		if !w.conn {
			return nil
		}
		return w.done
	}
	if len(h.watches) >= 2*h.cfg.maxConns+64 {
		for a, w := range h.watches {
			if !w.conn || closed(w.done) {
				delete(h.watches, a)
			}
		}
	}
	// Done returns a closed channel for an address that is no open connection (a worker's,
	// or a connection already closed): either way there is nothing to watch.
	done := t.Done(route[0])
	w := connWatch{done: done, conn: !closed(done)}
	h.watches[string(route[0].Value)] = w
	if !w.conn {
		return nil
	}
	return done
}

// closed reports whether ch is closed (or, for a nil channel, false).
func closed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
