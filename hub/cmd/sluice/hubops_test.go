package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
)

// slowCloseScheme opens a memory backend whose Close does not return until the test ends,
// as a Kafka backend's Close waits for calls to a broker that does not answer.
const slowCloseScheme = "test-slowclose"

type slowCloseStorage struct {
	core.Storage
	release <-chan struct{}
}

func (s slowCloseStorage) Close() error {
	<-s.release
	return s.Storage.Close()
}

// slowCloseRelease is the channel whose closing lets the Close of the backends opened with
// slowCloseScheme return; the test that uses the scheme sets it.
var slowCloseRelease atomic.Pointer[chan struct{}]

// userInfoScheme opens a memory backend from a URL that may carry a password, as kafka://
// does: for the tests that check that no command shows it.
const userInfoScheme = "test-userinfo"

func init() {
	core.Register(userInfoScheme, func(ctx context.Context, _ *url.URL) (*core.Backend, error) {
		return core.Open(ctx, "memory://")
	})
	core.Register(slowCloseScheme, func(ctx context.Context, _ *url.URL) (*core.Backend, error) {
		release := slowCloseRelease.Load()
		if release == nil {
			return nil, errors.New("slowCloseRelease not set")
		}
		b, err := core.Open(ctx, "memory://")
		if err != nil {
			return nil, err
		}
		s := slowCloseStorage{b.Storage, *release}
		return &core.Backend{Storage: s, Index: b.Index}, nil
	})
}

// -shutdown-timeout bounds the whole stop, closing the backend included: a backend whose
// Close hangs does not keep the hub from exiting (an orchestrator kills a process that
// outlives its grace period), and the hub says what it gave up on.
func TestHubStopDoesNotWaitForeverForTheBackend(t *testing.T) {
	release := make(chan struct{})
	slowCloseRelease.Store(&release)
	t.Cleanup(func() { close(release) })
	h := startHubCmdArgs(t, "-listen", "127.0.0.1:0", "-backend", slowCloseScheme+"://", "-shutdown-timeout", "1s")
	if _, exited, code := h.listening(); exited {
		t.Fatalf("sluice hub exited with status %d\n%s", code, h.stderr())
	}
	h.cancel()
	select {
	case code := <-h.done:
		h.done <- code
		if errs := h.stderr(); code != 1 || !strings.Contains(errs, "not closed within -shutdown-timeout 1s") {
			t.Errorf("exit %d, want 1 saying the backend did not close in time\n%s", code, errs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sluice hub -shutdown-timeout 1s still stopping 10s after the interrupt (its backend's Close hangs)\n%s", h.stderr())
	}
}

// The metrics address serves the hub's counters and the Go runtime's, but not the command
// line: a -backend URL on it can carry a broker password.
func TestHubMetricsDoNotShowTheCommandLine(t *testing.T) {
	h := startHubCmd(t, "-listen", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0")
	if _, exited, code := h.listening(); exited {
		t.Fatalf("sluice hub exited with status %d\n%s", code, h.stderr())
	}
	metricsURL := h.metricsURL(t, "/debug/vars")
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var vars map[string]json.RawMessage
	if err := json.Unmarshal(body, &vars); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", metricsURL, err, body)
	}
	if _, ok := vars["cmdline"]; ok {
		t.Errorf("%s serves the command line (cmdline), which can hold a -backend password", metricsURL)
	}
	for _, want := range []string{"sluice", "memstats"} {
		if _, ok := vars[want]; !ok {
			t.Errorf("%s has no %q", metricsURL, want)
		}
	}
	if code := h.stop(); code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, h.stderr())
	}
}

// The metrics address also serves the hub's metrics in the Prometheus text format, at
// /metrics: live (a push and a connection held open show), with the format's Content-Type.
func TestHubPrometheusMetrics(t *testing.T) {
	h := startHubCmd(t, "-listen", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0")
	addr, exited, code := h.listening()
	if exited {
		t.Fatalf("sluice hub exited with status %d\n%s", code, h.stderr())
	}
	metricsURL := h.metricsURL(t, "/metrics")
	mustRun(t, "", "push", "-hub", addr, "s", "hello", "world")
	conn, err := net.Dial("tcp", addr) // open while the metrics are read
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var samples map[string]string // name{labels} -> value
	// The push's connection closes, and ours is accepted, soon after: until then, read again.
	for deadline := time.Now().Add(30 * time.Second); samples["sluice_hub_connections"] != "1"; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: sluice_hub_connections %q 30s after one connection was opened, want 1", metricsURL, samples["sluice_hub_connections"])
		}
		time.Sleep(20 * time.Millisecond)
		resp, err := client.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		const wantType = "text/plain; version=0.0.4; charset=utf-8"
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != wantType {
			t.Fatalf("%s: %s, Content-Type %q; want 200 OK, %q", metricsURL, resp.Status, resp.Header.Get("Content-Type"), wantType)
		}
		samples = map[string]string{}
		for line := range strings.Lines(string(body)) {
			if !strings.HasPrefix(line, "#") {
				name, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
				samples[name] = value
			}
		}
	}
	for name, want := range map[string]string{
		"sluice_hub_pushes_total":                             "2",
		"sluice_hub_appended_messages_total":                  "2",
		"sluice_hub_creates_total":                            "1",
		"sluice_hub_partition_workers":                        "1",
		`sluice_build_info{version="` + core.Version() + `"}`: "1",
	} {
		if samples[name] != want {
			t.Errorf("%s: %s %q, want %s", metricsURL, name, samples[name], want)
		}
	}
	if code := h.stop(); code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, h.stderr())
	}
}

