package conformance

import (
	"context"
	"fmt"
	"sync"

	"github.com/sluicehq/sluice/core"
)

// asyncCalls is how many AppendAsync calls the AppendAsync subtest starts on one partition
// before waiting for any of them.
const asyncCalls = 64

// asyncOutcome is what one AppendAsync call reported.
type asyncOutcome struct {
	idx   []uint64
	err   error
	calls int // times done was called
	order int // position among the done calls (0 = first), -1 before done
}

// testAppendAsync checks the [core.AsyncAppender] contract of a backend that implements it:
// calls started in sequence on one partition report, in start order, strictly increasing
// indexes, Fetch returns their messages in that order, done is called exactly once, msgs are
// not retained after done, and invalid calls report Append's errors through done.
func testAppendAsync(t T, h Harness) {
	e := newEnv(t, h)
	aa, ok := e.storage().(core.AsyncAppender)
	if !ok {
		t.Skipf("backend %q does not implement core.AsyncAppender", e.caps().Name)
	}
	n := e.create("async", 1)

	var (
		mu       sync.Mutex
		outcomes = make([]asyncOutcome, asyncCalls)
		finished = 0
		all      = make(chan struct{})
	)
	batches := make([][][]byte, asyncCalls)
	var want [][]byte
	for i := range asyncCalls {
		batches[i] = msgs(fmt.Sprintf("async-%d", i), 1+i%3)
		for _, m := range batches[i] {
			want = append(want, append([]byte(nil), m...)) // kept: batches[i] is overwritten after done
		}
		outcomes[i].order = -1
	}
	for i := range asyncCalls {
		aa.AppendAsync(e.ctx, n, 0, batches[i], func(idx []uint64, err error) {
			mu.Lock()
			defer mu.Unlock()
			o := &outcomes[i]
			o.calls++
			if o.calls > 1 {
				return
			}
			o.idx, o.err, o.order = idx, err, finished
			finished++
			if finished == asyncCalls {
				close(all)
			}
			// The backend must not retain msgs after done: scribble over them.
			for _, m := range batches[i] {
				for j := range m {
					m[j] = 'X'
				}
			}
		})
	}
	select {
	case <-all:
	case <-e.ctx.Done():
		mu.Lock()
		got := finished
		mu.Unlock()
		t.Fatalf("only %d of %d AppendAsync calls called done: %v", got, asyncCalls, e.ctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	var wantIdx []uint64
	var last uint64
	for i, o := range outcomes {
		switch {
		case o.calls != 1:
			t.Fatalf("AppendAsync call %d called done %d times, want 1", i, o.calls)
		case o.err != nil:
			t.Fatalf("AppendAsync call %d: %v", i, o.err)
		case len(o.idx) != len(batches[i]):
			t.Fatalf("AppendAsync call %d of %d message(s) reported %d index(es)", i, len(batches[i]), len(o.idx))
		case o.order != i:
			t.Fatalf("AppendAsync call %d called done in position %d; successful calls must call done in start order", i, o.order)
		}
		for j, x := range o.idx {
			if len(wantIdx) > 0 && x <= last {
				t.Fatalf("AppendAsync call %d reported index %d for message %d after index %d; indexes must increase in start order", i, x, j, last)
			}
			wantIdx, last = append(wantIdx, x), x
		}
	}
	e.expectMessages("AppendAsync in sequence", e.readAll(n, 0, 0, len(want)+1, len(want)), wantIdx, want)

	// Invalid calls report Append's errors, through done.
	check := func(what string, stream string, partition int, target error) {
		t.Helper()
		expectErr(t, what, e.appendAsync(e.ctx, aa, what, stream, partition, [][]byte{[]byte("m")}), target)
	}
	check("AppendAsync to a partition out of range", n, 1, core.ErrInvalidArgument)
	check("AppendAsync to a never-created stream", e.name("never"), 0, core.ErrStreamNotFound)
	check("AppendAsync to an invalid name", "bad name", 0, core.ErrInvalidArgument)
}

// appendAsync calls AppendAsync and waits for its done, at most until the subtest's context
// ends, and returns the error done reported. what names the call in a failure.
func (e *env) appendAsync(ctx context.Context, aa core.AsyncAppender, what, stream string, partition int, msgs [][]byte) error {
	e.t.Helper()
	ch := make(chan error, 2)
	aa.AppendAsync(ctx, stream, partition, msgs, func(_ []uint64, err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-e.ctx.Done():
		e.t.Fatalf("%s: done not called: %v", what, e.ctx.Err())
		return nil
	}
}
