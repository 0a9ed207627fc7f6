package hub_test

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestConnectionsRefusedAtLimit checks what an operator sees of connections refused at
// the connection limit: each is counted in Metrics.ConnectionsRefused, whatever the log
// level, and a flood of them is one warning naming the limit and the flag that raises it,
// instead of a warning per connection. The connection that holds the slot is served on.
func TestConnectionsRefusedAtLimit(t *testing.T) {
	const refused = 5
	for _, level := range []slog.Level{slog.LevelWarn, slog.LevelError} {
		t.Run("log level "+level.String(), func(t *testing.T) {
			var logs hubtest.LogBuffer
			b := openMemory(t)
			defer b.Close()
			h, addr := hubtest.Start(t, b, hub.WithMaxConnections(1),
				hub.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))))
			hub.SetWarnEvery(h, time.Hour) // one warning in this test, however slow
			c := hubtest.Dial(t, addr)
			c.Create("") // answered: c's connection holds the only slot

			for i := range refused {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				_ = nc.SetReadDeadline(time.Now().Add(hubtest.ReplyTimeout))
				_, err = nc.Read(make([]byte, 1))
				nc.Close()
				if ne := (net.Error)(nil); err == nil || errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("connection %d beyond the limit: read %v, want it closed by the hub", i, err)
				}
			}
			if got := h.Metrics().ConnectionsRefused; got != refused {
				t.Errorf("metrics connections_refused = %d, want %d", got, refused)
			}
			if got := h.Metrics().Connections; got != 1 {
				t.Errorf("metrics connections = %d with one connection held open, want 1", got)
			}
			c.Create("") // the connection within the limit still works

			text := logs.String()
			if strings.Contains(text, "tcp: refused connection") {
				t.Errorf("the transport's warning per refused connection reached the log:\n%s", text)
			}
			n := strings.Count(text, "connections refused")
			switch {
			case level > slog.LevelWarn && n != 0:
				t.Errorf("log level %v: %d refusal warnings logged, want none:\n%s", level, n, text)
			case level <= slog.LevelWarn && n != 1:
				t.Errorf("%d refusal warnings for %d connections refused, want 1:\n%s", n, refused, text)
			case level <= slog.LevelWarn && (!strings.Contains(text, "limit=1 ") || !strings.Contains(text, "-max-connections")):
				t.Errorf("the refusal warning does not name the limit (limit=1) and the -max-connections flag:\n%s", text)
			}
		})
	}
}
