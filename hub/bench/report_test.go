package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
)

// fixedReport is a report with known figures: every cell of its Markdown is checked.
func fixedReport() *Report {
	nan := math.NaN()
	return &Report{
		Config:   ReportConfig{Runs: 3, Duration: "1s", Rate: 100, LatencySize: 1024, Window: 256, Batch: 64, Limit: 256},
		Backends: []BackendInfo{{Name: "mem", Description: "in memory | volatile\nno disk", Capabilities: "memory: max_message_size=1"}},
		Rows: []Row{
			{Backend: "mem", Workload: Push, Size: 64,
				Hub:   summarize([]Sample{{MsgsPerSec: 1000, MBPerSec: 0.064}, {MsgsPerSec: 3000, MBPerSec: 0.192}, {MsgsPerSec: 2000, MBPerSec: 0.128}}),
				Raw:   summarize([]Sample{{Error: "boom"}, {MsgsPerSec: 500, MBPerSec: 0.032}, {MsgsPerSec: 500, MBPerSec: 0.032}}),
				Ratio: Stat{4, 2, 6}, NativeRatio: Stat{nan, nan, nan}},
			{Backend: "nat", Workload: Pull, Size: 1024,
				Hub:    summarize([]Sample{{MsgsPerSec: 40, MBPerSec: 0.04}}),
				Raw:    summarize([]Sample{{MsgsPerSec: 20, MBPerSec: 0.02}}),
				Native: summarize([]Sample{{MsgsPerSec: 80, MBPerSec: 0.08}}),
				Ratio:  Stat{2, 2, 2}, NativeRatio: Stat{0.5, 0.5, 0.5}},
			{Backend: "mem", Workload: PushLatency, Size: 1024,
				Hub:   summarize([]Sample{{P50: 1.1, P99: 5, P999: 9}, {P50: 1.4, P99: 7, P999: 2000}, {P50: 1.2, P99: 6, P999: 10}}),
				Raw:   summarize([]Sample{{Error: "down"}}),
				Ratio: Stat{nan, nan, nan}, NativeRatio: Stat{nan, nan, nan}},
			{Backend: "mem", Workload: E2EEncrypted, Size: 64,
				Plain:     summarize([]Sample{{MsgsPerSec: 100, MBPerSec: 0.0064}}),
				Encrypted: summarize([]Sample{{MsgsPerSec: 50, MBPerSec: 0.0032}}),
				Ratio:     Stat{0.5, 0.25, 0.75}, NativeRatio: Stat{nan, nan, nan}},
		},
	}
}

func TestWriteMarkdownFigures(t *testing.T) {
	var b bytes.Buffer
	if err := fixedReport().WriteMarkdown(&b, nil); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| mem | in memory \\| volatile no disk | memory: max_message_size=1 |\n",
		"| Backend | Size | Hub msgs/s | Raw msgs/s | Hub MB/s | Raw MB/s | Hub/raw |\n",
		"| mem | 64 B | 2k (1k–3k) | 500 | 0.13 (0.064–0.19) | 0.032 | 4× (2–6) |\n",
		"- mem 64 B raw: 1 of 3 runs failed: boom\n",
		"| Backend | Size | Hub msgs/s | Raw msgs/s | Native msgs/s | Hub MB/s | Raw MB/s | Native MB/s | Hub/raw | Hub/native |\n",
		"| nat | 1 KiB | 40 | 20 | 80 | 0.04 | 0.02 | 0.08 | 2× | 0.5× |\n",
		"| Backend | Size | Hub p50 | Hub p99 | Hub p99.9 | Raw p50 | Raw p99 | Raw p99.9 | Hub/raw p50 |\n",
		"| mem | 1 KiB | 1.2 ms (1.1–1.4) | 6 ms (5–7) | 10 ms (9 ms–2 s) | error | error | error | – |\n",
		"- mem 1 KiB raw: 1 of 1 runs failed: down\n",
		"| Backend | Size | Plain msgs/s | Encrypted msgs/s | Plain MB/s | Encrypted MB/s | Encrypted/plain |\n",
		"| mem | 64 B | 100 | 50 | 0.006 | 0.003 | 0.5× (0.25–0.75) |\n",
		"raw: 4 goroutines calling `Storage.Append` with 64 messages",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "runs failed"); n != 2 {
		t.Errorf("%d notes of failed runs, want 2:\n%s", n, md)
	}
}

// TestWriteMarkdownZeroBatch: a report whose configuration holds batch 0 (one read back from
// JSON that Run did not write) is still written, not a division by zero.
func TestWriteMarkdownZeroBatch(t *testing.T) {
	r := fixedReport()
	r.Config.Batch = 0
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b, nil); err != nil {
		t.Fatal(err)
	}
	if want := "raw: 256 goroutines calling `Storage.Append` with 0 messages"; !strings.Contains(b.String(), want) {
		t.Errorf("Markdown lacks %q:\n%s", want, b.String())
	}
}

