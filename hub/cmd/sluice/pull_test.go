package main

import (
	"context"
	"path/filepath"
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
