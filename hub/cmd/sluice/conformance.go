package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/conformance/report"
	"github.com/sluicehq/sluice/core"
)

// defaultReportDir is where "sluice conformance" and "sluice bench" write their reports.
const defaultReportDir = "sluice-report"

func init() {
	register(&command{
		name:    "conformance",
		summary: "certify backends: run the conformance suite against broker URLs",
		usage:   "-backend URL [-backend URL ...] [flags]",
		help: `
Run Sluice's conformance suite, the same one every backend's own tests run, against each
backend URL: every Storage and IndexStorage contract, against the real broker, and every
capability the backend declares. Each subtest uses fresh, uniquely named streams, deleted
afterwards when the backend can delete streams, so a shared broker can be tested safely.

One line is printed per subtest (outcome, backend, name, duration, and the failure or skip
reason), then a report is written to the -out directory: a behaviour matrix (rows are
subtests, columns are backends) as conformance.md, conformance.json and
conformance.junit.xml. The exit status is 1 when any subtest failed.

Ctrl-C stops the run: the subtest running then is reported as interrupted (not failed),
the subtests and backends not reached as not run, the report is titled INTERRUPTED, and
the exit status is 1.

-run selects subtests like "go test -run": a slash-separated list of regular expressions,
each matching one level of the name ("Storage/AppendFetch/AllByteValues").

Examples:
  sluice conformance -backend bbolt:conf-data
  sluice conformance -backend memory:// -backend bbolt:conf-data -out report
  sluice conformance -backend bbolt:conf-data -run '^Storage$/^(Order|Index)$'
`,
		flags: conformanceFlags,
	})
}

// urlList is a flag that may be given several times.
type urlList []string

func (l *urlList) String() string { return strings.Join(*l, ",") }

func (l *urlList) Set(s string) error {
	if s == "" {
		return errors.New("empty backend URL")
	}
	*l = append(*l, s)
	return nil
}

// conformanceConfig is the parsed command line of "sluice conformance".
type conformanceConfig struct {
	backends []string
	out      string
	run      string
	timeout  time.Duration
	maxWait  time.Duration
	maxParts bool
}

func conformanceFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	var c conformanceConfig
	fs.Var((*urlList)(&c.backends), "backend", "backend URL to test (repeatable), e.g. bbolt:data-dir, memory://")
	fs.StringVar(&c.out, "out", defaultReportDir, "directory for conformance.md, conformance.json and conformance.junit.xml")
	fs.StringVar(&c.run, "run", "", "run only subtests matching this slash-separated list of regular expressions")
	fs.DurationVar(&c.timeout, "subtest-timeout", conformance.DefaultTimeout, "deadline of each subtest (its cleanup gets its own): a backend call that honours its context, or a Close still running, then fails the subtest instead of hanging the run")
	fs.DurationVar(&c.maxWait, "max-wait", 0, "how long to wait for appended messages to become visible (only for eventually consistent brokers)")
	fs.BoolVar(&c.maxParts, "create-max-partitions", false, "also create a stream with the backend's MaxPartitions partitions when that is more than 64 (slow on brokers)")
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) > 0 {
			return usageErr("unexpected arguments %q (give each URL with -backend)", args)
		}
		if len(c.backends) == 0 {
			return usageErr("no -backend URL given")
		}
		for _, u := range c.backends {
			if err := checkBackendURL(u); err != nil {
				return err
			}
		}
		if err := prepareOutDir(c.out); err != nil {
			return err
		}
		return runConformance(ctx, sio.out, c)
	}
}

