package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Chart file names, by workload, as written by [Report.WriteFiles].
func chartFile(workload string) string { return "bench-" + workload + ".svg" }

// workloadTitle is the heading of a workload in reports and charts.
func workloadTitle(w string) string {
	switch w {
	case Push:
		return "Push throughput"
	case Pull:
		return "Pull throughput"
	case PushLatency:
		return "Push-confirm latency"
	case E2ELatency:
		return "Publish-to-consume latency"
	case E2EEncrypted:
		return "End-to-end encryption throughput"
	}
	return w
}

// workloadDoc explains what a workload measures, in one paragraph.
func (r *Report) workloadDoc(w string) string {
	c := r.Config
	switch w {
	case Push:
		return fmt.Sprintf("Confirmed appends for %s, %d messages in flight in batches of %d random messages, distinct within a "+
			"batch so that nothing can compress them away. Hub: a `client.Publisher` "+
			"(window %d, batch %d) over TCP to an in-process hub; raw: %d goroutines calling `Storage.Append` with %d messages.",
			c.Duration, c.Window, c.Batch, c.Window, c.Batch, rawAppenders(c.Window, c.Batch), c.Batch)
	case Pull:
		return fmt.Sprintf("Reading back a filled stream from index 0, up to %d messages or 1 MiB per request on both paths, for at most %s, "+
			"after one untimed read of it so that neither path meets cold caches alone. "+
			"Hub: `client.Conn.Pull` (one `sluice_pull_batch`, answered in as many frames as it takes); raw: `Storage.Fetch`.", c.Limit, c.Duration)
	case PushLatency:
		return fmt.Sprintf("%d messages/s of %s for %s; latency from each message's scheduled send to its durable confirm "+
			"(no coordinated omission). Hub: `Publisher.Publish` and its Ack (the publisher sends what is queued in one "+
			"request, up to %d messages, as it does for applications); raw: one `Storage.Append` per message, each in its "+
			"own goroutine, so under a load the backend cannot keep up with, raw queues where the hub batches.",
			c.Rate, FormatSize(c.LatencySize), c.Duration, c.Batch)
	case E2ELatency:
		return fmt.Sprintf("%d messages/s of %s for %s; latency from each message's scheduled send to its arrival at the "+
			"reader. Hub: a `Publisher` and a long-polling `client.Consumer`; raw: `Storage.Append` and a reader polling "+
			"`Storage.Fetch` every %s when caught up (Storage has no long poll). The clock starts once the reader "+
			"has received a warm-up message. A message that arrives again (delivery is at least once) counts once, with "+
			"the latency of its first arrival; duplicates are listed below the table.", c.Rate, FormatSize(c.LatencySize), c.Duration, c.PollInterval)
	case E2EEncrypted:
		return fmt.Sprintf("Messages per second delivered from device A to device B, both through the hub, sent by one "+
			"goroutine of A for %s; the time runs from the first send until B has every message. Plain: a `client.Publisher` "+
			"(default window) to a stream that B's long-polling `client.Consumer` reads. Encrypted: a Noise XX secure "+
			"channel (`core/securechannel`, handshake not measured) whose route goes through the bi-directional stream "+
			"transport (`core/client/bistream`), so the hub stores one ciphertext envelope per message in B's inbox and "+
			"B's application worker receives the decrypted message. A message that arrives again (delivery is at least "+
			"once; the secure channel drops duplicates, the plain consumer does not) counts once on both paths; duplicates "+
			"are listed below the table. Ratio = encrypted ÷ plain (below 1: encryption costs "+
			"throughput). One run of each path per run of the report spreads widely on a shared machine; "+
			"`BenchmarkEncryptedVsPlain` in `core/client/bistream` alternates the paths in chunks of 1000 messages "+
			"and gives a steadier ratio.", c.Duration)
	}
	return ""
}

// workloads returns the workloads present in the rows, in order.
func (r *Report) workloads() []string {
	var ws []string
	for _, w := range allWorkloads() {
		for _, row := range r.Rows {
			if row.Workload == w {
				ws = append(ws, w)
				break
			}
		}
	}
	return ws
}

