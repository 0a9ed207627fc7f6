package hub_test

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestHTTPRequestOnHubPort checks what an operator and a user see when HTTP clients (a
// curl, a health check) are pointed at the hub's port instead of its metrics address: each
// gets a 400 saying what the port speaks and is counted in Metrics.HTTPRequestsRefused; the
// hub's log has one warning saying the same, with the first client's address and the number
// closed (nothing about a truncated frame), not one per request; the hub serves its clients
// on.
func TestHTTPRequestOnHubPort(t *testing.T) {
	const requests = 5
	var logs hubtest.LogBuffer
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	hub.SetWarnEvery(h, time.Hour) // one warning in this test, however slow
	c := hubtest.Dial(t, addr)
	c.Create("")

	var first string // the first client's address
	for i := range requests {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = nc.LocalAddr().String()
		}
		_ = nc.SetDeadline(time.Now().Add(hubtest.ReplyTimeout))
		if _, err := io.WriteString(nc, "GET /debug/vars HTTP/1.1\r\nHost: hub\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		reply, err := io.ReadAll(nc)
		nc.Close()
		if err != nil || !strings.HasPrefix(string(reply), "HTTP/1.1 400 Bad Request\r\n") || !strings.Contains(string(reply), "not HTTP") {
			t.Fatalf("request %d: reply %q, %v; want a 400 saying the port is not HTTP", i, reply, err)
		}
	}
	if got := h.Metrics().HTTPRequestsRefused; got != requests {
		t.Errorf("metrics http_requests_refused = %d, want %d", got, requests)
	}
	if got := h.Metrics().ConnectionsRefused; got != 0 {
		t.Errorf("metrics connections_refused = %d, want 0: no connection was over the limit", got)
	}

	var warned []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "not HTTP") || !strings.Contains(warned[0], "-metrics-addr") ||
		!strings.Contains(warned[0], "last_remote="+first) || !strings.Contains(warned[0], "closed=1 ") {
		t.Fatalf("warnings %q, want one saying the port is not HTTP, with last_remote=%s and closed=1", warned, first)
	}
	c.Create("") // the hub serves on
}
