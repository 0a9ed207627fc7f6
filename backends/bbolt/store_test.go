package bbolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sluicehq/sluice/core"
)

// open opens a Store on path and closes it when the test ends.
func open(t testing.TB, path string, opts *Options) *Store {
	t.Helper()
	s, err := New(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustCreate(t testing.TB, s *Store, stream string, partitions int) {
	t.Helper()
	n, err := s.CreateStream(context.Background(), stream, partitions)
	if err != nil || n != partitions {
		t.Fatalf("CreateStream(%q, %d) = %d, %v; want %d, nil", stream, partitions, n, err, partitions)
	}
}

func mustAppend(t testing.TB, s *Store, stream string, p int, msgs ...[]byte) []uint64 {
	t.Helper()
	idx, err := s.Append(context.Background(), stream, p, msgs)
	if err != nil {
		t.Fatalf("Append(%q, %d): %v", stream, p, err)
	}
	return idx
}

func TestNewResolvesPath(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		path, want string
	}{
		{dir, filepath.Join(dir, DefaultFileName)},                                    // existing directory
		{filepath.Join(dir, "a", "b"), filepath.Join(dir, "a", "b", DefaultFileName)}, // new directory
		{filepath.Join(dir, "c", "hub.db"), filepath.Join(dir, "c", "hub.db")},        // new file
	} {
		s, err := New(context.Background(), tc.path, nil)
		if err != nil {
			t.Fatalf("New(%q): %v", tc.path, err)
		}
		if got := s.Path(); got != tc.want {
			t.Errorf("New(%q).Path() = %q, want %q", tc.path, got, tc.want)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// An existing file is used as is.
		s, err = New(context.Background(), tc.want, nil)
		if err != nil {
			t.Fatalf("New(%q) of the existing file: %v", tc.want, err)
		}
		if got := s.Path(); got != tc.want {
			t.Errorf("New(%q).Path() = %q, want the same file", tc.want, got)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func TestNewInvalidOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{MaxMessageSize: -1},
		{MaxMessageSize: bolt.MaxValueSize + 1},
		{MaxPartitions: core.MaxPartitions + 1},
		{MaxPartitions: -1},
		{MaxFetchBytes: -1},
		{MaxCommitBytes: -1},
		{LockTimeout: -time.Second},
	} {
		if s, err := New(context.Background(), dir, &o); !errors.Is(err, core.ErrInvalidOption) {
			if s != nil {
				_ = s.Close()
			}
			t.Errorf("New(%+v) error = %v, want ErrInvalidOption", o, err)
		}
	}
	if _, err := New(context.Background(), "", nil); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("New(\"\") error = %v, want ErrInvalidOption", err)
	}
}

// TestNewOptionLimits: the documented largest MaxMessageSize and MaxPartitions are accepted.
func TestNewOptionLimits(t *testing.T) {
	s := open(t, t.TempDir(), &Options{MaxMessageSize: bolt.MaxValueSize, MaxPartitions: core.MaxPartitions})
	if c := s.Capabilities(); c.MaxMessageSize != bolt.MaxValueSize || c.MaxPartitions != core.MaxPartitions {
		t.Fatalf("Capabilities() = %v", c)
	}
}

// TestNewDefaults checks the defaults of nil Options: fsync on, the default lock timeout,
// a file of mode 0600 in a directory of mode 0700.
func TestNewDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	s := open(t, dir, nil)
	if s.db.NoSync {
		t.Error("fsync is off with default options")
	}
	if s.opts.LockTimeout != DefaultLockTimeout {
		t.Errorf("LockTimeout = %v, want %v", s.opts.LockTimeout, DefaultLockTimeout)
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode = %v, %v; want 0700", fi.Mode(), err)
	}
	if s := open(t, t.TempDir(), &Options{NoSync: true}); !s.db.NoSync {
		t.Error("fsync is on with NoSync set")
	}
}

func TestNewCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := New(ctx, t.TempDir(), nil); !errors.Is(err, context.Canceled) {
		if s != nil {
			_ = s.Close()
		}
		t.Errorf("New with a cancelled ctx: %v, want context.Canceled", err)
	}
	if _, err := NewWithDB(context.Background(), nil, nil); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("NewWithDB(nil db): %v, want ErrInvalidOption", err)
	}
}

func TestCapabilities(t *testing.T) {
	s := open(t, t.TempDir(), &Options{MaxMessageSize: 100, MaxPartitions: 3})
	c := s.Capabilities()
	if c.Name != "bbolt" || !c.DenseIndex || !c.Persistent || !c.NativeIndexStorage || c.MaxMessageSize != 100 || c.MaxPartitions != 3 {
		t.Fatalf("Capabilities() = %v", c)
	}
	if _, err := s.CreateStream(context.Background(), "s", 4); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("CreateStream with 4 > MaxPartitions partitions: %v, want ErrInvalidArgument", err)
	}
	mustCreate(t, s, "s", 3)
	if _, err := s.Append(context.Background(), "s", 0, [][]byte{make([]byte, 101)}); !errors.Is(err, core.ErrMessageTooLarge) {
		t.Errorf("Append of 101 bytes with MaxMessageSize 100: %v, want ErrMessageTooLarge", err)
	}
	if idx := mustAppend(t, s, "s", 0, make([]byte, 100)); idx[0] != 0 {
		t.Errorf("Append of 100 bytes = %v, want [0]", idx)
	}
}

