// Package certify is `sluice conformance` as a library, for a backend that is not compiled
// into the sluice binary: a certifier is a main of a few lines that imports the backend's
// package (which registers its URL scheme with core.Register) and calls [Main]. It has the
// flags, progress output, Ctrl-C handling, reports and exit statuses of `sluice
// conformance`:
//
//	package main
//
//	import (
//		_ "example.com/mybroker" // registers "mybroker://"
//
//		"github.com/sluicehq/sluice/conformance/certify"
//	)
//
//	func main() { certify.Main() }
//
// Then `go run ./cmd/certify -backend mybroker://127.0.0.1:7000 -run '^Storage$'` prints one
// line per subtest (and a "still running" line after 30 s without one) and writes conformance.md, conformance.json and conformance.junit.xml
// into sluice-report (see package report). [Run] is the same without the command line.
package certify

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/conformance/report"
	"github.com/sluicehq/sluice/core"
)

// DefaultOut is the directory the reports are written to when Config.Out is empty.
const DefaultOut = "sluice-report"

// ErrUsage marks the errors of a bad configuration or command line: no backend, a URL
// whose scheme is not registered, a -run pattern that does not compile or matches no
// test, an -out that is a file. [Main] exits with status 2 for them.
var ErrUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
}

// Config is what to certify and how.
type Config struct {
	// Backends are the backend URLs to test, in order, each opened with core.Open.
	Backends []string
	// Out is the directory of the reports (default DefaultOut), created if needed.
	Out string
	// Run selects subtests like "go test -run": a slash-separated list of regular
	// expressions, each matching one level of the name ("Storage/AppendFetch/AllByteValues").
	// Empty runs every test.
	Run string
	// SubtestTimeout is the deadline of each subtest (conformance.Harness.Timeout; default
	// conformance.DefaultTimeout), and of the Open of each backend before its subtests.
	SubtestTimeout time.Duration
	// MaxWait is how long to wait for appended messages to become visible
	// (conformance.Harness.MaxWait), for eventually consistent brokers only.
	MaxWait time.Duration
	// CreateMaxPartitions also creates a stream with the backend's MaxPartitions partitions
	// when that is more than 64 (conformance.Harness.CreateMaxPartitions).
	CreateMaxPartitions bool
}

// Flags declares the flags of `sluice conformance` on fs, each setting a field of c: -backend
// (repeatable), -out, -run, -subtest-timeout, -max-wait and -create-max-partitions, with
// their defaults.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.Var((*URLList)(&c.Backends), "backend", "backend URL to test (repeatable), e.g. bbolt:data-dir, memory://")
	fs.StringVar(&c.Out, "out", DefaultOut, "directory for conformance.md, conformance.json and conformance.junit.xml")
	fs.StringVar(&c.Run, "run", "", "run only subtests matching this slash-separated list of regular expressions")
	fs.DurationVar(&c.SubtestTimeout, "subtest-timeout", conformance.DefaultTimeout, "deadline of each subtest (its cleanup gets its own) and of opening each backend before its subtests: a backend call that honours its context, or a Close still running, then fails the subtest instead of hanging the run (0: the default)")
	fs.DurationVar(&c.MaxWait, "max-wait", 0, "how long to wait for appended messages to become visible (only for eventually consistent brokers; 0: an appended message must be visible to the next Fetch)")
	fs.BoolVar(&c.CreateMaxPartitions, "create-max-partitions", false, "also create a stream with the backend's MaxPartitions partitions when that is more than 64 (slow on brokers)")
}

// URLList is a flag.Value for a flag that may be given several times, each time with one
// non-empty URL (-backend).
type URLList []string

// String joins the URLs with commas.
func (l *URLList) String() string { return strings.Join(*l, ",") }

// Set appends s; an empty s is an error.
func (l *URLList) Set(s string) error {
	if s == "" {
		return errors.New("empty backend URL")
	}
	*l = append(*l, s)
	return nil
}

// Run certifies every backend of c: it checks c (errors matching ErrUsage), runs the
// conformance suite against each backend, printing one line per subtest to w, and writes
// the reports into c.Out. It returns an error when a subtest failed, a backend could not be
// opened, ctx ended before the run was complete (an operator's Ctrl-C: the reports say
// INTERRUPTED), or a report could not be written.
func Run(ctx context.Context, w io.Writer, c Config) error {
	if len(c.Backends) == 0 {
		return usageErr("no -backend URL given")
	}
	for _, raw := range c.Backends {
		if err := core.CheckURL(raw); err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
	}
	if c.Out == "" {
		c.Out = DefaultOut
	}
	if c.SubtestTimeout < 0 {
		return usageErr("-subtest-timeout %v: want more than 0 (0: the default, %v)", c.SubtestTimeout, conformance.DefaultTimeout)
	}
	if c.MaxWait < 0 {
		return usageErr("-max-wait %v: want 0 or more", c.MaxWait)
	}
	if c.SubtestTimeout == 0 {
		c.SubtestTimeout = conformance.DefaultTimeout
	}
	if _, err := compileRunFilter(c.Run); err != nil {
		return usageErr("-run: %v", err)
	}
	if err := PrepareOutDir(c.Out); err != nil {
		return err
	}
	return run(ctx, w, c)
}

