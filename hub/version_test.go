package hub_test

import (
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestReadyLogsVersion: the hub's first log line says which Sluice it is, as an operator
// reading a log of a problem wants to know.
func TestReadyLogsVersion(t *testing.T) {
	var logs hubtest.LogBuffer
	b := openMemory(t)
	defer b.Close()
	hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `msg="hub ready"`) {
			if want := "version=" + strconv.Quote(core.Version()); !strings.Contains(line, want) && !strings.Contains(line, "version="+core.Version()+" ") {
				t.Errorf("hub ready line lacks %s: %s", want, line)
			}
			return
		}
	}
	t.Fatalf("no hub ready line in the log:\n%s", logs.String())
}

// TestReadyOnlyOnceListening: "hub ready" says the hub serves, so it comes only once the
// hub listens, naming the address; a hub whose Listen fails (the port is taken) logs
// neither it nor a "hub stopped" summary of work it never did, only the error.
func TestReadyOnlyOnceListening(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	b := openMemory(t)
	defer b.Close()

	var logs hubtest.LogBuffer
	h, err := hub.New(b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Listen(taken.Addr().String()); err == nil {
		t.Fatalf("Listen on %s, which is taken, succeeded", taken.Addr())
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{`msg="hub ready"`, `msg="hub stopped"`} {
		if strings.Contains(logs.String(), msg) {
			t.Errorf("a hub that failed to listen logged %s:\n%s", msg, logs.String())
		}
	}

	var logs2 hubtest.LogBuffer
	h, addr := hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs2, nil))))
	var ready []string
	for _, line := range strings.Split(logs2.String(), "\n") {
		if strings.Contains(line, `msg="hub ready"`) {
			ready = append(ready, line)
		}
	}
	if len(ready) != 1 || !strings.Contains(ready[0], "address="+addr) {
		t.Fatalf("want one hub ready line with address=%s, got %q", addr, ready)
	}
	if _, err := h.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs2.String(), `msg="hub ready"`); n != 1 {
		t.Errorf("a second Listen logged hub ready again (%d lines):\n%s", n, logs2.String())
	}
}
