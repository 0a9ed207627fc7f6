package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

// partitionAddrPrefix starts the local address of every partition worker. The address is
// derived from the stream name and partition ("stream.<name>.<partition>"), so a client's
// route to a partition stays valid across hub restarts: the worker is registered again on
// first use.
const partitionAddrPrefix = "stream."

// partitionAddr returns the local address of the worker of (stream, partition).
func partitionAddr(stream string, partition int) string {
	return partitionAddrPrefix + stream + "." + strconv.Itoa(partition)
}

// parsePartitionAddr is the inverse of partitionAddr. Stream names may contain '.', the
// partition never does, so the last '.' separates them.
func parsePartitionAddr(addr string) (stream string, partition int, ok bool) {
	rest, found := strings.CutPrefix(addr, partitionAddrPrefix)
	if !found {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", 0, false
	}
	p, err := strconv.Atoi(rest[i+1:])
	if err != nil || p < 0 || strconv.Itoa(p) != rest[i+1:] {
		return "", 0, false
	}
	if core.ValidateStreamName(rest[:i]) != nil {
		return "", 0, false
	}
	return rest[:i], p, true
}

// pushReq is one stream_push or sluice_push_batch request waiting for the partition writer.
type pushReq struct {
	requestID uint64
	msgs      [][]byte // alias the payload of the routing message the request came in
	size      int      // total bytes of msgs
	batch     bool     // sluice_push_batch: reply with PushBatchConfirm
	// replyTo is the request's return route, cloned: the routes of a routing message
	// alias the frame it came in (as its payload does), which release hands back to the
	// transport for other frames, while a reply may still hold the route (in a backlog, or
	// a worker's mailbox) after release.
	replyTo wire.Route
	release func() // the routing message's Release: msgs alias its payload
}

// releaseMsgs hands the request's payload back to the transport (see routing.Message.Release)
// once nothing will read msgs again: after the backend's Append returned, or its AppendAsync
// called done, or when the request was refused before it reached the backend.
func (r *pushReq) releaseMsgs() {
	if r.release != nil {
		r.release()
		r.release, r.msgs = nil, nil
	}
}

// partition is the single writer of one (stream, partition): the worker that receives the
// partition's pushes and pulls. Pushes are queued and appended by one goroutine (run) that
// collects whatever is queued into one backend append, keeping up to
// [WithMaxAppendsInFlight] appends in flight when the backend implements
// [core.AsyncAppender] (one at a time otherwise); pulls run on their own goroutines and
// long-poll pulls park on the partition until an append lands or their wait expires.
type partition struct {
	h      *Hub
	stream string
	id     int
	addr   string
	self   wire.Route // return route of everything this worker sends

	// qmu guards closing against sends on pushes: senders hold it for reading while they
	// enqueue, close takes it for writing before closing the channel. quit is closed
	// before close takes qmu, so that senders waiting for room in a full queue give up
	// (and release qmu) instead of waiting for a writer that may be stuck in the backend.
	qmu      sync.RWMutex
	closing  bool
	pushes   chan *pushReq
	quit     chan struct{}
	quitOnce sync.Once
	done     chan struct{} // closed when run has returned

	// wmu guards seq, last, waiters and stopped.
	wmu     sync.Mutex
	seq     uint64 // bumped after every successful append
	last    uint64 // highest index appended by this hub process (valid when seq > 0)
	waiters map[*waiter]struct{}
	stopped bool // no more waiters may park

	// meanSize is the mean size in bytes of the messages of the last pull answered (0 before
	// the first), so a pull's first backend page is sized to what fits in a frame.
	meanSize atomic.Int64

	// left holds messages a pull fetched from the backend but could not send (its frame was
	// full or its limit reached); the pull that continues from leftFrom is served from them
	// first, so no message is read from the backend twice by a reader paging forward.
	leftMu   sync.Mutex
	left     []core.Message
	leftFrom uint64
	leftAt   time.Time

	// Retirement of an idle worker (see retire.go). started counts the push requests
	// queued and the pulls begun, ended those confirmed and finished: the worker is busy
	// while they differ. retireTimer checks every retireAfter whether the worker was idle
	// since its last check (idleSeen, started+ended then, guarded by h.mu) and retires it;
	// it is nil when workers are never retired (WithWorkerIdleTimeout(0)).
	started     atomic.Uint64
	ended       atomic.Uint64
	retireAfter time.Duration
	retireTimer *time.Timer
	idleSeen    uint64
}

