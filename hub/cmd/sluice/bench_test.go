package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// failFetchScheme opens a memory backend whose Fetch always fails, as a broker that takes
// appends but cannot be read from: every pull measurement of it fails.
const failFetchScheme = "test-failfetch"

type failFetchStorage struct{ core.Storage }

func (failFetchStorage) Fetch(context.Context, string, int, uint64, int) ([]core.Message, error) {
	return nil, errors.New("the broker refuses reads")
}

// hangOpenScheme opens as a backend whose broker accepts connections but never answers
// does: its Open returns only when its context ends.
const hangOpenScheme = "test-hangopen"

func init() {
	core.Register(hangOpenScheme, func(ctx context.Context, _ *url.URL) (*core.Backend, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("no answer: %w", ctx.Err())
	})
	core.Register(failFetchScheme, func(ctx context.Context, _ *url.URL) (*core.Backend, error) {
		b, err := core.Open(ctx, "memory://")
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: failFetchStorage{b.Storage}, Index: b.Index}, nil
	})
}

func TestBenchMemory(t *testing.T) {
	dir := t.TempDir()
	code, out := runCLI(t, "bench", "-backend", "memory://", "-sizes", "64,1024", "-runs", "1",
		"-duration", "30ms", "-rate", "300", "-out", dir)
	if code != 0 {
		t.Fatalf("exit status %d, want 0; output:\n%s", code, out)
	}
	for _, want := range []string{
		"memory push 64 B hub run 1/1:", // a progress line (the output is not a terminal)
		"## Push throughput", "| memory | 1 KiB |", "## Publish-to-consume latency",
		"sluice bench -backend memory:// -duration=30ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var rep struct {
		Rows []struct {
			Workload string
			Size     int
			Ratio    *float64
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 6 {
		t.Fatalf("%d rows in bench.json, want 6 (2 sizes x push, pull + 2 latency workloads)", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if r.Ratio == nil || *r.Ratio <= 0 {
			t.Errorf("%s %d: ratio %v", r.Workload, r.Size, r.Ratio)
		}
	}
	for _, name := range []string{"bench.md", "bench-push.svg", "bench-pull.svg", "bench-push-latency.svg", "bench-e2e-latency.svg"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if strings.HasSuffix(name, ".svg") {
			var root struct{ XMLName xml.Name }
			if err := xml.Unmarshal(data, &root); err != nil || root.XMLName.Local != "svg" {
				t.Errorf("%s is not an SVG document: %v", name, err)
			}
		}
	}
}

func TestBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench"}, 2, "no -backend URL"},
		{[]string{"bench", "-backend", "memory://", "-sizes", "64,x"}, 2, "not a positive integer"},
		{[]string{"bench", "-backend", "memory://", "-runs", "0"}, 2, "must be positive"},
		// Short runs into a temporary directory, should the value be taken.
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-out", t.TempDir(), "-sizes", "64,0"}, 2, "not a positive integer"},
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-out", t.TempDir(), "-duration", "0s"}, 2, "must be positive"},
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-out", t.TempDir(), "-rate", "0"}, 2, "must be positive"},
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-out", t.TempDir(), "-latency-size", "0"}, 2, "must be positive"},
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-out", t.TempDir(), "-window", "0"}, 2, "must be positive"},
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-out", t.TempDir(), "-batch", "0"}, 2, "must be positive"},
		{[]string{"bench", "-backend", "memory://", "-workloads", "fly", "-out", t.TempDir()}, 2, "unknown workload"},
		// A batch above the window is refused (it was silently cut to the window).
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-sizes", "64", "-workloads", "push", "-out", t.TempDir(), "-batch", "512"}, 2, "-batch 512 is above -window 256"},
		{[]string{"bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-sizes", "64", "-workloads", "push", "-out", t.TempDir(), "-window", "32", "-batch", "64"}, 2, "lower -batch or raise -window"},
		{[]string{"bench", "-backend", "memory://", "-workloads", "push,,pull", "-out", t.TempDir()}, 2, "empty item"},
		{[]string{"bench", "-backend", "nosuch://", "-runs", "1", "-duration", "1ms", "-out", t.TempDir()}, 2, "unknown backend"},
	} {
		code, out := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("sluice %q: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}

// TestBenchListsWithSpaces: the comma-separated flags ignore spaces around their items, as
// a user writes them in a shell ("push-latency, e2e-latency"): the run measures what they
// name instead of refusing " e2e-latency" as an unknown workload.
func TestBenchListsWithSpaces(t *testing.T) {
	dir := t.TempDir()
	code, out := runCLI(t, "bench", "-backend", "memory://", "-workloads", " push-latency, e2e-latency ", "-sizes", "64, 128",
		"-runs", "1", "-duration", "20ms", "-rate", "200", "-quiet", "-out", dir)
	if code != 0 {
		t.Fatalf("exit status %d, want 0; output:\n%s", code, out)
	}
	for _, want := range []string{"## Push-confirm latency", "## Publish-to-consume latency", "-workloads=push-latency,e2e-latency", "-sizes=64,128"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestBenchWindowBelowDefaultBatch: -window alone below the default batch (64) is no
// conflict: the batch follows the window, and the report says so.
func TestBenchWindowBelowDefaultBatch(t *testing.T) {
	dir := t.TempDir()
	code, out := runCLI(t, "bench", "-backend", "memory://", "-workloads", "push", "-sizes", "64", "-window", "16",
		"-runs", "1", "-duration", "20ms", "-quiet", "-out", dir)
	if code != 0 {
		t.Fatalf("exit status %d, want 0; output:\n%s", code, out)
	}
	if want := "in batches of 16 random messages"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// A backend that cannot be measured fails the run (exit 1) after the others were; a
// password in a backend URL appears nowhere, neither in the output nor in the reports.
func TestBenchFailedBackendAndPassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report")
	code, text := runCLI(t, "bench", "-backend", userInfoScheme+"://user:secret@", "-backend", "bbolt:"+filepath.Join(file, "data"),
		"-runs", "1", "-duration", "10ms", "-sizes", "64", "-rate", "300", "-quiet", "-out", out)
	if code != 1 || !strings.Contains(text, "could not measure") || !strings.Contains(text, "| memory | 64 B |") {
		t.Errorf("exit %d; want 1, the memory results and that bbolt could not be measured:\n%s", code, text)
	}
	for _, name := range []string{"", "bench.md", "bench.json"} {
		data := []byte(text)
		if name != "" {
			var err error
			if data, err = os.ReadFile(filepath.Join(out, name)); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Contains(string(data), "secret") {
			t.Errorf("the password of the backend URL is in %q:\n%s", name, data)
		}
	}
}

// Ctrl-C stops bench: the report is written, marked interrupted, and the exit status is 130.
func TestBenchInterrupted(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	code, out, errs := runIO(ctx, "", "bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-sizes", "64", "-out", dir)
	if code != exitInterrupted || !strings.Contains(errs, "sluice bench: interrupted") {
		t.Errorf("exit %d; want 130 and interrupted\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if md, err := os.ReadFile(filepath.Join(dir, "bench.md")); err != nil || !strings.Contains(string(md), "INTERRUPTED") {
		t.Errorf("bench.md (%v) is not marked INTERRUPTED:\n%s", err, md)
	}
}

// A backend that opens but whose measurements fail is no success: the report is written
// with the errors, and the exit status is 1, naming what failed (it was 0, as if the
// broker had been measured).
func TestBenchFailedMeasurementFails(t *testing.T) {
	dir := t.TempDir()
	code, out := runCLI(t, "bench", "-backend", failFetchScheme+"://", "-workloads", "pull", "-sizes", "64",
		"-runs", "1", "-duration", "20ms", "-quiet", "-out", dir)
	if code != 1 || !strings.Contains(out, "could not measure memory pull 64 B hub") || !strings.Contains(out, "the broker refuses reads") {
		t.Errorf("exit %d; want 1, naming the failed measurements and why:\n%s", code, out)
	}
	if md, err := os.ReadFile(filepath.Join(dir, "bench.md")); err != nil || !strings.Contains(string(md), "1 of 1 runs failed") {
		t.Errorf("bench.md (%v) does not show the failed runs:\n%s", err, md)
	}
}

// A backend whose Open never returns (a broker that accepts connections and never answers)
// is a backend that could not be measured, once benchOpenTimeout has passed: the others are
// measured and the exit status is 1. It hung the run, silently, until Ctrl-C.
func TestBenchOpenThatHangsFails(t *testing.T) {
	defer func(d time.Duration) { benchOpenTimeout = d }(benchOpenTimeout)
	benchOpenTimeout = 50 * time.Millisecond
	// The watchdog only turns a hang into a failure of this test; it is no timing assert.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	code, out, errs := runIO(ctx, "", "bench", "-backend", hangOpenScheme+"://", "-backend", "memory://", "-workloads", "pull", "-sizes", "64",
		"-runs", "1", "-duration", "20ms", "-quiet", "-out", t.TempDir())
	if ctx.Err() != nil {
		t.Fatalf("bench still opening the backend after a minute:\nstdout: %s\nstderr: %s", out, errs)
	}
	if code != 1 || !strings.Contains(errs, "could not measure backend: opening it: no answer within 50ms") || !strings.Contains(out, "| memory | 64 B |") {
		t.Errorf("exit %d; want 1, the memory results and that the backend did not open in time\nstdout: %s\nstderr: %s", code, out, errs)
	}
}
