package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub"
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
	ctx, cancel := context.WithCancel(t.Context())
	h := &hubCmd{t: t, out: &lockedWriter{w: &bytes.Buffer{}}, err: &lockedWriter{w: &bytes.Buffer{}}, cancel: cancel, done: make(chan int, 1)}
	go func() { // ends when the hub stops
		h.done <- run(ctx, append([]string{"hub", "-backend", "memory://"}, args...), &stdio{in: strings.NewReader(""), out: h.out, err: h.err})
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
	for _, args := range [][]string{
		{"-listen", "nonsense"},
		{"-listen", "127.0.0.1:"},
		{"-listen", "127.0.0.1:0", "-metrics-addr", "nonsense"},
	} {
		code, errs := runHubUntil(t, args...)
		if code != 2 || strings.Contains(errs, "hub ready") || !strings.Contains(errs, args[len(args)-2]+` "`) {
			t.Errorf("sluice hub %q: exit %d, want 2 before starting, naming the flag\n%s", args, code, errs)
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
		{"-max-connections", "0"},
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
	_, rest, ok := strings.Cut(h.stderr(), "metrics at ")
	if !ok {
		t.Fatalf("sluice hub did not log its metrics address\n%s", h.stderr())
	}
	metricsURL, _, _ := strings.Cut(rest, "\n")
	metricsURL = strings.Trim(metricsURL, `"`)
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
