package hub

// PushesStarted returns how many push requests and pulls the worker of (stream, partition)
// has begun (0 when there is no worker): a push counts from the moment it waits for room
// in the queue.
func PushesStarted(h *Hub, stream string, partition int) uint64 {
	h.mu.Lock()
	p := h.partitions[partitionAddr(stream, partition)]
	h.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.started.Load()
}
