package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/conformance/conformancetest"
	"github.com/sluicehq/sluice/core"
)

// memoryHarness opens a new memory backend, passed through wrap (if not nil).
func memoryHarness(wrap func(*core.Backend) *core.Backend) conformance.Harness {
	return conformance.Harness{
		// Small enough to keep the suite fast under -race.
		Appenders:           8,
		MessagesPerAppender: 100,
		Open: func(context.Context) (*core.Backend, error) {
			s, err := memory.New(&memory.Options{MaxMessageSize: 4096})
			if err != nil {
				return nil, err
			}
			b := &core.Backend{Storage: s, Index: s}
			if wrap != nil {
				b = wrap(b)
			}
			return b, nil
		},
	}
}

var storageOnly = conformance.Suite{Name: "Storage", Run: conformance.StorageTests}

// nilMap is never made: writing to it panics. A package variable, so that linters (nilness,
// staticcheck SA5000) do not flag the deliberate panic.
var nilMap map[string]int

// recorder is a Reporter that checks Start/Done pairing.
type recorder struct {
	mu      sync.Mutex
	running []string
	done    []conformance.TestResult
	errs    []string
}

func (r *recorder) Start(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = append(r.running, name)
}

func (r *recorder) Done(tr conformance.TestResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.running); n == 0 || r.running[n-1] != tr.Name {
		r.errs = append(r.errs, fmt.Sprintf("Done(%q) while running %q", tr.Name, r.running))
	} else {
		r.running = r.running[:n-1]
	}
	r.done = append(r.done, tr)
}

func find(t *testing.T, res conformance.Result, name string) conformance.TestResult {
	t.Helper()
	for _, tr := range res.Tests {
		if tr.Name == name {
			return tr
		}
	}
	t.Fatalf("no result for %q", name)
	return conformance.TestResult{}
}

func failedLeaves(res conformance.Result) []string {
	var out []string
	for _, tr := range res.Tests {
		if tr.Leaf && tr.Outcome == conformance.Fail {
			out = append(out, tr.Name)
		}
	}
	return out
}

func TestRunMemoryPasses(t *testing.T) {
	rec := &recorder{}
	res := conformance.Run(t.Context(), memoryHarness(nil), rec)
	if !res.OK() {
		for _, tr := range res.Tests {
			if tr.Outcome == conformance.Fail {
				t.Errorf("%s failed: %s", tr.Name, strings.Join(tr.Failures, "; "))
			}
		}
	}
	if len(rec.errs) > 0 || len(rec.running) > 0 {
		t.Errorf("reporter calls out of order: %v; still running: %v", rec.errs, rec.running)
	}
	if len(rec.done) != len(res.Tests) {
		t.Errorf("reporter got %d results, Result has %d", len(rec.done), len(res.Tests))
	}
	if res.Passed < 40 {
		t.Errorf("only %d leaf tests passed; the suite lost subtests?", res.Passed)
	}
	for _, name := range []string{"Storage/Persistence", "IndexStorage/Persistence"} {
		tr := find(t, res, name)
		if tr.Outcome != conformance.Skip || !strings.Contains(tr.SkipReason, "Persistent") {
			t.Errorf("%s: %v %q; want skipped, with a reason naming Persistent", name, tr.Outcome, tr.SkipReason)
		}
	}
	top := find(t, res, "Storage")
	if top.Leaf || top.Outcome != conformance.Pass {
		t.Errorf("Storage: leaf=%v outcome=%v; want a passing parent", top.Leaf, top.Outcome)
	}
	if want := fmt.Sprintf("%d passed, %d skipped, 0 failed in ", res.Passed, res.Skipped); !strings.HasPrefix(res.String(), want) {
		t.Errorf("Result.String() = %q, want prefix %q", res.String(), want)
	}
	t.Log(res)
}

