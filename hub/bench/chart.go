package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strings"
)

// BarChart is a grouped bar chart rendered as standalone SVG by [BarChart.SVG]: one group of
// bars per entry of Groups (for example a backend and a message size), one bar per series in
// each group (for example hub and raw), with a legend, the value written above each bar and
// optional whiskers (for example the min–max spread of several runs).
type BarChart struct {
	Title    string
	Subtitle string
	// YLabel names the y axis with its unit, like "messages per second".
	YLabel string
	// XLabel, if not empty, is written under the group labels, like "backend, message size".
	XLabel string
	// Groups are the group labels under the x axis; "\n" splits a label into lines.
	Groups []string
	// Series are the legend entries, one bar per series in every group.
	Series []string
	// Values[g][s] is the height of series s in group g; NaN draws no bar ("n/a").
	Values [][]float64
	// Low and High, if set, are the whisker ends, indexed like Values (NaN: none).
	Low, High [][]float64
	// LogScale draws the y axis in powers of ten, for values spanning several orders of
	// magnitude; values <= 0 are then not drawn.
	LogScale bool
	// Format renders a value above its bar (default: FormatCount).
	Format func(float64) string
}

// Layout of a chart, in pixels.
const (
	chartLeft      = 86
	chartRight     = 24
	chartTop       = 124 // title, subtitle, legend and room for the value labels
	chartPlotH     = 300
	chartBottom    = 64
	chartBarW      = 24
	chartBarGap    = 3
	chartGroupGap  = 30
	chartMinWidth  = 640
	chartFontStack = "Helvetica, Arial, sans-serif"
)

// seriesColors are colour-blind safe (Okabe–Ito).
var seriesColors = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"}

