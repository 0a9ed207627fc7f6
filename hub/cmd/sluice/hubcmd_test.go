package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// hubCmd is "sluice hub -backend memory:// args..." running in-process (see startHubCmd).
type hubCmd struct {
	t        *testing.T
	out, err *lockedWriter
	cancel   context.CancelFunc
	done     chan int // the exit status
}

// startHubCmd starts "sluice hub -backend memory:// args..." in-process; stop it with
// stop (t's cleanup does, if the test did not).
func startHubCmd(t *testing.T, args ...string) *hubCmd {
	t.Helper()
	return startHubCmdArgs(t, append([]string{"-backend", "memory://"}, args...)...)
}

// startHubCmdArgs starts "sluice hub args..." in-process, without a default -backend.
func startHubCmdArgs(t *testing.T, args ...string) *hubCmd {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h := &hubCmd{t: t, out: &lockedWriter{w: &bytes.Buffer{}}, err: &lockedWriter{w: &bytes.Buffer{}}, cancel: cancel, done: make(chan int, 1)}
	go func() { // ends when the hub stops
		h.done <- run(ctx, append([]string{"hub"}, args...), &stdio{in: strings.NewReader(""), out: h.out, err: h.err})
	}()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *hubCmd) text(w *lockedWriter) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.(*bytes.Buffer).String()
}

func (h *hubCmd) stdout() string { return h.text(h.out) }

// metricsURL returns the URL of path ("/metrics" or "/debug/vars") on the metrics address
// the hub logged (-metrics-addr), failing t unless the log line names that URL.
func (h *hubCmd) metricsURL(t *testing.T, path string) string {
	t.Helper()
	_, rest, ok := strings.Cut(h.stderr(), "metrics at http://")
	if !ok {
		t.Fatalf("sluice hub did not log its metrics address\n%s", h.stderr())
	}
	line, _, _ := strings.Cut("http://"+rest, "\n")
	addr, _, _ := strings.Cut(rest, "/")
	u := "http://" + addr + path
	if !strings.Contains(line, u+" ") {
		t.Fatalf("sluice hub's metrics log line does not name %s\n%s", u, h.stderr())
	}
	return u
}
func (h *hubCmd) stderr() string { return h.text(h.err) }

