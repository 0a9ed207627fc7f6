package hub

// A partition worker that has been idle (no push queued or being appended, no pull
// running or parked) for WithWorkerIdleTimeout is retired: its mailbox, its goroutines and
// its push queue are released, and the node's fallback registers a new worker on the next
// message for its address, as after a restart.

// retireIfIdle runs on p's retirement timer, every p.retireAfter while p is in use. It
// retires p when it was idle since the previous check: it removes p from the node with
// routing.Node.UnregisterIdle, which does so only when no message is queued for p or being
// handled, atomically with the node's Send, so a message that races with it either reaches
// p first (and p stays) or goes to the fallback. The fallback waits for h.mu, held here
// throughout, and then finds p gone from h.partitions, so it creates a new worker, which
// reads what it needs from the backend: p keeps no state that a new worker cannot do
// without (seq, last, meanSize and left are caches a restart loses too).
func (p *partition) retireIfIdle() {
	h := p.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing || h.partitions[p.addr] != p {
		return // Shutdown owns p now (it stopped the timer), or p was retired
	}
	if !p.idle(true) {
		p.retireTimer.Reset(p.retireAfter)
		return
	}
	ok, err := h.node.UnregisterIdle(p.addr)
	if err != nil {
		// The node was closed by its owner (WithNode) or p's address unregistered by
		// someone else: p stays, for Shutdown to close.
		h.log.Debug("partition worker not retired", "address", p.addr, "err", err)
		return
	}
	if !ok {
		p.retireTimer.Reset(p.retireAfter)
		return
	}
	// No handler of p runs now, and none will: only the writer (confirming what handlers
	// queued before) and pulls under way may still be busy; check again.
	if h.retireHook != nil {
		h.retireHook(p)
	}
	if !p.idle(false) {
		// Messages sent meanwhile wait in the fallback for h.mu, which finds p.
		if err := h.node.Register(p.addr, p); err != nil {
			h.log.Error("partition worker lost its address", "address", p.addr, "err", err)
			return
		}
		p.retireTimer.Reset(p.retireAfter)
		return
	}
	delete(h.partitions, p.addr)
	h.m.partitionWorkers.Add(-1)
	h.m.workersRetired.Add(1)
	p.closeQueue() // the writer returns at once: nothing is queued
	h.log.Debug("idle partition worker retired", "stream", p.stream, "partition", p.id)
}

// idle reports whether p has no push queued or being appended, no pull running or parked,
// and had none since the previous check. first is the timer's check, which starts a new
// period; the second check (after the node let p go) stops p's long polls for good when p
// is idle: a pull that a handler started but that has not begun yet then answers without
// parking, since no append of p will wake it. h.mu is held.
func (p *partition) idle(first bool) bool {
	ended := p.ended.Load() // first: started >= ended at any time
	started := p.started.Load()
	seen := started + ended
	quiet := started == ended && seen == p.idleSeen
	if first {
		p.idleSeen = seen
	}
	if !quiet {
		return false
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if len(p.waiters) > 0 {
		return false
	}
	if !first {
		p.stopped = true
	}
	return true
}
