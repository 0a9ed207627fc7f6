package hub

import (
	"sync"
	"time"
)

// refusedWarnEvery is the least time between two warnings about connections refused at
// the connection limit: a flood of connections costs a log line per interval, not one per
// connection.
const refusedWarnEvery = 10 * time.Second

// refusals rate-limits the warnings about connections refused at the connection limit.
type refusals struct {
	mu     sync.Mutex
	every  time.Duration // refusedWarnEvery; tests change it
	warned time.Time     // when the last warning was logged (zero: never)
	since  uint64        // connections refused since then, not yet reported
}

// connRefused, the TCP transport's refused hook, counts a connection the transport closed
// as soon as it was accepted because the hub was at its connection limit, and warns about it unless a warning was
// logged less than refusedWarnEvery ago. A warning reports every connection refused since
// the previous one.
func (h *Hub) connRefused(remote string, _ error) {
	h.m.connsRefused.Add(1)
	r := &h.refused
	r.mu.Lock()
	r.since++
	now := time.Now()
	if !r.warned.IsZero() && now.Sub(r.warned) < r.every {
		r.mu.Unlock()
		return
	}
	n := r.since
	r.since, r.warned = 0, now
	r.mu.Unlock()
	h.log.Warn("connections refused: the hub is at its connection limit; raise it with sluice hub -max-connections (hub.WithMaxConnections)",
		"limit", h.cfg.maxConns, "refused", n, "last_remote", remote, "next_warning_after", r.every)
}