func TestLockedFile(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, nil)
	s, err := New(context.Background(), dir, &Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, core.ErrUnavailable) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("second New on a locked file: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "is another sluice hub using it?") {
		t.Errorf("second New on a locked file: %q does not say what to check", err)
	}
}

// TestLockedFileCtxDeadline: New stops waiting for a locked file when ctx ends, even if
// LockTimeout is longer.
func TestLockedFileCtxDeadline(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		s, err := New(ctx, dir, &Options{LockTimeout: time.Hour})
		if s != nil {
			_ = s.Close()
		}
		res <- err
	}()
	select {
	case err := <-res:
		if !errors.Is(err, core.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("New on a locked file until ctx's deadline: %v, want ErrUnavailable or context.DeadlineExceeded", err)
		}
	case <-time.After(time.Minute): // a guard, not a timing assertion
		t.Fatal("New still waits for a locked file long after ctx's deadline")
	}
}

// TestLockedFileCtxCancel: New stops waiting for a locked file when ctx is cancelled, as
// when a hub waiting for another hub's file is interrupted (Ctrl-C), not only at ctx's
// deadline; the error says what it was waiting for.
func TestLockedFileCtxCancel(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	res := make(chan error, 1)
	go func() {
		s, err := New(ctx, dir, &Options{LockTimeout: 30 * time.Second})
		if s != nil {
			_ = s.Close()
		}
		res <- err
	}()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "another process") {
			t.Fatalf("New on a locked file, ctx cancelled: %v, want context.Canceled saying what it waited for", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("New still waits for a locked file 10s after its ctx was cancelled")
	}
}