// leftTTL bounds how long fetched-but-unsent messages are kept for the next pull.
const leftTTL = 5 * time.Second

// takeLeft returns (and forgets) the messages kept for a pull from index from.
func (p *partition) takeLeft(from uint64) []core.Message {
	p.leftMu.Lock()
	defer p.leftMu.Unlock()
	if len(p.left) == 0 || p.leftFrom != from || time.Since(p.leftAt) > leftTTL {
		return nil
	}
	m := p.left
	p.left = nil
	return m
}

// keepLeft keeps msgs, fetched but not sent, for the pull that continues from index from.
func (p *partition) keepLeft(from uint64, msgs []core.Message) {
	if len(msgs) == 0 {
		return
	}
	p.leftMu.Lock()
	p.left, p.leftFrom, p.leftAt = msgs, from, time.Now()
	p.leftMu.Unlock()
}

// waiter is a parked sluice_pull_wait or sluice_pull_batch request.
type waiter struct {
	req   pullReq
	timer *time.Timer
	gone  <-chan struct{} // closed when the request's connection closes; nil if unknown
	conn  string          // the connection it counts against (see parkedPulls); "" if none
}

// isGone reports whether the connection w's answer would go to is closed.
func (w *waiter) isGone() bool { return closed(w.gone) }

// pullReq is a stream_pull, sluice_pull_wait or sluice_pull_batch request.
type pullReq struct {
	protocol  string
	requestID uint64
	index     uint64
	limit     int
	wait      bool
	deadline  time.Time
	replyTo   wire.Route
	batch     bool // sluice_pull_batch: reply in as many frames as limit and maxBytes allow
	maxBytes  int  // sluice_pull_batch: stop after the frame whose data reaches this
}

// newPartition returns the worker of (stream, id), with its retirement timer running (see
// retireIfIdle) unless workers are never retired. h.mu is held.
func newPartition(h *Hub, stream string, id int) *partition {
	addr := partitionAddr(stream, id)
	p := &partition{
		h:           h,
		stream:      stream,
		id:          id,
		addr:        addr,
		self:        wire.Route{wire.Local(addr)},
		pushes:      make(chan *pushReq, h.cfg.queueLen),
		quit:        make(chan struct{}),
		done:        make(chan struct{}),
		waiters:     make(map[*waiter]struct{}),
		retireAfter: h.cfg.workerIdle,
	}
	if p.retireAfter > 0 {
		// The timer's func takes h.mu before it reads p.retireTimer.
		p.retireTimer = time.AfterFunc(p.retireAfter, p.retireIfIdle)
	}
	return p
}

// enqueue hands a push to the writer. It blocks while the queue is full (backpressure) and
// returns an error when the partition is closing or ctx ends first.
func (p *partition) enqueue(ctx context.Context, r *pushReq) error {
	p.qmu.RLock()
	defer p.qmu.RUnlock()
	if p.closing {
		return errShuttingDown
	}
	p.started.Add(1) // before the writer can confirm it (ended)
	select {
	case p.pushes <- r:
		return nil
	case <-p.quit:
		p.ended.Add(1)
		return errShuttingDown
	case <-ctx.Done():
		p.ended.Add(1)
		return ctx.Err()
	}
}

// closeQueue stops accepting pushes; run appends and confirms what is queued, then returns.
// It never waits for the writer: senders blocked on a full queue leave when quit closes. It
// stops the retirement timer (one already firing finds the hub closing or p retired).
func (p *partition) closeQueue() {
	if p.retireTimer != nil {
		p.retireTimer.Stop()
	}
	p.quitOnce.Do(func() { close(p.quit) })
	p.qmu.Lock()
	if !p.closing {
		p.closing = true
		close(p.pushes)
	}
	p.qmu.Unlock()
}

// run is the writer loop. It owns every backend append of the partition. With a backend
// that implements [core.AsyncAppender] and more than one append allowed in flight it
// pipelines (see runPipelined); otherwise it runs one Append at a time.
func (p *partition) run() {
	defer close(p.done)
	if aa, ok := p.h.backend.Storage.(core.AsyncAppender); ok && p.h.cfg.maxInFlight > 1 {
		p.runPipelined(aa)
		return
	}
	var batch []*pushReq
	for first := range p.pushes {
		var n int
		batch, n = p.collect(batch[:0], first)
		p.appendBatch(batch, n)
		clear(batch)
	}
}

