package conformance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
)

// hangingStore is a memory store whose Close blocks until release is closed, then reports
// on returned.
type hangingStore struct {
	*memory.Store
	release  <-chan struct{}
	returned chan<- struct{}
}

func (s hangingStore) Close() error {
	<-s.release
	defer func() { s.returned <- struct{}{} }()
	return s.Store.Close()
}

// A Close that hangs, in a test step or in the cleanup, fails the subtest once the context
// in force ends, saying a goroutine was left behind, and the run goes on.
func TestHungCloseFailsSubtest(t *testing.T) {
	release := make(chan struct{})
	returned := make(chan struct{}, 16)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	const timeout = 500 * time.Millisecond // only how long each hung Close is waited for
	h := Harness{Timeout: timeout, Open: func(context.Context) (*core.Backend, error) {
		s, err := memory.New(nil)
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: hangingStore{s, release, returned}}, nil
	}}
	suite := func(t T, h Harness) {
		t.Run("InCleanup", func(t T) {
			e := newEnv(t, h)
			e.create("hang", 1)
		})
		t.Run("InTestStep", func(t T) {
			e := newEnv(t, h)
			e.create("hang", 1)
			if err := e.close(); !errors.Is(err, errCloseHung) || !strings.Contains(err.Error(), "leaked") {
				t.Errorf("Close step returned %v, want errCloseHung saying a goroutine leaked", err)
			}
			if err := e.close(); err != nil {
				t.Errorf("a second close step waited again: %v", err)
			}
		})
		t.Run("After", func(t T) {})
	}
	done := make(chan Result, 1)
	go func() { done <- RunSuites(t.Context(), h, nil, Suite{Name: "S", Run: suite}) }()
	var res Result
	select {
	case res = <-done:
	case <-time.After(time.Minute): // a hang, not a timing assertion: unblock it and fail
		free()
		<-done
		t.Fatal("the run waited for a hung Close instead of failing the subtest")
	}
	failures := map[string][]string{}
	outcomes := map[string]Outcome{}
	for _, tr := range res.Tests {
		failures[tr.Name], outcomes[tr.Name] = tr.Failures, tr.Outcome
	}
	if f := failures["S/InCleanup"]; outcomes["S/InCleanup"] != Fail || len(f) != 1 ||
		!strings.Contains(f[0], "cleanup: ") || !strings.Contains(f[0], "Backend.Close in cleanup had not returned") || !strings.Contains(f[0], "leaked") {
		t.Errorf("S/InCleanup: %v %q; want one failure saying Close hung in cleanup and leaked a goroutine", outcomes["S/InCleanup"], f)
	}
	// The test step's hung Close passed, then the cleanup reopened the backend (to delete the
	// stream) and hung in its Close.
	if f := failures["S/InTestStep"]; outcomes["S/InTestStep"] != Fail || len(f) != 1 ||
		!strings.Contains(f[0], "Backend.Close in cleanup had not returned") {
		t.Errorf("S/InTestStep: %v %q; want one failure, from the cleanup", outcomes["S/InTestStep"], f)
	}
	if outcomes["S/After"] != Pass {
		t.Errorf("S/After: %v; the run must go on after a hung Close", outcomes["S/After"])
	}
	free()
	for i := range 3 { // the three hung Close calls return once released: no goroutine left
		select {
		case <-returned:
		case <-time.After(time.Minute):
			t.Fatalf("only %d hung Close calls returned after release", i)
		}
	}
}

// deadlineStore is a memory store that records calls whose context has no deadline; its
// Append fails, to end each benchmark at once.
type deadlineStore struct {
	*memory.Store
	mu      *sync.Mutex
	calls   *int
	missing *[]string
}

func (s deadlineStore) check(ctx context.Context, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.calls++
	if _, ok := ctx.Deadline(); !ok {
		*s.missing = append(*s.missing, what)
	}
}

func (s deadlineStore) CreateStream(ctx context.Context, stream string, partitions int) (int, error) {
	s.check(ctx, "CreateStream")
	return s.Store.CreateStream(ctx, stream, partitions)
}

func (s deadlineStore) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	s.check(ctx, "Append")
	return nil, errors.New("deadlineStore: Append refused")
}

func (s deadlineStore) DeleteStream(ctx context.Context, stream string) error {
	s.check(ctx, "DeleteStream")
	return s.Store.DeleteStream(ctx, stream)
}

