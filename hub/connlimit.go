package hub

import (
	"errors"
	"log/slog"

	"github.com/sluicehq/sluice/core/loglimit"
	"github.com/sluicehq/sluice/core/transport/tcp"
)

// warnEvery is the least time between two log lines about one recurring condition
// (connections refused at the connection limit, a backend call that fails): a flood of them
// costs a line per interval, not one per event.
const warnEvery = loglimit.Every

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

// logLimited logs msg with args at level by the hub's log limiter (count names the number
// of events the line counts: see loglimit.Limiter.Line), and at Debug when it holds the
// line back.
func (h *Hub) logLimited(level slog.Level, msg, count string, args ...any) {
	h.limits.LineOrDebug(h.log, level, msg, count, args...)
}

// limitedLine logs msg with args at level unless a line about msg was logged less than
// warnEvery ago, and reports whether it logged (see loglimit.Limiter.Line).
func (h *Hub) limitedLine(level slog.Level, msg, count string, args ...any) bool {
	return h.limits.Line(h.log, level, msg, count, args...)
}

// retentionSkipped counts the n messages a pull of p skipped from index from on (the
// backend's retention deleted them before they were read: see [Hub.denseIndex]) and warns
// about it, at most once every warnEvery.
func (h *Hub) retentionSkipped(p *partition, from, n uint64) {
	h.m.retentionSkipped.Add(n)
	h.logLimited(slog.LevelWarn, "pull skipped messages deleted by retention: a consumer was further behind than the backend keeps (bbolt max_messages); it goes on from the oldest message kept",
		"pulls", "stream", p.stream, "partition", p.id, "from", from, "skipped", n)
}
