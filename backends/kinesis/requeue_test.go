package kinesis

import (
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// TestAppendQueuedWhenStateDropped: an append waiting for its partition's writer when the
// Store drops its cached state of the stream (a call found the stream deleted, or deleted
// and created again, by another Store) was never written. It must go to the stream as the
// Store finds it next (here it exists again), with an index above those handed out before,
// not fail with core.ErrStreamNotFound because the state it was queued on was dropped.
func TestAppendQueuedWhenStateDropped(t *testing.T) {
	t.Run("dropped before it was queued", func(t *testing.T) {
		release := make(chan struct{})
		close(release)
		f := &shardFake{held: make(chan struct{}), release: release, put2: make(chan struct{})}
		s := fakeStore(t, f, &Options{MaxRetries: -1})
		a, err := s.Append(t.Context(), "s", 0, [][]byte{[]byte("a")})
		if err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		old := s.streams["s"].parts[0]
		s.mu.Unlock()
		var once sync.Once
		s.hooks.queue = func(stream string) {
			once.Do(func() {
				s.forget(stream, nil) // as a Fetch that found the stream missing does, meanwhile
				<-old.exited          // the dropped state's writer is gone
			})
		}
		b, err := s.Append(t.Context(), "s", 0, [][]byte{[]byte("b")})
		if err != nil {
			t.Fatalf("Append queued on a dropped state of a stream that exists: %v", err)
		}
		if b[0] <= a[0] {
			t.Fatalf("Append after the state was dropped got index %d, not above %d", b[0], a[0])
		}
	})
	// The writer holds the first append's PutRecord while the second waits in its queue,
	// then the state is dropped: by another call (forget), or by the writer itself, whose
	// PutRecord finds the stream missing. Which of the request and the drop a writer looks
	// at first was once left to chance: several rounds.
	for _, tc := range []struct {
		name string
		gone bool // the held PutRecord fails: the stream was missing at that moment
	}{{"dropped by another call", false}, {"dropped by the write in flight", true}} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 8 {
				appendBehindDropped(t, round, tc.gone)
			}
		})
	}
}

func appendBehindDropped(t *testing.T, round int, gone bool) {
	t.Helper()
	f, s := heldShardStore(t, gone) // the shard's last record: index 100
	first := goAppend(t.Context(), s, "a")
	<-f.held // the writer is writing "a"
	s.mu.Lock()
	part := s.streams["s"].parts[0]
	s.mu.Unlock()
	second := goAppend(t.Context(), s, "b")
	for len(part.reqs) == 0 { // "b" waits in the writer's queue
		select {
		case r := <-second:
			t.Fatalf("round %d: the second Append returned before the first was written: %v, %v", round, r.idx, r.err)
		default:
			runtime.Gosched()
		}
	}
	if !gone {
		s.forget("s", nil)
	}
	close(f.release)
	a, b := <-first, <-second
	switch {
	case gone && !errors.Is(a.err, core.ErrStreamNotFound):
		t.Fatalf("round %d: the append whose PutRecord found the stream missing: %v, %v; want core.ErrStreamNotFound", round, a.idx, a.err)
	case !gone && a.err != nil:
		t.Fatalf("round %d: the append in flight when the state was dropped: %v", round, a.err)
	}
	if b.err != nil {
		t.Fatalf("round %d: the append queued when the state was dropped: %v; want it written to the stream, which exists", round, b.err)
	}
	if b.idx[0] <= 100 || !gone && b.idx[0] <= a.idx[0] {
		t.Fatalf("round %d: the queued append got index %d; want above 100 and above the first append's %v", round, b.idx[0], a.idx)
	}
}