// TestWriteMarkdownDuplicates: duplicate deliveries of the e2e-latency workload are listed
// below its table, and kept in the JSON.
func TestWriteMarkdownDuplicates(t *testing.T) {
	nan := math.NaN()
	r := &Report{Config: ReportConfig{Runs: 2, Duration: "1s", Rate: 100, LatencySize: 1024, Window: 256, Batch: 64, Limit: 256},
		Rows: []Row{{Backend: "mem", Workload: E2ELatency, Size: 1024,
			Hub:   summarize([]Sample{{Messages: 100, P50: 1, P99: 2, P999: 3, Duplicates: 2}, {Messages: 100, P50: 1, P99: 2, P999: 3, Duplicates: 1}}),
			Raw:   summarize([]Sample{{Messages: 100, P50: 1, P99: 2, P999: 3}, {Messages: 100, P50: 1, P99: 2, P999: 3}}),
			Ratio: Stat{1, 1, 1}, NativeRatio: Stat{nan, nan, nan}}},
	}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b, nil); err != nil {
		t.Fatal(err)
	}
	if want := "- mem 1 KiB hub: 3 duplicate deliveries in 2 runs"; !strings.Contains(b.String(), want) {
		t.Errorf("Markdown lacks %q:\n%s", want, b.String())
	}
	if n := strings.Count(b.String(), "duplicate deliveries"); n != 1 {
		t.Errorf("%d notes of duplicates, want 1 (raw had none):\n%s", n, b.String())
	}
	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"duplicates": 3`) || !strings.Contains(b.String(), `"duplicates": 2`) {
		t.Errorf("JSON lacks the duplicates of the summary and of the runs:\n%s", b.String())
	}
}

// TestWriteMarkdownDuplicatesThroughput: duplicates of the plain path of e2e-encrypted are
// listed too, worded for a rate (each message counted once), not for a latency.
func TestWriteMarkdownDuplicatesThroughput(t *testing.T) {
	nan := math.NaN()
	r := &Report{Config: ReportConfig{Runs: 1, Duration: "1s", Rate: 100, LatencySize: 1024, Window: 256, Batch: 64, Limit: 256},
		Rows: []Row{{Backend: "mem", Workload: E2EEncrypted, Size: 64,
			Plain:     summarize([]Sample{{Messages: 100, Seconds: 1, MsgsPerSec: 100, Duplicates: 4}}),
			Encrypted: summarize([]Sample{{Messages: 80, Seconds: 1, MsgsPerSec: 80}}),
			Ratio:     Stat{0.8, 0.8, 0.8}, NativeRatio: Stat{nan, nan, nan}}},
	}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b, nil); err != nil {
		t.Fatal(err)
	}
	if want := "- mem 64 B plain: 4 duplicate deliveries in 1 runs (at-least-once resends; each message is counted once)"; !strings.Contains(b.String(), want) {
		t.Errorf("Markdown lacks %q:\n%s", want, b.String())
	}
	if s := (Sample{Messages: 100, Seconds: 1, MsgsPerSec: 100, MBPerSec: 0.0064, Duplicates: 4}).String(); !strings.Contains(s, "100 msgs (and 4 duplicates) in 1.00s") {
		t.Errorf("progress line %q does not give the duplicates", s)
	}
}

func TestCells(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct{ got, want string }{
		{statCell(nil, msgs, FormatCount), "–"},
		{statCell(summarize([]Sample{{MsgsPerSec: 7}, {MsgsPerSec: 7}}), msgs, FormatCount), "7"},
		{statCell(summarize([]Sample{{Error: "x"}, {Error: "y"}}), msgs, FormatCount), "error"},
		{statCell(summarize([]Sample{{P50: 900}, {P50: 1100}, {P50: 1000}}), p50, FormatMillis), "1 s (900 ms–1.1 s)"},
		{statCell(summarize([]Sample{{P50: 1200}, {P50: 1100}, {P50: 1500}}), p50, FormatMillis), "1.2 s (1.1–1.5)"},
		{ratioCell(Stat{0.84, 0.78, 0.98}), "0.84× (0.78–0.98)"},
		{ratioCell(Stat{2, 2, 2}), "2×"},
		{ratioCell(Stat{nan, nan, nan}), "–"},
		{ratioCell(Stat{math.Inf(1), 1, math.Inf(1)}), "–"},
		{FormatRatio(math.Inf(1)), "–"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestFormatBoundaries(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{FormatSize(1536), "1536 B"},
		{FormatSize(1 << 20), "1 MiB"},
		{FormatSize(3 << 20), "3 MiB"},
		{FormatSize(1<<20 + 1024), "1025 KiB"},
		{FormatCount(999), "999"},
		{FormatCount(1000), "1k"},
		{FormatCount(1e6), "1M"},
		{FormatCount(12.34), "12.3"},
		{FormatCount(1.234), "1.23"},
		{FormatCount(0.0423), "0.042"},
		{FormatMillis(999), "999 ms"},
		{FormatMillis(1000), "1 s"},
		{FormatMillis(100), "100 ms"},
		{FormatCount(999_999), "1M"}, // rounded before the unit is picked
		{FormatCount(999.7), "1k"},
		{FormatMillis(999.7), "1 s"},
		{FormatMillis(0.99996), "1 ms"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestReportJSONFigures(t *testing.T) {
	rep := fixedReport()
	rep.Rows[0].Ratio.Max = math.Inf(1) // unknown: null, not a failed encoding
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Rows []struct {
			Ratio             *float64
			RatioSpread       map[string]*float64 `json:"ratio_spread"`
			NativeRatio       *float64            `json:"native_ratio"`
			NativeRatioSpread map[string]*float64 `json:"native_ratio_spread"`
			Hub               struct {
				MsgsPerSec map[string]*float64 `json:"msgs_per_sec"`
			}
		}
	}
	if err := json.Unmarshal(b.Bytes(), &decoded); err != nil {
		t.Fatalf("%v:\n%s", err, b.String())
	}
	r := decoded.Rows[0]
	if m := r.Hub.MsgsPerSec; m["median"] == nil || *m["median"] != 2000 || m["min"] == nil || *m["min"] != 1000 || m["max"] == nil || *m["max"] != 3000 {
		t.Errorf("hub msgs/s %s, want median 2000, min 1000, max 3000", b.String())
	}
	if r.Ratio == nil || *r.Ratio != 4 || r.RatioSpread["min"] == nil || *r.RatioSpread["min"] != 2 || r.RatioSpread["max"] != nil {
		t.Errorf("row 0 ratio %v spread %v, want 4, min 2, max null", r.Ratio, r.RatioSpread)
	}
	if r.NativeRatio != nil || r.NativeRatioSpread != nil {
		t.Errorf("row 0 has a native ratio: %v %v", r.NativeRatio, r.NativeRatioSpread)
	}
	if r := decoded.Rows[1]; r.NativeRatio == nil || *r.NativeRatio != 0.5 || r.NativeRatioSpread["max"] == nil || *r.NativeRatioSpread["max"] != 0.5 {
		t.Errorf("row 1 native ratio %v spread %v, want 0.5", r.NativeRatio, r.NativeRatioSpread)
	}
}

func TestChartsFigures(t *testing.T) {
	charts := fixedReport().Charts()
	push := charts[Push]
	if len(push.Groups) != 1 || push.Groups[0] != "mem\n64 B" {
		t.Fatalf("push groups %q", push.Groups)
	}
	if v, lo, hi := push.Values[0][0], push.Low[0][0], push.High[0][0]; v != 2000 || lo != 1000 || hi != 3000 {
		t.Errorf("push hub bar %v (%v–%v), want 2000 (1000–3000)", v, lo, hi)
	}
	if v := push.Values[0][1]; v != 500 {
		t.Errorf("push raw bar %v, want 500", v)
	}
	lat := charts[PushLatency]
	if len(lat.Groups) != 3 || lat.Groups[1] != "mem\np99" {
		t.Fatalf("latency groups %q", lat.Groups)
	}
	for g, want := range []Stat{{1.2, 1.1, 1.4}, {6, 5, 7}, {10, 9, 2000}} {
		if got := (Stat{lat.Values[g][0], lat.Low[g][0], lat.High[g][0]}); got != want {
			t.Errorf("latency group %q hub bar %+v, want %+v", lat.Groups[g], got, want)
		}
	}
	if nat := charts[Pull]; len(nat.Series) != 3 || nat.Values[0][2] != 80 {
		t.Errorf("pull chart series %q values %v, want the native bar at 80", nat.Series, nat.Values)
	}
}

func TestSampleFigures(t *testing.T) {
	if s := throughput(3000, 1000, 2*time.Second); s.Messages != 3000 || s.Seconds != 2 || s.MsgsPerSec != 1500 || s.MBPerSec != 1.5 {
		t.Errorf("throughput = %+v, want 1500 msgs/s, 1.5 MB/s (MB = 10⁶ bytes)", s)
	}
	if s := throughput(3, 1000, 0); s.MsgsPerSec != 0 || s.MBPerSec != 0 {
		t.Errorf("throughput in no time = %+v, want no rates", s)
	}
	l := NewLatencies()
	for i := 1; i <= 1000; i++ {
		l.Record(time.Duration(i) * time.Millisecond)
	}
	s := latencySample(l, 4*time.Second)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, 500}, {"p99", s.P99, 990}, {"p99.9", s.P999, 999}, {"msgs/s", s.MsgsPerSec, 250}} {
		if math.Abs(c.got-c.want)/c.want > 0.002 {
			t.Errorf("%s = %v, want %v (±0.2%%)", c.name, c.got, c.want)
		}
	}
	if s.Messages != 1000 {
		t.Errorf("latency sample of %d messages, want 1000", s.Messages)
	}
}

func TestFirstErrorAndPairedRatioLengths(t *testing.T) {
	s := summarize([]Sample{{MsgsPerSec: 1}, {Error: "first"}, {Error: "second"}})
	if s.Errors != 2 || s.FirstError() != "first" {
		t.Errorf("errors %d, first %q; want 2, \"first\"", s.Errors, s.FirstError())
	}
	rate := func(s Sample) float64 { return s.MsgsPerSec }
	// Runs missing on one side (an interrupted run) are left out, whichever side.
	a := []Sample{{MsgsPerSec: 2}, {MsgsPerSec: 4}, {MsgsPerSec: 6}}
	b := []Sample{{MsgsPerSec: 1}, {MsgsPerSec: 2}}
	if got, want := PairedRatio(a, b, rate), (Stat{2, 2, 2}); got != want {
		t.Errorf("PairedRatio(longer, shorter) = %+v, want %+v", got, want)
	}
	if got, want := PairedRatio(b, a, rate), (Stat{0.5, 0.5, 0.5}); got != want {
		t.Errorf("PairedRatio(shorter, longer) = %+v, want %+v", got, want)
	}
}

func TestConfigChecks(t *testing.T) {
	// Without a batch, the default batch is at most the window.
	if c := (Config{Window: 10}).withDefaults(); c.Batch != 10 || c.Window != 10 {
		t.Errorf("batch %d window %d: the default batch is at most the window", c.Batch, c.Window)
	}
	// A batch above the window is refused, not silently reduced to it.
	if err := (Config{Window: 10, Batch: 64}).Validate(); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "batch 64 is above window 10") {
		t.Errorf("Validate(window 10, batch 64) = %v, want ErrInvalidOption naming both", err)
	}
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Sizes: []int{8}, LatencySize: 8}, true},
		{Config{Sizes: []int{7}}, false},
		{Config{Sizes: []int{hub.MaxFrameMessageSize}}, true},
		{Config{Sizes: []int{hub.MaxFrameMessageSize + 1}}, false},
		{Config{LatencySize: 7}, false},
		{Config{LatencySize: hub.MaxFrameMessageSize + 1}, false},
		{Config{Workloads: []string{E2EEncrypted, Push}}, true},
		{Config{Window: 10, Batch: 10}, true},
		{Config{Window: 10, Batch: 11}, false},
		{Config{Batch: DefaultWindow + 1}, false},
	} {
		if err := tc.cfg.withDefaults().validate(); tc.ok != (err == nil) {
			t.Errorf("validate(%+v) = %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct{ x, want float64 }{{1, 1}, {1.5, 2}, {2.2, 2.5}, {2.5, 2.5}, {4, 5}, {7, 10}, {0.03, 0.05}} {
		if got := niceCeil(tc.x); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("niceCeil(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
	// One value on a log scale: a decade around it, not an empty range.
	if sc := (BarChart{Values: [][]float64{{100}}, LogScale: true}).scale(); sc.lo != 100 || sc.hi != 1000 {
		t.Errorf("log scale of one value: %+v, want 100 to 1000", sc)
	}
	// No positive value on a linear scale: 0 to 1.
	if sc := (BarChart{Values: [][]float64{{0, -3}}}).scale(); sc.lo != 0 || sc.hi != 1 {
		t.Errorf("linear scale without a positive value: %+v, want 0 to 1", sc)
	}
	sc := yScale{log: true, lo: 1, hi: 1000}
	if sc.drawable(0) || sc.drawable(-1) || !sc.drawable(0.5) {
		t.Error("on a log scale only positive values are drawable")
	}
	if got := len(sc.ticks()); got != 4 {
		t.Errorf("ticks of 1 to 1000: %v, want 1, 10, 100, 1000", sc.ticks())
	}
}

// TestLatenciesSubMicrosecond checks that a latency below the histogram's 1 µs counts as
// 1 µs: a recorder that is not empty never reports 0, which means empty.
func TestLatenciesSubMicrosecond(t *testing.T) {
	l := NewLatencies()
	l.Record(300 * time.Nanosecond)
	if got := l.Percentile(50); got != time.Microsecond {
		t.Errorf("p50 of one latency of 300 ns = %v, want 1µs", got)
	}
}