// listening returns the address the hub listens on, or exited and its exit status if it
// exited first.
func (h *hubCmd) listening() (addr string, exited bool, code int) {
	h.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if _, rest, ok := strings.Cut(h.stdout(), "listening on "); ok {
			addr, _, _ = strings.Cut(rest, " ")
			return addr, false, 0
		}
		select {
		case code := <-h.done:
			h.done <- code // for stop
			return "", true, code
		case <-deadline:
			h.t.Fatalf("sluice hub did not listen or exit within 30s\n%s", h.stderr())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop interrupts the hub (as SIGINT does) and returns its exit status.
func (h *hubCmd) stop() int {
	h.cancel()
	select {
	case code := <-h.done:
		h.done <- code // for a later stop
		return code
	case <-time.After(30 * time.Second):
		h.t.Fatalf("sluice hub did not stop within 30s of an interrupt\n%s", h.stderr())
		return -1
	}
}

// runHubUntil runs "sluice hub -backend memory:// args..." in-process, interrupts it once it
// listens, and returns its exit status and stderr.
func runHubUntil(t *testing.T, args ...string) (int, string) {
	t.Helper()
	h := startHubCmd(t, args...)
	if _, exited, code := h.listening(); exited {
		return code, h.stderr()
	}
	return h.stop(), h.stderr()
}

// -shutdown-timeout must be positive: with 0, stopping even an idle hub failed (exit 1).
func TestHubShutdownTimeoutMustBePositive(t *testing.T) {
	for _, d := range []string{"0", "-1s"} {
		if code, errs := runHubUntil(t, "-listen", "127.0.0.1:0", "-shutdown-timeout", d); code != 2 || !strings.Contains(errs, "-shutdown-timeout") {
			t.Errorf("-shutdown-timeout %s: exit %d, want 2 (usage)\n%s", d, code, errs)
		}
	}
	if code, errs := runHubUntil(t, "-listen", "127.0.0.1:0", "-shutdown-timeout", "1s"); code != 0 {
		t.Errorf("-shutdown-timeout 1s, idle hub: exit %d, want 0\n%s", code, errs)
	}
}

// Malformed addresses are bad command lines (exit 2) found before the hub starts, as
// "-hub localhost" is for push.
func TestHubBadAddressesExit2(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		example string // the example the error gives: the flag's usual port
	}{
		{[]string{"-listen", "nonsense"}, "e.g. 127.0.0.1:4000"},
		{[]string{"-listen", "127.0.0.1:"}, "e.g. 127.0.0.1:4000"},
		{[]string{"-listen", "127.0.0.1:0", "-metrics-addr", "nonsense"}, "e.g. 127.0.0.1:9100"},
	} {
		args := tc.args
		code, errs := runHubUntil(t, args...)
		if code != 2 || strings.Contains(errs, "hub ready") || !strings.Contains(errs, args[len(args)-2]+` "`) || !strings.Contains(errs, tc.example) {
			t.Errorf("sluice hub %q: exit %d, want 2 before starting, naming the flag and %q\n%s", args, code, tc.example, errs)
		}
	}
}

// -max-pull-wait 0 would make every waiting tail poll in a loop: a bad command line.
func TestHubMaxPullWaitZero(t *testing.T) {
	if code, errs := runHubUntil(t, "-listen", "127.0.0.1:0", "-max-pull-wait", "0"); code != 2 || !strings.Contains(errs, "-max-pull-wait 0s") {
		t.Errorf("-max-pull-wait 0: exit %d, want 2\n%s", code, errs)
	}
}

// A hub whose idle timeout is shorter than the long poll a tail asks for (5s) answers the
// poll before the idle timeout closes the connection: the tail does not lose its
// connection again and again on a healthy hub.
func TestTailOnHubWithShortIdleTimeout(t *testing.T) {
	addr := startHubWith(t, hub.WithIdleTimeout(time.Second))
	mustRun(t, "", "create", "-hub", addr, "s")
	ctx, cancel := context.WithTimeout(t.Context(), 3500*time.Millisecond)
	defer cancel()
	if _, _, errs := runIO(ctx, "", "tail", "-hub", addr, "s"); strings.Contains(errs, "lost the connection") {
		t.Errorf("tail on a healthy hub with -idle-timeout 1s:\n%s", errs)
	}
}

// Bad values of the numeric flags are bad command lines (exit 2) found before the hub
// starts, and the error names the flag and the value, as for the addresses.
func TestHubBadFlagValuesExit2(t *testing.T) {
	for _, args := range [][]string{
		{"-worker-idle-timeout", "-1s"},
		{"-idle-timeout", "-1s"},
		{"-idle-timeout", "1ns"},
		{"-idle-timeout", "999ms"},
		{"-max-connections", "0"},
		{"-max-parked-pulls", "0"},
		{"-max-parked-pulls-per-connection", "0"},
		{"-max-message-size", "-1"},
		{"-max-message-size", "70000"},
	} {
		code, errs := runHubUntil(t, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
		if want := args[0] + " " + args[1]; code != 2 || strings.Contains(errs, "hub ready") || !strings.Contains(errs, want) {
			t.Errorf("sluice hub %q: exit %d, want 2 before starting, naming %q\n%s", args, code, want, errs)
		}
	}
	if code, errs := runHubUntil(t, "-listen", "127.0.0.1:0", "-worker-idle-timeout", "0"); code != 0 {
		t.Errorf("-worker-idle-timeout 0 (never retire): exit %d, want 0\n%s", code, errs)
	}
}

// -worker-idle-timeout reaches the hub: a partition used once has its worker retired, as
// the metrics served at -metrics-addr show.
func TestHubWorkerIdleTimeoutFlag(t *testing.T) {
	h := startHubCmd(t, "-listen", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0", "-worker-idle-timeout", "20ms")
	addr, exited, code := h.listening()
	if exited {
		t.Fatalf("sluice hub exited with status %d\n%s", code, h.stderr())
	}
	metricsURL := h.metricsURL(t, "/debug/vars")
	mustRun(t, "", "push", "-hub", addr, "s", "hello")

	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var m struct{ Sluice hub.Metrics }
	deadline := time.Now().Add(30 * time.Second)
	for m.Sluice.PartitionWorkersRetired == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no partition worker retired within 30s with -worker-idle-timeout 20ms: %+v", m.Sluice)
		}
		time.Sleep(20 * time.Millisecond)
		resp, err := client.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decode %s: %v", metricsURL, err)
		}
	}
	if m.Sluice.PartitionWorkers != 0 {
		t.Errorf("partition_workers %d after the only worker retired, want 0", m.Sluice.PartitionWorkers)
	}
	if code := h.stop(); code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, h.stderr())
	}
}

