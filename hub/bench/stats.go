package bench

import (
	"math"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Median returns the median of xs (the mean of the two middle values for an even count),
// ignoring NaNs; NaN when there is none. xs is not modified.
func Median(xs []float64) float64 {
	s := finite(xs)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MinMax returns the smallest and largest of xs, ignoring NaNs; NaN, NaN when there is none.
func MinMax(xs []float64) (lo, hi float64) {
	s := finite(xs)
	if len(s) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(s), slices.Max(s)
}

func finite(xs []float64) []float64 {
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	return s
}

// Ratio returns a/b, or NaN when either is NaN or b is 0.
func Ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}

// PairedRatio compares two paths measured side by side: for each run in which both
// succeeded (the i-th samples of a and b come from the same run) it takes f(a)/f(b), and it
// returns the median and the spread of those ratios. A load that changes from run to run
// then moves both sides of each ratio alike, where the ratio of the two medians could pair
// one path's fast run with the other's slow one. Unknown (NaN) without such a run.
func PairedRatio(a, b []Sample, f func(Sample) float64) Stat {
	var xs []float64
	for i := range min(len(a), len(b)) {
		if a[i].Error == "" && b[i].Error == "" {
			xs = append(xs, Ratio(f(a[i]), f(b[i])))
		}
	}
	lo, hi := MinMax(xs)
	return Stat{Median: Median(xs), Min: lo, Max: hi}
}

// Latencies records durations in an HDR histogram (1 µs to 1 minute, 3 significant
// digits); larger values are clamped to a minute. It is not safe for concurrent use.
type Latencies struct {
	h *hdrhistogram.Histogram
}

// NewLatencies returns an empty recorder.
func NewLatencies() *Latencies {
	return &Latencies{h: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)}
}

// Record adds one latency.
func (l *Latencies) Record(d time.Duration) {
	us := d.Microseconds()
	if us < 1 {
		us = 1
	}
	if max := l.h.HighestTrackableValue(); us > max {
		us = max
	}
	_ = l.h.RecordValue(us) // in range by construction
}

// Count returns how many latencies were recorded.
func (l *Latencies) Count() int64 { return l.h.TotalCount() }

// Percentile returns the latency at percentile p (0 < p <= 100), or 0 when empty.
func (l *Latencies) Percentile(p float64) time.Duration {
	if l.h.TotalCount() == 0 {
		return 0
	}
	return time.Duration(l.h.ValueAtQuantile(p)) * time.Microsecond
}
