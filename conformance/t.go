package conformance

import (
	"context"
	"testing"
)

// T is the part of *testing.T the suite uses. [RunStorage] and [RunIndexStorage] adapt a
// *testing.T to it; [Run] implements it itself so the same subtests run outside `go test`
// (for example from a command-line tool certifying a deployed broker).
//
// The methods mean what they mean on *testing.T. FailNow, Fatalf, SkipNow and Skipf stop the
// calling goroutine, so they must be called only from the goroutine running the test;
// Errorf, Logf and Fail may be called from any goroutine.
type T interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fail()
	FailNow()
	Failed() bool
	Skipf(format string, args ...any)
	SkipNow()
	Skipped() bool
	Cleanup(func())
	// Context returns a context that is cancelled just before the test's cleanup functions
	// run.
	Context() context.Context
	// Run runs f as a subtest of t called name and waits for it; it reports whether f
	// succeeded (or was skipped).
	Run(name string, f func(t T)) bool
}

// testingT adapts *testing.T to T.
type testingT struct{ *testing.T }

func (t testingT) Run(name string, f func(t T)) bool {
	t.T.Helper()
	return t.T.Run(name, func(tt *testing.T) { f(testingT{tt}) })
}

// FromTesting adapts a *testing.T to [T], so that code written against T runs under go
// test: [StorageTests] and [IndexStorageTests] ([RunStorage](t, h) is
// StorageTests(FromTesting(t), h)), the Run function of each [Suite] that [Suites] returns,
// or a T of your own that wraps it. There is no API for running some subtests only: select
// them with go test's -run flag, by their slash-separated names, such as
// -run '^TestConformance$/^Storage$/^AppendFetch$/' (each level is an unanchored regular
// expression, as in go test: without the anchors, Storage also matches IndexStorage).
func FromTesting(t *testing.T) T { return testingT{t} }

// RunStorage runs the Storage conformance subtests against the backend h opens, as subtests
// of t. Call it from the backend's own test:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunStorage(t, conformance.Harness{Open: open})
//	}
func RunStorage(t *testing.T, h Harness) {
	t.Helper()
	StorageTests(testingT{t}, h)
}

// RunIndexStorage runs the IndexStorage conformance subtests against the backend h opens,
// as subtests of t. It creates its streams through the backend's Storage first, since some
// brokers (Kafka) keep consumer indexes only for existing topics.
func RunIndexStorage(t *testing.T, h Harness) {
	t.Helper()
	IndexStorageTests(testingT{t}, h)
}