// WriteMarkdown writes the report as Markdown: the machine and configuration, then per
// workload a table (medians of the runs with their min–max spread, and the hub/raw ratio)
// and, when charts maps the workload to an image path, the chart.
func (r *Report) WriteMarkdown(w io.Writer, charts map[string]string) error {
	b := bufio.NewWriter(w)
	c := r.Config
	if r.Interrupted {
		fmt.Fprintf(b, "**Interrupted**: the run was stopped before it completed; the measurements it did not make are missing.\n\n")
	}
	fmt.Fprintf(b, "Machine: %s.\n\n", r.Machine)
	if r.Command != "" {
		fmt.Fprintf(b, "Command:\n\n```\n%s\n```\n\n", r.Command)
	}
	fmt.Fprintf(b, "Each figure is the median of %d runs of %s, with the spread (min–max) in parentheses. "+
		"Hub and raw run on the same backend in the same run, alternating, each run in the opposite order of the one before, so the ratio compares like with like: "+
		"each ratio is taken within one run, and the table gives the median of those ratios with their spread. "+
		"Throughput ratio = hub msgs/s ÷ raw msgs/s (below 1: the hub costs throughput); "+
		"latency ratio = hub p50 ÷ raw p50 (above 1: the hub adds latency). "+
		"Where a backend has a native path, the raw workloads also run on the broker's own client, "+
		"and hub/native compares the hub with that. End-to-end encryption runs both of its paths through the hub; "+
		"its ratio is encrypted ÷ plain. MB = 10⁶ bytes.\n\n", c.Runs, c.Duration)
	if len(r.Backends) > 0 {
		fmt.Fprintln(b, "| Backend | Description | Capabilities |")
		fmt.Fprintln(b, "|---|---|---|")
		for _, be := range r.Backends {
			desc := be.Description
			if be.Native != "" {
				desc = strings.TrimSpace(desc + "; native path: " + be.Native)
			}
			switch {
			case be.Error != "":
				desc = strings.TrimSpace(desc + " — not measured: " + be.Error)
			case be.NotRun:
				desc = strings.TrimSpace(desc + " — not measured: interrupted")
			case be.Interrupted:
				desc = strings.TrimSpace(desc + " — interrupted: some measurements were not made")
			}
			fmt.Fprintf(b, "| %s | %s | %s |\n", cell(be.Name), cell(desc), cell(be.Capabilities))
		}
		fmt.Fprintln(b)
	}
	for _, wl := range r.workloads() {
		fmt.Fprintf(b, "## %s\n\n%s\n\n", workloadTitle(wl), r.workloadDoc(wl))
		if p, ok := charts[wl]; ok {
			fmt.Fprintf(b, "![%s](%s)\n\n", workloadTitle(wl), p)
		}
		var rows []Row
		native := false
		for _, row := range r.Rows {
			if row.Workload == wl {
				rows = append(rows, row)
				native = native || row.Native != nil
			}
		}
		paths := workloadPaths(wl, native)
		ratioTitle := "Hub/raw"
		if wl == E2EEncrypted {
			ratioTitle = "Encrypted/plain"
		}
		var notes []string
		header := []string{"Backend", "Size"}
		if IsLatency(wl) {
			for _, p := range paths {
				header = append(header, pathTitle(p)+" p50", pathTitle(p)+" p99", pathTitle(p)+" p99.9")
			}
			header = append(header, "Hub/raw p50")
			if native {
				header = append(header, "Hub/native p50")
			}
		} else {
			for _, p := range paths {
				header = append(header, pathTitle(p)+" msgs/s")
			}
			for _, p := range paths {
				header = append(header, pathTitle(p)+" MB/s")
			}
			header = append(header, ratioTitle)
			if native {
				header = append(header, "Hub/native")
			}
		}
		fmt.Fprintf(b, "| %s |\n|---|%s\n", strings.Join(header, " | "), strings.Repeat("--:|", len(header)-1))
		for _, row := range rows {
			cells := []string{cell(row.Backend), FormatSize(row.Size)}
			for _, p := range paths {
				if s := row.path(p); s != nil && s.Errors > 0 {
					notes = append(notes, fmt.Sprintf("%s %s %s: %d of %d runs failed: %s",
						row.Backend, FormatSize(row.Size), p, s.Errors, len(s.Runs), s.FirstError()))
				}
				if s := row.path(p); s != nil && s.Duplicates > 0 {
					counted := "each message's latency is taken at its first arrival"
					if !IsLatency(wl) {
						counted = "each message is counted once"
					}
					notes = append(notes, fmt.Sprintf("%s %s %s: %d duplicate deliveries in %d runs (at-least-once resends; %s)",
						row.Backend, FormatSize(row.Size), p, s.Duplicates, len(s.Runs), counted))
				}
			}
			if IsLatency(wl) {
				for _, p := range paths {
					s := row.path(p)
					cells = append(cells, statCell(s, p50, FormatMillis), statCell(s, p99, FormatMillis), statCell(s, p999, FormatMillis))
				}
			} else {
				for _, p := range paths {
					cells = append(cells, statCell(row.path(p), msgs, FormatCount))
				}
				for _, p := range paths {
					cells = append(cells, statCell(row.path(p), mbs, trimNaN))
				}
			}
			cells = append(cells, ratioCell(row.Ratio))
			if native {
				cells = append(cells, ratioCell(row.NativeRatio))
			}
			fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
		}
		fmt.Fprintln(b)
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", cell(n))
		}
		if len(notes) > 0 {
			fmt.Fprintln(b)
		}
	}
	return b.Flush()
}