// Main is a certifier's main function: it parses the command line (the flags of
// [Config.Flags]; -help describes them), runs [Run] until it ends or the process gets
// SIGINT or SIGTERM (the run then ends as interrupted; a second signal stops the process
// at once), and exits with status 0 when every backend passed, 1 when one failed, 2 on a
// bad command line and 130 when the run was interrupted (as `sluice conformance` does).
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal ends the run as interrupted (the reports are written); then the
	// signals' default action is back, so a second one stops the process at once.
	context.AfterFunc(ctx, stop)
	code := mainArgs(ctx, filepath.Base(os.Args[0]), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainArgs is Main for a command called name with args; it returns the exit status.
func mainArgs(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	c.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: %s -backend URL [-backend URL ...] [flags]

Run Sluice's conformance suite (%s %s) against each backend URL and write
conformance.md, conformance.json and conformance.junit.xml into the -out directory. Exit
status 1 when a subtest failed or a backend could not be opened, 130 when SIGINT or
SIGTERM interrupted the run.
Registered schemes: %s.

flags:
`, name, core.ModulePath, core.Version(), strings.Join(core.Schemes(), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q (give each URL with -backend)\n", name, fs.Args())
		return 2
	}
	if err := Run(ctx, stdout, c); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if errors.Is(err, ErrUsage) {
			fmt.Fprintf(stderr, "run %s -help for the flags\n", name)
			return 2
		}
		if ctx.Err() != nil {
			return exitInterrupted
		}
		return 1
	}
	return 0
}

// exitInterrupted is Main's exit status for a run that a signal interrupted: 128 plus
// SIGINT's number, as a shell reports a program that SIGINT ended.
const exitInterrupted = 130

// run runs the suite against every backend of c, printing progress to w, and
// writes the reports. It returns an error when a subtest failed or a report could not be
// written.
func run(ctx context.Context, w io.Writer, c Config) error {
	filter, err := compileRunFilter(c.Run)
	if err != nil {
		return usageErr("-run: %v", err)
	}
	fmt.Fprintf(w, "conformance suite %s %s\n", core.ModulePath, core.Version())
	var runs []report.Run
	var names report.Names
	for _, raw := range c.Backends {
		if ctx.Err() != nil { // interrupted: listed as not run
			name := "backend"
			if u, err := url.Parse(raw); err == nil {
				name = u.Scheme
			}
			runs = append(runs, report.Run{Backend: names.Unique(name), URL: core.RedactURL(raw), Result: conformance.Result{Incomplete: true}})
			continue
		}
		runs = append(runs, certify(ctx, w, raw, filter, c, &names))
	}
	m := report.Build(runs)
	if filter != nil && ctx.Err() == nil && noneRan(m) {
		return usageErr("-run %q: no test matched (names look like Storage/AppendFetch/AllByteValues)", c.Run)
	}
	paths, err := report.WriteFiles(c.Out, runs)
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

// PrepareOutDir checks, before a long run, that its reports can be written into dir: it
// creates dir if needed and tries a file in it. A dir that is an existing file is an error
// matching ErrUsage.
func PrepareOutDir(dir string) error {
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
func certify(ctx context.Context, w io.Writer, raw string, filter *runFilter, c Config, names *report.Names) (run report.Run) {
	run = report.Run{Backend: "backend", URL: core.RedactURL(raw)}
	if u, err := url.Parse(raw); err == nil {
		run.Backend = u.Scheme
	}
	open := func(ctx context.Context) (*core.Backend, error) { return core.Open(ctx, raw) }
	// Open once up front: a backend that cannot be opened is reported once, not per subtest.
	// Like each subtest's Open, within the subtest timeout: a broker that never answers
	// fails the backend rather than hang the run.
	octx, cancel := context.WithTimeout(ctx, c.SubtestTimeout)
	b, err := open(octx)
	timedOut := octx.Err() != nil
	cancel()
	if err != nil && ctx.Err() != nil { // interrupted while opening: not run
		run.Backend = names.Unique(run.Backend)
		run.Result.Incomplete = true
		return run
	}
	if err != nil {
		run.Backend = names.Unique(run.Backend)
		run.Error = err.Error()
		if timedOut {
			run.Error = fmt.Sprintf("no answer within -subtest-timeout %v: %v", c.SubtestTimeout, err)
		}
		fmt.Fprintf(w, "FAIL %s: %s\n", run.Backend, run.Error)
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
	h := conformance.Harness{Open: open, Timeout: c.SubtestTimeout, MaxWait: c.MaxWait, CreateMaxPartitions: c.CreateMaxPartitions}
	name := run.Backend
	var mu sync.Mutex // w and last
	last := time.Now()
	rep := conformance.ReportFunc(func(tr conformance.TestResult) {
		if report.IsRow(tr) && filter.keep(tr) {
			mu.Lock()
			defer mu.Unlock()
			printResult(w, name, tr)
			last = time.Now()
		}
	})
	// A subtest may take up to its timeout (-subtest-timeout) against a slow broker: say
	// that the run goes on when no result came for heartbeatEvery.
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				if since := time.Since(last); since >= heartbeatEvery {
					fmt.Fprintf(w, "...  %s: still running, %v since the last result (a subtest gives up after -subtest-timeout %v)\n", name, since.Round(time.Second), c.SubtestTimeout)
				}
				mu.Unlock()
			}
		}
	}()
	res := conformance.RunSuites(ctx, h, rep, filter.suites(conformance.Suites())...)
	close(stop)
	<-done
	run.Result = filter.prune(res)
	return run
}

// heartbeatEvery is how long certify stays silent while a subtest runs before it says that
// the run goes on (tests shorten it).
var heartbeatEvery = 30 * time.Second

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
