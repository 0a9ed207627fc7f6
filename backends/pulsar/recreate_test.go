package pulsar

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// recreatedStream creates a one-partition stream with store first, appends n messages
// "m00".. through it, calls beforeDelete, then deletes and re-creates the stream through
// store b and appends msgs through b. It returns the stream, the indexes of the first n
// messages and those of b's.
func recreatedStream(t *testing.T, ctx context.Context, first, b *Store, n int, beforeDelete func(stream string, idx []uint64), msgs ...string) (string, []uint64, []uint64) {
	t.Helper()
	stream, idx := readerCacheStream(t, first, ctx, n)
	if beforeDelete != nil {
		beforeDelete(stream, idx)
	}
	if err := b.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	var theirs []uint64
	if len(msgs) > 0 {
		data := make([][]byte, len(msgs))
		for i, m := range msgs {
			data[i] = []byte(m)
		}
		var err error
		if theirs, err = b.Append(ctx, stream, 0, data); err != nil {
			t.Fatal(err)
		}
	}
	return stream, idx, theirs
}

// fetchAll pages through a partition from index from until a Fetch returns nothing.
func fetchAll(t *testing.T, ctx context.Context, s *Store, stream string, from uint64) []core.Message {
	t.Helper()
	var all []core.Message
	for {
		got, err := s.Fetch(ctx, stream, 0, from, 100)
		if err != nil {
			t.Fatalf("Fetch from %d: %v", from, err)
		}
		if len(got) == 0 {
			return all
		}
		all = append(all, got...)
		from = got[len(got)-1].Index + 1
	}
}

// checkMessages fails unless got is exactly the messages want, at the indexes idx.
func checkMessages(t *testing.T, what string, got []core.Message, idx []uint64, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for k := 0; ok && k < len(got); k++ {
		ok = got[k].Index == idx[k] && string(got[k].Data) == want[k]
	}
	if !ok {
		var g []string
		for _, m := range got {
			g = append(g, fmt.Sprintf("%d:%s", m.Index, m.Data))
		}
		var w []string
		for k := range want {
			w = append(w, fmt.Sprintf("%d:%s", idx[k], want[k]))
		}
		t.Fatalf("%s returned %v, want %v", what, g, w)
	}
}

// appendAfterRecreate appends through a to a stream that b re-created, and checks that it
// works at once and that a's and b's messages are then read back in order.
func appendAfterRecreate(t *testing.T, ctx context.Context, a *Store, stream string, from uint64, theirs []uint64, theirData []string) {
	t.Helper()
	mine, err := a.Append(ctx, stream, 0, [][]byte{[]byte("a0"), []byte("a1")})
	if err != nil {
		t.Fatalf("store A's append after store B re-created the stream: %v", err)
	}
	checkMessages(t, "paging through store A after its append", fetchAll(t, ctx, a, stream, from),
		append(append([]uint64(nil), theirs...), mine...), append(append([]string(nil), theirData...), "a0", "a1"))
}

// TestFetchAfterOtherStoreRecreatesWithFewer: 10 messages are appended (by store A itself,
// or by store B) and A reads the first 5, as a consumer would; then B deletes the stream,
// re-creates it and appends 3. Store A must then return what the stream holds, B's 3 new
// messages and none of the deleted ones, and A's later appends must work.
//
// A knows that the first 10 messages exist (from its receipts, or the broker's answer when
// it read them); A's idle reader reconnects to the re-created topic, and the next message
// it gets is B's first (above the deleted indexes: a new ledger). Before the fix, Fetch
// returned the deleted messages 0..4 from the reader's copies followed by B's first, and
// when the reader had lost the topic (pulsar-client-go gave up reconnecting it) it waited
// until its context ended or failed after the operation timeout.
func TestFetchAfterOtherStoreRecreatesWithFewer(t *testing.T) {
	for _, writer := range []string{"A", "B"} {
		t.Run("first appends by "+writer, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a := readerStore(t, ctx)
			b := readerStore(t, ctx)
			first := a
			if writer == "B" {
				first = b
			}
			theirData := []string{"b0", "b1", "b2"}
			stream, idx, theirs := recreatedStream(t, ctx, first, b, 10, func(stream string, idx []uint64) {
				got, err := a.Fetch(ctx, stream, 0, idx[0], 5)
				if err != nil {
					t.Fatal(err)
				}
				checkFetched(t, got, idx, 0, 5)
			}, theirData...)
			// From the start (re-reading what the reader returned) and from where the
			// consumer stopped: both reach B's new messages only.
			checkMessages(t, "paging through store A from the first index", fetchAll(t, ctx, a, stream, idx[0]), theirs, theirData)
			checkMessages(t, "paging through store A from the sixth index", fetchAll(t, ctx, a, stream, idx[5]), theirs, theirData)
			appendAfterRecreate(t, ctx, a, stream, idx[0], theirs, theirData)
		})
	}
}