func TestFormatVersionMismatch(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(file, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketInfo)
		if err != nil {
			return err
		}
		return b.Put(keyFormat, []byte{0, 0, 0, 99})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := New(context.Background(), file, nil); !errors.Is(err, core.ErrInvalidOption) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("New on a file of format 99: %v, want ErrInvalidOption", err)
	}
	// The refused file is closed again: it is not left locked.
	db, err = bolt.Open(file, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("open the file New refused: %v; want it unlocked", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReopenContinuesIndexes(t *testing.T) {
	dir := t.TempDir()
	s, err := New(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "s", 2)
	mustAppend(t, s, "s", 1, []byte("a"), []byte("b"), []byte("c"))
	if err := s.SaveIndex(context.Background(), "c1", "s", 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, nil)
	if n, err := s.CreateStream(context.Background(), "s", 5); err != nil || n != 2 {
		t.Fatalf("CreateStream of the existing stream = %d, %v; want 2, nil", n, err)
	}
	if idx := mustAppend(t, s, "s", 1, []byte("d")); idx[0] != 3 {
		t.Fatalf("Append after reopen = %v, want [3]", idx)
	}
	if idx := mustAppend(t, s, "s", 0, []byte("x")); idx[0] != 0 {
		t.Fatalf("Append to the empty partition after reopen = %v, want [0]", idx)
	}
	got, err := s.Fetch(context.Background(), "s", 1, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []core.Message{{Index: 1, Data: []byte("b")}, {Index: 2, Data: []byte("c")}, {Index: 3, Data: []byte("d")}}
	if !equalMessages(got, want) {
		t.Fatalf("Fetch(from 1) = %v, want %v", got, want)
	}
	if i, err := s.GetIndex(context.Background(), "c1", "s", 1); err != nil || i != 2 {
		t.Fatalf("GetIndex after reopen = %d, %v; want 2, nil", i, err)
	}
}

func equalMessages(a, b []core.Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Index != b[i].Index || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

func TestDeleteStream(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), nil)
	mustCreate(t, s, "s", 2)
	mustCreate(t, s, "s2", 1) // "s" is a prefix of "s2": its indexes must survive
	mustAppend(t, s, "s", 0, []byte("a"), []byte("b"))
	for _, k := range []struct {
		stream string
		p      int
	}{{"s", 0}, {"s", 1}, {"s2", 0}} {
		if err := s.SaveIndex(ctx, "c", k.stream, k.p, 7); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteStream(ctx, "s"); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if err := s.DeleteStream(ctx, "s"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("second DeleteStream: %v, want ErrStreamNotFound", err)
	}
	if _, err := s.Partitions(ctx, "s"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Partitions of a deleted stream: %v, want ErrStreamNotFound", err)
	}
	if _, err := s.Append(ctx, "s", 0, [][]byte{[]byte("x")}); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Append to a deleted stream: %v, want ErrStreamNotFound", err)
	}
	if _, err := s.GetIndex(ctx, "c", "s", 1); !errors.Is(err, core.ErrIndexNotFound) {
		t.Fatalf("GetIndex of a deleted stream: %v, want ErrIndexNotFound", err)
	}
	if i, err := s.GetIndex(ctx, "c", "s2", 0); err != nil || i != 7 {
		t.Fatalf("GetIndex of another stream = %d, %v; want 7, nil", i, err)
	}
	mustCreate(t, s, "s", 1)
	if idx := mustAppend(t, s, "s", 0, []byte("new")); idx[0] != 0 {
		t.Fatalf("Append to the recreated stream = %v, want [0]", idx)
	}
	if n, err := s.Partitions(ctx, "s"); err != nil || n != 1 {
		t.Fatalf("Partitions of the recreated stream = %d, %v; want 1, nil", n, err)
	}
}

func TestFetchMaxFetchBytes(t *testing.T) {
	s := open(t, t.TempDir(), &Options{MaxFetchBytes: 25})
	mustCreate(t, s, "s", 1)
	for i := range 5 {
		mustAppend(t, s, "s", 0, bytes.Repeat([]byte{byte('a' + i)}, 10))
	}
	got, err := s.Fetch(context.Background(), "s", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].Index != 2 {
		t.Fatalf("Fetch with MaxFetchBytes 25 over 10-byte messages returned %d message(s), want 3 (stop once >= 25 bytes)", len(got))
	}
	s3 := open(t, t.TempDir(), &Options{MaxFetchBytes: 20})
	mustCreate(t, s3, "s", 1)
	mustAppend(t, s3, "s", 0, bytes.Repeat([]byte("a"), 10), bytes.Repeat([]byte("b"), 10), bytes.Repeat([]byte("c"), 10))
	if got, err := s3.Fetch(context.Background(), "s", 0, 0, 100); err != nil || len(got) != 2 {
		t.Fatalf("Fetch with MaxFetchBytes 20 over 10-byte messages returned %d message(s), %v; want 2 (stop at 20 bytes)", len(got), err)
	}
	s2 := open(t, t.TempDir(), &Options{MaxFetchBytes: 1})
	mustCreate(t, s2, "s", 1)
	mustAppend(t, s2, "s", 0, []byte("large"), []byte("x"))
	got, err = s2.Fetch(context.Background(), "s", 0, 0, 100)
	if err != nil || len(got) != 1 || string(got[0].Data) != "large" {
		t.Fatalf("Fetch with MaxFetchBytes 1 = %v, %v; want the first message alone", got, err)
	}
}

// TestAppendCopiesMessages checks that Append neither retains nor shares the caller's
// slices and that Fetch returns slices the caller owns.
func TestAppendCopiesMessages(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	mustCreate(t, s, "s", 1)
	m := []byte("hello")
	mustAppend(t, s, "s", 0, m, m)
	copy(m, "XXXXX")
	got, err := s.Fetch(context.Background(), "s", 0, 0, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("Fetch = %v, %v", got, err)
	}
	got[0].Data = append(got[0].Data, '!') // must not overwrite the next message
	if string(got[1].Data) != "hello" || string(got[0].Data) != "hello!" {
		t.Fatalf("Fetch data = %q, %q; want \"hello!\", \"hello\"", got[0].Data, got[1].Data)
	}
}

// TestConcurrentAppendDense appends from many goroutines, in batches, to several
// partitions and checks that each partition holds exactly the messages appended, densely,
// at the indexes Append reported.
func TestConcurrentAppendDense(t *testing.T) {
	const (
		goroutines = 24
		rounds     = 40
		partitions = 3
	)
	s := open(t, t.TempDir(), nil)
	mustCreate(t, s, "s", partitions)
	reported := appendConcurrently(t, s, partitions, goroutines, rounds)
	total := 0
	for p := range partitions {
		got, err := s.Fetch(context.Background(), "s", p, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(reported[p]) {
			t.Errorf("partition %d holds %d messages, %d were appended", p, len(got), len(reported[p]))
		}
		for i, m := range got {
			if m.Index != uint64(i) {
				t.Fatalf("partition %d: message %d has index %d; want dense indexes", p, i, m.Index)
			}
			if string(m.Data) != reported[p][m.Index] {
				t.Errorf("partition %d index %d = %q, Append reported %q there", p, m.Index, m.Data, reported[p][m.Index])
			}
		}
		total += len(got)
	}
	want := 0
	for r := range rounds {
		want += goroutines * (1 + r%3)
	}
	if total != want {
		t.Errorf("%d messages stored, want %d", total, want)
	}
}

// TestCloseWhileAppending closes the Store while appends are in flight: every Append either
// succeeds, and its messages are in the file after reopening, or fails with ErrClosed.
func TestCloseWhileAppending(t *testing.T) {
	dir := t.TempDir()
	s, err := New(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "s", 1)
	var (
		mu sync.Mutex
		ok = map[uint64]string{}
		wg sync.WaitGroup
	)
	started := make(chan struct{})
	var once sync.Once
	for g := range 16 {
		wg.Go(func() {
			for r := 0; ; r++ {
				msg := fmt.Sprintf("g%d-r%d", g, r)
				idx, err := s.Append(context.Background(), "s", 0, [][]byte{[]byte(msg)})
				if errors.Is(err, core.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				ok[idx[0]] = msg
				mu.Unlock()
				once.Do(func() { close(started) })
			}
		})
	}
	<-started
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil", err)
	}
	wg.Wait()

	s = open(t, dir, nil)
	got, err := s.Fetch(context.Background(), "s", 0, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ok) {
		t.Fatalf("after reopen the partition holds %d messages, %d appends succeeded", len(got), len(ok))
	}
	for _, m := range got {
		if ok[m.Index] != string(m.Data) {
			t.Fatalf("index %d = %q, Append reported %q", m.Index, m.Data, ok[m.Index])
		}
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "s", 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["CreateStream"] = s.CreateStream(ctx, "s", 1)
	_, checks["Append"] = s.Append(ctx, "s", 0, [][]byte{[]byte("x")})
	_, checks["Append(empty)"] = s.Append(ctx, "s", 0, nil)
	_, checks["Fetch"] = s.Fetch(ctx, "s", 0, 0, 1)
	_, checks["Partitions"] = s.Partitions(ctx, "s")
	_, checks["GetIndex"] = s.GetIndex(ctx, "c", "s", 0)
	checks["SaveIndex"] = s.SaveIndex(ctx, "c", "s", 0, 1)
	checks["DeleteStream"] = s.DeleteStream(ctx, "s")
	for name, err := range checks {
		if !errors.Is(err, core.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// TestClosedWithDB: after Close, a Store on a db its caller keeps open refuses reads too.
func TestClosedWithDB(t *testing.T) {
	ctx := context.Background()
	_, s := openOnDB(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Fetch(ctx, "s", 0, 0, 1)
	if !errors.Is(err, core.ErrClosed) {
		t.Errorf("Fetch after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Partitions(ctx, "s"); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Partitions after Close: %v, want ErrClosed", err)
	}
	if _, err := s.GetIndex(ctx, "c", "s", 0); !errors.Is(err, core.ErrClosed) {
		t.Errorf("GetIndex after Close: %v, want ErrClosed", err)
	}
}

// TestMapErrNotOpen: bbolt's "database not open" (a read racing with Close) is ErrClosed.
func TestMapErrNotOpen(t *testing.T) {
	if err := mapErr("fetch", "s", bolterrors.ErrDatabaseNotOpen); !errors.Is(err, core.ErrClosed) || !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		t.Fatalf("mapErr(ErrDatabaseNotOpen) = %v, want it to match core.ErrClosed and keep bbolt's error", err)
	}
}

// TestAppendNearIndexLimit: in a partition whose last key a damaged file or another writer
// put near the end of the uint64 range, an Append is refused, and writes nothing, unless
// every index it needs stays below math.MaxUint64: indexes never wrap to 0, neither within a
// batch nor in the next Append.
func TestAppendNearIndexLimit(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), &Options{NoSync: true})
	mustCreate(t, s, "s", 1)
	const last = math.MaxUint64 - 3
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := partitionBucket(tx, "s", 0)
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, last), []byte("foreign"))
	}); err != nil {
		t.Fatal(err)
	}
	if idx, err := s.Append(ctx, "s", 0, [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")}); err == nil {
		t.Fatalf("Append of 4 messages after index %d reported %v; want an error (no 4 indexes left)", uint64(last), idx)
	}
	if idx := mustAppend(t, s, "s", 0, []byte("a"), []byte("b")); idx[0] != last+1 || idx[1] != last+2 {
		t.Fatalf("Append of 2 messages after index %d = %v", uint64(last), idx)
	}
	if idx, err := s.Append(ctx, "s", 0, [][]byte{[]byte("c")}); err == nil {
		t.Fatalf("Append after index %d reported %v; want an error (no index left)", uint64(last+2), idx)
	}
	got, err := s.Fetch(ctx, "s", 0, 0, 10)
	if err != nil || len(got) != 3 || got[0].Index != last || got[2].Index != last+2 {
		t.Fatalf("Fetch(0) = %v, %v; want the indexes %d to %d", got, err, uint64(last), uint64(last+2))
	}
}

// TestAppendNothing: an Append of no messages writes nothing but still reports a missing
// stream or a partition out of range.
func TestAppendNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), nil)
	mustCreate(t, s, "s", 1)
	if idx, err := s.Append(ctx, "s", 0, nil); err != nil || idx == nil || len(idx) != 0 {
		t.Errorf("Append of no messages = %#v, %v; want an empty slice, nil", idx, err)
	}
	if _, err := s.Append(ctx, "s", 1, nil); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("Append of no messages to partition 1 of a 1-partition stream: %v, want ErrInvalidArgument", err)
	}
	if _, err := s.Append(ctx, "none", 0, nil); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Append of no messages to a missing stream: %v, want ErrStreamNotFound", err)
	}
}