// The limits of the hub's flags are inclusive, as their help says: 0 means never for the
// idle timeouts, and a frame's worth is a valid -max-message-size.
func TestHubFlagLimitsAccepted(t *testing.T) {
	for _, args := range [][]string{
		{"-idle-timeout", "0"},
		{"-idle-timeout", "1s"},
		{"-max-message-size", strconv.Itoa(hub.MaxFrameMessageSize)},
		{"-max-connections", "1"},
		{"-max-parked-pulls", "1"},
		{"-max-parked-pulls-per-connection", "1"},
	} {
		if code, errs := runHubUntil(t, append([]string{"-listen", "127.0.0.1:0"}, args...)...); code != 0 {
			t.Errorf("sluice hub %q: exit %d, want 0\n%s", args, code, errs)
		}
	}
}

// SLUICE_LISTEN and SLUICE_BACKEND set the defaults of -listen and -backend ("sluice hub
// -help"); without them the hub stores its data under ./sluice-data (README).
func TestHubEnvironmentAndDefaultBackend(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		env, want string // SLUICE_BACKEND, and the database file it makes the hub create
	}{
		{"", filepath.Join("sluice-data", "sluice.db")},
		{"bbolt:from-env", filepath.Join("from-env", "sluice.db")},
	} {
		addr := freeAddr(t)
		t.Setenv("SLUICE_LISTEN", addr)
		t.Setenv("SLUICE_BACKEND", tc.env)
		h := startHubCmdArgs(t)
		got, exited, code := h.listening()
		if exited {
			t.Fatalf("SLUICE_BACKEND=%q: sluice hub exited with status %d\n%s", tc.env, code, h.stderr())
		}
		if got != addr {
			t.Errorf("SLUICE_LISTEN=%s: the hub listens on %s", addr, got)
		}
		if code := h.stop(); code != 0 {
			t.Errorf("SLUICE_BACKEND=%q: exit %d, want 0\n%s", tc.env, code, h.stderr())
		}
		if _, err := os.Stat(tc.want); err != nil {
			t.Errorf("SLUICE_BACKEND=%q: the hub did not create %s: %v", tc.env, tc.want, err)
		}
	}
}

// The defaults promised by the README: the hub listens on 127.0.0.1:4000 (loopback only),
// and the client commands reach it there without -hub.
func TestDefaultAddresses(t *testing.T) {
	t.Setenv("SLUICE_LISTEN", "")
	t.Setenv("SLUICE_HUB", "")
	t.Setenv("SLUICE_BACKEND", "")
	for _, tc := range []struct{ cmd, flag, want string }{
		{"hub", "listen", "127.0.0.1:4000"},
		{"hub", "backend", "bbolt:sluice-data"},
		{"create", "hub", "127.0.0.1:4000"},
		{"push", "hub", "127.0.0.1:4000"},
		{"pull", "hub", "127.0.0.1:4000"},
		{"tail", "hub", "127.0.0.1:4000"},
	} {
		c := commands[tc.cmd]
		fs := newFlagSet(c, io.Discard)
		c.flags(fs)
		if f := fs.Lookup(tc.flag); f == nil || f.DefValue != tc.want {
			t.Errorf("sluice %s -%s: default %v, want %q", tc.cmd, tc.flag, f, tc.want)
		}
	}
}

