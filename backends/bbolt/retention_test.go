package bbolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sluicehq/sluice/core"
)

// storedKeys returns the keys of partition p of stream as indexes, read from the file with a
// cursor, not through Fetch: what retention left in the bucket.
func storedKeys(t testing.TB, s *Store, stream string, p int) []uint64 {
	t.Helper()
	var keys []uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := partitionBucket(tx, stream, p)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("key % x is not 8 bytes", k)
			}
			keys = append(keys, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	if err != nil {
		t.Fatalf("reading the keys of %q partition %d: %v", stream, p, err)
	}
	return keys
}

// span returns the indexes from, from+1, ..., to-1.
func span(from, to uint64) []uint64 {
	var r []uint64
	for i := from; i < to; i++ {
		r = append(r, i)
	}
	return r
}

// expectKept checks that partition p of stream holds exactly the indexes [from, to), both in
// the file and through Fetch from 0, with the data msg(i) gives for index i.
func expectKept(t testing.TB, s *Store, stream string, p int, from, to uint64, msg func(uint64) string) {
	t.Helper()
	want := span(from, to)
	if got := storedKeys(t, s, stream, p); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%q partition %d stores the indexes %v, want %v", stream, p, got, want)
	}
	got, err := s.Fetch(context.Background(), stream, p, 0, 1<<20)
	if err != nil {
		t.Fatalf("Fetch(%q, %d, from 0): %v", stream, p, err)
	}
	if len(got) != len(want) {
		t.Fatalf("Fetch(%q, %d, from 0) returned %d messages, want the %d kept", stream, p, len(got), len(want))
	}
	for i, m := range got {
		if m.Index != want[i] || string(m.Data) != msg(m.Index) {
			t.Fatalf("Fetch(%q, %d, from 0): message %d is %d:%q, want %d:%q", stream, p, i, m.Index, m.Data, want[i], msg(want[i]))
		}
	}
}

// numbered returns n messages "<prefix>-<index>" for the indexes first, first+1, ...
func numbered(prefix string, first uint64, n int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "%s-%d", prefix, first+uint64(i))
	}
	return msgs
}

func msgNamed(prefix string) func(uint64) string {
	return func(i uint64) string { return fmt.Sprintf("%s-%d", prefix, i) }
}

// expectIndexes fails unless Append reported exactly the indexes [from, to).
func expectIndexes(t testing.TB, what string, idx []uint64, from, to uint64) {
	t.Helper()
	if want := span(from, to); fmt.Sprint(idx) != fmt.Sprint(want) {
		t.Fatalf("%s reported %v, want %v", what, idx, want)
	}
}

// TestRetentionKeepsNewest appends one message at a time, then in batches, to a partition
// with MaxMessagesPerPartition 5: it keeps every message until it holds 5, then exactly the
// newest 5, and Fetch from below the oldest kept message starts at the oldest kept one.
func TestRetentionKeepsNewest(t *testing.T) {
	const n = 5
	ctx := context.Background()
	s := open(t, t.TempDir(), &Options{MaxMessagesPerPartition: n, NoSync: true})
	mustCreate(t, s, "s", 1)
	m := msgNamed("m")
	for i := range uint64(n) {
		expectIndexes(t, "Append", mustAppend(t, s, "s", 0, numbered("m", i, 1)...), i, i+1)
		expectKept(t, s, "s", 0, 0, i+1, m) // below the limit: nothing deleted
	}
	expectIndexes(t, "Append", mustAppend(t, s, "s", 0, numbered("m", n, 1)...), n, n+1)
	expectKept(t, s, "s", 0, 1, n+1, m)
	expectIndexes(t, "Append", mustAppend(t, s, "s", 0, numbered("m", n+1, 3)...), n+1, n+4)
	expectKept(t, s, "s", 0, 4, n+4, m)
	expectIndexes(t, "Append", mustAppend(t, s, "s", 0, numbered("m", n+4, n)...), n+4, 2*n+4)
	expectKept(t, s, "s", 0, n+4, 2*n+4, m) // a batch of exactly n replaces them all

	// Fetch from a deleted index, and from the oldest kept one, starts at the oldest kept one.
	const oldest = n + 4
	for _, from := range []uint64{0, 1, oldest - 1, oldest} {
		got, err := s.Fetch(ctx, "s", 0, from, 2)
		if err != nil || len(got) != 2 || got[0].Index != oldest || got[1].Index != oldest+1 || string(got[0].Data) != m(oldest) {
			t.Errorf("Fetch(from=%d, limit=2) = %v, %v; want the messages %d and %d", from, got, err, oldest, oldest+1)
		}
	}
	if got, err := s.Fetch(ctx, "s", 0, oldest+2, 100); err != nil || len(got) != n-2 || got[0].Index != oldest+2 {
		t.Errorf("Fetch(from=%d) = %v, %v; want the %d messages from %d", oldest+2, got, err, n-2, oldest+2)
	}
	if got, err := s.Fetch(ctx, "s", 0, 2*n+4, 100); err != nil || len(got) != 0 {
		t.Errorf("Fetch past the last index = %v, %v; want nothing", got, err)
	}
	// Retention deletes a prefix only: the indexes stay dense (see the package doc).
	if !s.Capabilities().DenseIndex {
		t.Error("Capabilities().DenseIndex is false with retention; want true")
	}
}