// errAfterFirst is a context whose Err reports context.Canceled from its second call on: it
// is cancelled while the call that checked it first runs.
type errAfterFirst struct {
	context.Context
	calls atomic.Int32
}

func (c *errAfterFirst) Err() error {
	if c.calls.Add(1) > 1 {
		return context.Canceled
	}
	return nil
}

// TestFetchCancelledWhileReading: a Fetch over many messages notices a ctx that ends while it
// reads them.
func TestFetchCancelledWhileReading(t *testing.T) {
	s := open(t, t.TempDir(), &Options{NoSync: true})
	mustCreate(t, s, "s", 1)
	msgs := make([][]byte, 2048)
	for i := range msgs {
		msgs[i] = []byte("m")
	}
	mustAppend(t, s, "s", 0, msgs...)
	ctx := &errAfterFirst{Context: context.Background()}
	if got, err := s.Fetch(ctx, "s", 0, 0, len(msgs)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch whose ctx ends while it reads = %d messages, %v; want context.Canceled", len(got), err)
	}
}

// openOnDB opens a bbolt file, closed when the test ends, and a Store on it with opts and a
// stream "s" of one partition; closing the Store is the caller's business.
func openOnDB(t *testing.T, opts *Options) (*bolt.DB, *Store) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := NewWithDB(context.Background(), db, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "s", 1)
	return db, s
}

