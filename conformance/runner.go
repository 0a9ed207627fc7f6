package conformance

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
)

// Outcome is how a test ended.
type Outcome int

// Outcomes of a test.
const (
	Pass Outcome = iota
	Fail
	Skip
	// Interrupted is a test that was running when the run's context ended (Ctrl-C) and
	// did not fail before: no verdict. Its Failures hold what it reported after the
	// interruption (typically "context canceled"), which is no failure of the backend.
	Interrupted
)

func (o Outcome) String() string {
	switch o {
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	case Skip:
		return "SKIP"
	case Interrupted:
		return "INTR"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// TestResult is the outcome of one test or subtest run by [Run].
type TestResult struct {
	// Name is the full slash-separated name, like "Storage/AppendFetch/AllByteValues".
	Name    string
	Outcome Outcome
	// Failures holds the messages of Errorf and Fatalf calls (and of a recovered panic),
	// in order. A parent that failed only because a subtest failed has none of its own.
	// Those of an Interrupted test were reported after the interruption.
	Failures []string
	// SkipReason is the Skipf message of a skipped test.
	SkipReason string
	// Logs holds the Logf messages, in order.
	Logs     []string
	Duration time.Duration
	// Leaf reports whether the test ran no subtests of its own.
	Leaf bool
}

// Reporter receives progress from [Run]. Start is called when a test or subtest begins and
// Done when it ends (a subtest's Done comes before its parent's). Calls come from one
// goroutine at a time.
type Reporter interface {
	Start(name string)
	Done(r TestResult)
}

// ReportFunc is a [Reporter] that only wants results.
type ReportFunc func(TestResult)

// Start does nothing.
func (ReportFunc) Start(string) {}

// Done calls f(r).
func (f ReportFunc) Done(r TestResult) { f(r) }

// Result summarises a [Run].
type Result struct {
	// Tests holds every test and subtest that ran, in the order they finished.
	Tests []TestResult
	// Passed, Failed, Skipped and Interrupted count leaf tests (those without subtests);
	// Failed also counts a parent that failed on its own rather than only through a
	// subtest.
	Passed, Failed, Skipped, Interrupted int
	// Incomplete reports that the run's context ended before every test ran: the tests
	// not reached are not in Tests.
	Incomplete bool
	Duration   time.Duration
	// SuiteVersion is the version of the conformance suite that ran: [core.Version], the version of
	// the Sluice module built into the program. Reports show it, so a certificate says which
	// suite granted it.
	SuiteVersion string
}

// OK reports whether no test failed. An Incomplete run may be OK: see Incomplete.
func (r Result) OK() bool { return r.Failed == 0 }

// String summarises the counts, like "45 passed, 3 skipped, 0 failed in 1.2s", with
// ", 1 interrupted" and "(incomplete)" after an interruption.
func (r Result) String() string {
	s := fmt.Sprintf("%d passed, %d skipped, %d failed", r.Passed, r.Skipped, r.Failed)
	if r.Interrupted > 0 {
		s += fmt.Sprintf(", %d interrupted", r.Interrupted)
	}
	s += fmt.Sprintf(" in %v", r.Duration.Round(time.Millisecond))
	if r.Incomplete {
		s += " (incomplete)"
	}
	return s
}

// Suite is a named group of conformance tests, run as the top-level test called Name.
type Suite struct {
	Name string
	Run  func(t T, h Harness)
}

// Suites returns the suites [Run] runs: "Storage" ([StorageTests]) and "IndexStorage"
// ([IndexStorageTests]).
func Suites() []Suite {
	return []Suite{{"Storage", StorageTests}, {"IndexStorage", IndexStorageTests}}
}

// Run runs every suite of [Suites] against the backend h opens, outside `go test`,
// reporting each test's start and outcome to rep (which may be nil) as it goes. Tests run
// one at a time, each subtest in its own goroutine: Fatalf, FailNow, Skipf and SkipNow end
// it there (runtime.Goexit), and a panic fails it with the panic value and stack (also a
// panic in a backend call on a goroutine the test started).
//
// When ctx ends (an operator's Ctrl-C), the tests running then end as [Interrupted]
// unless they failed before it ended, tests not yet started are not run (nor reported),
// and the Result is Incomplete.
func Run(ctx context.Context, h Harness, rep Reporter) Result {
	return RunSuites(ctx, h, rep, Suites()...)
}

// RunSuites is [Run] for chosen suites, run in the order given.
func RunSuites(ctx context.Context, h Harness, rep Reporter, suites ...Suite) Result {
	r := &runner{ctx: ctx, rep: rep}
	r.res.SuiteVersion = core.Version()
	start := time.Now()
	for _, s := range suites {
		if s.Run == nil {
			r.report(TestResult{Name: s.Name, Outcome: Fail, Failures: []string{fmt.Sprintf("suite %q has no Run function", s.Name)}, Leaf: true}, false)
			continue
		}
		r.run(nil, s.Name, func(t T) { s.Run(t, h) })
	}
	r.res.Duration = time.Since(start)
	r.res.Incomplete = r.res.Incomplete || ctx.Err() != nil
	return r.res
}

// runner owns one Run: it serialises reports and collects the results.
type runner struct {
	ctx context.Context
	rep Reporter

	mu  sync.Mutex
	res Result
}

// report records tr; ownFailure says that a parent test failed on its own, not only through
// a subtest.
func (r *runner) report(tr TestResult, ownFailure bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Tests = append(r.res.Tests, tr)
	r.count(tr, tr.Leaf || ownFailure)
	if r.rep != nil {
		r.rep.Done(tr)
	}
}

// count counts tr in the summary if it is a leaf or failed on its own (r.mu held).
func (r *runner) count(tr TestResult, counted bool) {
	if counted {
		switch tr.Outcome {
		case Pass:
			r.res.Passed++
		case Fail:
			r.res.Failed++
		case Skip:
			r.res.Skipped++
		case Interrupted:
			r.res.Interrupted++
		}
	}
}

// run runs f as the test called name (a subtest of parent, if not nil) in a new goroutine and
// waits for it. It reports whether the test passed or was skipped.
func (r *runner) run(parent *rt, name string, f func(T)) bool {
	full := name
	pctx := r.ctx
	if parent != nil {
		full = parent.name + "/" + name
		pctx = parent.ctx
	}
	if pctx.Err() != nil { // interrupted before it started: not run
		r.mu.Lock()
		r.res.Incomplete = true
		r.mu.Unlock()
		return true
	}
	if r.rep != nil {
		r.mu.Lock()
		r.rep.Start(full)
		r.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(pctx)
	t := &rt{r: r, name: full, ctx: ctx}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			// Runs on return, Goexit (FailNow, SkipNow) and panic, like testing.T.
			if p := recover(); p != nil {
				t.fail(fmt.Sprintf("panic: %v\n%s", p, debug.Stack()))
			}
			cancel()
			t.runCleanups()
		}()
		f(t)
	}()
	<-done
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := TestResult{Name: full, Failures: t.failures, Logs: t.logs, SkipReason: t.skipReason, Duration: time.Since(start), Leaf: !t.hasSub}
	switch {
	case t.verdict:
		tr.Outcome = Fail
	case r.ctx.Err() != nil: // the run ended while it ran: a failure since is no verdict
		tr.Outcome = Interrupted
	case t.failed:
		tr.Outcome = Fail
	case t.skipped:
		tr.Outcome = Skip
	}
	r.report(tr, t.ownFailure && tr.Outcome == Fail)
	if t.failed && parent != nil {
		parent.childFailed(tr.Outcome == Fail)
	}
	return !t.failed
}

// rt is the runner's T.
type rt struct {
	r    *runner
	name string
	ctx  context.Context

	mu         sync.Mutex
	failed     bool
	ownFailure bool // failed by its own call, not only through a subtest
	verdict    bool // failed while the run was live (by itself or a subtest): not interrupted
	skipped    bool
	hasSub     bool
	failures   []string
	skipReason string
	logs       []string
	cleanups   []func()
}

var _ T = (*rt)(nil)

func (t *rt) Helper()                  {}
func (t *rt) Name() string             { return t.name }
func (t *rt) Context() context.Context { return t.ctx }

func (t *rt) Logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.logs = append(t.logs, strings.TrimSuffix(fmt.Sprintf(format, args...), "\n"))
}

