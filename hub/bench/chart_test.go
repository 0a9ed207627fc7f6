package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

// svgText parses svg as XML and returns the text of every <text> element and the number of
// <rect> elements.
func svgText(t *testing.T, svg []byte) (texts []string, rects int) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var root string
	var inText bool
	var cur strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
				if tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", tok.Name.Space)
				}
			}
			switch tok.Name.Local {
			case "text":
				inText = true
				cur.Reset()
			case "rect":
				rects++
			}
		case xml.CharData:
			if inText {
				cur.Write(tok)
			}
		case xml.EndElement:
			if tok.Name.Local == "text" {
				inText = false
				texts = append(texts, cur.String())
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return texts, rects
}

func TestBarChartSVG(t *testing.T) {
	nan := math.NaN()
	c := BarChart{
		Title:    "Push throughput <bbolt & co>",
		Subtitle: "median of 5 runs",
		YLabel:   "messages per second",
		Groups:   []string{"bbolt\n64 B", "kinesis\n1 KiB"},
		Series:   []string{"through the hub", "raw backend"},
		Values:   [][]float64{{12345, 45678}, {150, nan}},
		Low:      [][]float64{{12000, 40000}, {140, nan}},
		High:     [][]float64{{13000, 50000}, {160, nan}},
		LogScale: true,
	}
	texts, rects := svgText(t, c.SVG())
	joined := strings.Join(texts, "|")
	for _, want := range []string{
		"Push throughput <bbolt & co>", "median of 5 runs", "messages per second (log scale)",
		"through the hub", "raw backend", // legend
		"bbolt", "64 B", "kinesis", "1 KiB", // group labels
		"12.3k", "45.7k", "150", // values
		"n/a",                      // the missing bar
		"100", "1k", "10k", "100k", // log ticks
	} {
		if !containsText(texts, want) {
			t.Errorf("chart has no text %q; texts: %s", want, joined)
		}
	}
	// Background + 2 legend squares + 3 bars.
	if rects != 6 {
		t.Errorf("%d rects, want 6", rects)
	}
}

func TestBarChartLinear(t *testing.T) {
	c := BarChart{Title: "t", YLabel: "latency", Groups: []string{"a"}, Series: []string{"x"},
		Values: [][]float64{{3.2}}, Format: FormatMillis}
	texts, _ := svgText(t, c.SVG())
	for _, want := range []string{"0 ms", "5 ms", "3.2 ms", "latency"} {
		if !containsText(texts, want) {
			t.Errorf("chart has no text %q; texts: %q", want, texts)
		}
	}
	if got := niceCeil(3.2); got != 5 {
		t.Errorf("niceCeil(3.2) = %v", got)
	}
	if got := niceCeil(180); got != 200 {
		t.Errorf("niceCeil(180) = %v", got)
	}
	// An empty chart still renders.
	svgText(t, BarChart{Title: "empty"}.SVG())
	svgText(t, BarChart{Title: "empty", LogScale: true}.SVG())
}

func containsText(texts []string, s string) bool {
	for _, t := range texts {
		if t == s {
			return true
		}
	}
	return false
}
