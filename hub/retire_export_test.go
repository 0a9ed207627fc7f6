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