func TestRunNonMonotonicFails(t *testing.T) {
	res := conformance.RunSuites(t.Context(), memoryHarness(conformancetest.NonMonotonic), nil, storageOnly)
	if res.OK() {
		t.Fatal("the suite passed a backend whose indexes are not increasing")
	}
	tr := find(t, res, "Storage/Index/StrictlyIncreasing")
	if tr.Outcome != conformance.Fail || len(tr.Failures) == 0 || !strings.Contains(tr.Failures[0], "strictly increasing") {
		t.Errorf("Storage/Index/StrictlyIncreasing: %v %q; want a failure explaining indexes must be strictly increasing", tr.Outcome, tr.Failures)
	}
	if top := find(t, res, "Storage"); top.Outcome != conformance.Fail {
		t.Errorf("parent Storage is %v, want FAIL", top.Outcome)
	}
	if got := find(t, res, "Storage/Capabilities"); got.Outcome != conformance.Pass {
		t.Errorf("Storage/Capabilities: %v %q; the fault is in the indexes only", got.Outcome, got.Failures)
	}
	t.Logf("failed: %v", failedLeaves(res))
	t.Logf("message: %s", tr.Failures[0])
}

func TestRunNonMonotonicIndexFails(t *testing.T) {
	res := conformance.RunSuites(t.Context(), memoryHarness(conformancetest.NonMonotonicIndex), nil,
		conformance.Suite{Name: "IndexStorage", Run: conformance.IndexStorageTests})
	tr := find(t, res, "IndexStorage/Monotonic/LowerIgnored")
	if tr.Outcome != conformance.Fail || len(tr.Failures) == 0 || !strings.Contains(tr.Failures[0], "saved 10 then 3") {
		t.Errorf("IndexStorage/Monotonic/LowerIgnored: %v %q; want a failure naming the saves", tr.Outcome, tr.Failures)
	}
	if res.OK() {
		t.Error("the suite passed an IndexStorage whose saves are not monotonic")
	}
	t.Logf("failed: %v; message: %s", failedLeaves(res), tr.Failures)
}

func TestRunSparsePasses(t *testing.T) {
	h := memoryHarness(func(b *core.Backend) *core.Backend { return conformancetest.Sparse(b, 3, false) })
	res := conformance.Run(t.Context(), h, nil)
	if f := failedLeaves(res); len(f) > 0 {
		t.Fatalf("a correct backend with sparse indexes failed %v: %s", f, find(t, res, f[0]).Failures)
	}
	tr := find(t, res, "Storage/Index/Dense")
	if tr.Outcome != conformance.Skip || !strings.Contains(tr.SkipReason, "DenseIndex") {
		t.Errorf("Storage/Index/Dense: %v %q; want skipped with a reason naming DenseIndex", tr.Outcome, tr.SkipReason)
	}
}

func TestRunFalseDenseCapabilityFails(t *testing.T) {
	h := memoryHarness(func(b *core.Backend) *core.Backend { return conformancetest.Sparse(b, 2, true) })
	res := conformance.RunSuites(t.Context(), h, nil, storageOnly)
	if f := failedLeaves(res); !slices.Equal(f, []string{"Storage/Index/Dense"}) {
		t.Fatalf("failed leaves = %v; want exactly Storage/Index/Dense", f)
	}
	if tr := find(t, res, "Storage/Index/Dense"); !strings.Contains(tr.Failures[0], "DenseIndex is declared") {
		t.Errorf("failure %q does not say the declared capability is false", tr.Failures[0])
	}
}

// TestRunStorageSparse runs the suite through `go test` on a sparse backend.
func TestRunStorageSparse(t *testing.T) {
	h := memoryHarness(func(b *core.Backend) *core.Backend { return conformancetest.Sparse(b, 5, false) })
	conformance.RunStorage(t, h)
	conformance.RunIndexStorage(t, h)
}

