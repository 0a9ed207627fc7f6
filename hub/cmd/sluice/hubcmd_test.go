package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub"
)

// runHubUntil runs "sluice hub -backend memory:// args..." in-process, interrupts it once it
// listens, and returns its exit status and stderr.
func runHubUntil(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, errb := &lockedWriter{w: &bytes.Buffer{}}, &lockedWriter{w: &bytes.Buffer{}}
	done := make(chan int, 1)
	go func() { // ends when the hub stops
		done <- run(ctx, append([]string{"hub", "-backend", "memory://"}, args...), &stdio{in: strings.NewReader(""), out: out, err: errb})
	}()
	text := func(w *lockedWriter) string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.w.(*bytes.Buffer).String()
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case code := <-done:
			return code, text(errb)
		case <-deadline:
			t.Fatalf("sluice hub %q did not stop within 30s", args)
		case <-time.After(20 * time.Millisecond):
			if strings.Contains(text(out), "listening") {
				cancel()
			}
		}
	}
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