// TestFetchAfterOtherStoreRecreatesEmpty: store A appends 10 messages; store B deletes the
// stream and re-creates it empty. A Fetch through A from an index of its own must return
// nothing (the stream is empty), without an error; then messages appended by B and by A
// are found. Before the fix, the Fetch waited for A's deleted messages until its context
// ended.
func TestFetchAfterOtherStoreRecreatesEmpty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := readerStore(t, ctx)
	b := readerStore(t, ctx)
	stream, idx, _ := recreatedStream(t, ctx, a, b, 10, nil)
	// Bounded so that a Fetch waiting for messages that no longer exist fails the test
	// instead of hanging it; the fixed Fetch needs one second and one round trip.
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	got, err := a.Fetch(fctx, stream, 0, idx[3], 100)
	fcancel()
	if err != nil || len(got) != 0 {
		t.Fatalf("Fetch through store A of the re-created, empty stream = %d messages, %v; want none, no error", len(got), err)
	}
	theirs, err := b.Append(ctx, stream, 0, [][]byte{[]byte("b0")})
	if err != nil {
		t.Fatal(err)
	}
	checkMessages(t, "paging through store A", fetchAll(t, ctx, a, stream, idx[0]), theirs, []string{"b0"})
	appendAfterRecreate(t, ctx, a, stream, idx[0], theirs, []string{"b0"})
}

// TestFetchAfterOtherStoreRecreatesForgetsCopies: store A appends 10 messages and reads them
// all, so its idle reader keeps copies of them; store B deletes the stream and re-creates it
// empty. A Fetch through A from where it stopped finds the partition empty, and then a
// Fetch that re-reads from an earlier index must not replay the deleted messages from the
// reader's copies.
func TestFetchAfterOtherStoreRecreatesForgetsCopies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := readerStore(t, ctx)
	b := readerStore(t, ctx)
	stream, idx, _ := recreatedStream(t, ctx, a, b, 10, func(stream string, idx []uint64) {
		got, err := a.Fetch(ctx, stream, 0, idx[0], 10)
		if err != nil {
			t.Fatal(err)
		}
		checkFetched(t, got, idx, 0, 10)
	})
	fctx, fcancel := context.WithTimeout(ctx, 45*time.Second)
	defer fcancel()
	if got, err := a.Fetch(fctx, stream, 0, idx[9]+1, 100); err != nil || len(got) != 0 {
		t.Fatalf("Fetch through store A from its position in the re-created, empty stream = %d messages, %v; want none, no error", len(got), err)
	}
	if got, err := a.Fetch(fctx, stream, 0, idx[3], 100); err != nil || len(got) != 0 {
		t.Fatalf("Fetch through store A re-reading from its fourth index = %d messages, %v; want none: the stream was re-created empty", len(got), err)
	}
}

// TestAppendFetchAfterOtherStoreDeletes: store A creates a stream and appends to it, store B
// deletes it. A's Append and Fetch must then say that the stream does not exist
// (core.ErrStreamNotFound), not that Pulsar is unavailable (which tells the caller to retry
// a stream that will never come back), and A must forget it: after A creates it again, its
// appends work and are read back.
//
// A's producer, whose topic B deleted, often keeps reconnecting rather than failing, and
// the Append used to wait for the send timeout (30 s) before it failed. Here the send
// timeout is an hour, so such an Append waits until the guard ends it.
func TestAppendFetchAfterOtherStoreDeletes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := readerStore(t, ctx)
	a.sendTimeout = time.Hour // before its first producer
	b := readerStore(t, ctx)
	stream, _ := readerCacheStream(t, a, ctx, 2)
	if err := b.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	// A guard against an Append that waits for the send timeout, not a timing assertion.
	actx, acancel := context.WithTimeout(ctx, time.Minute)
	_, err := a.Append(actx, stream, 0, [][]byte{[]byte("lost")})
	acancel()
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("store A's Append to a stream store B deleted: %v; want core.ErrStreamNotFound", err)
	}
	if _, err := a.Fetch(ctx, stream, 0, 0, 10); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("store A's Fetch of a stream store B deleted: %v; want core.ErrStreamNotFound", err)
	}
	if _, err := a.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	idx, err := a.Append(ctx, stream, 0, [][]byte{[]byte("again")})
	if err != nil {
		t.Fatalf("store A's Append after it created the stream again: %v", err)
	}
	checkMessages(t, "store B paging through the stream created again", fetchAll(t, ctx, b, stream, 0), idx, []string{"again"})
}