// runConformance runs the suite against every backend of c, printing progress to w, and
// writes the reports. It returns an error when a subtest failed or a report could not be
// written.
func runConformance(ctx context.Context, w io.Writer, c conformanceConfig) error {
	filter, err := compileRunFilter(c.run)
	if err != nil {
		return usageErr("-run: %v", err)
	}
	fmt.Fprintf(w, "conformance suite %s %s\n", core.ModulePath, core.Version())
	var runs []report.Run
	var names report.Names
	for _, raw := range c.backends {
		if ctx.Err() != nil { // interrupted: listed as not run
			name := "backend"
			if u, err := url.Parse(raw); err == nil {
				name = u.Scheme
			}
			runs = append(runs, report.Run{Backend: names.Unique(name), URL: displayURL(raw), Result: conformance.Result{Incomplete: true}})
			continue
		}
		runs = append(runs, certify(ctx, w, raw, filter, c, &names))
	}
	m := report.Build(runs)
	if filter != nil && ctx.Err() == nil && noneRan(m) {
		return usageErr("-run %q: no test matched (names look like Storage/AppendFetch/AllByteValues)", c.run)
	}
	paths, err := report.WriteFiles(c.out, runs)
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	var failed []string
	for _, b := range m.Backends {
		if b.NotRun() {
			fmt.Fprintf(w, "---- %s: not run (interrupted)\n", b.Name)
			continue
		}
		status := "ok  "
		switch {
		case b.Error != "" || b.Failed > 0:
			status = "FAIL"
			failed = append(failed, b.Name)
		case b.Incomplete:
			status = "INTR"
		}
		line := fmt.Sprintf("%s %s: %d passed, %d skipped, %d failed", status, b.Name, b.Passed, b.Skipped, b.Failed)
		if b.Interrupted > 0 {
			line += fmt.Sprintf(", %d interrupted", b.Interrupted)
		}
		line += fmt.Sprintf(" in %v", b.Duration.Round(time.Millisecond))
		if b.Error != "" {
			line += " (" + b.Error + ")"
		} else if b.Incomplete {
			line += " (interrupted)"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "report: %s\n", strings.Join(paths, ", "))
	switch {
	case len(failed) > 0 && ctx.Err() != nil:
		return fmt.Errorf("conformance failed on %s before the run was interrupted; see %s", strings.Join(failed, ", "), paths[0])
	case len(failed) > 0:
		return fmt.Errorf("conformance failed on %s; see %s", strings.Join(failed, ", "), paths[0])
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted (%v): the report is incomplete; see %s", context.Cause(ctx), paths[0])
	}
	return nil
}

// prepareOutDir checks, before a long run, that its reports can be written into dir: it
// creates dir if needed and tries a file in it. A dir that is an existing file is a bad
// command line.
func prepareOutDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return usageErr("-out %q is a file; want a directory for the reports", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("-out: cannot create the report directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".sluice-write-check-*")
	if err != nil {
		return fmt.Errorf("-out: cannot write into the report directory: %w", err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// noneRan reports whether no test ran on any backend that could be opened.
func noneRan(m report.Matrix) bool {
	opened := false
	for _, b := range m.Backends {
		if b.Error != "" {
			continue
		}
		opened = true
		if b.Passed+b.Skipped+b.Failed+b.Interrupted > 0 {
			return false
		}
	}
	return opened
}

// certify runs the suite against one backend URL. The backend is named after its
// capabilities (or URL scheme), with "#2", "#3"... when names already holds the name.
func certify(ctx context.Context, w io.Writer, raw string, filter *runFilter, c conformanceConfig, names *report.Names) (run report.Run) {
	run = report.Run{Backend: "backend", URL: displayURL(raw)}
	if u, err := url.Parse(raw); err == nil {
		run.Backend = u.Scheme
	}
	open := func(ctx context.Context) (*core.Backend, error) { return core.Open(ctx, raw) }
	// Open once up front: a backend that cannot be opened is reported once, not per subtest.
	b, err := open(ctx)
	if err != nil && ctx.Err() != nil { // interrupted while opening: not run
		run.Backend = names.Unique(run.Backend)
		run.Result.Incomplete = true
		return run
	}
	if err != nil {
		run.Backend = names.Unique(run.Backend)
		run.Error = err.Error()
		fmt.Fprintf(w, "FAIL %s: %v\n", run.Backend, err)
		return run
	}
	caps := b.Storage.Capabilities()
	if caps.Name != "" {
		run.Backend = caps.Name
	}
	run.Backend = names.Unique(run.Backend)
	run.Capabilities = caps.String()
	if err := b.Close(); err != nil {
		run.Error = "close: " + err.Error()
		fmt.Fprintf(w, "FAIL %s: close after opening: %v\n", run.Backend, err)
		return run
	}
	fmt.Fprintf(w, "=== %s (%s)\n", run.Backend, run.URL)
	h := conformance.Harness{Open: open, Timeout: c.timeout, MaxWait: c.maxWait, CreateMaxPartitions: c.maxParts}
	name := run.Backend
	rep := conformance.ReportFunc(func(tr conformance.TestResult) {
		if report.IsRow(tr) && filter.keep(tr) {
			printResult(w, name, tr)
		}
	})
	res := conformance.RunSuites(ctx, h, rep, filter.suites(conformance.Suites())...)
	run.Result = filter.prune(res)
	return run
}

// displayURL returns raw with its password, if any, redacted.
func displayURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			return u.Redacted()
		}
	}
	return raw
}

// printResult prints the progress line of one finished test.
func printResult(w io.Writer, backend string, tr conformance.TestResult) {
	fmt.Fprintf(w, "%-4s %s %s (%v)", tr.Outcome, backend, tr.Name, tr.Duration.Round(time.Millisecond))
	switch tr.Outcome {
	case conformance.Skip:
		if tr.SkipReason != "" {
			fmt.Fprintf(w, ": %s", tr.SkipReason)
		}
		fmt.Fprintln(w)
	case conformance.Fail:
		fmt.Fprintln(w)
		for _, f := range tr.Failures {
			fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(f, "\n", "\n    "))
		}
	case conformance.Interrupted:
		fmt.Fprintln(w, ": interrupted, no verdict")
	default:
		fmt.Fprintln(w)
	}
}

// runFilter selects tests like "go test -run": one regular expression per level of the
// slash-separated test name. A nil *runFilter selects everything.
type runFilter struct {
	pats []*regexp.Regexp

	mu sync.Mutex
	// pruned holds the tests some of whose subtests were filtered out.
	pruned map[string]bool
}

func compileRunFilter(pattern string) (*runFilter, error) {
	if pattern == "" {
		return nil, nil
	}
	f := &runFilter{pruned: map[string]bool{}}
	for _, p := range splitPattern(pattern) {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, err
		}
		f.pats = append(f.pats, re)
	}
	return f, nil
}