// SVG renders the chart.
func (c BarChart) SVG() []byte {
	format := c.Format
	if format == nil {
		format = FormatCount
	}
	ns := max(1, len(c.Series))
	groupW := float64(ns*chartBarW + (ns-1)*chartBarGap + chartGroupGap)
	width := float64(chartLeft+chartRight) + groupW*float64(len(c.Groups))
	if width < chartMinWidth {
		groupW = (chartMinWidth - chartLeft - chartRight) / math.Max(1, float64(len(c.Groups)))
		width = chartMinWidth
	}
	height := float64(chartTop + chartPlotH + chartBottom)
	plotBottom := float64(chartTop + chartPlotH)
	sc := c.scale()

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="%s">`+"\n",
		width, height, width, height, chartFontStack)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="26" font-size="17" font-weight="bold" text-anchor="middle">%s</text>`+"\n", width/2, esc(c.Title))
	if c.Subtitle != "" {
		fmt.Fprintf(&b, `<text x="%.0f" y="46" font-size="12" fill="#444" text-anchor="middle">%s</text>`+"\n", width/2, esc(c.Subtitle))
	}
	// Legend, centred under the title.
	legendW := 0.0
	for _, s := range c.Series {
		legendW += 22 + 7*float64(len([]rune(s))) + 18
	}
	x := width/2 - legendW/2
	for i, s := range c.Series {
		fmt.Fprintf(&b, `<rect x="%.1f" y="58" width="14" height="14" fill="%s"/>`, x, seriesColors[i%len(seriesColors)])
		fmt.Fprintf(&b, `<text x="%.1f" y="70" font-size="13">%s</text>`+"\n", x+20, esc(s))
		x += 22 + 7*float64(len([]rune(s))) + 18
	}

	// Grid and y axis.
	for _, t := range sc.ticks() {
		y := sc.y(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`, chartLeft, y, width-chartRight, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", chartLeft-6, y+4, esc(format(t)))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%.0f" stroke="#333"/>`, chartLeft, chartTop, chartLeft, plotBottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#333"/>`+"\n", chartLeft, plotBottom, width-chartRight, plotBottom)
	yl := "" + c.YLabel
	if c.LogScale {
		yl += " (log scale)"
	}
	fmt.Fprintf(&b, `<text x="18" y="%.0f" font-size="12" text-anchor="middle" transform="rotate(-90 18 %.0f)">%s</text>`+"\n",
		float64(chartTop)+chartPlotH/2, float64(chartTop)+chartPlotH/2, esc(yl))

	// Bars.
	barsW := float64(ns*chartBarW + (ns-1)*chartBarGap)
	for g, label := range c.Groups {
		gx := float64(chartLeft) + groupW*float64(g) + (groupW-barsW)/2
		for s := range c.Series {
			v := at(c.Values, g, s)
			bx := gx + float64(s*(chartBarW+chartBarGap))
			cx := bx + chartBarW/2
			color := seriesColors[s%len(seriesColors)]
			if !sc.drawable(v) {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#888" text-anchor="middle">n/a</text>`+"\n", cx, plotBottom-4)
				continue
			}
			y := sc.y(v)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
				bx, y, chartBarW, plotBottom-y, color, esc(strings.ReplaceAll(label, "\n", " ")), esc(c.Series[s]), esc(format(v)))
			top := y
			lo, hi := at(c.Low, g, s), at(c.High, g, s)
			if sc.drawable(lo) && sc.drawable(hi) && hi > lo {
				ylo, yhi := sc.y(lo), sc.y(hi)
				fmt.Fprintf(&b, `<path d="M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f" stroke="#222" stroke-width="1.2" fill="none"/>`+"\n",
					cx, ylo, yhi, cx-5, ylo, cx+5, cx-5, yhi, cx+5)
				top = math.Min(top, yhi)
			}
			// The value, written upwards above the bar (and its whisker).
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="start" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
				cx+4, top-4, cx+4, top-4, esc(format(v)))
		}
		for i, line := range strings.Split(label, "\n") {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="12" text-anchor="middle">%s</text>`+"\n",
				gx+barsW/2, plotBottom+18+float64(i)*15, esc(line))
		}
	}
	if c.XLabel != "" {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="12" fill="#444" text-anchor="middle">%s</text>`+"\n",
			float64(chartLeft)+(width-chartLeft-chartRight)/2, height-8, esc(c.XLabel))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func at(v [][]float64, g, s int) float64 {
	if g < len(v) && s < len(v[g]) {
		return v[g][s]
	}
	return math.NaN()
}

// yScale maps values to the plot's y coordinates.
type yScale struct {
	log    bool
	lo, hi float64 // in value units
}

func (c BarChart) scale() yScale {
	vmin, vmax := math.Inf(1), math.Inf(-1)
	for _, vs := range [][][]float64{c.Values, c.Low, c.High} {
		for _, row := range vs {
			for _, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) || (c.LogScale && v <= 0) {
					continue
				}
				vmin, vmax = math.Min(vmin, v), math.Max(vmax, v)
			}
		}
	}
	if c.LogScale {
		if math.IsInf(vmin, 0) {
			return yScale{log: true, lo: 1, hi: 10}
		}
		lo := math.Pow(10, math.Floor(math.Log10(vmin)))
		hi := math.Pow(10, math.Ceil(math.Log10(vmax)))
		if hi <= lo {
			hi = lo * 10
		}
		return yScale{log: true, lo: lo, hi: hi}
	}
	if math.IsInf(vmax, 0) || vmax <= 0 {
		vmax = 1
	}
	return yScale{lo: 0, hi: niceCeil(vmax)}
}

// niceCeil returns the smallest of 1, 2, 2.5, 5 × 10^k that is >= x.
func niceCeil(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func (s yScale) drawable(v float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && (!s.log || v > 0)
}

func (s yScale) y(v float64) float64 {
	var f float64
	if s.log {
		f = (math.Log10(v) - math.Log10(s.lo)) / (math.Log10(s.hi) - math.Log10(s.lo))
	} else {
		f = (v - s.lo) / (s.hi - s.lo)
	}
	f = math.Max(0, math.Min(1, f))
	return float64(chartTop+chartPlotH) - f*chartPlotH
}

// ticks returns the y values to label: each power of ten (log) or five even steps (linear).
func (s yScale) ticks() []float64 {
	var t []float64
	if s.log {
		for v := s.lo; v <= s.hi*(1+1e-9); v *= 10 {
			t = append(t, v)
		}
		return t
	}
	for i := 0; i <= 5; i++ {
		t = append(t, s.lo+(s.hi-s.lo)*float64(i)/5)
	}
	return t
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