// collect appends first and every push queued behind it, up to the batch bounds, to dst
// and returns it with the number of messages it holds. It never waits.
func (p *partition) collect(dst []*pushReq, first *pushReq) ([]*pushReq, int) {
	cfg := &p.h.cfg
	dst = append(dst, first)
	n, size := len(first.msgs), first.size
	for n < cfg.maxBatchMessages && size < cfg.maxBatchBytes {
		select {
		case r, ok := <-p.pushes:
			if !ok {
				return dst, n
			}
			dst = append(dst, r)
			n += len(r.msgs)
			size += r.size
		default:
			return dst, n
		}
	}
	return dst, n
}

// flight is a batch whose AppendAsync has started and whose outcome is not yet handled.
type flight struct {
	batch []*pushReq
	n     int
	res   chan appendResult // buffered (1): done never blocks
}

type appendResult struct {
	indexes []uint64
	err     error
}

// runPipelined is the writer loop for a backend that keeps start order: it starts the
// AppendAsync of a new batch whenever fewer than cfg.maxInFlight are in flight, and
// handles the outcomes strictly in start order (a batch's pushes are confirmed, and pulls
// woken, only after every batch started before it was handled), whatever order the
// backend calls done in. When the queue is closed it appends what was queued and returns
// once every append in flight was handled. A hard stop (h.ctx cancelled) confirms the
// appends still in flight with status ERROR at once, without waiting for the backend.
func (p *partition) runPipelined(aa core.AsyncAppender) {
	h := p.h
	var inflight []*flight // in start order
	pushes := p.pushes
	for pushes != nil || len(inflight) > 0 {
		var in <-chan *pushReq
		if len(inflight) < h.cfg.maxInFlight {
			in = pushes
		}
		var head <-chan appendResult
		var stop <-chan struct{}
		if len(inflight) > 0 {
			head, stop = inflight[0].res, h.ctx.Done()
		}
		select {
		case first, ok := <-in:
			if !ok {
				pushes = nil
				continue
			}
			batch, n := p.collect(nil, first)
			f := &flight{batch: batch, n: n, res: make(chan appendResult, 1)}
			aa.AppendAsync(h.ctx, p.stream, p.id, joinMsgs(batch, n), func(indexes []uint64, err error) {
				f.res <- appendResult{indexes, err}
			})
			inflight = append(inflight, f)
		case r := <-head:
			f := inflight[0]
			inflight[0] = nil
			inflight = inflight[1:]
			p.finish(f.batch, f.n, r.indexes, r.err)
			releaseAll(f.batch)
		case <-stop:
			// Take the outcomes already known; abandon the others (the backend may still
			// store them: at-least-once callers retry, as for an Append cut short).
			for _, f := range inflight {
				var r appendResult
				select {
				case r = <-f.res:
					p.finish(f.batch, f.n, r.indexes, r.err)
					releaseAll(f.batch)
				default:
					// The backend may still read the messages: they are not released.
					r.err = fmt.Errorf("%w: append abandoned by hub close: %w", core.ErrUnavailable, context.Cause(h.ctx))
					p.finish(f.batch, f.n, r.indexes, r.err)
				}
			}
			clear(inflight)
			inflight = inflight[:0]
		}
	}
}

// joinMsgs returns the n messages of every request of batch, in order.
func joinMsgs(batch []*pushReq, n int) [][]byte {
	msgs := make([][]byte, 0, n)
	for _, r := range batch {
		msgs = append(msgs, r.msgs...)
	}
	return msgs
}

// appendBatch writes the messages of every request of batch in one backend Append and
// confirms each request.
func (p *partition) appendBatch(batch []*pushReq, n int) {
	h := p.h
	// Appends are not tied to a client's context: a push that was queued is written (and
	// confirmed) even while the hub shuts down; only a hard Close cancels them.
	indexes, err := h.backend.Storage.Append(h.ctx, p.stream, p.id, joinMsgs(batch, n))
	p.finish(batch, n, indexes, err)
	releaseAll(batch)
}

// releaseAll releases the messages of every request of batch (see pushReq.releaseMsgs).
func releaseAll(batch []*pushReq) {
	for _, r := range batch {
		r.releaseMsgs()
	}
}