// The hub's limits reach the hub: -max-message-size refuses a larger push, -max-pull-wait
// answers a long poll that asks to wait longer, -max-connections closes a connection over
// the limit, -idle-timeout closes a quiet connection, and -max-parked-pulls-per-connection
// and -max-parked-pulls answer at once a long poll beyond them.
func TestHubLimitFlagsReachTheHub(t *testing.T) {
	start := func(args ...string) string {
		t.Helper()
		h := startHubCmd(t, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
		addr, exited, code := h.listening()
		if exited {
			t.Fatalf("sluice hub %q exited with status %d\n%s", args, code, h.stderr())
		}
		return addr
	}

	addr := start("-max-message-size", "100", "-max-pull-wait", "100ms")
	wantRun(t, 1, []string{"the hub refused message 1 (200 bytes)"}, "", "push", "-hub", addr, "s", strings.Repeat("q", 200))
	c := hubtest.Dial(t, addr)
	s := c.Create("s")
	// Held 60s, longer than hubtest.ReplyTimeout, without -max-pull-wait.
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: 1000, Limit: 1, WaitMS: 60_000})
	if pr := c.ExpectPull(wire.ProtocolPullWait); len(pr.Messages) != 0 {
		t.Errorf("long poll past the end answered %d messages", len(pr.Messages))
	}

	// The first connection holds the only slot (as in TestCommandsAtHubConnectionLimit).
	addr = start("-max-connections", "1")
	hubtest.Dial(t, addr).Create("s")
	wantRun(t, 1, []string{"connection limit"}, "", "create", "-hub", addr, "t")

	// After its first frame a connection is closed when quiet for -idle-timeout (before
	// it, by the handshake timeout).
	addr = start("-idle-timeout", "1s")
	c = hubtest.Dial(t, addr)
	c.Create("s")
	c.ExpectClosed()

	// With one long poll held per connection, a second one on another partition is
	// answered at once, with no messages (by default both would be held for 60s).
	addr = start("-max-parked-pulls-per-connection", "1")
	c = hubtest.Dial(t, addr)
	parts := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "p", 2)
	for i, p := range parts {
		c.Send(p.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: uint64(i + 1), Index: 0, Limit: 1, WaitMS: 60_000})
	}
	if pr := c.ExpectPull(wire.ProtocolPullWait); len(pr.Messages) != 0 {
		t.Errorf("long poll beyond -max-parked-pulls-per-connection answered %d messages", len(pr.Messages))
	}

	// Likewise a second one on the same partition, with one held per partition.
	addr = start("-max-parked-pulls", "1")
	c = hubtest.Dial(t, addr)
	s = c.Create("s")
	for id := range uint64(2) {
		c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: id + 1, Index: 0, Limit: 1, WaitMS: 60_000})
	}
	if pr := c.ExpectPull(wire.ProtocolPullWait); len(pr.Messages) != 0 {
		t.Errorf("long poll beyond -max-parked-pulls answered %d messages", len(pr.Messages))
	}
}

