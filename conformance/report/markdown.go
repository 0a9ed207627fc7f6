package report

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/core"
)

// maxCellMessage is the longest message shown inside a matrix cell; the full text is in the
// Failures section.
const maxCellMessage = 160

// WriteMarkdown writes the report as Markdown: a summary table per backend, the behaviour
// matrix, and every failure message in full.
func (m Matrix) WriteMarkdown(w io.Writer) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "# Sluice conformance report: %s\n\n", m.Verdict())
	if m.Incomplete() {
		fmt.Fprintln(b, "The run was interrupted: the test running then is marked interrupted (no verdict), the tests and backends it did not reach are not run.")
		fmt.Fprintln(b)
	}
	fmt.Fprintln(b, "| Backend | URL | Passed | Skipped | Failed | Duration |")
	fmt.Fprintln(b, "|---|---|--:|--:|--:|--:|")
	for _, be := range m.Backends {
		failed := fmt.Sprint(be.Failed)
		if be.Error != "" {
			failed += " (" + cellText(be.Error) + ")"
		}
		duration := be.Duration.Round(time.Millisecond).String()
		switch {
		case be.NotRun():
			duration = "not run (interrupted)"
		case be.Incomplete:
			duration += fmt.Sprintf(", interrupted (%d test(s) cut short)", be.Interrupted)
		}
		fmt.Fprintf(b, "| %s | %s | %d | %d | %s | %s |\n", cellText(be.Name), code(be.URL), be.Passed, be.Skipped, failed, duration)
	}
	var caps []string
	for _, be := range m.Backends {
		if be.Capabilities != "" {
			caps = append(caps, "- "+be.Capabilities)
		}
	}
	if len(caps) > 0 {
		fmt.Fprintf(b, "\nDeclared capabilities (verified by the tests of the matrix that check them, where those passed; a skipped test verified nothing):\n\n%s\n", strings.Join(caps, "\n"))
	}
	writeSuiteVersions(b, m.Backends)

	fmt.Fprintln(b, "\n## Behaviour matrix")
	fmt.Fprintln(b)
	fmt.Fprint(b, "| Test |")
	for _, be := range m.Backends {
		fmt.Fprintf(b, " %s |", cellText(be.Name))
	}
	fmt.Fprint(b, "\n|---|")
	for range m.Backends {
		fmt.Fprint(b, "---|")
	}
	fmt.Fprintln(b)
	for _, r := range m.Rows {
		fmt.Fprintf(b, "| %s |", code(r.Test))
		for _, c := range r.Cells {
			fmt.Fprintf(b, " %s |", cellMarkdown(c))
		}
		fmt.Fprintln(b)
	}

	var failures strings.Builder
	for i, be := range m.Backends {
		for _, r := range m.Rows {
			if c := r.Cells[i]; c.Status == StatusFail {
				fmt.Fprintf(&failures, "\n### %s: %s\n\n```\n%s\n```\n", be.Name, r.Test, strings.ReplaceAll(c.Message, "```", "'''"))
			}
		}
	}
	if failures.Len() > 0 {
		fmt.Fprintf(b, "\n## Failures\n%s", failures.String())
	}
	return b.Flush()
}

func cellMarkdown(c Cell) string {
	switch c.Status {
	case StatusPass:
		return "✅ pass"
	case StatusFail:
		return "❌ **fail**: " + cellText(firstLine(c.Message))
	case StatusSkip:
		if c.Message == "" {
			return "⏭️ skip"
		}
		return "⏭️ skip: " + cellText(firstLine(c.Message))
	case StatusInterrupted:
		return "⏸️ interrupted"
	}
	return "· " + string(c.Status)
}

// firstLine returns the first line of s, shortened to maxCellMessage runes, with a marker
// when anything was cut.
func firstLine(s string) string {
	cut := false
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s, cut = s[:i], true
	}
	if r := []rune(s); len(r) > maxCellMessage {
		s, cut = string(r[:maxCellMessage]), true
	}
	if cut {
		s += " …"
	}
	return s
}

// cellText makes s safe inside a Markdown table cell.
func cellText(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	return s
}

// code renders s as inline code in a table cell (empty stays empty).
func code(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(cellText(s), "`", "'")
	return "`" + s + "`"
}

// writeSuiteVersions says which version of the conformance suite certified the backends:
// one line when every backend that records it ran the same, else one line per backend.
func writeSuiteVersions(b *bufio.Writer, backends []BackendSummary) {
	var versions []string // distinct, in order
	for _, be := range backends {
		if be.SuiteVersion != "" && !slices.Contains(versions, be.SuiteVersion) {
			versions = append(versions, be.SuiteVersion)
		}
	}
	switch len(versions) {
	case 0:
		return
	case 1:
		fmt.Fprintf(b, "\nConformance suite: %s\n", code(core.ModulePath+" "+versions[0]))
		return
	}
	fmt.Fprintf(b, "\nConformance suites (the backends were certified by different versions):\n\n")
	for _, be := range backends {
		if be.SuiteVersion != "" {
			fmt.Fprintf(b, "- %s: %s\n", cellText(be.Name), code(core.ModulePath+" "+be.SuiteVersion))
		}
	}
}
