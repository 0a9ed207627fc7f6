package bbolt

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/core"
)

// asyncResult is what one AppendAsync call reported through done.
type asyncResult struct {
	idx []uint64
	err error
}

// appendAsync starts an AppendAsync of msgs to partition 0 of "s" and returns the channel
// its done reports to.
func appendAsync(ctx context.Context, s *Store, msgs ...[]byte) <-chan asyncResult {
	res := make(chan asyncResult, 1)
	s.AppendAsync(ctx, "s", 0, msgs, func(idx []uint64, err error) { res <- asyncResult{idx, err} })
	return res
}

// awaitResult returns what res reports, failing the test if nothing arrives in a minute
// (a guard against a lost result, not a timing assertion).
func awaitResult(t *testing.T, what string, res <-chan asyncResult) asyncResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(time.Minute):
		t.Fatalf("%s: done was not called", what)
		return asyncResult{}
	}
}

// partitionData returns the messages of partition 0 of "s" as strings, with their indexes.
func partitionData(t *testing.T, s *Store) ([]uint64, []string) {
	t.Helper()
	got, err := s.Fetch(context.Background(), "s", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	var data []string
	for _, m := range got {
		idx = append(idx, m.Index)
		data = append(data, string(m.Data))
	}
	return idx, data
}

// TestMaxCommitBytes queues appends behind a commit the test holds up and checks that the
// committer groups them up to MaxCommitBytes of messages: a group exactly at the cap is
// one commit, and an append larger than the cap is still committed, alone.
func TestMaxCommitBytes(t *testing.T) {
	db, s := openOnDB(t, &Options{MaxCommitBytes: 10})
	defer s.Close()
	ctx := context.Background()
	before := lastTxID(t, db)

	tx, err := db.Begin(true) // the committer's next transaction waits for it
	if err != nil {
		t.Fatal(err)
	}
	first := appendAsync(ctx, s, []byte("x"))
	waitQueued(s, 0)
	var res []<-chan asyncResult
	for _, size := range []int{5, 5, 10, 11} { // commits: 5+5, 10, 11
		res = append(res, appendAsync(ctx, s, bytes.Repeat([]byte("m"), size)))
	}
	waitQueued(s, len(res))
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if r := awaitResult(t, "first append", first); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range res {
		if r := awaitResult(t, "append", ch); r.err != nil || !slices.Equal(r.idx, []uint64{uint64(i + 1)}) {
			t.Fatalf("append #%d reported %v, %v; want [%d], nil", i, r.idx, r.err, i+1)
		}
	}
	if got := lastTxID(t, db) - before; got != 4 {
		t.Fatalf("%d commits for appends of 1, then 5+5, 10 and 11 bytes with MaxCommitBytes 10; want 4", got)
	}
}

// TestCancelledWhileQueued: an append whose ctx ends while it waits in the queue, before the
// committer has started on it, is dropped and reports the context's error.
func TestCancelledWhileQueued(t *testing.T) {
	db, s := openOnDB(t, nil)
	defer s.Close()
	ctx := context.Background()

	tx, err := db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	first := appendAsync(ctx, s, []byte("kept"))
	waitQueued(s, 0)
	cctx, cancel := context.WithCancel(ctx)
	dropped := appendAsync(cctx, s, []byte("dropped"))
	waitQueued(s, 1)
	cancel()
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if r := awaitResult(t, "first append", first); r.err != nil {
		t.Fatal(r.err)
	}
	if r := awaitResult(t, "cancelled append", dropped); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("append cancelled while queued reported %v, %v; want context.Canceled", r.idx, r.err)
	}
	if _, data := partitionData(t, s); !slices.Equal(data, []string{"kept"}) {
		t.Fatalf("partition holds %q, want only \"kept\"", data)
	}
}

// TestAbortedWriteRetried puts a write that fails after the transaction started (a stream
// whose message bucket exists without metadata: CreateStream cannot create it) between two
// appends of one group commit. The failing write alone reports its error; the transaction
// runs again without it, and the appends get dense indexes.
func TestAbortedWriteRetried(t *testing.T) {
	db, s := openOnDB(t, nil)
	defer s.Close()
	ctx := context.Background()
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.Bucket(bucketStreams).CreateBucket([]byte("broken"))
		return err
	}); err != nil {
		t.Fatal(err)
	}

	tx, err := db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	first := appendAsync(ctx, s, []byte("x"))
	waitQueued(s, 0)
	a := appendAsync(ctx, s, []byte("a"))
	created := make(chan error, 1)
	go func() {
		_, err := s.CreateStream(ctx, "broken", 1)
		created <- err
	}()
	waitQueued(s, 2)
	b := appendAsync(ctx, s, []byte("b"))
	waitQueued(s, 3)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if r := awaitResult(t, "first append", first); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range []<-chan asyncResult{a, b} {
		if r := awaitResult(t, "append", ch); r.err != nil || !slices.Equal(r.idx, []uint64{uint64(i + 1)}) {
			t.Fatalf("append #%d in the group with the failed write reported %v, %v; want [%d], nil", i, r.idx, r.err, i+1)
		}
	}
	if err := <-created; err == nil {
		t.Fatal("CreateStream of a stream whose bucket exists without metadata succeeded")
	}
	if _, err := s.Partitions(ctx, "broken"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Partitions after the failed CreateStream: %v, want ErrStreamNotFound", err)
	}
	idx, data := partitionData(t, s)
	if !slices.Equal(idx, []uint64{0, 1, 2}) || !slices.Equal(data, []string{"x", "a", "b"}) {
		t.Fatalf("partition holds %v %q, want [0 1 2] [x a b]", idx, data)
	}
}