// TestRetentionOne: with MaxMessagesPerPartition 1 a partition holds only the message last
// appended, and its indexes go on.
func TestRetentionOne(t *testing.T) {
	s := open(t, t.TempDir(), &Options{MaxMessagesPerPartition: 1, NoSync: true})
	mustCreate(t, s, "s", 1)
	for i := range uint64(4) {
		expectIndexes(t, "Append", mustAppend(t, s, "s", 0, numbered("m", i, 1)...), i, i+1)
		expectKept(t, s, "s", 0, i, i+1, msgNamed("m"))
	}
	expectIndexes(t, "Append of 3", mustAppend(t, s, "s", 0, numbered("m", 4, 3)...), 4, 7)
	expectKept(t, s, "s", 0, 6, 7, msgNamed("m"))
}

// TestRetentionBatchLargerThanMax: an Append of more messages than MaxMessagesPerPartition,
// to an empty partition and to a full one, reports an index for every message and keeps
// the newest ones of the batch.
func TestRetentionBatchLargerThanMax(t *testing.T) {
	s := open(t, t.TempDir(), &Options{MaxMessagesPerPartition: 3, NoSync: true})
	mustCreate(t, s, "s", 1)
	m := msgNamed("m")
	expectIndexes(t, "Append of 10 to an empty partition", mustAppend(t, s, "s", 0, numbered("m", 0, 10)...), 0, 10)
	expectKept(t, s, "s", 0, 7, 10, m)
	expectIndexes(t, "Append of 4 to a full partition", mustAppend(t, s, "s", 0, numbered("m", 10, 4)...), 10, 14)
	expectKept(t, s, "s", 0, 11, 14, m)

	// The same through AppendAsync, which the hub uses.
	res := make(chan asyncResult, 1)
	s.AppendAsync(context.Background(), "s", 0, numbered("m", 14, 5), func(idx []uint64, err error) { res <- asyncResult{idx, err} })
	r := awaitResult(t, "AppendAsync of 5", res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	expectIndexes(t, "AppendAsync of 5", r.idx, 14, 19)
	expectKept(t, s, "s", 0, 16, 19, m)
}

// TestRetentionAcrossReopen: after messages were deleted, closing and reopening the file
// (with the same limit, without one, with a lower one) continues the indexes where they
// were; reopened with a lower limit, the next Append deletes down to it.
func TestRetentionAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	reopen := func(s *Store, o *Options) *Store {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := New(context.Background(), dir, o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	m := msgNamed("m")
	s, err := New(context.Background(), dir, &Options{MaxMessagesPerPartition: 3})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "s", 1)
	mustAppend(t, s, "s", 0, numbered("m", 0, 5)...)
	expectKept(t, s, "s", 0, 2, 5, m)

	s = reopen(s, &Options{MaxMessagesPerPartition: 3})
	expectKept(t, s, "s", 0, 2, 5, m)
	expectIndexes(t, "Append after reopening", mustAppend(t, s, "s", 0, numbered("m", 5, 1)...), 5, 6)
	expectKept(t, s, "s", 0, 3, 6, m)

	s = reopen(s, nil) // no retention: nothing more is deleted
	expectIndexes(t, "Append after reopening without retention", mustAppend(t, s, "s", 0, numbered("m", 6, 4)...), 6, 10)
	expectKept(t, s, "s", 0, 3, 10, m)

	s = reopen(s, &Options{MaxMessagesPerPartition: 2})
	expectKept(t, s, "s", 0, 3, 10, m) // opening deletes nothing
	expectIndexes(t, "Append after reopening with a lower limit", mustAppend(t, s, "s", 0, numbered("m", 10, 1)...), 10, 11)
	expectKept(t, s, "s", 0, 9, 11, m)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRetentionLargeBacklog turns retention on for a partition of 20,000 messages, many leaf
// pages under more than one level of branch pages: the next Append deletes all but the
// newest MaxMessagesPerPartition, across every page, and the freed pages are reused.
func TestRetentionLargeBacklog(t *testing.T) {
	const backlog, keep = 20000, 10
	long := strings.Repeat("m", 100) // about 30 messages per leaf page
	dir := t.TempDir()
	s, err := New(context.Background(), dir, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "s", 1)
	for i := uint64(0); i < backlog; i += 1000 {
		mustAppend(t, s, "s", 0, numbered(long, i, 1000)...)
	}
	var depth int
	if err := s.db.View(func(tx *bolt.Tx) error {
		b, err := partitionBucket(tx, "s", 0)
		depth = b.Stats().Depth
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if depth < 3 {
		t.Fatalf("the partition's tree is %d levels deep; want 3 or more to cross branch pages", depth)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, &Options{NoSync: true, MaxMessagesPerPartition: keep})
	expectIndexes(t, "Append", mustAppend(t, s, "s", 0, numbered(long, backlog, 1)...), backlog, backlog+1)
	expectKept(t, s, "s", 0, backlog+1-keep, backlog+1, msgNamed(long))
	if st := s.db.Stats(); st.FreePageN+st.PendingPageN == 0 {
		t.Error("deleting 20,000 messages freed no page")
	}
}

// TestRetentionFileSize appends 1 KiB messages, 16 times as many bytes as
// MaxMessagesPerPartition keeps: the file stops growing, as bbolt reuses the pages of the
// deleted messages.
func TestRetentionFileSize(t *testing.T) {
	const keep, batches, batch = 1000, 160, 100 // 1 MiB kept; 16 MiB appended
	s := open(t, t.TempDir(), &Options{MaxMessagesPerPartition: keep, NoSync: true})
	mustCreate(t, s, "s", 1)
	msgs := make([][]byte, batch)
	for i := range msgs {
		msgs[i] = make([]byte, 1024)
	}
	size := func() int64 {
		fi, err := os.Stat(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var steady int64
	for i := range batches {
		mustAppend(t, s, "s", 0, msgs...)
		if i == 2*keep/batch { // kept twice over: the file holds what steady state needs
			steady = size()
		}
	}
	if got := size(); got > 2*steady {
		t.Errorf("the file grew from %d bytes, after appending twice what is kept, to %d bytes after 16 times: the deleted messages' pages were not reused", steady, got)
	}
	if got := len(storedKeys(t, s, "s", 0)); got != keep {
		t.Errorf("the partition holds %d messages, want %d", got, keep)
	}
}

// TestRetentionPerPartition: partitions and streams are bounded each on its own; a partition
// with fewer messages than the limit loses none; DeleteStream still deletes a stream, which
// starts again at index 0 when created again, and leaves the others alone.
func TestRetentionPerPartition(t *testing.T) {
	const keep = 4
	ctx := context.Background()
	s := open(t, t.TempDir(), &Options{MaxMessagesPerPartition: keep, NoSync: true})
	mustCreate(t, s, "a", 3)
	mustCreate(t, s, "ab", 1) // "a" is a prefix of its name
	mustAppend(t, s, "a", 0, numbered("a0", 0, 10)...)
	mustAppend(t, s, "a", 1, numbered("a1", 0, 2)...)
	mustAppend(t, s, "ab", 0, numbered("ab", 0, 7)...)
	mustAppend(t, s, "a", 0, numbered("a0", 10, 1)...)
	expectKept(t, s, "a", 0, 7, 11, msgNamed("a0"))
	expectKept(t, s, "a", 1, 0, 2, msgNamed("a1"))
	expectKept(t, s, "a", 2, 0, 0, msgNamed("a2"))
	expectKept(t, s, "ab", 0, 3, 7, msgNamed("ab"))

	if err := s.SaveIndex(ctx, "c", "ab", 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteStream(ctx, "a"); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if _, err := s.Fetch(ctx, "a", 0, 0, 10); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Fetch of the deleted stream: %v, want ErrStreamNotFound", err)
	}
	expectKept(t, s, "ab", 0, 3, 7, msgNamed("ab"))
	mustCreate(t, s, "a", 1)
	expectIndexes(t, "Append to the re-created stream", mustAppend(t, s, "a", 0, numbered("new", 0, 6)...), 0, 6)
	expectKept(t, s, "a", 0, 2, 6, msgNamed("new"))
	// A consumer index below the oldest kept message stays as saved.
	if i, err := s.GetIndex(ctx, "c", "ab", 0); err != nil || i != 1 {
		t.Errorf("GetIndex of a consumer behind the oldest kept message = %d, %v; want 1, nil", i, err)
	}
}

// TestRetentionConcurrent: appenders to two partitions, group-committed together, each
// with its own limit: every index is reported once, and each partition ends with exactly
// the newest messages, those with the highest indexes reported.
func TestRetentionConcurrent(t *testing.T) {
	const keep, appenders, rounds = 50, 16, 40
	s := open(t, t.TempDir(), &Options{MaxMessagesPerPartition: keep})
	mustCreate(t, s, "s", 2)
	reported := appendConcurrently(t, s, 2, appenders, rounds)
	for p := range 2 {
		next := uint64(len(reported[p]))
		expectKept(t, s, "s", p, next-keep, next, func(i uint64) string { return reported[p][i] })
	}
}

// TestRetentionDamagedPartition: a partition holding a bucket where a message should be (a
// damaged file, or another writer) cannot be trimmed: an Append that would delete it fails
// with bbolt's error and stores nothing, and the other partitions work on.
func TestRetentionDamagedPartition(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), &Options{MaxMessagesPerPartition: 2, NoSync: true})
	mustCreate(t, s, "s", 2)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := partitionBucket(tx, "s", 0)
		if err != nil {
			return err
		}
		_, err = b.CreateBucket(binary.BigEndian.AppendUint64(nil, 0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "s", 0, numbered("m", 1, 1)...) // 2 keys: nothing to delete yet
	if idx, err := s.Append(ctx, "s", 0, numbered("m", 2, 1)); !errors.Is(err, bolterrors.ErrIncompatibleValue) {
		t.Fatalf("Append that must delete a bucket = %v, %v; want bbolt's ErrIncompatibleValue", idx, err)
	}
	if got := storedKeys(t, s, "s", 0); fmt.Sprint(got) != "[0 1]" {
		t.Errorf("after the failed Append the partition stores %v, want [0 1]", got)
	}
	mustAppend(t, s, "s", 1, numbered("p1", 0, 3)...)
	expectKept(t, s, "s", 1, 1, 3, msgNamed("p1"))
}

// TestRetentionNegative: a negative MaxMessagesPerPartition is refused with
// ErrInvalidOption.
func TestRetentionNegative(t *testing.T) {
	if s, err := New(context.Background(), t.TempDir(), &Options{MaxMessagesPerPartition: -1}); !errors.Is(err, core.ErrInvalidOption) {
		if s != nil {
			_ = s.Close()
		}
		t.Errorf("New with MaxMessagesPerPartition -1: %v, want ErrInvalidOption", err)
	}
}

// TestRetentionURL: max_messages=N sets MaxMessagesPerPartition, and a Store opened by such
// a URL keeps the newest N; a value that is not a positive number, or one given twice, is
// refused with ErrInvalidOption.
func TestRetentionURL(t *testing.T) {
	if _, o, err := ParseURL(mustParse(t, "bbolt:///x?max_messages=1000000")); err != nil || o.MaxMessagesPerPartition != 1000000 {
		t.Fatalf("ParseURL with max_messages=1000000 = %+v, %v", o, err)
	}
	if _, o, err := ParseURL(mustParse(t, "bbolt:///x")); err != nil || o.MaxMessagesPerPartition != 0 {
		t.Fatalf("ParseURL without max_messages = %+v, %v; want MaxMessagesPerPartition 0", o, err)
	}
	for _, bad := range []string{
		"bbolt:///x?max_messages=-1",
		"bbolt:///x?max_messages=0",
		"bbolt:///x?max_messages=ten",
		"bbolt:///x?max_messages=1.5",
		"bbolt:///x?max_messages=",
		"bbolt:///x?max_messages=99999999999999999999",
		"bbolt:///x?max_messages=10&max_messages=10",
	} {
		if _, _, err := ParseURL(mustParse(t, bad)); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("ParseURL(%q): %v, want ErrInvalidOption", bad, err)
		}
	}
	b, err := core.Open(context.Background(), "bbolt://"+filepath.ToSlash(t.TempDir())+"?max_messages=2&nosync=true")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := b.Storage.(*Store)
	mustCreate(t, s, "s", 1)
	mustAppend(t, s, "s", 0, numbered("m", 0, 3)...)
	expectKept(t, s, "s", 0, 1, 3, msgNamed("m"))
}
