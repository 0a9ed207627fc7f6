package main

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// slowIndex is an IndexStorage whose first GetIndex takes delay, as a broker's may on first
// use (Kafka finds the group coordinator before it fetches a committed offset).
type slowIndex struct {
	core.IndexStorage
	delay time.Duration
	used  *atomic.Bool
}

func (s slowIndex) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if !s.used.Swap(true) {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
	return s.IndexStorage.GetIndex(ctx, clientID, stream, partition)
}

// Close does nothing: the Storage of the same backend closes it.
func (slowIndex) Close() error { return nil }

// -idle is how long pull waits for a message once it reads the stream: a hub that takes
// longer than -idle to get the client id's saved index (before pull can read anything)
// does not make pull stop at once without a word, as if the stream were empty.
func TestPullIdleStartsWhenReadingStarts(t *testing.T) {
	b, err := core.Open(t.Context(), "bbolt:"+filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	idx := slowIndex{IndexStorage: b.Index, delay: 3 * time.Second, used: new(atomic.Bool)}
	addr := startHubOn(t, &core.Backend{Storage: b.Storage, Index: idx})
	mustRun(t, "", "push", "-hub", addr, "s", "one", "two")
	code, out, errs := runIO(t.Context(), "", "pull", "-hub", addr, "-client-id", "c", "-idle", "1s", "-raw", "s")
	if code != 0 || out != "one\ntwo\n" {
		t.Fatalf("pull: exit %d, stdout %q, stderr:\n%s\nwant exit 0 and both messages", code, out, errs)
	}
	// The position was saved: the next pull with the client id has nothing to print.
	if out := mustRun(t, "", "pull", "-hub", addr, "-client-id", "c", "-idle", "1s", "-raw", "s"); out != "" {
		t.Errorf("second pull printed %q, want nothing", out)
	}
}

// slowFetch is a Storage whose first Fetch takes delay, as a broker's first read of a
// partition may (a Kafka consumer joins, finds the partition leader and fetches).
type slowFetch struct {
	core.Storage
	delay time.Duration
	used  *atomic.Bool
}

func (s slowFetch) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if !s.used.Swap(true) {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return s.Storage.Fetch(ctx, stream, partition, from, limit)
}

// A backend whose first read of the stream takes longer than -idle does not make pull stop
// at once without a word, as if the stream were empty: -idle runs once the hub answered a
// pull.
func TestPullIdleWaitsForASlowFirstFetch(t *testing.T) {
	b, err := core.Open(t.Context(), "bbolt:"+filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	st := slowFetch{Storage: b.Storage, delay: 3 * time.Second, used: new(atomic.Bool)}
	addr := startHubOn(t, &core.Backend{Storage: st, Index: b.Index})
	mustRun(t, "", "push", "-hub", addr, "s", "one", "two")
	code, out, errs := runIO(t.Context(), "", "pull", "-hub", addr, "-idle", "300ms", "-raw", "s")
	if code != 0 || out != "one\ntwo\n" {
		t.Fatalf("pull: exit %d, stdout %q, stderr:\n%s\nwant exit 0 and both messages", code, out, errs)
	}
	if !st.used.Load() {
		t.Fatal("the hub never read the stream: the test tests nothing")
	}
}

// heldFetch is a Storage whose first Fetch from index from or later signals entered, then
// waits for release (or its ctx) before it reads.
type heldFetch struct {
	core.Storage
	from    uint64
	once    *sync.Once
	entered chan struct{}
	release chan struct{}
}

func (s heldFetch) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	held := false
	if from >= s.from {
		s.once.Do(func() { held = true })
	}
	if held {
		close(s.entered)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.release:
		}
	}
	return s.Storage.Fetch(ctx, stream, partition, from, limit)
}

// A read of the stream that takes longer than -idle after some messages does not end pull
// either, as if the stream had no more: pull waits for the hub's answer, which has the
// message appended meanwhile.
func TestPullIdleWaitsForASlowFetch(t *testing.T) {
	b, err := core.Open(t.Context(), "bbolt:"+filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	st := heldFetch{Storage: b.Storage, from: 2, once: new(sync.Once), entered: make(chan struct{}), release: make(chan struct{})}
	addr := startHubOn(t, &core.Backend{Storage: st, Index: b.Index})
	mustRun(t, "", "push", "-hub", addr, "s", "one", "two")
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() { // owned by the test: pull ends when the stream is idle
		code, out, errs := runIO(t.Context(), "", "pull", "-hub", addr, "-idle", "300ms", "-raw", "s")
		done <- result{code, out, errs}
	}()
	select {
	case <-st.entered: // pull printed one and two and reads on
	case r := <-done:
		t.Fatalf("pull ended before reading past its first page: exit %d, stdout %q, stderr:\n%s", r.code, r.out, r.errs)
	}
	mustRun(t, "", "push", "-hub", addr, "s", "three")
	// Let the read answer once pull has ended (it stopped while the read was held) or after
	// ten times -idle.
	var r result
	select {
	case r = <-done:
		close(st.release)
	case <-time.After(3 * time.Second):
		close(st.release)
		r = <-done
	}
	if r.code != 0 || r.out != "one\ntwo\nthree\n" {
		t.Fatalf("pull: exit %d, stdout %q, stderr:\n%s\nwant exit 0 and the three messages", r.code, r.out, r.errs)
	}
}
