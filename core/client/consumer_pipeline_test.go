package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// spyStorage records the index every Fetch starts from.
type spyStorage struct {
	core.Storage
	mu    sync.Mutex
	froms map[uint64]bool
}

func (s *spyStorage) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	s.mu.Lock()
	s.froms[from] = true
	s.mu.Unlock()
	return s.Storage.Fetch(ctx, stream, partition, from, limit)
}

func (s *spyStorage) fetched(from uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.froms[from]
}

// spyIndex calls check before every save and fails the saves that fail says to fail.
type spyIndex struct {
	core.IndexStorage
	mu    sync.Mutex
	n     int                // saves so far
	fail  func(n int) bool   // whether save number n (from 1) fails
	check func(index uint64) // called with every index saved
}

var errInjected = errors.New("injected save failure")

func (s *spyIndex) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	if s.check != nil {
		s.check(index)
	}
	if s.fail != nil && s.fail(n) {
		return errInjected
	}
	return s.IndexStorage.SaveIndex(ctx, clientID, stream, partition, index)
}

func startSpyHub(t *testing.T, idx *spyIndex) (*testHub, *spyStorage) {
	t.Helper()
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	st := &spyStorage{Storage: m, froms: map[uint64]bool{}}
	idx.IndexStorage = m
	return startHubOn(t, &core.Backend{Storage: st, Index: idx}), st
}

