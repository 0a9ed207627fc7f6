package hub

// PushesStarted returns how many push requests and pulls the worker of (stream, partition)
// has begun (0 when there is no worker): a push counts from the moment it waits for room
// in the queue.
func PushesStarted(h *Hub, stream string, partition int) uint64 {
	p := partitionOf(h, stream, partition)
	if p == nil {
		return 0
	}
	return p.started.Load()
}

// WatchedConnsClosed reports whether every connection the hub watches (see connGone) has
// closed. Metrics.Connections drops a moment before: the transport forgets a connection
// before it closes its Done channel.
func WatchedConnsClosed(h *Hub) bool {
	h.cwmu.Lock()
	defer h.cwmu.Unlock()
	for _, w := range h.watches {
		if w.conn && !closed(w.done) {
			return false
		}
	}
	return true
}