// -log-level reaches the hub's logger, and a backend URL with an option its backend does
// not know is a bad command line (exit 2) naming -backend.
func TestHubLogLevelAndBackendOptions(t *testing.T) {
	if _, errs := runHubUntil(t, "-listen", "127.0.0.1:0"); !strings.Contains(errs, "level=INFO") {
		t.Errorf("sluice hub logged nothing at INFO by default:\n%s", errs)
	}
	if _, errs := runHubUntil(t, "-listen", "127.0.0.1:0", "-log-level", "warn"); strings.Contains(errs, "level=INFO") {
		t.Errorf("sluice hub -log-level warn logged at INFO:\n%s", errs)
	}
	code, _, errs := runIO(t.Context(), "", "hub", "-listen", "127.0.0.1:0", "-backend", "memory://?nosuch=1")
	if code != 2 || !strings.Contains(errs, `-backend "memory://?nosuch=1"`) || !strings.Contains(errs, "nosuch") {
		t.Errorf("sluice hub -backend memory://?nosuch=1: exit %d, want 2 naming -backend and the option\n%s", code, errs)
	}
}

// A hub that cannot listen fails (exit 1) saying why; a hub that stops closes its backend,
// so that the same bbolt database can be opened again by this process.
func TestHubListenFailsAndClosesBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if code, errs := runHubUntil(t, "-listen", ln.Addr().String()); code != 1 || !strings.Contains(errs, ln.Addr().String()) {
		t.Errorf("sluice hub -listen on a taken address: exit %d, want 1 naming it\n%s", code, errs)
	}

	url := "bbolt:" + filepath.Join(t.TempDir(), "data")
	h := startHubCmdArgs(t, "-listen", "127.0.0.1:0", "-backend", url)
	if _, exited, code := h.listening(); exited {
		t.Fatalf("sluice hub exited with status %d\n%s", code, h.stderr())
	}
	if code := h.stop(); code != 0 {
		t.Fatalf("exit %d, want 0\n%s", code, h.stderr())
	}
	b, err := core.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("open %s after the hub stopped: %v (the hub did not close its backend)", url, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// A bbolt path the file system refuses is not a bad command line: whether the hub cannot
// open the database file or cannot create (or enter) its directory, it fails (exit 1), names
// the path and says what to do. The tests run as root, whom permissions do not stop: a file
// where a directory should be, and a dangling symbolic link, make the file system refuse.
func TestHubBboltPathRefusedExits1(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	isDir := filepath.Join(dir, "isdir")
	if err := os.MkdirAll(filepath.Join(isDir, "sluice.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "missing", "target"), link); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	for _, tc := range []struct{ path, want string }{
		{isDir, "sluice.db"},                            // the database file cannot be opened
		{filepath.Join(file, "sub"), "not a directory"}, // the path cannot be entered
		{filepath.Join(file, "sub.db"), "not a directory"},
		{link, "mkdir " + link}, // its directory cannot be created
	} {
		code, _, errs := runIO(t.Context(), "", "hub", "-listen", "127.0.0.1:0", "-backend", "bbolt:"+tc.path)
		if code != 1 || strings.Contains(errs, "usage") || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "name another") {
			t.Errorf("sluice hub -backend bbolt:%s: exit %d, want 1 (not a usage error) saying %q and what to do\n%s", tc.path, code, tc.want, errs)
		}
	}
}

// A -listen or -metrics-addr port that is taken fails the start (exit 1) saying what to do.
func TestHubPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", taken}, "sluice hub: cannot listen on " + taken + ": address already in use (is another sluice hub running? stop it, or choose another -listen)\n"},
		{[]string{"-listen", "127.0.0.1:0", "-metrics-addr", taken}, "choose another -metrics-addr"},
	} {
		if code, errs := runHubUntil(t, tc.args...); code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("hub %v with the port taken: exit %d, want 1 saying %q\n%s", tc.args, code, tc.want, errs)
		}
	}
}

