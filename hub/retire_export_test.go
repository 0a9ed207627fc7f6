package hub

// PartitionWorker returns the worker of (stream, partition) as an opaque value, nil when
// none is registered, so that tests can tell whether it was replaced.
func PartitionWorker(h *Hub, stream string, partition int) any {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.partitions[partitionAddr(stream, partition)]; p != nil {
		return p
	}
	return nil
}

// Partitions returns how many partition workers h has.
func Partitions(h *Hub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.partitions)
}

// RetireTimerRunning reports whether the worker of (stream, partition) has a retirement
// timer; false when there is no such worker.
func RetireTimerRunning(h *Hub, stream string, partition int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.partitions[partitionAddr(stream, partition)]
	return p != nil && p.retireTimer != nil
}

// SetRetireHook makes h call f with the worker (as PartitionWorker returns it) each time the
// node has let an idle worker go, before the worker is checked again; f runs with h's lock
// held, so it must not call into h.
func SetRetireHook(h *Hub, f func(worker any)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retireHook = nil
	if f != nil {
		h.retireHook = func(p *partition) { f(p) }
	}
}

// BeginPull and EndPull count a pull of worker as begun and as finished, as the pull's
// goroutine does when it starts and when it returns.
func BeginPull(worker any) { worker.(*partition).started.Add(1) }
func EndPull(worker any)   { worker.(*partition).ended.Add(1) }

// CheckRetire runs the retirement check of the worker of (stream, partition) now, as its
// timer does; nothing when there is no such worker.
func CheckRetire(h *Hub, stream string, partition int) {
	p := partitionOf(h, stream, partition)
	if p != nil {
		p.retireIfIdle()
	}
}

// Settled reports whether every push and pull that the worker of (stream, partition) began
// has ended (a push ends just after its confirm is sent: its client may have the confirm
// first); true when there is no such worker.
func Settled(h *Hub, stream string, partition int) bool {
	p := partitionOf(h, stream, partition)
	return p == nil || p.started.Load() == p.ended.Load()
}