// finish handles the outcome of the append of batch (n messages): it confirms each
// request, counts the append and wakes the partition's parked pulls.
func (p *partition) finish(batch []*pushReq, n int, indexes []uint64, err error) {
	h := p.h
	defer p.ended.Add(uint64(len(batch))) // after the confirms and the wake
	if err == nil && len(indexes) != n {
		err = fmt.Errorf("%w: backend returned %d indexes for %d messages", core.ErrUnavailable, len(indexes), n)
	}
	if err != nil {
		h.logFailure(slog.LevelError, "append failed", "stream", p.stream, "partition", p.id, "messages", n, "err", err)
		for _, r := range batch {
			p.confirm(r, nil, err)
		}
		return
	}
	h.m.batch(n)
	off := 0
	for _, r := range batch {
		p.confirm(r, indexes[off:off+len(r.msgs)], nil)
		off += len(r.msgs)
	}
	if n > 0 {
		p.wake(slices.Max(indexes))
	}
}

// notTaken answers a push request that the partition did not queue because it stopped
// accepting pushes (the hub is shutting down: err is errShuttingDown) or the request's
// context ended first. Nothing was tried, so it is not a confirm with status ERROR, which
// says that storing the messages failed and which a publisher may count against them
// (client.WithMaxRejections). The hub answers as for any other request it cannot serve
// while it drains: a sluice_push_batch gets a sluice_error naming it, a plain Ockam
// stream_push an `error` reply. Either tells the client to send the messages again, on a
// new connection once the hub is back.
func (p *partition) notTaken(r *pushReq, err error) {
	h := p.h
	reason := fmt.Sprintf("%s: push request %d not taken: %v", p.addr, r.requestID, err)
	if r.batch {
		h.replyRequestError(r.replyTo, p.self, wire.ProtocolPushBatch, r.requestID, reason, err)
		return
	}
	h.replyError(r.replyTo, p.self, reason, err)
}

// confirm replies to one push request. err != nil confirms with status ERROR.
func (p *partition) confirm(r *pushReq, indexes []uint64, err error) {
	h := p.h
	status := wire.StatusOK
	if err != nil {
		status = wire.StatusError
		h.m.pushErrors.Add(uint64(len(r.msgs)))
	} else {
		h.m.pushes.Add(uint64(len(r.msgs)))
	}
	if r.batch {
		h.reply(r.replyTo, p.self, wire.ProtocolPushBatch, wire.PushBatchConfirm{RequestID: r.requestID, Status: status, Indexes: indexes})
		return
	}
	c := wire.PushConfirm{RequestID: r.requestID, Status: status}
	if err == nil {
		c.Index = indexes[0]
	}
	h.reply(r.replyTo, p.self, wire.ProtocolPush, c)
}

// wake is called by the writer after a successful append whose highest index is last: it
// bumps seq and hands the parked waiters that the append may satisfy (those waiting for an
// index <= last) back to pull goroutines, without waiting for a pull slot. Waiters whose
// connection is gone are dropped without an answer.
func (p *partition) wake(last uint64) {
	p.wmu.Lock()
	p.seq++
	p.last = max(p.last, last)
	if len(p.waiters) == 0 {
		p.wmu.Unlock()
		return
	}
	var ready []*waiter
	for w := range p.waiters {
		// Whoever removes a waiter from the map owns it: the timer's func finds it gone.
		switch {
		case w.isGone():
			p.unpark(w)
		case w.req.index <= last:
			p.unpark(w)
			ready = append(ready, w)
		}
	}
	p.wmu.Unlock()
	if len(ready) > 0 {
		p.resume(ready)
	}
}

// resume starts a pull goroutine for each of ws, in order, without waiting for a pull
// slot: when none is free, the rest wait for slots on one task goroutine, so the writer
// that calls resume never waits.
func (p *partition) resume(ws []*waiter) {
	h := p.h
	for i, w := range ws {
		select {
		case h.pullSem <- struct{}{}:
		default:
			rest := ws[i:]
			if !h.goTask(func(ctx context.Context) {
				for _, w := range rest {
					h.goPull(ctx, p, w.req)
				}
			}) {
				for _, w := range rest {
					p.sendPull(h.ctx, w.req, nil)
				}
			}
			return
		}
		if !h.goTask(func(ctx context.Context) {
			defer func() { <-h.pullSem }()
			p.pull(ctx, w.req)
		}) {
			<-h.pullSem
			p.sendPull(h.ctx, w.req, nil)
		}
	}
}