// path returns the row's summary for a path (nil when not measured).
func (r Row) path(p string) *Summary {
	switch p {
	case PathHub:
		return r.Hub
	case PathRaw:
		return r.Raw
	case PathNative:
		return r.Native
	case PathPlain:
		return r.Plain
	case PathEncrypted:
		return r.Encrypted
	}
	return nil
}

func pathTitle(p string) string {
	switch p {
	case PathHub:
		return "Hub"
	case PathRaw:
		return "Raw"
	case PathNative:
		return "Native"
	case PathPlain:
		return "Plain"
	case PathEncrypted:
		return "Encrypted"
	}
	return p
}

func msgs(s *Summary) Stat { return s.MsgsPerSec }
func mbs(s *Summary) Stat  { return s.MBPerSec }
func p50(s *Summary) Stat  { return s.P50 }
func p99(s *Summary) Stat  { return s.P99 }
func p999(s *Summary) Stat { return s.P999 }

func trimNaN(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return trim(x)
}

// statCell renders "median (min–max)", or "error" when every run failed.
func statCell(s *Summary, f func(*Summary) Stat, format func(float64) string) string {
	if s == nil || len(s.Runs) == 0 {
		return "–"
	}
	st := f(s)
	if math.IsNaN(st.Median) {
		return "error"
	}
	if len(s.Runs)-s.Errors == 1 || st.Min == st.Max {
		return format(st.Median)
	}
	lo, hi := format(st.Min), format(st.Max)
	// "1.2 ms (1.1–1.4)": the unit once.
	if i := strings.IndexByte(hi, ' '); i > 0 && strings.HasSuffix(lo, hi[i:]) {
		lo, hi = strings.TrimSuffix(lo, hi[i:]), hi[:i]
	}
	return fmt.Sprintf("%s (%s–%s)", format(st.Median), lo, hi)
}

// FormatRatio renders a hub/raw ratio like "0.42×".
func FormatRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return trim(x) + "×"
}

// ratioCell renders a ratio's median with its spread over the runs, like "0.84× (0.78–0.98)".
func ratioCell(st Stat) string {
	if math.IsNaN(st.Median) || math.IsInf(st.Median, 0) {
		return "–"
	}
	if st.Min == st.Max {
		return FormatRatio(st.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", FormatRatio(st.Median), trim(st.Min), trim(st.Max))
}

func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// WriteJSON writes the report as indented JSON. Values that are not known (a median when
// every run failed, a ratio without both sides) are null.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// MarshalJSON renders NaN as null.
func (s Stat) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Median *float64 `json:"median"`
		Min    *float64 `json:"min"`
		Max    *float64 `json:"max"`
	}{num(s.Median), num(s.Min), num(s.Max)})
}

// MarshalJSON adds the ratio's median (null when unknown) and its spread.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	var native *Stat
	if num(r.NativeRatio.Median) != nil {
		native = &r.NativeRatio
	}
	return json.Marshal(struct {
		plain
		Ratio             *float64 `json:"ratio"`
		RatioSpread       Stat     `json:"ratio_spread"`
		NativeRatio       *float64 `json:"native_ratio,omitempty"`
		NativeRatioSpread *Stat    `json:"native_ratio_spread,omitempty"`
	}{plain(r), num(r.Ratio.Median), r.Ratio, num(r.NativeRatio.Median), native})
}

