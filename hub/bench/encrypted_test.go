package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/bench"
	"github.com/sluicehq/sluice/hub/bench/native"
)

func TestRunEncrypted(t *testing.T) {
	prog := &countingProgress{}
	cfg := bench.Config{
		Sizes:     []int{64, 1024},
		Runs:      2,
		Duration:  20 * time.Millisecond,
		Workloads: []string{bench.E2EEncrypted},
		Progress:  prog,
	}
	rep, err := bench.Run(t.Context(), cfg, bench.URLTarget("memory://"))
	if err != nil {
		t.Fatal(err)
	}
	// 2 sizes x 2 runs x 2 paths (plain, encrypted).
	if prog.total != 8 || prog.added != 8 || !prog.finished {
		t.Errorf("progress total %d added %d finished %v; want 8, 8, true", prog.total, prog.added, prog.finished)
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("%d rows, want 2: %+v", len(rep.Rows), rep.Rows)
	}
	for i, r := range rep.Rows {
		if r.Workload != bench.E2EEncrypted || r.Size != cfg.Sizes[i] {
			t.Errorf("row %d is %s %d", i, r.Workload, r.Size)
		}
		if r.Hub != nil || r.Raw != nil || r.Native != nil {
			t.Errorf("%d: hub/raw/native paths measured: %+v", r.Size, r)
		}
		for path, s := range map[string]*bench.Summary{bench.PathPlain: r.Plain, bench.PathEncrypted: r.Encrypted} {
			if s == nil {
				t.Errorf("%d %s: not measured", r.Size, path)
				continue
			}
			if s.Errors > 0 {
				t.Errorf("%d %s: %s", r.Size, path, s.FirstError())
				continue
			}
			if len(s.Runs) != 2 {
				t.Errorf("%d %s: %d runs, want 2", r.Size, path, len(s.Runs))
			}
			for _, run := range s.Runs {
				if run.Messages <= 0 || !(run.MsgsPerSec > 0) || !(run.MBPerSec > 0) {
					t.Errorf("%d %s: run %+v", r.Size, path, run)
				}
			}
		}
		if want := bench.PairedRatio(r.Encrypted.Runs, r.Plain.Runs, func(s bench.Sample) float64 { return s.MsgsPerSec }); !(r.Ratio.Median > 0) || r.Ratio != want {
			t.Errorf("%d: ratio %v, want encrypted/plain %v", r.Size, r.Ratio, want)
		}
	}

	dir := t.TempDir()
	paths, err := rep.WriteFiles(bench.Files{
		Markdown: filepath.Join(dir, "bench.md"), JSON: filepath.Join(dir, "bench.json"), ChartDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(paths, filepath.Join(dir, "bench-e2e-encrypted.svg")) {
		t.Errorf("wrote %q, want the chart bench-e2e-encrypted.svg", paths)
	}
	md, err := os.ReadFile(filepath.Join(dir, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## End-to-end encryption throughput", "bench-e2e-encrypted.svg",
		"| Backend | Size | Plain msgs/s | Encrypted msgs/s | Plain MB/s | Encrypted MB/s | Encrypted/plain |",
		"| memory | 64 B |", "| memory | 1 KiB |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), "Hub msgs/s") {
		t.Errorf("Markdown has hub/raw columns for e2e-encrypted:\n%s", md)
	}
	var decoded struct {
		Rows []struct {
			Ratio *float64
			Hub   *json.RawMessage
			Plain struct {
				MsgsPerSec struct{ Median *float64 } `json:"msgs_per_sec"`
			}
			Encrypted struct {
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
	for _, r := range decoded.Rows {
		if r.Ratio == nil || r.Hub != nil || r.Plain.MsgsPerSec.Median == nil || r.Encrypted.MsgsPerSec.Median == nil {
			t.Errorf("JSON rows: %s", data)
			break
		}
	}
	c := rep.Charts()[bench.E2EEncrypted]
	if !slices.Equal(c.Series, []string{"plain through the hub", "encrypted through the hub"}) ||
		len(c.Groups) != 2 || len(c.Values[0]) != 2 {
		t.Errorf("chart series %q groups %q values %v", c.Series, c.Groups, c.Values)
	}
}

// TestRunEncryptedWithNative checks that a native client adds its path to the storage
// workloads only: e2e-encrypted runs through the hub alone.
func TestRunEncryptedWithNative(t *testing.T) {
	dir := t.TempDir()
	target := bench.URLTarget("memory://")
	target.Native = func(context.Context) (core.Storage, error) {
		return native.OpenBolt(filepath.Join(dir, "native.db"))
	}
	prog := &countingProgress{}
	cfg := bench.Config{Sizes: []int{64}, Runs: 1, Duration: 10 * time.Millisecond, Progress: prog,
		Workloads: []string{bench.E2EEncrypted, bench.Push}}
	rep, err := bench.Run(t.Context(), cfg, target)
	if err != nil {
		t.Fatal(err)
	}
	if prog.total != 5 { // push: hub, raw, native; e2e-encrypted: plain, encrypted
		t.Errorf("progress total %d, want 5", prog.total)
	}
	if len(rep.Rows) != 2 || rep.Rows[0].Workload != bench.Push || rep.Rows[1].Workload != bench.E2EEncrypted {
		t.Fatalf("rows = %+v", rep.Rows)
	}
	if rep.Rows[0].Native == nil || rep.Rows[1].Native != nil || rep.Rows[1].Encrypted == nil {
		t.Errorf("paths: push native %v, e2e-encrypted native %v encrypted %v",
			rep.Rows[0].Native, rep.Rows[1].Native, rep.Rows[1].Encrypted)
	}
	if s := rep.Rows[1].Encrypted; s != nil && s.Errors > 0 {
		t.Errorf("encrypted: %s", s.FirstError())
	}
}

func TestEncryptedNotByDefault(t *testing.T) {
	if slices.Contains(bench.Workloads, bench.E2EEncrypted) || !slices.Contains(bench.ExtraWorkloads, bench.E2EEncrypted) {
		t.Errorf("Workloads %q, ExtraWorkloads %q", bench.Workloads, bench.ExtraWorkloads)
	}
}
