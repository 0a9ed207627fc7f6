// Package report renders the results of conformance runs against several backends as a
// behaviour matrix (rows are tests, columns are backends) in Markdown, JSON and JUnit XML.
//
// The writers are pure functions of their input: they do no I/O other than writing to the
// given io.Writer, read no clock and produce the same bytes for the same results, so reports
// can be compared and checked in. [WriteFiles] writes all three into a directory.
//
//	runs := []report.Run{{Backend: "bbolt", URL: u, Result: conformance.Run(ctx, h, nil)}}
//	if _, err := report.WriteFiles("sluice-report", runs); err != nil { ... }
//
// # Rows
//
// A row is a test that ran no subtests (a leaf) or a parent test that failed on its own (for
// example in its setup, before its subtests ran). Rows keep the order in which the first
// backend finished them; tests only other backends ran are appended in their order. A
// backend that did not run a row's test shows "not run".
//
// # Suite version
//
// Each backend's column records the version of the conformance suite that certified it
// (conformance.Result.SuiteVersion, which is core.Version: a module version, or "(devel)"
// and the git revision for a build from a checkout): a line under the summary table in
// Markdown, "suite_version" in JSON and a property of the testsuite in JUnit.
//
// # Interrupted runs
//
// A run whose Result is Incomplete was interrupted (Ctrl-C): the test it was running shows
// "interrupted" (no verdict) and the tests it did not reach "not run"; a Run with an
// Incomplete, empty Result is a backend the interrupted program never reached. Such a
// report is titled INTERRUPTED and is not OK, whatever passed.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/conformance"
)

// File names written by [WriteFiles].
const (
	MarkdownFile = "conformance.md"
	JSONFile     = "conformance.json"
	JUnitFile    = "conformance.junit.xml"
)

// Run is the conformance result of one backend.
type Run struct {
	// Backend names the backend in column headings and JUnit suites, for example "bbolt".
	// Names should be unique within a report; [Build] makes duplicates unique with a suffix.
	Backend string
	// URL is the backend URL that was tested, with any password redacted (url.URL.Redacted).
	// It is shown as given; leave it empty to keep it out of the report.
	URL string
	// Capabilities is the backend's capabilities line (core.Capabilities.String), if known.
	Capabilities string
	// Error, if not empty, says why the run did not complete (for example the backend could
	// not be opened). It counts as a failure.
	Error string
	// Result is what conformance.Run returned; for a backend not reached because the
	// program was interrupted, a Result with only Incomplete set.
	Result conformance.Result
}

// OK reports whether the run completed and no test failed.
func (r Run) OK() bool { return r.Error == "" && r.Result.OK() && !r.Result.Incomplete }

// Status is the state of one cell of the matrix.
type Status string

// Statuses of a cell.
const (
	StatusPass   Status = "pass"
	StatusFail   Status = "fail"
	StatusSkip   Status = "skip"
	StatusNotRun Status = "not run"
	// StatusInterrupted is a test cut short by an interruption: no verdict.
	StatusInterrupted Status = "interrupted"
)

func statusOf(o conformance.Outcome) Status {
	switch o {
	case conformance.Pass:
		return StatusPass
	case conformance.Fail:
		return StatusFail
	case conformance.Skip:
		return StatusSkip
	case conformance.Interrupted:
		return StatusInterrupted
	}
	return Status(strings.ToLower(o.String()))
}

// Cell is one test's outcome on one backend.
type Cell struct {
	Status Status
	// Message is the failure messages joined by newlines (fail), the skip reason (skip),
	// or what an interrupted test reported after the interruption (interrupted).
	Message string
	// Logs are the test's Logf lines.
	Logs     []string
	Duration time.Duration
}

// Row is one test across every backend: Cells[i] belongs to Matrix.Backends[i].
type Row struct {
	Test  string
	Cells []Cell
}

// BackendSummary is one column's header: the counts of its run.
type BackendSummary struct {
	Name, URL, Capabilities, Error string
	// SuiteVersion is the version of the conformance suite that ran (Result.SuiteVersion).
	SuiteVersion                         string
	Passed, Failed, Skipped, Interrupted int
	// Incomplete reports that the run was interrupted before every test ran.
	Incomplete bool
	Duration   time.Duration
}

// OK reports whether the backend's run completed without failures.
func (b BackendSummary) OK() bool { return b.Error == "" && b.Failed == 0 && !b.Incomplete }

// NotRun reports whether the backend was not reached at all (the run was interrupted
// before it).
func (b BackendSummary) NotRun() bool {
	return b.Incomplete && b.Error == "" && b.Passed+b.Failed+b.Skipped+b.Interrupted == 0
}

// Matrix is the behaviour matrix of a set of runs.
type Matrix struct {
	Backends []BackendSummary
	Rows     []Row
}