func (t *rt) fail(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.markFailedLocked()
	t.failures = append(t.failures, strings.TrimSuffix(msg, "\n"))
}

// markFailedLocked records an own failure (t.mu held), a verdict unless the run's context
// has ended.
func (t *rt) markFailedLocked() {
	t.failed, t.ownFailure = true, true
	if t.r.ctx.Err() == nil {
		t.verdict = true
	}
}

func (t *rt) Errorf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }

func (t *rt) Fatalf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (t *rt) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.markFailedLocked()
}

// childFailed records that a subtest failed; verdict: not only after an interruption.
func (t *rt) childFailed(verdict bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	t.verdict = t.verdict || verdict
}

func (t *rt) FailNow() {
	t.Fail()
	runtime.Goexit()
}

func (t *rt) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *rt) Skipf(format string, args ...any) {
	t.mu.Lock()
	t.skipped = true
	t.skipReason = strings.TrimSuffix(fmt.Sprintf(format, args...), "\n")
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *rt) SkipNow() {
	t.mu.Lock()
	t.skipped = true
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *rt) Skipped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.skipped
}

func (t *rt) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// runCleanups runs the cleanup functions, last registered first. A cleanup that panics or
// calls FailNow fails the test without stopping the remaining cleanups.
func (t *rt) runCleanups() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		t.runCleanup(f)
	}
}

func (t *rt) runCleanup(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				t.fail(fmt.Sprintf("panic in cleanup: %v\n%s", p, debug.Stack()))
			}
		}()
		f()
	}()
	<-done
}

func (t *rt) Run(name string, f func(T)) bool {
	t.mu.Lock()
	t.hasSub = true
	t.mu.Unlock()
	return t.r.run(t, name, f)
}
