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

// TestHTTPRequestOnHubPort checks what an operator and a user see when an HTTP client is
// pointed at the hub's port instead of its metrics address: the client gets a 400 saying
// what the port speaks, the hub's log one warning saying the same with the client's address
// (and nothing about a truncated frame), and the hub serves its clients on.
func TestHTTPRequestOnHubPort(t *testing.T) {
	var logs hubtest.LogBuffer
	b := openMemory(t)
	defer b.Close()
	_, addr := hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := hubtest.Dial(t, addr)
	c.Create("")

	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(hubtest.ReplyTimeout))
	if _, err := io.WriteString(nc, "GET /debug/vars HTTP/1.1\r\nHost: hub\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(nc)
	if err != nil || !strings.HasPrefix(string(reply), "HTTP/1.1 400 Bad Request\r\n") || !strings.Contains(string(reply), "not HTTP") {
		t.Fatalf("reply %q, %v; want a 400 saying the port is not HTTP", reply, err)
	}

	var warned []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "not HTTP") || !strings.Contains(warned[0], "-metrics-addr") ||
		!strings.Contains(warned[0], "remote="+nc.LocalAddr().String()) {
		t.Fatalf("warnings %q, want one saying the port is not HTTP, with remote=%s", warned, nc.LocalAddr())
	}
	c.Create("") // the hub serves on
}