func TestRunnerSemantics(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	log := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		trace = append(trace, s)
	}
	suite := func(t conformance.T, _ conformance.Harness) {
		t.Run("Pass", func(t conformance.T) {
			t.Logf("hello %d", 1)
		})
		t.Run("Fatal", func(t conformance.T) {
			t.Cleanup(func() { log("cleanup 1") })
			t.Cleanup(func() {
				if t.Context().Err() == nil {
					log("context still live in cleanup")
				}
				log("cleanup 2")
			})
			t.Fatalf("boom %s", "now")
			log("after Fatalf")
		})
		t.Run("Skip", func(t conformance.T) {
			t.Skipf("no %s", "reason")
			log("after Skipf")
		})
		t.Run("Panic", func(t conformance.T) {
			nilMap["x"] = 1 // panics: the test wants a runtime panic and its message
		})
		t.Run("ErrorfFromGoroutines", func(t conformance.T) {
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() { t.Errorf("worker %d", i) })
			}
			wg.Wait()
		})
		t.Run("Nested", func(t conformance.T) {
			t.Run("Inner", func(t conformance.T) { t.FailNow() })
			if !t.Failed() {
				log("parent not failed by child")
			}
		})
		t.Run("ParentFails", func(t conformance.T) {
			t.Run("Child", func(t conformance.T) {})
			t.Fail()
		})
		t.Run("CleanupFatal", func(t conformance.T) {
			t.Cleanup(func() { log("cleanup a") })
			t.Cleanup(func() { t.Fatalf("cleanup fails") })
		})
	}
	res := conformance.RunSuites(t.Context(), conformance.Harness{}, nil, conformance.Suite{Name: "S", Run: suite}, conformance.Suite{Name: "Missing"})
	want := map[string]conformance.Outcome{
		"S/Pass": conformance.Pass, "S/Fatal": conformance.Fail, "S/Skip": conformance.Skip,
		"S/Panic": conformance.Fail, "S/ErrorfFromGoroutines": conformance.Fail,
		"S/Nested/Inner": conformance.Fail, "S/Nested": conformance.Fail, "S/CleanupFatal": conformance.Fail,
		"S/ParentFails": conformance.Fail, "S/ParentFails/Child": conformance.Pass,
		"S": conformance.Fail, "Missing": conformance.Fail,
	}
	for name, o := range want {
		if got := find(t, res, name).Outcome; got != o {
			t.Errorf("%s: %v, want %v", name, got, o)
		}
	}
	if res.SuiteVersion == "" || res.SuiteVersion != core.Version() {
		t.Errorf("Result.SuiteVersion = %q, want core.Version() = %q", res.SuiteVersion, core.Version())
	}
	if got := find(t, res, "S/Pass").Logs; !slices.Equal(got, []string{"hello 1"}) {
		t.Errorf("S/Pass logs = %q", got)
	}
	if got := find(t, res, "S/Fatal").Failures; !slices.Equal(got, []string{"boom now"}) {
		t.Errorf("S/Fatal failures = %q", got)
	}
	if got := find(t, res, "S/Skip").SkipReason; got != "no reason" {
		t.Errorf("S/Skip reason = %q", got)
	}
	if f := find(t, res, "S/Panic").Failures; len(f) != 1 || !strings.Contains(f[0], "panic: assignment to entry in nil map") {
		t.Errorf("S/Panic failures = %q", f)
	}
	if n := len(find(t, res, "S/ErrorfFromGoroutines").Failures); n != 4 {
		t.Errorf("S/ErrorfFromGoroutines has %d failures, want 4", n)
	}
	if f := find(t, res, "S/Nested").Failures; len(f) != 0 {
		t.Errorf("S/Nested has its own failures %q; it failed only through its child", f)
	}
	if wantTrace := []string{"cleanup 2", "cleanup 1", "cleanup a"}; !slices.Equal(trace, wantTrace) {
		t.Errorf("trace = %q, want %q", trace, wantTrace)
	}
	// Failed: Fatal, Panic, ErrorfFromGoroutines, Nested/Inner, ParentFails (on its own),
	// CleanupFatal, Missing; not S or Nested, which failed only through subtests.
	if res.Passed != 2 || res.Skipped != 1 || res.Failed != 7 || res.OK() {
		t.Errorf("counts: %d passed, %d skipped, %d failed, OK %v; want 2, 1, 7, false", res.Passed, res.Skipped, res.Failed, res.OK())
	}
}