// pull answers a stream_pull or sluice_pull_wait. It runs on a goroutine started by goPull.
func (p *partition) pull(ctx context.Context, r pullReq) {
	h := p.h
	p.started.Add(1)
	defer p.ended.Add(1)
	lag := time.Duration(0) // retry delay while the backend's reads lag its appends
	for {
		p.wmu.Lock()
		seq := p.seq
		p.wmu.Unlock()

		msgs, full, err := p.fetchFrame(ctx, r)
		if err != nil {
			h.logFailure(slog.LevelWarn, "fetch failed", "stream", p.stream, "partition", p.id, "index", r.index, "err", err)
			reason := fmt.Sprintf("%s: fetch stream %q partition %d from index %d: %v", r.protocol, p.stream, p.id, r.index, err)
			if wire.IsExtension(r.protocol) {
				h.replyRequestError(r.replyTo, p.self, r.protocol, r.requestID, reason, loggedError{err})
			} else {
				h.replyError(r.replyTo, p.self, reason, loggedError{err})
			}
			return
		}
		if len(msgs) > 0 && r.batch {
			p.sendBatch(ctx, r, msgs, full)
			return
		}
		// A long poll with limit 0 can never be answered with a message: waiting would
		// only hold its pull slot (and, past an index this hub appended, spin in the read
		// lag loop below) until its deadline.
		if len(msgs) > 0 || !r.wait || r.limit == 0 || !time.Now().Before(r.deadline) {
			p.sendPull(ctx, r, msgs)
			return
		}
		// Caught up: park until the next append or the deadline. If an append landed
		// since seq was read, fetch again instead (it may hold our messages).
		gone := h.connGone(r.replyTo)
		p.wmu.Lock()
		if p.seq != seq {
			p.wmu.Unlock()
			continue
		}
		if closed(gone) { // nobody to answer
			p.wmu.Unlock()
			return
		}
		if p.stopped { // the hub shuts down, or p was retired (see retireIfIdle)
			p.wmu.Unlock()
			p.sendPull(ctx, r, nil)
			return
		}
		if seq > 0 && p.last >= r.index {
			// This hub appended a message at or past r.index, yet the fetch did not see
			// it: the backend's reads lag its confirmed appends (see the conformance
			// Harness.MaxWait). Parking would wait for the next append; fetch again
			// shortly instead, until the deadline. Such a request is as good as parked:
			// a shutdown answers it with no messages (releaseWaiters sets stopped, seen
			// above on the next round; a hard stop ends the wait at once), so neither
			// waits for its deadline.
			p.wmu.Unlock()
			lag = min(max(2*lag, 5*time.Millisecond), 200*time.Millisecond)
			select {
			case <-time.After(min(lag, time.Until(r.deadline))):
			case <-ctx.Done():
				p.sendPull(ctx, r, nil)
				return
			}
			continue
		}
		w := &waiter{req: r, gone: gone}
		if gone != nil {
			w.conn = string(r.replyTo[0].Value)
		}
		if (len(p.waiters) >= h.cfg.maxParked && !p.sweepGone()) || !h.parked.add(w.conn, h.cfg.maxParkedPerConn) {
			// Beyond the partition's or the connection's cap: answered at once, as if its
			// wait had expired, and the client pulls again.
			p.wmu.Unlock()
			h.m.pullWaitsRefused.Add(1)
			p.sendPull(ctx, r, nil)
			return
		}
		p.waiters[w] = struct{}{}
		w.timer = time.AfterFunc(time.Until(r.deadline), func() { p.expire(w) })
		p.wmu.Unlock()
		h.m.pullWaits.Add(1)
		return
	}
}