func num(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// Charts returns one bar chart per workload in the report: groups are backends × message
// sizes (throughput) or backends × percentiles (latency), with hub and raw side by side and
// whiskers showing the min–max of the runs.
func (r *Report) Charts() map[string]BarChart {
	out := map[string]BarChart{}
	for _, wl := range r.workloads() {
		c := BarChart{
			Title:    workloadTitle(wl),
			Series:   []string{"through the hub", "raw backend (core.Storage)"},
			LogScale: true,
		}
		native := false
		for _, row := range r.Rows {
			native = native || (row.Workload == wl && row.Native != nil)
		}
		if native {
			c.Series = append(c.Series, "native client")
		}
		paths := workloadPaths(wl, native)
		if wl == E2EEncrypted {
			c.Series = []string{"plain through the hub", "encrypted through the hub"}
		}
		var row Row
		add := func(label string, f func(*Summary) Stat) {
			c.Groups = append(c.Groups, label)
			var v, lo, hi []float64
			for _, p := range paths {
				st := Stat{math.NaN(), math.NaN(), math.NaN()}
				if s := row.path(p); s != nil {
					st = f(s)
				}
				v, lo, hi = append(v, st.Median), append(lo, st.Min), append(hi, st.Max)
			}
			c.Values, c.Low, c.High = append(c.Values, v), append(c.Low, lo), append(c.High, hi)
		}
		if IsLatency(wl) {
			c.YLabel = "latency"
			c.XLabel = "backend, percentile"
			c.Format = FormatMillis
			c.Subtitle = fmt.Sprintf("%s messages at %d/s; median of %d runs, whiskers min–max; lower is better",
				FormatSize(r.Config.LatencySize), r.Config.Rate, r.Config.Runs)
		} else {
			c.YLabel = "messages per second"
			c.XLabel = "backend, message size"
			c.Subtitle = fmt.Sprintf("median of %d runs of %s, whiskers min–max; higher is better", r.Config.Runs, r.Config.Duration)
		}
		for _, row = range r.Rows {
			if row.Workload != wl {
				continue
			}
			if IsLatency(wl) {
				add(row.Backend+"\np50", p50)
				add(row.Backend+"\np99", p99)
				add(row.Backend+"\np99.9", p999)
			} else {
				add(row.Backend+"\n"+FormatSize(row.Size), msgs)
			}
		}
		out[wl] = c
	}
	return out
}

// Files says where [Report.WriteFiles] writes.
type Files struct {
	// Markdown and JSON are file paths ("" skips that format).
	Markdown, JSON string
	// ChartDir is the directory for the SVG charts, bench-WORKLOAD.svg ("" skips them).
	ChartDir string
	// Heading, if not empty, is written as the Markdown's first line ("# Heading").
	Heading string
	// Intro, if not empty, is written after the heading.
	Intro string
}

// WriteFiles writes the report's Markdown, JSON and charts (creating directories as needed)
// and returns the paths written. The Markdown links the charts by relative path.
func (r *Report) WriteFiles(f Files) ([]string, error) {
	var paths []string
	charts := map[string]string{}
	if f.ChartDir != "" {
		if err := os.MkdirAll(f.ChartDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		all := r.Charts()
		for _, wl := range r.workloads() {
			c := all[wl]
			p := filepath.Join(f.ChartDir, chartFile(wl))
			if err := os.WriteFile(p, c.SVG(), 0o644); err != nil {
				return paths, fmt.Errorf("bench: %w", err)
			}
			paths = append(paths, p)
			link := p
			if f.Markdown != "" {
				if rel, err := filepath.Rel(filepath.Dir(f.Markdown), p); err == nil {
					link = rel
				}
			}
			charts[wl] = filepath.ToSlash(link)
		}
	}
	write := func(path string, fn func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		fh, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		err = fn(fh)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("bench: write %s: %w", path, err)
		}
		paths = append(paths, path)
		return nil
	}
	if err := write(f.Markdown, func(w io.Writer) error {
		if f.Heading != "" {
			fmt.Fprintf(w, "# %s\n\n", f.Heading)
		}
		if f.Intro != "" {
			fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(f.Intro))
		}
		return r.WriteMarkdown(w, charts)
	}); err != nil {
		return paths, err
	}
	if err := write(f.JSON, r.WriteJSON); err != nil {
		return paths, err
	}
	return paths, nil
}