// When the run's context ends (Ctrl-C), the test running then is interrupted, not failed,
// unless it failed before; tests not started are not run.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	stop := errors.New("operator pressed ^C")
	suite := func(t conformance.T, _ conformance.Harness) {
		t.Run("FailedBefore", func(t conformance.T) { t.Errorf("a real failure") })
		t.Run("Group", func(t conformance.T) {
			t.Run("Running", func(t conformance.T) {
				t.Logf("running")
				cancel(stop)
				<-t.Context().Done()
				t.Errorf("fetch: %v", t.Context().Err()) // what a cut-short subtest reports
			})
			t.Run("NotStarted", func(t conformance.T) { t.Errorf("ran after cancel") })
		})
		t.Run("Second", func(t conformance.T) { t.Errorf("ran after cancel") })
	}
	rec := &recorder{}
	res := conformance.RunSuites(ctx, conformance.Harness{}, rec, conformance.Suite{Name: "S", Run: suite}, conformance.Suite{Name: "T", Run: suite})
	for name, want := range map[string]conformance.Outcome{
		"S/FailedBefore": conformance.Fail, "S/Group/Running": conformance.Interrupted,
		"S/Group": conformance.Interrupted, "S": conformance.Fail,
	} {
		if got := find(t, res, name).Outcome; got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if f := find(t, res, "S/Group/Running").Failures; len(f) != 1 || !strings.Contains(f[0], "context canceled") {
		t.Errorf("S/Group/Running failures = %q; want what it reported after the interruption", f)
	}
	for _, tr := range res.Tests {
		if strings.HasSuffix(tr.Name, "NotStarted") || strings.HasSuffix(tr.Name, "Second") || strings.HasPrefix(tr.Name, "T") {
			t.Errorf("%s ran or was reported after the interruption: %v", tr.Name, tr.Outcome)
		}
	}
	if res.Passed != 0 || res.Failed != 1 || res.Interrupted != 1 || res.Skipped != 0 || !res.Incomplete || res.OK() {
		t.Errorf("result %+v: want 1 failed, 1 interrupted, incomplete", res)
	}
	if len(rec.errs) > 0 || len(rec.running) > 0 || len(rec.done) != len(res.Tests) {
		t.Errorf("reporter: errors %v, still running %v, %d results for %d tests", rec.errs, rec.running, len(rec.done), len(res.Tests))
	}
	if s := res.String(); !strings.Contains(s, "1 failed, 1 interrupted in ") || !strings.HasSuffix(s, "(incomplete)") {
		t.Errorf("Result.String() = %q", s)
	}
}

// clientIDs collects client ids, from every backend a run opens.
type clientIDs struct {
	mu  sync.Mutex
	ids []string
}

func (c *clientIDs) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, id)
}

// clientRecorder is an IndexStorage that records every client id it is passed.
type clientRecorder struct {
	core.IndexStorage
	seen *clientIDs
}

func (r clientRecorder) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	r.seen.add(clientID)
	return r.IndexStorage.GetIndex(ctx, clientID, stream, partition)
}

func (r clientRecorder) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	r.seen.add(clientID)
	return r.IndexStorage.SaveIndex(ctx, clientID, stream, partition, index)
}