// A port in use fails the start before the backend is opened: a bbolt directory that does
// not exist is not created (a hub that opened its backend first left an empty one behind),
// and a second hub on the directory and port of a running one says that the port is taken
// (one that opened its backend first waited for the running hub's lock on the database,
// and then failed saying that instead).
func TestHubPortInUseOpensNoBackend(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	fresh := filepath.Join(dir, "fresh")
	for _, args := range [][]string{
		{"-listen", taken},
		{"-listen", "127.0.0.1:0", "-metrics-addr", taken},
	} {
		args = append(args, "-backend", "bbolt:"+fresh)
		code, _, errs := runIO(t.Context(), "", append([]string{"hub"}, args...)...)
		if code != 1 || !strings.Contains(errs, taken) || !strings.Contains(errs, "address already in use") {
			t.Errorf("sluice hub %q with the port taken: exit %d, want 1 naming %s as in use\n%s", args, code, taken, errs)
		}
		if _, err := os.Stat(fresh); !os.IsNotExist(err) {
			t.Errorf("sluice hub %q with the port taken left %s behind (stat: %v)", args, fresh, err)
			_ = os.RemoveAll(fresh)
		}
	}

	url := "bbolt:" + filepath.Join(dir, "data")
	first := startHubCmdArgs(t, "-listen", "127.0.0.1:0", "-backend", url)
	addr, exited, code := first.listening()
	if exited {
		t.Fatalf("sluice hub exited with status %d\n%s", code, first.stderr())
	}
	want := "sluice hub: cannot listen on " + addr + ": address already in use (is another sluice hub running? stop it, or choose another -listen)\n"
	code, _, errs := runIO(t.Context(), "", "hub", "-listen", addr, "-backend", url)
	if code != 1 || !strings.HasSuffix(errs, want) || strings.Contains(errs, "lock") {
		t.Errorf("a second sluice hub on the address and database of a running one: exit %d, want 1 saying only %q\n%s", code, want, errs)
	}
	if code := first.stop(); code != 0 {
		t.Fatalf("the first hub: exit %d, want 0\n%s", code, first.stderr())
	}
}

// A hub that listens beyond loopback warns that it does not authenticate its clients; on
// loopback it says nothing. (The addresses are given, not listened on: a test binds
// loopback only.)
func TestHubWarnsWhenExposed(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		warn bool
	}{
		{&net.TCPAddr{IP: net.IPv6zero, Port: 4000}, true},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 4000}, true},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 4000}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, false},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 4000}, false},
	} {
		var buf bytes.Buffer
		warnIfExposed(slog.New(slog.NewTextHandler(&buf, nil)), tc.addr)
		got := strings.Contains(buf.String(), "does not authenticate its clients") && strings.Contains(buf.String(), "docs/security.md")
		if got != tc.warn {
			t.Errorf("hub listening on %v: warned %v, want %v\n%s", tc.addr, got, tc.warn, buf.String())
		}
	}
}

// A bad address or URL that came from the environment, not the command line, is named as
// coming from its variable: the user typed no -hub, -listen or -backend.
func TestBadValueFromEnvironmentNamesIt(t *testing.T) {
	for _, tc := range []struct {
		env, value string
		args       []string
	}{
		{"SLUICE_HUB", "localhost", []string{"pull", "s"}},
		{"SLUICE_HUB", "sluice://127.0.0.1:4000", []string{"push", "s", "x"}},
		{"SLUICE_HUB", "localhost", []string{"create", "s"}},
		{"SLUICE_LISTEN", "localhost", []string{"hub"}},
		{"SLUICE_BACKEND", "nope", []string{"hub"}},
		{"SLUICE_BACKEND", "bbolt:", []string{"hub", "-listen", "127.0.0.1:0"}},
	} {
		t.Setenv(tc.env, tc.value)
		wantRun(t, 2, []string{"comes from " + tc.env}, "", tc.args...)
		// Given on the command line, the value is the flag's, not the variable's.
		flagName := map[string]string{"SLUICE_HUB": "-hub", "SLUICE_LISTEN": "-listen", "SLUICE_BACKEND": "-backend"}[tc.env]
		args := append([]string{tc.args[0], flagName, tc.value}, tc.args[1:]...)
		if _, _, errs := runIO(t.Context(), "", args...); strings.Contains(errs, tc.env) {
			t.Errorf("sluice %q blames %s:\n%s", args, tc.env, errs)
		}
		t.Setenv(tc.env, "")
	}
}