// fetchFrame fetches the messages of r, at most r.limit, and no more than fit in one reply
// frame. It pages through the backend so that a large limit with large messages never
// reads much more than a frame. A first message too large for any frame is an error. full
// reports that the frame ended because the next message did not fit, so more may follow;
// otherwise it ended at the limit or at the end of the partition.
func (p *partition) fetchFrame(ctx context.Context, r pullReq) (out []wire.StreamMessage, full bool, err error) {
	h := p.h
	// room is a slightly conservative bound for the sum of StreamMessage sizes: the payload
	// budget minus the protocol name, the largest request id / count prefixes and a batch
	// part's flag.
	budget := wire.FramePayloadBudget(r.replyTo, p.self)
	room := budget - wire.DataSize(len(r.protocol)) - wire.UintSize(uint64(budget)) - wire.UintSize(r.requestID) - wire.UintSize(uint64(r.limit)) - wire.PullBatchPartOverhead
	used := 0
	from := r.index
	page := min(r.limit, 64)
	// With a known mean size, ask for what fits and no more: a backend that reads ahead
	// (Kafka, Pulsar, Kinesis) continues cheaply from exactly where the reply ends.
	if mean := int(p.meanSize.Load()); mean > 0 {
		page = min(r.limit, max(room/mean, 1), 4096)
	}
	// On a backend with dense indexes, a message whose index is above the one the pull
	// expects next means retention deleted those in between before they were read.
	var skipped, skippedFrom uint64
	defer func() {
		if len(out) > 0 {
			p.meanSize.Store(int64(max(used/len(out), 1)))
		}
		if skipped > 0 && err == nil {
			h.retentionSkipped(p, skippedFrom, skipped)
		}
	}()
	left := p.takeLeft(from)
	for len(out) < r.limit && page > 0 {
		msgs, fromLeft := left, left != nil
		left = nil
		if !fromLeft {
			if msgs, err = h.fetch(ctx, p.stream, p.id, from, page); err != nil {
				return nil, false, err
			}
		}
		for i, m := range msgs {
			sm := wire.StreamMessage{Index: m.Index, Data: m.Data}
			if used+sm.Size() > room {
				if len(out) == 0 {
					return nil, false, fmt.Errorf("%w: message %d is %d bytes and does not fit in one frame with this route", core.ErrMessageTooLarge, m.Index, len(m.Data))
				}
				p.keepLeft(from, msgs[i:])
				return out, true, nil
			}
			if h.denseIndex && m.Index > from {
				if skipped == 0 {
					skippedFrom = from
				}
				skipped += m.Index - from
			}
			used += sm.Size()
			out = append(out, sm)
			from = m.Index + 1
			if len(out) == r.limit {
				p.keepLeft(from, msgs[i+1:])
				return out, false, nil
			}
		}
		if !fromLeft && len(msgs) < page {
			return out, false, nil // caught up (or the backend pages shorter): send what we have
		}
		// Size the next page from the mean message size so far.
		mean := max(used/len(out), 1)
		page = min(r.limit-len(out), max((room-used)/mean, 1), 4096)
	}
	return out, false, nil
}

// sendBatch answers a sluice_pull_batch whose first frame, msgs, is fetched: it sends frame
// after frame without waiting for the client, until the limit, max_bytes, or the end of the
// partition, and marks the last part. A fetch that fails after the first frame ends the
// batch with an empty last part: the client has what was sent, and its next pull, which
// starts there, meets the failure and reports it.
func (p *partition) sendBatch(ctx context.Context, r pullReq, msgs []wire.StreamMessage, full bool) {
	sent, bytes := 0, 0
	for {
		sent += len(msgs)
		for _, m := range msgs {
			bytes += len(m.Data)
		}
		more := full && sent < r.limit && bytes < r.maxBytes && ctx.Err() == nil
		p.sendPart(ctx, r, msgs, more)
		if !more {
			return
		}
		next := r
		next.index, next.limit = msgs[len(msgs)-1].Index+1, r.limit-sent
		var err error
		if msgs, full, err = p.fetchFrame(ctx, next); err != nil {
			p.h.logFailure(slog.LevelWarn, "fetch failed; pull batch ends early", "stream", p.stream, "partition", p.id, "index", next.index, "err", err)
			msgs, full = nil, false
		}
	}
}

// parkedPulls counts the long polls parked for each TCP connection of the hub's transport
// (by its local address), over all partitions, for [WithMaxParkedPullsPerConnection].
type parkedPulls struct {
	mu sync.Mutex
	n  map[string]int
}