// Every client id the suite uses (but the empty one it must see rejected) starts with
// Harness.StreamPrefix, like its stream names: runs against a shared broker (Kafka consumer
// groups) must not share them.
func TestClientIDsUnderStreamPrefix(t *testing.T) {
	const prefix = "cidtest-"
	seen := &clientIDs{}
	h := memoryHarness(func(b *core.Backend) *core.Backend {
		return &core.Backend{Storage: b.Storage, Index: clientRecorder{b.Index, seen}}
	})
	h.StreamPrefix = prefix
	res := conformance.Run(t.Context(), h, nil)
	if f := failedLeaves(res); len(f) > 0 {
		t.Fatalf("the memory backend failed %v: %q", f, find(t, res, f[0]).Failures)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if len(seen.ids) < 20 {
		t.Fatalf("only %d client ids recorded; the IndexStorage suite did not run?", len(seen.ids))
	}
	bad := map[string]bool{}
	for _, id := range seen.ids {
		if id != "" && !strings.HasPrefix(id, prefix) {
			bad[id] = true
		}
	}
	if len(bad) > 0 {
		t.Errorf("client ids not under Harness.StreamPrefix %q: %q", prefix, slices.Sorted(maps.Keys(bad)))
	}
}

// asyncMemory is a memory store with an AppendAsync that appends synchronously.
type asyncMemory struct{ *memory.Store }

func (s asyncMemory) AppendAsync(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
	done(s.Append(ctx, stream, p, msgs))
}

// The suite's AppendAsync checks still run, and pass, through a conformancetest wrapper.
func TestRunSparseAsyncPasses(t *testing.T) {
	h := memoryHarness(func(b *core.Backend) *core.Backend {
		b.Storage = asyncMemory{b.Storage.(*memory.Store)}
		return conformancetest.Sparse(b, 3, false)
	})
	res := conformance.RunSuites(t.Context(), h, nil, storageOnly)
	if f := failedLeaves(res); len(f) > 0 {
		t.Fatalf("a correct backend with sparse indexes failed %v: %s", f, find(t, res, f[0]).Failures)
	}
	for _, name := range []string{"Storage/AppendAsync", "Storage/StreamDeleter", "Storage/PartitionCounter"} {
		if tr := find(t, res, name); tr.Outcome != conformance.Pass {
			t.Errorf("%s: %v %q; want it run and passed", name, tr.Outcome, tr.SkipReason)
		}
	}
}

// panicsInReader is a storage whose Fetch panics for one reader of ConcurrentReaders (the
// one asking 13 messages at a time), in a goroutine the suite started, not the test's own.
type panicsInReader struct{ core.Storage }

func (p panicsInReader) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if strings.Contains(stream, "readers") && limit == 13 {
		panic("fetch is not safe for concurrent use")
	}
	return p.Storage.Fetch(ctx, stream, partition, from, limit)
}

// A panic in a backend call on a goroutine of the suite fails that test with the panic
// value and stack; the process and the run go on.
func TestRunPanicInSuiteGoroutine(t *testing.T) {
	res := conformance.RunSuites(t.Context(), memoryHarness(func(b *core.Backend) *core.Backend {
		return &core.Backend{Storage: panicsInReader{b.Storage}, Index: b.Index}
	}), nil, storageOnly)
	tr := find(t, res, "Storage/ConcurrentReaders")
	if tr.Outcome != conformance.Fail || len(tr.Failures) == 0 || !strings.Contains(tr.Failures[0], "panic in a backend call: fetch is not safe for concurrent use") {
		t.Fatalf("Storage/ConcurrentReaders: %v %q; want a failure naming the panic", tr.Outcome, tr.Failures)
	}
	if got := find(t, res, "Storage/ConcurrentReadWrite"); got.Outcome != conformance.Pass {
		t.Errorf("Storage/ConcurrentReadWrite after the panic: %v %q; want the run to go on", got.Outcome, got.Failures)
	}
}

// unwrapped is a storage whose Fetch reports a missing stream in words only (%v, not %w).
type unwrapped struct{ core.Storage }

func (u unwrapped) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	ms, err := u.Storage.Fetch(ctx, stream, partition, from, limit)
	if errors.Is(err, core.ErrStreamNotFound) {
		return nil, fmt.Errorf("toy: %v", err)
	}
	return ms, err
}

// A sentinel in an error's text but not in its chain gets a failure that says to wrap it.
func TestRunUnwrappedSentinelHint(t *testing.T) {
	res := conformance.RunSuites(t.Context(), memoryHarness(func(b *core.Backend) *core.Backend {
		return &core.Backend{Storage: unwrapped{b.Storage}, Index: b.Index}
	}), nil, storageOnly)
	for _, tr := range res.Tests {
		for _, f := range tr.Failures {
			if strings.Contains(f, "stream not found") && strings.Contains(f, "wrap the sentinel with %w") {
				return
			}
		}
	}
	t.Fatalf("no failure says to wrap the sentinel with %%w; failed: %v", failedLeaves(res))
}
