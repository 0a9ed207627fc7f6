package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core/transport/tcp"
)

// warnEvery is the least time between two log lines about one recurring condition
// (connections refused at the connection limit, a backend call that fails): a flood of them
// costs a line per interval, not one per event.
const warnEvery = 10 * time.Second

// logLimiter rate-limits the log lines of recurring conditions, each named by its message.
// Events held back are not lost when none follows: at the end of the interval a line
// counts them (see allow), and stop counts those still held back when the hub stops.
type logLimiter struct {
	mu      sync.Mutex
	every   time.Duration // warnEvery; tests change it
	seen    map[string]*limited
	stopped bool // set by stop: no line is scheduled any more
}

// limited is the state of one condition of a logLimiter.
type limited struct {
	logged time.Time // when its last line was logged
	since  uint64    // events since then, not yet reported
	// later logs the line about the events held back since logged (see allow); set while
	// a line is scheduled, with timer.
	later func(n uint64)
	timer *time.Timer
}

// allow counts one event of msg and reports whether to log it now: when no line about msg
// was logged less than every ago. n is then the number of events the line reports: this
// one and those not logged since the previous line. When it holds the event back, later
// (if not nil) is called with the number of events held back at the end of the interval,
// unless a line about msg was logged meanwhile: so a burst that ends is still counted in
// full. later is the last one given, so that the line tells of the latest event.
func (l *logLimiter) allow(msg string, later func(n uint64)) (n uint64, ok bool) {
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
		if later != nil && !l.stopped {
			s.later = later
			if s.timer == nil {
				s.timer = time.AfterFunc(l.every-now.Sub(s.logged), func() { l.flush(msg) })
			}
		}
		return 0, false
	}
	if s.timer != nil {
		s.timer.Stop() // if it fires anyway, flush finds nothing held back
		s.timer = nil
	}
	s.later = nil
	n, s.since, s.logged = s.since, 0, now
	return n, true
}

// flush logs the line about the events of msg held back, if any: the end of the interval
// of allow.
func (l *logLimiter) flush(msg string) {
	l.mu.Lock()
	s := l.seen[msg]
	s.timer = nil
	n, later := s.since, s.later
	if n == 0 || later == nil {
		l.mu.Unlock()
		return
	}
	s.since, s.later, s.logged = 0, nil, time.Now()
	l.mu.Unlock()
	later(n)
}

// stop logs at once the lines about events held back and schedules no more: the hub stops,
// and its logger may not outlive it.
func (l *logLimiter) stop() {
	l.mu.Lock()
	l.stopped = true
	var msgs []string
	for msg, s := range l.seen {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
			msgs = append(msgs, msg)
		}
	}
	l.mu.Unlock()
	for _, msg := range msgs {
		l.flush(msg)
	}
}

// connRefused, the TCP transport's refused hook, counts a connection the transport closed
// as soon as it was accepted: because the hub was at its connection limit, or because the
// connection sent an HTTP request (someone pointed an HTTP client, or a health check, at the
// hub's port). It warns about each kind at most once every warnEvery; a warning reports
// every such connection since the previous one. The transport logged each at Debug.
func (h *Hub) connRefused(remote string, err error) {
	if errors.Is(err, tcp.ErrHTTPRequest) {
		h.m.httpRefused.Add(1)
		h.limitedLine(slog.LevelWarn, "closed connections that sent an HTTP request: the hub's port speaks the Sluice (Ockam routing v1) TCP protocol, not HTTP; metrics are served over HTTP on sluice hub -metrics-addr, when set",
			"closed", "last_remote", remote)
		return
	}
	h.m.connsRefused.Add(1)
	h.limitedLine(slog.LevelWarn, "connections refused: the hub is at its connection limit; raise it with sluice hub -max-connections (hub.WithMaxConnections)",
		"refused", "limit", h.cfg.maxConns, "last_remote", remote)
}

// logFailure logs a failed backend call (msg names the operation, args what it was for) at
// level, at most once every warnEvery per msg; the line counts the failures since the
// previous one ("failures"). The failures in between are logged at Debug: while a broker
// is down every client retries, and each retry would otherwise be a line. Those not
// counted by a later line are counted by one at the end of the interval.
func (h *Hub) logFailure(level slog.Level, msg string, args ...any) {
	h.logLimited(level, msg, "failures", args...)
}

// logLimited logs msg with args by limitedLine (count names the number of events the line
// counts), and at Debug when limitedLine holds it back.
func (h *Hub) logLimited(level slog.Level, msg, count string, args ...any) {
	if !h.limitedLine(level, msg, count, args...) {
		h.log.Debug(msg, args...)
	}
}

// limitedLine logs msg with args at level unless a line about msg was logged less than
// warnEvery ago, adding count (an attribute name) with the number of events since the
// previous line, and reports whether it logged. An event it holds back is counted by the
// next line, which comes at the latest at the end of the interval (see logLimiter).
func (h *Hub) limitedLine(level slog.Level, msg, count string, args ...any) bool {
	line := func(n uint64) {
		h.log.Log(context.Background(), level, msg, append(args[:len(args):len(args)], count, n, "next_line_after", h.limits.interval())...)
	}
	n, ok := h.limits.allow(msg, line)
	if ok {
		line(n)
	}
	return ok
}

// retentionSkipped counts the n messages a pull of p skipped from index from on (the
// backend's retention deleted them before they were read: see [Hub.denseIndex]) and warns
// about it, at most once every warnEvery.
func (h *Hub) retentionSkipped(p *partition, from, n uint64) {
	h.m.retentionSkipped.Add(n)
	h.logLimited(slog.LevelWarn, "pull skipped messages deleted by retention: a consumer was further behind than the backend keeps (bbolt max_messages); it goes on from the oldest message kept",
		"pulls", "stream", p.stream, "partition", p.id, "from", from, "skipped", n)
}

// interval returns every.
func (l *logLimiter) interval() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.every
}