// add counts one more long poll parked for conn and reports true, unless conn has limit
// parked already (it reports false and counts nothing). conn "" is no connection: never
// counted, always true.
func (pp *parkedPulls) add(conn string, limit int) bool {
	if conn == "" {
		return true
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.n[conn] >= limit {
		return false
	}
	if pp.n == nil {
		pp.n = make(map[string]int)
	}
	pp.n[conn]++
	return true
}

// remove counts one long poll of conn less (see add).
func (pp *parkedPulls) remove(conn string) {
	if conn == "" {
		return
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.n[conn] <= 1 {
		delete(pp.n, conn)
		return
	}
	pp.n[conn]--
}

// sweepGone drops the waiters whose connection is gone and reports whether it dropped
// any. p.wmu is held.
func (p *partition) sweepGone() bool {
	swept := false
	for w := range p.waiters {
		if w.isGone() {
			p.unpark(w)
			swept = true
		}
	}
	return swept
}

// unpark removes w from the waiters, stops its timer and stops counting it against its
// connection: whoever removes a waiter from the map owns it (the timer's func finds it
// gone). p.wmu is held.
func (p *partition) unpark(w *waiter) {
	delete(p.waiters, w)
	w.timer.Stop()
	p.h.parked.remove(w.conn)
}

// expire answers a waiter whose wait ended without an append, if it is still parked and
// its connection is not gone.
func (p *partition) expire(w *waiter) {
	p.wmu.Lock()
	_, parked := p.waiters[w]
	if parked {
		p.unpark(w)
	}
	p.wmu.Unlock()
	if parked && !w.isGone() {
		p.sendPull(p.h.ctx, w.req, nil)
	}
}

// releaseWaiters answers every parked waiter with an empty response and refuses new ones;
// used by shutdown.
func (p *partition) releaseWaiters() {
	p.wmu.Lock()
	p.stopped = true
	ws := make([]*waiter, 0, len(p.waiters))
	for w := range p.waiters {
		p.unpark(w)
		ws = append(ws, w)
	}
	p.wmu.Unlock()
	for _, w := range ws {
		if !w.isGone() {
			p.sendPull(p.h.ctx, w.req, nil)
		}
	}
}

// sendPull replies to r with msgs, which fetchFrame sized to fit in one frame: a
// PullResponse, or the one and last part of a sluice_pull_batch. A reply with messages
// waits for room on the connection (see replyWait; ctx ends the wait); an empty one is
// never waited for (see reply), so that expiring and released long polls answer from any
// goroutine.
func (p *partition) sendPull(ctx context.Context, r pullReq, msgs []wire.StreamMessage) {
	if r.batch {
		p.sendPart(ctx, r, msgs, false)
		return
	}
	h := p.h
	if n := wire.FitPullResponse(r.replyTo, p.self, r.protocol, r.requestID, msgs); n < len(msgs) {
		msgs = msgs[:n] // defensive: fetchFrame's bound is conservative
	}
	h.m.pulls.Add(1)
	h.m.pulledMessages.Add(uint64(len(msgs)))
	resp := wire.PullResponse{RequestID: r.requestID, Messages: msgs}
	if len(msgs) == 0 {
		h.reply(r.replyTo, p.self, r.protocol, resp)
		return
	}
	h.replyWait(ctx, r.replyTo, p.self, r.protocol, resp)
}

// sendPart sends one part of a sluice_pull_batch reply; more is false on the last. Like
// sendPull, only a part with messages waits for room on the connection.
func (p *partition) sendPart(ctx context.Context, r pullReq, msgs []wire.StreamMessage, more bool) {
	h := p.h
	if n := wire.FitPullBatchPart(r.replyTo, p.self, r.requestID, msgs); n < len(msgs) {
		// Defensive (fetchFrame's bound is conservative): the cut messages are sent again
		// by the next pull, as this part becomes the last.
		msgs, more = msgs[:n], false
	}
	if !more {
		h.m.pulls.Add(1)
	}
	h.m.pulledMessages.Add(uint64(len(msgs)))
	part := wire.PullBatchPart{RequestID: r.requestID, More: more, Messages: msgs}
	if len(msgs) == 0 {
		h.reply(r.replyTo, p.self, r.protocol, part)
		return
	}
	h.replyWait(ctx, r.replyTo, p.self, r.protocol, part)
}

// errShuttingDown answers the requests a hub no longer takes while it drains. Its text is
// the reason of the `error` or sluice_error reply, so it says what to do: nothing was done,
// and the request is to be sent again once reconnected.
var errShuttingDown = errors.New("hub: shutting down: request not taken, nothing was stored or changed; send it again once reconnected (to this hub after its restart, or to another hub of the same backend)")