// BenchmarkStorage passes contexts bounded by Harness.Timeout to Open and to every call.
func TestBenchmarkStorageHonoursTimeout(t *testing.T) {
	var (
		mu      sync.Mutex
		calls   int
		missing []string
	)
	h := Harness{Open: func(ctx context.Context) (*core.Backend, error) {
		if _, ok := ctx.Deadline(); !ok {
			mu.Lock()
			missing = append(missing, "Open")
			mu.Unlock()
		}
		s, err := memory.New(nil)
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: deadlineStore{s, &mu, &calls, &missing}}, nil
	}}
	testing.Benchmark(func(b *testing.B) { BenchmarkStorage(b, h) })
	mu.Lock()
	defer mu.Unlock()
	if calls < 3 {
		t.Fatalf("only %d calls reached the backend; did the benchmarks run?", calls)
	}
	if len(missing) > 0 {
		t.Errorf("calls given a context without a deadline: %q", missing)
	}
	t.Logf("%d calls", calls)
}

// closeCounter is an IndexStorage that counts its Close calls.
type closeCounter struct {
	*memory.Store
	closed *atomic.Int32
}

func (c closeCounter) Close() error { c.closed.Add(1); return c.Store.Close() }

// A backend that Reopen, or the cleanup's Open, returns without Storage fails the subtest,
// and what it holds (its Index) is closed all the same.
func TestBackendWithoutStorageClosed(t *testing.T) {
	var closed atomic.Int32
	opens := 0
	indexOnly := func(context.Context) (*core.Backend, error) {
		s, err := memory.New(nil)
		if err != nil {
			return nil, err
		}
		return &core.Backend{Index: closeCounter{s, &closed}}, nil
	}
	h := Harness{Open: func(ctx context.Context) (*core.Backend, error) {
		opens++
		if opens == 1 { // the subtest's backend; the cleanup's reopen has no Storage
			s, err := memory.New(nil)
			if err != nil {
				return nil, err
			}
			return &core.Backend{Storage: s, Index: s}, nil
		}
		return indexOnly(ctx)
	}, Reopen: indexOnly}
	suite := func(t T, h Harness) {
		t.Run("Reopen", func(t T) {
			e := newEnv(t, h)
			e.create("s", 1)
			e.reopen()
		})
	}
	res := RunSuites(t.Context(), h, nil, Suite{Name: "S", Run: suite})
	var f string
	for _, tr := range res.Tests {
		if tr.Name == "S/Reopen" && tr.Outcome == Fail {
			f = strings.Join(tr.Failures, "\n")
		}
	}
	if f == "" {
		t.Fatalf("result %+v; want S/Reopen failed", res.Tests)
	}
	for _, want := range []string{"reopen returned a backend without Storage", "cleanup: Harness.Open returned a backend without Storage"} {
		if !strings.Contains(f, want) {
			t.Errorf("failures lack %q:\n%s", want, f)
		}
	}
	if got := closed.Load(); got != 2 {
		t.Errorf("%d of the 2 backends without Storage were closed", got)
	}
}

// slowDeleteStore is a memory store whose DeleteStream blocks until its context ends.
type slowDeleteStore struct{ *memory.Store }

func (s slowDeleteStore) DeleteStream(ctx context.Context, stream string) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestCleanupCloseHasItsOwnContext: a cleanup whose stream deletions used up its context
// reports them, and still gives Close its own: a Close that returns at once is not reported
// hung (it was, and the report blamed the backend's Close for its DeleteStream).
func TestCleanupCloseHasItsOwnContext(t *testing.T) {
	h := Harness{Timeout: 200 * time.Millisecond, Open: func(context.Context) (*core.Backend, error) {
		s, err := memory.New(nil)
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: slowDeleteStore{s}}, nil
	}}
	suite := func(t T, h Harness) {
		t.Run("SlowDelete", func(t T) {
			e := newEnv(t, h)
			e.create("slow", 1)
		})
	}
	res := RunSuites(t.Context(), h, nil, Suite{Name: "S", Run: suite})
	if len(res.Tests) == 0 {
		t.Fatal("no test ran")
	}
	var f []string
	for _, tr := range res.Tests {
		if tr.Name == "S/SlowDelete" {
			f = tr.Failures
		}
	}
	if len(f) != 1 || !strings.Contains(f[0], "DeleteStream") {
		t.Errorf("S/SlowDelete failures %q; want one, the DeleteStream that timed out (not a hung Close)", f)
	}
}
