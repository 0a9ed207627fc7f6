package hub

import (
	"testing"
	"time"
)

// SetIdleRetireAfter sets how long a partition worker created from now on may stay idle
// before it is retired, until t ends.
func SetIdleRetireAfter(t testing.TB, d time.Duration) {
	old := idleRetireAfter
	idleRetireAfter = d
	t.Cleanup(func() { idleRetireAfter = old })
}

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