// lastTxID returns the id of db's last committed transaction: it grows by one per commit.
func lastTxID(t *testing.T, db *bolt.DB) int {
	t.Helper()
	var id int
	if err := db.View(func(tx *bolt.Tx) error { id = int(tx.ID()); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitQueued waits until n writes wait in s's queue. With bbolt's writer lock held by the
// test, waitQueued(s, 0) after one write returns once the committer has taken that write and
// waits for the lock.
func waitQueued(s *Store, n int) {
	for {
		s.mu.Lock()
		q := len(s.queue)
		s.mu.Unlock()
		if q == n {
			return
		}
		runtime.Gosched()
	}
}

// TestCancelWhileWaiting cancels an Append whose write waits behind a write transaction the
// test holds open. Append must return context.Canceled; its message may or may not be
// committed (see the package doc), but the partition stays dense and the next Append gets
// the next index.
func TestCancelWhileWaiting(t *testing.T) {
	db, s := openOnDB(t, nil)
	ctx := context.Background()

	tx, err := db.Begin(true) // blocks the committer's next transaction
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		_, err := s.Append(cctx, "s", 0, [][]byte{[]byte("maybe")})
		res <- err
	}()
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	idx := mustAppend(t, s, "s", 0, []byte("sure"))
	got, err := s.Fetch(ctx, "s", 0, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(got)) != idx[0]+1 || string(got[len(got)-1].Data) != "sure" {
		t.Fatalf("after a cancelled Append, Append reported %v and the partition holds %v", idx, got)
	}
	if len(got) == 2 && string(got[0].Data) != "maybe" {
		t.Fatalf("index 0 = %q, want the cancelled message or nothing", got[0].Data)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The Store did not close the db it was given.
	if err := db.View(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatalf("db after Store.Close: %v, want it still open", err)
	}
	// A pre-cancelled ctx writes nothing.
	s, err = NewWithDB(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(cctx, "s", 0, [][]byte{[]byte("never")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled ctx: %v, want context.Canceled", err)
	}
	if got2, _ := s.Fetch(ctx, "s", 0, 0, 10); len(got2) != len(got) {
		t.Fatalf("Append with a cancelled ctx stored a message: %v", got2)
	}
}

func TestURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := core.Open(ctx, "bbolt://"+filepath.ToSlash(dir)+"/sub?nosync=true&max_message_size=10&max_partitions=2&lock_timeout=2s&mode=640")
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	s, ok := b.Storage.(*Store)
	if !ok || any(b.Index) != any(s) {
		t.Fatalf("core.Open returned %T/%T, want one *Store for both", b.Storage, b.Index)
	}
	if c := s.Capabilities(); c.MaxMessageSize != 10 || c.MaxPartitions != 2 {
		t.Errorf("Capabilities from the URL = %v", c)
	}
	if s.Path() != filepath.Join(dir, "sub", DefaultFileName) {
		t.Errorf("Path() = %q", s.Path())
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode = %v, %v; want 0640", fi.Mode(), err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"bbolt://",
		"bbolt://host/path",
		"bbolt:///x?nosync=maybe",
		"bbolt:///x?sync_freelist=maybe",
		"bbolt:///x?max_message_size=0",
		"bbolt:///x?max_partitions=99999",
		"bbolt:///x?lock_timeout=-1s",
		"bbolt:///x?mode=999",
		"bbolt:///x?nosync=true&nosync=false",
		"bbolt:///x?unknown=1",
		"bbolt:///x?nosync=true&nosync=false",
		"bbolt://user@/x",
	} {
		if b, err := core.Open(ctx, bad); !errors.Is(err, core.ErrInvalidOption) {
			if b != nil {
				_ = b.Close()
			}
			t.Errorf("core.Open(%q): %v, want ErrInvalidOption", bad, err)
		}
	}
}

func TestParseURLRelative(t *testing.T) {
	u := mustParse(t, "bbolt:data/hub.db?max_fetch_bytes=5&sync_freelist=true")
	path, o, err := ParseURL(u)
	if err != nil || path != "data/hub.db" || o.MaxFetchBytes != 5 || !o.SyncFreelist {
		t.Fatalf("ParseURL = %q, %+v, %v", path, o, err)
	}
	// Percent-escapes are decoded in a relative path as in an absolute one.
	for raw, want := range map[string]string{
		"bbolt:my%20data/a%3Fb.db": "my data/a?b.db",
		"bbolt:///my%20data/a.db":  "/my data/a.db",
	} {
		if path, _, err := ParseURL(mustParse(t, raw)); err != nil || path != want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", raw, path, err, want)
		}
	}
}

// TestParseURLOptions checks each parameter's field and bounds through ParseURL itself,
// which opens nothing.
func TestParseURLOptions(t *testing.T) {
	path, o, err := ParseURL(mustParse(t, "bbolt://localhost/var/hub.db?max_commit_bytes=7&max_fetch_bytes=5&mode=777&lock_timeout=1s"))
	if err != nil || path != "/var/hub.db" || o.MaxCommitBytes != 7 || o.MaxFetchBytes != 5 || o.FileMode != 0o777 || o.LockTimeout != time.Second {
		t.Fatalf("ParseURL = %q, %+v, %v", path, o, err)
	}
	for _, bad := range []string{
		"bbolt:///x?lock_timeout=0",
		"bbolt:///x?max_partitions=99999",
		"bbolt:///x?max_message_size=4294967296",
		"bbolt:///x?mode=0",
	} {
		if _, _, err := ParseURL(mustParse(t, bad)); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("ParseURL(%q): %v, want ErrInvalidOption", bad, err)
		}
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAppendAsyncSharesCommit holds bbolt's writer lock so that the committer waits on its
// first append, queues two more appends and an index save behind it, and checks that
// AppendAsync returned without waiting, that the three writes behind the first share one
// commit, and that every done reported the indexes in start order.
func TestAppendAsyncSharesCommit(t *testing.T) {
	db, s := openOnDB(t, nil)
	defer s.Close()
	ctx := context.Background()
	before := lastTxID(t, db)

	tx, err := db.Begin(true) // the committer's next transaction waits for it
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		call int
		idx  []uint64
		err  error
	}
	results := make(chan result, 3)
	appendAsync := func(call int, msgs ...string) {
		var b [][]byte
		for _, m := range msgs {
			b = append(b, []byte(m))
		}
		s.AppendAsync(ctx, "s", 0, b, func(idx []uint64, err error) { results <- result{call, idx, err} })
	}
	appendAsync(0, "a")
	waitQueued(s, 0)
	appendAsync(1, "b", "c")
	appendAsync(2, "d")
	saved := make(chan error, 1)
	go func() { saved <- s.SaveIndex(ctx, "c", "s", 0, 4) }()
	waitQueued(s, 3)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	want := [][]uint64{{0}, {1, 2}, {3}}
	for i := range want {
		r := <-results
		if r.call != i || r.err != nil || !slices.Equal(r.idx, want[i]) {
			t.Fatalf("done #%d: call %d reported %v, %v; want call %d with %v", i, r.call, r.idx, r.err, i, want[i])
		}
	}
	if err := <-saved; err != nil {
		t.Fatalf("SaveIndex: %v", err)
	}
	if got := lastTxID(t, db) - before; got != 2 {
		t.Fatalf("%d commits for 4 writes queued as 1 + 3; want 2", got)
	}
	got, err := s.Fetch(ctx, "s", 0, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var data []string
	for _, m := range got {
		data = append(data, string(m.Data))
	}
	if !slices.Equal(data, []string{"a", "b", "c", "d"}) {
		t.Fatalf("partition holds %q, want a b c d", data)
	}
}

// TestAppendAsyncRefused checks that AppendAsync reports through done, without queueing
// anything, a cancelled ctx, an invalid call and a closed store.
func TestAppendAsyncRefused(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "s", 1)
	call := func(ctx context.Context, stream string, partition int) error {
		var calls int
		var got error
		s.AppendAsync(ctx, stream, partition, [][]byte{[]byte("x")}, func(_ []uint64, err error) {
			calls++
			got = err
		})
		if calls != 1 { // a refused call reports before AppendAsync returns
			t.Fatalf("AppendAsync(%q, %d) called done %d times before returning, want 1", stream, partition, calls)
		}
		return got
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := call(cctx, "s", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v, want context.Canceled", err)
	}
	if err := call(ctx, "s", -1); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("negative partition: %v, want ErrInvalidArgument", err)
	}
	if err := call(ctx, "no such/stream", 0); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("invalid stream name: %v, want ErrInvalidArgument", err)
	}
	if got, err := s.Fetch(ctx, "s", 0, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("after refused calls the partition holds %v, %v; want nothing", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := call(ctx, "s", 0); !errors.Is(err, core.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// fillAndDelete appends n messages of size bytes to a new stream and deletes it, so that
// bbolt holds about n free pages.
func fillAndDelete(t *testing.T, s *Store, stream string, n, size int) {
	t.Helper()
	mustCreate(t, s, stream, 1)
	batch := make([][]byte, 0, 500)
	for i := range n {
		batch = append(batch, bytes.Repeat([]byte{byte(i)}, size))
		if len(batch) == cap(batch) || i == n-1 {
			mustAppend(t, s, stream, 0, batch...)
			batch = batch[:0]
		}
	}
	if err := s.DeleteStream(context.Background(), stream); err != nil {
		t.Fatal(err)
	}
}

// TestFreelistNotWrittenByDefault checks what Options.SyncFreelist changes: with many free
// pages, a commit writes the whole free-page list only when it is set.
func TestFreelistNotWrittenByDefault(t *testing.T) {
	const pages = 4000 // about 32 KB of free-page list when it is written
	alloc := func(o *Options) int {
		s := open(t, t.TempDir(), o)
		fillAndDelete(t, s, "big", pages, 3000)
		mustCreate(t, s, "small", 1)
		mustAppend(t, s, "small", 0, []byte("warm"))
		pageAlloc := func() int64 { st := s.db.Stats(); return st.TxStats.GetPageAlloc() }
		before := pageAlloc()
		mustAppend(t, s, "small", 0, []byte("m"))
		return int(pageAlloc() - before)
	}
	def := alloc(&Options{NoSync: true})
	synced := alloc(&Options{NoSync: true, SyncFreelist: true})
	if def >= 16<<10 {
		t.Errorf("default: one small append allocated %d bytes of pages; the free-page list was written", def)
	}
	if synced < def+16<<10 {
		t.Errorf("SyncFreelist: one small append allocated %d bytes of pages, default %d; want the free-page list (about 32 KB) on top", synced, def)
	}
}

// TestFreelistRebuiltOnOpen checks that the pages a deletion freed are reused after the file
// is closed and opened again, in both modes: the file does not grow when as much is
// written again.
func TestFreelistRebuiltOnOpen(t *testing.T) {
	for _, syncList := range []bool{false, true} {
		t.Run(fmt.Sprintf("SyncFreelist=%v", syncList), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f.db")
			o := &Options{NoSync: true, SyncFreelist: syncList}
			s, err := New(context.Background(), path, o)
			if err != nil {
				t.Fatal(err)
			}
			fillAndDelete(t, s, "a", 2000, 3000)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			s = open(t, path, o)
			mustCreate(t, s, "b", 1)
			for range 4 {
				batch := make([][]byte, 500)
				for i := range batch {
					batch[i] = make([]byte, 3000)
				}
				mustAppend(t, s, "b", 0, batch...)
			}
			fi2, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi2.Size() > fi.Size()+fi.Size()/10 {
				t.Errorf("file grew from %d to %d bytes writing again what was deleted: the freed pages were not reused after opening", fi.Size(), fi2.Size())
			}
			if ms, err := s.Fetch(context.Background(), "b", 0, 1999, 10); err != nil || len(ms) != 1 || len(ms[0].Data) != 3000 {
				t.Errorf("Fetch of the last message: %d messages, %v", len(ms), err)
			}
		})
	}
}

// TestOpenNotADatabase: a path that names a file that is not a bbolt database is refused
// with an error that says so and what to name instead.
func TestOpenNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), path, nil)
	if err == nil {
		s.Close()
		t.Fatal("New on a text file succeeded")
	}
	if !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "is not a bbolt database") {
		t.Fatalf("New on a text file: %v, want ErrInvalidOption saying it is not a bbolt database", err)
	}
}

// appendConcurrently appends to stream "s" of s from goroutines goroutines, rounds batches
// of 1 to 3 messages each, spreading them over its partitions, and returns per partition the
// message Append reported at each index. It fails t when a batch's indexes are not
// consecutive or an index is reported twice.
func appendConcurrently(t *testing.T, s *Store, partitions, goroutines, rounds int) []map[uint64]string {
	t.Helper()
	var (
		mu       sync.Mutex
		reported = make([]map[uint64]string, partitions)
		wg       sync.WaitGroup
	)
	for p := range reported {
		reported[p] = map[uint64]string{}
	}
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				p := (g + r) % partitions
				msgs := make([][]byte, 1+r%3)
				for i := range msgs {
					msgs[i] = fmt.Appendf(nil, "g%d-r%d-m%d", g, r, i)
				}
				idx, err := s.Append(context.Background(), "s", p, msgs)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				for i, x := range idx {
					if i > 0 && x != idx[i-1]+1 {
						t.Errorf("Append of a batch reported %v, want consecutive indexes", idx)
					}
					if prev, dup := reported[p][x]; dup {
						t.Errorf("index %d of partition %d reported twice (%q and %q)", x, p, prev, msgs[i])
					}
					reported[p][x] = string(msgs[i])
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return reported
}

// TestNewSyncsNewDirectories: a file New creates, and each directory it creates for it, is
// durable only once the directory holding it has been fsynced; otherwise a crash of the
// machine can take the whole file, with every append acknowledged in it, away. New fsyncs
// them (not with NoSync, and not when the file exists already).
func TestNewSyncsNewDirectories(t *testing.T) {
	var synced []string
	orig := syncDir
	syncDir = func(dir string) error {
		synced = append(synced, dir)
		return orig(dir)
	}
	defer func() { syncDir = orig }()

	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b")
	s, err := New(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{dir, filepath.Join(dir, "a"), path}
	if !slices.Equal(synced, want) {
		t.Fatalf("New of a new file in new directories fsynced %q, want %q", synced, want)
	}

	synced = nil
	s, err = New(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 0 {
		t.Fatalf("New of an existing file fsynced %q, want nothing", synced)
	}

	s, err = New(context.Background(), filepath.Join(dir, "c.db"), &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 0 {
		t.Fatalf("New with NoSync fsynced %q, want nothing", synced)
	}

	syncDir = func(string) error { return errors.New("injected") }
	if _, err := New(context.Background(), filepath.Join(dir, "d.db"), nil); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("New whose directory fsync failed = %v, want that error", err)
	}
}

// TestErrorsSayWhatToDo: failures only an operator can fix (a database file or directory
// the hub may not create or write, a read-only file system, a path under a file, a full
// disk) say what to do, and keep the system's error.
func TestErrorsSayWhatToDo(t *testing.T) {
	ctx := context.Background()
	orig := openFile
	defer func() { openFile = orig }()
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EROFS} {
		openFile = func(name string, _ int, _ os.FileMode) (*os.File, error) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: errno}
		}
		_, err := New(ctx, t.TempDir(), nil)
		if !errors.Is(err, errno) || !strings.Contains(err.Error(), "fix the permissions") {
			t.Errorf("New of a file it cannot open for writing (%v) = %v; want the error with what to do", errno, err)
		}
	}
	openFile = orig

	// The same for the directory New creates for the database: a file-system refusal, not
	// an invalid option (which a hub reports as a bad command line).
	origMkdir := mkdirAll
	defer func() { mkdirAll = origMkdir }()
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EROFS} {
		mkdirAll = func(path string, _ os.FileMode) error {
			return &fs.PathError{Op: "mkdir", Path: path, Err: errno}
		}
		_, err := New(ctx, filepath.Join(t.TempDir(), "new", "data"), nil)
		if !errors.Is(err, errno) || errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "fix the permissions") {
			t.Errorf("New of a directory it cannot create (%v) = %v; want the error with what to do, not core.ErrInvalidOption", errno, err)
		}
	}
	mkdirAll = origMkdir

	// A path under a regular file: the file system refuses it whoever the tests run as.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(file, "sub"), filepath.Join(file, "sub.db")} {
		_, err := New(ctx, path, nil)
		if !errors.Is(err, syscall.ENOTDIR) || errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "name another") {
			t.Errorf("New(%q) under a file = %v; want ENOTDIR with what to do, not core.ErrInvalidOption", path, err)
		}
	}

	// A full disk: bbolt's MaxSize makes the commit fail as ENOSPC would.
	db, err := bolt.Open(filepath.Join(t.TempDir(), "full.db"), 0o600, &bolt.Options{MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := NewWithDB(ctx, db, &Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCreate(t, s, "s", 1)
	msg := bytes.Repeat([]byte("x"), 64<<10)
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("a database of at most 1 MiB took 64 MiB of appends")
		}
		if _, err = s.Append(ctx, "s", 0, [][]byte{msg}); err != nil {
			break
		}
	}
	if !errors.Is(err, bolterrors.ErrMaxSizeReached) || !strings.Contains(err.Error(), "free space") {
		t.Errorf("Append to a full database = %v; want the error with what to do", err)
	}
	err = mapErr("append", "s", &fs.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "free space") {
		t.Errorf("mapErr(ENOSPC) = %v; want the error with what to do", err)
	}
}
