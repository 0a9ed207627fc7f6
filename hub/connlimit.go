package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// warnEvery is the least time between two log lines about one recurring condition
// (connections refused at the connection limit, a backend call that fails): a flood of them
// costs a line per interval, not one per event.
const warnEvery = 10 * time.Second

// logLimiter rate-limits the log lines of recurring conditions, each named by its message.
type logLimiter struct {
	mu    sync.Mutex
	every time.Duration // warnEvery; tests change it
	seen  map[string]*limited
}

// limited is the state of one condition of a logLimiter.
type limited struct {
	logged time.Time // when its last line was logged
	since  uint64    // events since then, not yet reported
}

// allow counts one event of msg and reports whether to log it now: when no line about msg
// was logged less than every ago. n is then the number of events the line reports: this
// one and those not logged since the previous line.
func (l *logLimiter) allow(msg string) (n uint64, ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[msg]
	if s == nil {
		if l.seen == nil {
			l.seen = make(map[string]*limited)
		}
		s = &limited{}
		l.seen[msg] = s
	}
	s.since++
	if !s.logged.IsZero() && now.Sub(s.logged) < l.every {
		return 0, false
	}
	n, s.since, s.logged = s.since, 0, now
	return n, true
}

// connRefused, the TCP transport's refused hook, counts a connection the transport closed
// as soon as it was accepted because the hub was at its connection limit, and warns about
// it at most once every warnEvery. A warning reports every connection refused since the
// previous one.
func (h *Hub) connRefused(remote string, _ error) {
	h.m.connsRefused.Add(1)
	const msg = "connections refused: the hub is at its connection limit; raise it with sluice hub -max-connections (hub.WithMaxConnections)"
	if n, ok := h.limits.allow(msg); ok {
		h.log.Warn(msg, "limit", h.cfg.maxConns, "refused", n, "last_remote", remote, "next_warning_after", h.limits.every)
	}
}

// logFailure logs a failed backend call (msg names the operation, args what it was for) at
// level, at most once every warnEvery per msg; the line counts the failures since the
// previous one ("failures"). The failures in between are logged at Debug: while a broker
// is down every client retries, and each retry would otherwise be a line.
func (h *Hub) logFailure(level slog.Level, msg string, args ...any) {
	if n, ok := h.limits.allow(msg); ok {
		h.log.Log(context.Background(), level, msg, append(args, "failures", n, "next_line_after", h.limits.every)...)
		return
	}
	h.log.Debug(msg, args...)
}
