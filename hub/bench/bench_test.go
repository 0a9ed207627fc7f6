package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/bench"
	"github.com/sluicehq/sluice/hub/bench/native"
)

// countingProgress checks the Progress calls.
type countingProgress struct {
	total, added, describes int
	finished                bool
}

func (p *countingProgress) Start(total int)     { p.total = total }
func (p *countingProgress) Describe(string)     { p.describes++ }
func (p *countingProgress) Add(n int, _ string) { p.added += n }
func (p *countingProgress) Finish()             { p.finished = true }

func TestRunMemory(t *testing.T) {
	prog := &countingProgress{}
	var log bytes.Buffer
	cfg := bench.Config{
		Sizes:    []int{64, 1024},
		Runs:     2,
		Duration: 50 * time.Millisecond,
		Rate:     400,
		Progress: prog,
		Log:      &log,
	}
	rep, err := bench.Run(t.Context(), cfg, bench.URLTarget("memory://"))
	if err != nil {
		t.Fatal(err)
	}
	// push and pull at 2 sizes, 2 latency workloads: 6 steps x 2 runs x 2 paths.
	if prog.total != 24 || prog.added != 24 || !prog.finished {
		t.Errorf("progress total %d added %d finished %v; want 24, 24, true", prog.total, prog.added, prog.finished)
	}
	if len(rep.Backends) != 1 || rep.Backends[0].Name != "memory" || rep.Backends[0].Error != "" {
		t.Fatalf("backends = %+v", rep.Backends)
	}
	if len(rep.Rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		for path, s := range map[string]*bench.Summary{"hub": r.Hub, "raw": r.Raw} {
			if s.Errors > 0 {
				t.Errorf("%s %d %s: %s", r.Workload, r.Size, path, s.FirstError())
				continue
			}
			if len(s.Runs) != 2 {
				t.Errorf("%s %d %s: %d runs, want 2", r.Workload, r.Size, path, len(s.Runs))
			}
			if bench.IsLatency(r.Workload) {
				if r.Size != bench.DefaultLatencySize {
					t.Errorf("%s %s: size %d, want the latency size %d", r.Workload, path, r.Size, bench.DefaultLatencySize)
				}
				if !(s.P50.Median > 0 && s.P50.Median <= s.P99.Median && s.P99.Median <= s.P999.Median) {
					t.Errorf("%s %s percentiles p50 %v p99 %v p99.9 %v", r.Workload, path, s.P50, s.P99, s.P999)
				}
				if s.P50.Min > s.P50.Median || s.P50.Median > s.P50.Max {
					t.Errorf("%s %s p50 spread %+v", r.Workload, path, s.P50)
				}
				for _, run := range s.Runs {
					if run.Messages != 20 { // 400/s for 50ms
						t.Errorf("%s %s measured %d messages, want 20", r.Workload, path, run.Messages)
					}
				}
			} else if s.MsgsPerSec.Median <= 0 || s.MBPerSec.Median <= 0 {
				t.Errorf("%s %d %s throughput %+v", r.Workload, r.Size, path, s.MsgsPerSec)
			}
		}
		if want := bench.PairedRatio(r.Hub.Runs, r.Raw.Runs, ratioKey(r.Workload)); !(r.Ratio.Median > 0) || r.Ratio != want {
			t.Errorf("%s %d ratio %v, want hub/raw %v", r.Workload, r.Size, r.Ratio, want)
		}
	}
	// The paths alternate, each run in the opposite order of the one before.
	lines := log.String()
	order := func(run int) (hub, raw int) {
		return strings.Index(lines, fmt.Sprintf("memory push 64 B hub run %d/2:", run)),
			strings.Index(lines, fmt.Sprintf("memory push 64 B raw run %d/2:", run))
	}
	if hub, raw := order(1); hub < 0 || raw < 0 || hub > raw {
		t.Errorf("run 1: want hub, then raw:\n%s", lines)
	}
	if hub, raw := order(2); hub < 0 || raw < 0 || raw > hub {
		t.Errorf("run 2: want raw, then hub:\n%s", lines)
	}

	dir := t.TempDir()
	paths, err := rep.WriteFiles(bench.Files{
		Markdown: filepath.Join(dir, "bench.md"), JSON: filepath.Join(dir, "bench.json"),
		ChartDir: filepath.Join(dir, "charts"), Heading: "Benchmarks",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 6 { // 4 charts, Markdown, JSON
		t.Errorf("wrote %q", paths)
	}
	md, err := os.ReadFile(filepath.Join(dir, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Benchmarks", "## Push throughput", "## Pull throughput", "## Push-confirm latency",
		"## Publish-to-consume latency", "![Push throughput](charts/bench-push.svg)",
		"| memory | 64 B |", "| memory | 1 KiB |", "×",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	var decoded struct {
		Rows []struct {
			Workload string
			Ratio    *float64
			Hub      struct {
				MsgsPerSec struct{ Median *float64 } `json:"msgs_per_sec"`
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if len(decoded.Rows) != 6 || decoded.Rows[0].Ratio == nil || decoded.Rows[0].Hub.MsgsPerSec.Median == nil {
		t.Errorf("JSON rows: %s", data)
	}
}

// ratioKey is the figure a workload's ratios compare: msgs/s, or the p50 of a latency.
func ratioKey(workload string) func(bench.Sample) float64 {
	if bench.IsLatency(workload) {
		return func(s bench.Sample) float64 { return s.P50 }
	}
	return func(s bench.Sample) float64 { return s.MsgsPerSec }
}

// TestRunSameName checks that two targets of the same name get distinct names in the report.
func TestRunSameName(t *testing.T) {
	cfg := bench.Config{Sizes: []int{64}, Runs: 1, Duration: 10 * time.Millisecond, Workloads: []string{bench.Push}}
	rep, err := bench.Run(t.Context(), cfg, bench.URLTarget("memory://"), bench.URLTarget("memory://"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 2 || rep.Backends[0].Name != "memory" || rep.Backends[1].Name != "memory#2" {
		t.Fatalf("backends = %+v, want memory and memory#2", rep.Backends)
	}
	if len(rep.Rows) != 2 || rep.Rows[0].Backend != "memory" || rep.Rows[1].Backend != "memory#2" {
		t.Fatalf("rows = %+v, want one of memory and one of memory#2", rep.Rows)
	}
}

func TestRunUnopenableTarget(t *testing.T) {
	prog := &countingProgress{}
	rep, err := bench.Run(t.Context(), bench.Config{Runs: 2, Duration: time.Millisecond, Workloads: []string{bench.Push}, Progress: prog},
		bench.URLTarget("nosuch://x"))
	if err != nil {
		t.Fatal(err)
	}
	// The measurements of every run count as done.
	if prog.total != 2*2*len(bench.DefaultSizes) || prog.added != prog.total {
		t.Errorf("progress total %d added %d; want %d, all of them", prog.total, prog.added, 2*2*len(bench.DefaultSizes))
	}
	if len(rep.Backends) != 1 || !strings.Contains(rep.Backends[0].Error, "unknown backend") || len(rep.Rows) != 0 {
		t.Errorf("report = %+v", rep)
	}
	// The report still renders, saying why.
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b, nil); err != nil || !strings.Contains(b.String(), "not measured") {
		t.Errorf("Markdown (%v):\n%s", err, b.String())
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []bench.Config{
		{Sizes: []int{4}},
		{Sizes: []int{1 << 20}},
		{Workloads: []string{"fly"}},
	} {
		if _, err := bench.Run(context.Background(), cfg, bench.URLTarget("memory://")); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Run(%+v) = %v, want ErrInvalidOption", cfg, err)
		}
	}
	// A window or rate beyond what a publisher keeps in flight: Run would start a goroutine
	// per Window/Batch, or a publisher that cannot be made.
	for _, cfg := range []bench.Config{
		{Window: client.MaxWindow + 1},
		{Window: 1 << 62, Batch: 1},
		{Rate: client.MaxWindow + 1},
	} {
		if err := cfg.Validate(); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidOption", cfg, err)
		}
	}
	if err := (bench.Config{Window: client.MaxWindow, Rate: client.MaxWindow}).Validate(); err != nil {
		t.Errorf("Validate of the largest window and rate: %v", err)
	}
}

func TestRunNative(t *testing.T) {
	dir := t.TempDir()
	target := bench.URLTarget("memory://")
	target.NativeName = "bbolt used directly"
	target.Native = func(context.Context) (core.Storage, error) {
		return native.OpenBolt(filepath.Join(dir, "native.db"))
	}
	cfg := bench.Config{Sizes: []int{64}, Runs: 1, Duration: 30 * time.Millisecond, Rate: 500,
		Workloads: []string{bench.Push, bench.Pull, bench.E2ELatency}}
	rep, err := bench.Run(t.Context(), cfg, target)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 3 || rep.Backends[0].Native != "bbolt used directly" {
		t.Fatalf("report = %+v", rep)
	}
	for _, r := range rep.Rows {
		if r.Native == nil || r.Native.Errors > 0 || len(r.Native.Runs) != 1 || !(r.NativeRatio.Median > 0) {
			t.Errorf("%s: native %+v ratio %v", r.Workload, r.Native, r.NativeRatio)
		} else if want := bench.PairedRatio(r.Hub.Runs, r.Native.Runs, ratioKey(r.Workload)); r.NativeRatio != want {
			t.Errorf("%s: native ratio %v, want hub/native %v", r.Workload, r.NativeRatio, want)
		}
	}
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Native msgs/s", "Hub/native", "Native p99.9", "native path: bbolt used directly"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, b.String())
		}
	}
	if c := rep.Charts()[bench.Push]; len(c.Series) != 3 || len(c.Values[0]) != 3 {
		t.Errorf("push chart series %q values %v", c.Series, c.Values)
	}
}

// cancellingStorage interrupts the benchmark (as Ctrl-C does) at the nth Append after it
// was armed.
type cancellingStorage struct {
	core.Storage
	armed  *atomic.Bool
	n      *atomic.Int64
	cancel context.CancelFunc
}

func (s cancellingStorage) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	if s.armed.Load() && s.n.Add(-1) == 0 {
		s.cancel()
	}
	return s.Storage.Append(ctx, stream, partition, msgs)
}

// writerFunc is an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// An interrupted run is no error of the backend: the measurement cut short is left out, not
// reported as failed, the target not reached is listed as not run, and the report says it
// was interrupted.
func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var armed atomic.Bool
	var n atomic.Int64
	n.Store(20)
	interrupting := bench.Target{Open: func(ctx context.Context) (*core.Backend, error) {
		b, err := core.Open(ctx, "memory://")
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: cancellingStorage{b.Storage, &armed, &n, cancel}, Index: b.Index}, nil
	}}
	second := bench.URLTarget("memory://")
	second.Description = "second"
	var log bytes.Buffer
	cfg := bench.Config{Sizes: []int{64}, Runs: 2, Duration: time.Second, Rate: 100, Workloads: []string{bench.Push},
		// The first measurement is made; the second is cut short.
		Log: writerFunc(func(p []byte) (int, error) { armed.Store(true); return log.Write(p) })}
	rep, err := bench.Run(ctx, cfg, interrupting, second)
	if !errors.Is(err, context.Canceled) || rep == nil {
		t.Fatalf("Run: %v, report %v; want context.Canceled and a report", err, rep != nil)
	}
	if !rep.Interrupted || len(rep.Backends) != 2 {
		t.Fatalf("report interrupted %v with %d backends; want true, 2", rep.Interrupted, len(rep.Backends))
	}
	if b := rep.Backends[0]; !b.Interrupted || b.NotRun || b.Error != "" {
		t.Errorf("backend 1 = %+v; want interrupted", b)
	}
	if b := rep.Backends[1]; !b.NotRun || b.Description != "second" || b.Error != "" {
		t.Errorf("backend 2 = %+v; want not run", b)
	}
	if len(rep.Rows) != 1 {
		t.Fatalf("%d rows, want 1 (push 64 B)\n%s", len(rep.Rows), log.String())
	}
	r := rep.Rows[0]
	if runs := len(r.Hub.Runs) + len(r.Raw.Runs); runs != 1 || r.Hub.Errors+r.Raw.Errors > 0 {
		t.Errorf("hub %+v, raw %+v; want the one measurement made, without errors\n%s", r.Hub, r.Raw, log.String())
	}
	if !strings.Contains(log.String(), "run 1/2: interrupted") {
		t.Errorf("log does not say the cut measurement was interrupted:\n%s", log.String())
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**Interrupted**", "interrupted: some measurements were not made", "second — not measured: interrupted", "| memory | 64 B |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}
	if strings.Contains(md.String(), "error") || strings.Contains(md.String(), "runs failed") {
		t.Errorf("Markdown reports an error:\n%s", md.String())
	}
}

// fetchCounter counts the Fetch calls from index 0 of each stream.
type fetchCounter struct {
	core.Storage
	mu    *sync.Mutex
	from0 map[string]int
}

func (s fetchCounter) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if from == 0 {
		s.mu.Lock()
		s.from0[stream]++
		s.mu.Unlock()
	}
	return s.Storage.Fetch(ctx, stream, partition, from, limit)
}

// The pull workload reads its stream once, untimed, before the paths take turns, also when
// the push workload wrote that stream: otherwise the path that reads first pays for cold
// caches alone.
func TestPullWarmsUpPushedStream(t *testing.T) {
	var mu sync.Mutex
	from0 := map[string]int{}
	target := bench.Target{Name: "memory", Open: func(ctx context.Context) (*core.Backend, error) {
		b, err := core.Open(ctx, "memory://")
		if err != nil {
			return nil, err
		}
		b.Storage = fetchCounter{b.Storage, &mu, from0}
		return b, nil
	}}
	cfg := bench.Config{Sizes: []int{64}, Runs: 1, Duration: 20 * time.Millisecond, Workloads: []string{bench.Push, bench.Pull}}
	if _, err := bench.Run(t.Context(), cfg, target); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	read := 0
	for stream, n := range from0 {
		if strings.Contains(stream, "push-hub-64") {
			read = n
		}
	}
	// The warm-up read, the raw path's and the hub path's.
	if read != 3 {
		t.Errorf("the pushed stream was read from index 0 %d times, want 3 (warm-up, raw, hub): %v", read, from0)
	}
}

// failingStorage fails every Append with its error.
type failingStorage struct {
	core.Storage
	err error
}

func (s failingStorage) Append(context.Context, string, int, [][]byte) ([]uint64, error) {
	return nil, s.err
}

// A backend whose appends fail makes the hub path wait for confirms that never come: the
// failed measurement says why, with the error the hub logged (the backend's), not only that
// it timed out.
func TestHubPathFailureSaysWhy(t *testing.T) {
	cause := errors.New("disk on fire")
	failing := bench.Target{Open: func(ctx context.Context) (*core.Backend, error) {
		b, err := core.Open(ctx, "memory://")
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: failingStorage{b.Storage, cause}, Index: b.Index}, nil
	}}
	cfg := bench.Config{Sizes: []int{64}, Runs: 1, Duration: 10 * time.Millisecond, Timeout: time.Second, Workloads: []string{bench.Push}}
	rep, err := bench.Run(t.Context(), cfg, failing)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rep.Rows))
	}
	hub := rep.Rows[0].Hub
	if hub == nil || hub.Errors != 1 || !strings.Contains(hub.FirstError(), cause.Error()) {
		t.Fatalf("hub path %+v; want one failed run whose error names the backend's %q", hub, cause)
	}
}