// savedIndex returns the index saved on the hub for the consumer id.
func savedIndex(t *testing.T, c *client.Client, id, stream string) uint64 {
	t.Helper()
	conn, err := c.Open(t.Context(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	i, err := conn.GetIndex(t.Context(), id, stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestConsumerPrefetches checks that the pull of the next page is on its way while the
// handler still works on the current one.
func TestConsumerPrefetches(t *testing.T) {
	h, st := startSpyHub(t, &spyIndex{})
	c := dial(t, h.Addr)
	publishN(t, c, "prefetch", 6)
	release := make(chan struct{})
	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "prefetch", func(ctx context.Context, m core.Message) error {
		if m.Index == 0 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		oc.add(m.Data)
		return nil
	}, client.WithClientID("prefetch"), client.WithPullLimit(2), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "the pull from index 2 while the handler works on index 0", func() bool { return st.fetched(2) })
	if pos, _ := cons.Position(); pos != 0 {
		t.Fatalf("position %d while the handler holds index 0, want 0", pos)
	}
	close(release)
	waitFor(t, "6 messages handled", func() bool { pos, _ := cons.Position(); return pos == 6 })
	waitFor(t, "position 6 saved and acknowledged", func() bool {
		return savedIndex(t, c, "prefetch", "prefetch") == 6 && cons.Stats().Saves > 0
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	oc.check(t)
	if got := oc.count(0); got != 6 {
		t.Fatalf("%d messages handled, want 6", got)
	}
	if st := cons.Stats(); st.Handled != 6 || st.Saves == 0 || st.Reconnects != 0 || st.PullErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestConsumerSavesOnlyHandled checks that every index the hub is asked to save is at most
// the count of messages whose handler returned, and that the last one is acknowledged.
func TestConsumerSavesOnlyHandled(t *testing.T) {
	var handled atomic.Uint64
	var bad atomic.Value
	idx := &spyIndex{check: func(i uint64) {
		if h := handled.Load(); i > h {
			bad.CompareAndSwap(nil, fmt.Sprintf("index %d saved after %d messages handled", i, h))
		}
	}}
	h, _ := startSpyHub(t, idx)
	c := dial(t, h.Addr)
	const n = 200
	publishN(t, c, "handled", n)
	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "handled", func(_ context.Context, m core.Message) error {
		oc.add(m.Data)
		if m.Index%7 == 0 {
			time.Sleep(time.Millisecond) // let pulls and saves overtake the handler
		}
		handled.Add(1)
		return nil
	}, client.WithClientID("handled"), client.WithPullLimit(8), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "all messages handled and the position saved", func() bool {
		pos, _ := cons.Position()
		return pos == n && savedIndex(t, c, "handled", "handled") == n && cons.Stats().Saves > 0
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	oc.check(t)
	if st := cons.Stats(); st.Handled != n || st.Duplicates != 0 || st.Saves == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestConsumerFailedSaveReconnects checks that a save the hub refuses ends the session: the
// consumer reconnects, saves its position again and skips nothing.
func TestConsumerFailedSaveReconnects(t *testing.T) {
	idx := &spyIndex{fail: func(n int) bool { return n == 2 || n == 5 }}
	h, _ := startSpyHub(t, idx)
	c := dial(t, h.Addr)
	const n = 60
	publishN(t, c, "failsave", n)
	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "failsave", func(_ context.Context, m core.Message) error {
		oc.add(m.Data)
		return nil
	}, client.WithClientID("failsave"), client.WithPullLimit(5), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "all messages handled and the position saved", func() bool {
		pos, _ := cons.Position()
		return pos == n && savedIndex(t, c, "failsave", "failsave") == n
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	oc.check(t)
	if got := oc.count(0); got != n {
		t.Fatalf("%d distinct messages handled, want %d", got, n)
	}
	if st := cons.Stats(); st.Reconnects < 2 || st.Handled < n {
		t.Fatalf("stats %+v: want at least 2 reconnects after 2 failed saves", st)
	}
}

// TestConsumerUnhandledHoldsSaves checks WithUnhandled with a handler that only queues
// messages for a slower worker: every index the hub is asked to save is at most the count of
// messages the worker finished, nothing is skipped, and the whole position is saved once the
// worker caught up.
func TestConsumerUnhandledHoldsSaves(t *testing.T) {
	var finished atomic.Uint64 // the worker finishes in index order: also the lowest unfinished index
	var queued atomic.Uint64
	var bad atomic.Value
	idx := &spyIndex{check: func(i uint64) {
		if f := finished.Load(); i > f {
			bad.CompareAndSwap(nil, fmt.Sprintf("index %d saved after the worker finished %d messages", i, f))
		}
	}}
	h, _ := startSpyHub(t, idx)
	c := dial(t, h.Addr)
	const n = 120
	publishN(t, c, "held", n)
	queue := make(chan core.Message, n)
	oc := newOrderChecker()
	workerDone := make(chan struct{})
	go func() { // owned by the test: ends when queue is closed below
		defer close(workerDone)
		for m := range queue {
			if m.Index%5 == 0 {
				time.Sleep(time.Millisecond) // let the consumer run ahead of the worker
			}
			oc.add(m.Data)
			finished.Add(1)
		}
	}()
	defer func() { close(queue); <-workerDone }()
	cons, err := client.NewConsumer(c, "held", func(_ context.Context, m core.Message) error {
		queued.Add(1)
		queue <- m
		return nil
	}, client.WithClientID("held"), client.WithPullLimit(8), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff),
		client.WithUnhandled(func() (uint64, bool) {
			f := finished.Load()
			return f, f < queued.Load()
		}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "all messages finished and the position saved", func() bool {
		return finished.Load() == n && savedIndex(t, c, "held", "held") == n
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	oc.check(t)
	if got := oc.count(0); got != n {
		t.Fatalf("%d messages finished, want %d", got, n)
	}
}

// TestConsumerUnhandledKeepsDelivering checks that a message that is never handled holds
// the saved position back, also at the end of Run, without holding up delivery: the
// consumer delivers everything after it, and a new consumer with the same id starts again
// at that message.
func TestConsumerUnhandledKeepsDelivering(t *testing.T) {
	h, _ := startSpyHub(t, &spyIndex{})
	c := dial(t, h.Addr)
	publishN(t, c, "stuck", 10)
	cons, err := client.NewConsumer(c, "stuck", func(context.Context, core.Message) error { return nil },
		client.WithClientID("stuck"), client.WithPullLimit(4), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff),
		client.WithUnhandled(func() (uint64, bool) { return 3, true })) // index 3 never gets handled
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "all 10 delivered", func() bool { pos, _ := cons.Position(); return pos == 10 })
	waitFor(t, "position 3 saved", func() bool { return savedIndex(t, c, "stuck", "stuck") == 3 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if got := savedIndex(t, c, "stuck", "stuck"); got != 3 {
		t.Fatalf("saved index %d after Run ended, want 3: the final save went past the unhandled message", got)
	}
	var first []uint64
	again, err := client.NewConsumer(c, "stuck", func(_ context.Context, m core.Message) error {
		first = append(first, m.Index)
		return nil
	}, client.WithClientID("stuck"), client.WithPullWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop = runConsumer(t, again)
	waitFor(t, "a page for the second consumer", func() bool { pos, _ := again.Position(); return pos > 3 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if len(first) == 0 || first[0] != 3 {
		t.Fatalf("a consumer with the same id started at %v, want index 3", first)
	}
	if _, err := client.NewConsumer(c, "stuck", func(context.Context, core.Message) error { return nil }, client.WithUnhandled(nil)); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("nil unhandled function: %v, want ErrInvalidOption", err)
	}
}

// TestConsumerSaveInterval checks that a consumer with a save interval saves far less
// often than once per page, still saves its position once the stream is idle, and saves
// the rest when Run ends.
func TestConsumerSaveInterval(t *testing.T) {
	idx := &spyIndex{}
	h, _ := startSpyHub(t, idx)
	c := dial(t, h.Addr)
	const n = 60
	publishN(t, c, "interval", n)
	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "interval", func(_ context.Context, m core.Message) error {
		oc.add(m.Data)
		return nil
	}, client.WithClientID("interval"), client.WithPullLimit(5), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff),
		client.WithSaveInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	// 12 pages: the first is saved at once, the others are put off until the stream is idle.
	// Saves counts acknowledged saves: the hub may hold the index before the consumer has
	// its acknowledgement, so wait for both.
	waitFor(t, "all handled and the position saved once the stream was idle", func() bool {
		pos, _ := cons.Position()
		return pos == n && savedIndex(t, c, "interval", "interval") == n && cons.Stats().Saves >= 2
	})
	if st := cons.Stats(); st.Saves != 2 {
		t.Fatalf("stats %+v: want 2 saves (first page, idle stream) for 12 pages", st)
	}
	publishN(t, c, "interval", 3)
	waitFor(t, "3 more handled", func() bool { pos, _ := cons.Position(); return pos == n+3 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if got := savedIndex(t, c, "interval", "interval"); got != n+3 {
		t.Fatalf("saved index %d after Run ended, want %d", got, n+3)
	}
	if _, err := client.NewConsumer(c, "interval", func(context.Context, core.Message) error { return nil }, client.WithSaveInterval(-time.Second)); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("negative save interval: %v, want ErrInvalidOption", err)
	}
}