// OK reports whether every backend passed.
func (m Matrix) OK() bool {
	for _, b := range m.Backends {
		if !b.OK() {
			return false
		}
	}
	return true
}

// Incomplete reports whether a run was interrupted.
func (m Matrix) Incomplete() bool {
	for _, b := range m.Backends {
		if b.Incomplete {
			return true
		}
	}
	return false
}

// Verdict is the report's one-word title: "FAIL" when a backend failed (or could not be
// tested), else "INTERRUPTED" when a run was interrupted, else "PASS". A failure found
// before an interruption gives "FAIL (INTERRUPTED)".
func (m Matrix) Verdict() string {
	failed := false
	for _, b := range m.Backends {
		failed = failed || b.Error != "" || b.Failed > 0
	}
	switch {
	case failed && m.Incomplete():
		return "FAIL (INTERRUPTED)"
	case failed:
		return "FAIL"
	case m.Incomplete():
		return "INTERRUPTED"
	}
	return "PASS"
}

// Names hands out unique backend names: the first use of a name is the name itself, later
// uses are name#2, name#3, ..., skipping any name handed out already (so y#2, y, y gives y#2,
// y, y#3). The zero value is ready to use.
type Names struct {
	used map[string]bool
	next map[string]int // the next suffix to try for a name
}

// Unique returns name, or the first of name#2, name#3, ... not handed out yet, and records it.
func (ns *Names) Unique(name string) string {
	if ns.used == nil {
		ns.used, ns.next = map[string]bool{}, map[string]int{}
	}
	base := name
	for ns.used[name] {
		n := max(ns.next[base], 2)
		ns.next[base] = n + 1
		name = fmt.Sprintf("%s#%d", base, n)
	}
	ns.used[name] = true
	return name
}

// Build builds the matrix of runs. See the package doc for which tests become rows.
func Build(runs []Run) Matrix {
	var m Matrix
	var names Names
	for _, r := range runs {
		name := r.Backend
		if name == "" {
			name = "backend"
		}
		name = names.Unique(name)
		m.Backends = append(m.Backends, BackendSummary{
			Name: name, URL: r.URL, Capabilities: r.Capabilities, Error: r.Error, SuiteVersion: r.Result.SuiteVersion,
			Passed: r.Result.Passed, Failed: r.Result.Failed, Skipped: r.Result.Skipped,
			Interrupted: r.Result.Interrupted, Incomplete: r.Result.Incomplete, Duration: r.Result.Duration,
		})
	}
	rowOf := map[string]int{}
	for i, r := range runs {
		for _, tr := range r.Result.Tests {
			if !IsRow(tr) {
				continue
			}
			j, ok := rowOf[tr.Name]
			if !ok {
				j = len(m.Rows)
				rowOf[tr.Name] = j
				cells := make([]Cell, len(runs))
				for k := range cells {
					cells[k].Status = StatusNotRun
				}
				m.Rows = append(m.Rows, Row{Test: tr.Name, Cells: cells})
			}
			c := Cell{Status: statusOf(tr.Outcome), Logs: tr.Logs, Duration: tr.Duration}
			switch tr.Outcome {
			case conformance.Fail:
				c.Message = strings.Join(tr.Failures, "\n")
				if c.Message == "" {
					c.Message = "failed (no message)"
				}
			case conformance.Skip:
				c.Message = tr.SkipReason
			case conformance.Interrupted:
				c.Message = strings.Join(tr.Failures, "\n")
			}
			m.Rows[j].Cells[i] = c
		}
	}
	return m
}

// IsRow reports whether tr is a row of the matrix: a leaf test, or a parent that failed
// with messages of its own.
func IsRow(tr conformance.TestResult) bool {
	return tr.Leaf || (tr.Outcome == conformance.Fail && len(tr.Failures) > 0)
}

// WriteFiles writes the Markdown, JSON and JUnit reports of runs into dir (created if
// needed) as [MarkdownFile], [JSONFile] and [JUnitFile], and returns their paths.
func WriteFiles(dir string, runs []Run) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	m := Build(runs)
	var paths []string
	for _, f := range []struct {
		name  string
		write func(*os.File, Matrix) error
	}{
		{MarkdownFile, func(w *os.File, m Matrix) error { return m.WriteMarkdown(w) }},
		{JSONFile, func(w *os.File, m Matrix) error { return m.WriteJSON(w) }},
		{JUnitFile, func(w *os.File, m Matrix) error { return m.WriteJUnit(w) }},
	} {
		p := filepath.Join(dir, f.name)
		fh, err := os.Create(p)
		if err != nil {
			return paths, fmt.Errorf("report: %w", err)
		}
		err = f.write(fh, m)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("report: write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// seconds renders d in seconds with millisecond precision, as JUnit wants.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%.3f", d.Seconds())
}