// splitPattern splits a -run pattern at the slashes outside brackets and parentheses, as
// "go test" does.
func splitPattern(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case '/':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// match reports whether every level of name that the filter has a pattern for matches it.
func (f *runFilter) match(name string) bool {
	if f == nil {
		return true
	}
	for i, el := range strings.Split(name, "/") {
		if i >= len(f.pats) {
			break
		}
		if !f.pats[i].MatchString(el) {
			return false
		}
	}
	return true
}

// suites returns the suites whose name matches the first level, each running its subtests
// through a filtering T.
func (f *runFilter) suites(all []conformance.Suite) []conformance.Suite {
	if f == nil {
		return all
	}
	var out []conformance.Suite
	for _, s := range all {
		if !f.match(s.Name) {
			continue
		}
		run := s.Run
		out = append(out, conformance.Suite{Name: s.Name, Run: func(t conformance.T, h conformance.Harness) {
			run(filterT{t, f}, h)
		}})
	}
	return out
}

// keep reports whether a finished test belongs in the output: a test whose every subtest
// was filtered out is left out unless it failed.
func (f *runFilter) keep(tr conformance.TestResult) bool {
	if f == nil || !tr.Leaf || tr.Outcome == conformance.Fail {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.pruned[tr.Name]
}

// prune drops the tests keep rejects and counts the rest again.
func (f *runFilter) prune(res conformance.Result) conformance.Result {
	if f == nil {
		return res
	}
	out := conformance.Result{Duration: res.Duration, Incomplete: res.Incomplete, SuiteVersion: res.SuiteVersion}
	for _, tr := range res.Tests {
		if !f.keep(tr) {
			continue
		}
		out.Tests = append(out.Tests, tr)
		if !report.IsRow(tr) {
			continue
		}
		switch tr.Outcome {
		case conformance.Pass:
			out.Passed++
		case conformance.Fail:
			out.Failed++
		case conformance.Skip:
			out.Skipped++
		case conformance.Interrupted:
			out.Interrupted++
		}
	}
	return out
}

// filterT runs only the subtests a runFilter selects.
type filterT struct {
	conformance.T
	f *runFilter
}

func (t filterT) Run(name string, fn func(conformance.T)) bool {
	if !t.f.match(t.T.Name() + "/" + name) {
		t.f.mu.Lock()
		t.f.pruned[t.T.Name()] = true
		t.f.mu.Unlock()
		return true
	}
	return t.T.Run(name, func(sub conformance.T) { fn(filterT{sub, t.f}) })
}
