package bench

import (
	"math"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{nan, 7, 1, nan, 4}, 4},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if !(in[i] == tc.in[i] || math.IsNaN(in[i]) && math.IsNaN(tc.in[i])) {
				t.Errorf("Median modified its input: %v, was %v", tc.in, in)
			}
		}
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("Median(nil) = %v, want NaN", got)
	}
	if got := Median([]float64{nan}); !math.IsNaN(got) {
		t.Errorf("Median([NaN]) = %v, want NaN", got)
	}
}

func TestMinMaxRatio(t *testing.T) {
	lo, hi := MinMax([]float64{3, math.NaN(), -1, 8})
	if lo != -1 || hi != 8 {
		t.Errorf("MinMax = %v, %v; want -1, 8", lo, hi)
	}
	if lo, hi := MinMax(nil); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Errorf("MinMax(nil) = %v, %v; want NaN, NaN", lo, hi)
	}
	if r := Ratio(1, 4); r != 0.25 {
		t.Errorf("Ratio(1, 4) = %v", r)
	}
	for _, r := range []float64{Ratio(1, 0), Ratio(math.NaN(), 1), Ratio(1, math.NaN())} {
		if !math.IsNaN(r) {
			t.Errorf("Ratio of an unknown = %v, want NaN", r)
		}
	}
}

func TestPairedRatio(t *testing.T) {
	rate := func(s Sample) float64 { return s.MsgsPerSec }
	// Run 1 is fast for both paths, run 3 slow for both: b is twice as fast in every run,
	// but the ratio of the medians (4/4) would call them equal.
	a := []Sample{{MsgsPerSec: 10}, {MsgsPerSec: 4}, {MsgsPerSec: 1}, {Error: "x"}, {MsgsPerSec: 7}}
	b := []Sample{{MsgsPerSec: 20}, {MsgsPerSec: 8}, {MsgsPerSec: 2}, {MsgsPerSec: 5}, {Error: "y"}, {MsgsPerSec: 1}}
	if got, want := PairedRatio(a, b, rate), (Stat{Median: 0.5, Min: 0.5, Max: 0.5}); got != want {
		t.Errorf("PairedRatio = %+v, want %+v (runs with an error skipped)", got, want)
	}
	a[1].MsgsPerSec, a[2].MsgsPerSec = 6, 3
	if got, want := PairedRatio(a, b, rate), (Stat{Median: 0.75, Min: 0.5, Max: 1.5}); got != want {
		t.Errorf("PairedRatio = %+v, want %+v", got, want)
	}
	if got := PairedRatio(a[3:], b[3:], rate); !math.IsNaN(got.Median) || !math.IsNaN(got.Min) || !math.IsNaN(got.Max) {
		t.Errorf("PairedRatio without a run both passed = %+v, want NaN", got)
	}
}

func TestLatencies(t *testing.T) {
	l := NewLatencies()
	if l.Percentile(50) != 0 {
		t.Errorf("empty p50 = %v, want 0", l.Percentile(50))
	}
	// 1..1000 ms: p50 = 500 ms, p99 = 990 ms, p99.9 = 999 ms, within HDR's 3 digits.
	for i := 1; i <= 1000; i++ {
		l.Record(time.Duration(i) * time.Millisecond)
	}
	l.Record(-time.Second)  // clamped to the lowest value
	l.Record(2 * time.Hour) // clamped to a minute
	if l.Count() != 1002 {
		t.Errorf("Count = %d, want 1002", l.Count())
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 500 * time.Millisecond}, {99, 990 * time.Millisecond}, {99.9, 999 * time.Millisecond}, {100, time.Minute}} {
		got := l.Percentile(tc.p)
		if diff := math.Abs(float64(got-tc.want)) / float64(tc.want); diff > 0.002 {
			t.Errorf("p%v = %v, want %v (±0.2%%)", tc.p, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]Sample{
		{MsgsPerSec: 100, P50: 2},
		{Error: "boom"},
		{MsgsPerSec: 300, P50: 1},
		{MsgsPerSec: 200, P50: 3},
	})
	if s.Errors != 1 || s.FirstError() != "boom" {
		t.Errorf("errors = %d %q", s.Errors, s.FirstError())
	}
	if s.MsgsPerSec != (Stat{200, 100, 300}) || s.P50 != (Stat{2, 1, 3}) {
		t.Errorf("msgs/s %+v p50 %+v", s.MsgsPerSec, s.P50)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{FormatCount(1), "1"},
		{FormatCount(12345), "12.3k"},
		{FormatCount(2_500_000), "2.5M"},
		{FormatCount(math.NaN()), "–"},
		{FormatMillis(0.4234), "0.42 ms"},
		{FormatMillis(1500), "1.5 s"},
		{FormatSize(64), "64 B"},
		{FormatSize(1024), "1 KiB"},
		{FormatSize(16384), "16 KiB"},
		{FormatSize(1000), "1000 B"},
		{FormatRatio(0.4249), "0.42×"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