// A second SIGTERM stops a hub at once whose graceful stop waits for its backend: here a
// create stream request to a hub-as-backend whose own backend never completes it. The
// first one only starts the graceful stop.
func TestHubSecondSignalStopsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	// An upstream hub that answers the hub's questions at start (the sluice:// backend asks
	// one when it opens) but whose backend never completes a stream creation.
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	stalling := &stallingStore{Store: mem, asked: make(chan struct{}, 1)}
	asked := stalling.asked
	up, err := hub.New(&core.Backend{Storage: stalling, Index: mem}, hub.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	upAddr, err := up.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = up.Close() // ends the stalled creation (its context)
		_ = mem.Close()
	}()

	bin := cliBinary(t)
	h := cliStartHub(t, bin, t.TempDir(), "-backend", "sluice://"+upAddr.String()+"?timeout=1m", "-shutdown-timeout", "1m")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runAsync(ctx, strings.NewReader(""), "push", "-hub", h.addr, "-timeout", "1m", "s", "m")
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatalf("the hub did not ask its backend within 30s\n%s", h.stderr)
	}

	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		t.Fatalf("the hub exited (%v) at the first SIGTERM, with a request to its backend in flight and -shutdown-timeout 1m: not a graceful stop\n%s", err, h.stderr)
	case <-time.After(500 * time.Millisecond):
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the hub still runs 10s after a second SIGTERM\n%s", h.stderr)
	}
}

// The hub logs which backend it opened, without the URL's password, and where a bbolt
// database is as an absolute path: the default bbolt:sluice-data is relative to the
// working directory, which a service manager chooses (systemd's default is /).
func TestHubLogsItsBackend(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_, errs := runHubUntil(t, "-listen", "127.0.0.1:0", "-backend", "bbolt:data")
	want := "path=" + filepath.Join(dir, "data", "sluice.db")
	if !strings.Contains(errs, `msg="backend open" url=bbolt:data`) || !strings.Contains(errs, want) {
		t.Errorf("sluice hub -backend bbolt:data did not log the backend and %s\n%s", want, errs)
	}
	_, errs = runHubUntil(t, "-listen", "127.0.0.1:0", "-backend", userInfoScheme+"://operator:s3cret@127.0.0.1:1")
	if !strings.Contains(errs, "backend open") || !strings.Contains(errs, "operator:xxxxx@") || strings.Contains(errs, "s3cret") {
		t.Errorf("sluice hub -backend %s://operator:s3cret@...: want the backend logged without its password\n%s", userInfoScheme, errs)
	}
}

// stallingStore is a memory store whose CreateStream never completes: it says it was asked
// (asked, when nobody was told yet), then waits for its context to end.
type stallingStore struct {
	*memory.Store
	asked chan struct{}
}

func (s *stallingStore) CreateStream(ctx context.Context, _ string, _ int) (int, error) {
	select {
	case s.asked <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return 0, ctx.Err()
}
