package bbolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sluicehq/sluice/core"
)

// Defaults for the zero values of [Options].
const (
	// DefaultMaxMessageSize is the default largest message Append accepts: 4 MiB.
	DefaultMaxMessageSize = 4 << 20
	// DefaultMaxFetchBytes is the default soft cap on the bytes one Fetch returns: 16 MiB.
	DefaultMaxFetchBytes = 16 << 20
	// DefaultLockTimeout is how long New waits, by default, for another process to release
	// its lock on the file.
	DefaultLockTimeout = 5 * time.Second
	// DefaultFileName is the file New creates inside a directory.
	DefaultFileName = "sluice.db"
	// DefaultMaxCommitBytes is the default soft cap on the message bytes one group commit
	// covers: 32 MiB.
	DefaultMaxCommitBytes = 32 << 20

	// maxMaxMessageSize is the largest MaxMessageSize allowed: bbolt's own value limit.
	maxMaxMessageSize = bolt.MaxValueSize
)

// lockWaitRound is how often New, waiting for another process to release the file, checks
// whether its context ended.
const lockWaitRound = 200 * time.Millisecond

// Options configures a [Store]. The zero value of every field means its default; a nil
// *Options means all defaults.
type Options struct {
	// MaxMessageSize is the largest message, in bytes, Append accepts (default
	// DefaultMaxMessageSize, at most 2 GiB - 2, bbolt's value limit).
	MaxMessageSize int

	// MaxPartitions is the largest partition count CreateStream accepts (default and
	// maximum core.MaxPartitions).
	MaxPartitions int

	// MaxFetchBytes is a soft cap on the message bytes one Fetch returns: Fetch stops adding
	// messages once it holds at least this many bytes, but always returns at least one
	// message when one exists (default DefaultMaxFetchBytes).
	MaxFetchBytes int

	// MaxCommitBytes is a soft cap on the message bytes one group commit covers; appends
	// waiting beyond it go into the next transaction (default DefaultMaxCommitBytes).
	MaxCommitBytes int

	// NoSync skips fsync on commit. Appends are then safe against a crash of the process,
	// but not against a crash of the operating system or a power loss. Use it for tests and
	// throw-away data only.
	NoSync bool

	// SyncFreelist makes every commit also write bbolt's list of free pages. By default it
	// is not written (bbolt's NoFreelistSync, as etcd sets it on Linux), and bbolt rebuilds
	// the list when it opens the file by reading every page: BenchmarkOpenFreelist opens a
	// 345 MB file with 40,000 free pages in about 26 ms this way and 2 ms with a written
	// list (file in the page cache; longer from a cold disk). Writing it costs every commit
	// a write of the whole list, which is long after a stream deletion freed many pages: in
	// the benchmark report, appends after deletions were 2 to 10 times slower. Set
	// SyncFreelist for a large file that must open fast. Either way the data is equally
	// durable, and a file written in one mode opens in the other.
	SyncFreelist bool

	// LockTimeout is how long New waits for another process to release its exclusive lock
	// on the file (default DefaultLockTimeout). New also stops waiting when ctx ends.
	LockTimeout time.Duration

	// FileMode is the permission of a newly created database file (default 0600).
	// Directories New creates get 0700.
	FileMode os.FileMode

	// MaxMessagesPerPartition turns on count-based retention: each partition keeps at most
	// its newest MaxMessagesPerPartition messages. The transaction that appends to a
	// partition also deletes its oldest messages beyond the limit, so a partition never holds
	// more once a commit returns. 0, the default, keeps every message until its stream is
	// deleted. See the package doc, # Retention: a consumer that falls further behind than
	// this loses the messages deleted before it read them.
	MaxMessagesPerPartition int
}

func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	switch {
	case r.MaxMessageSize == 0:
		r.MaxMessageSize = DefaultMaxMessageSize
	case r.MaxMessageSize < 0 || r.MaxMessageSize > maxMaxMessageSize:
		return r, fmt.Errorf("bbolt: %w: MaxMessageSize %d is outside [1, %d]", core.ErrInvalidOption, r.MaxMessageSize, maxMaxMessageSize)
	}
	switch {
	case r.MaxPartitions == 0:
		r.MaxPartitions = core.MaxPartitions
	case r.MaxPartitions < 0 || r.MaxPartitions > core.MaxPartitions:
		return r, fmt.Errorf("bbolt: %w: MaxPartitions %d is outside [1, %d]", core.ErrInvalidOption, r.MaxPartitions, core.MaxPartitions)
	}
	switch {
	case r.MaxFetchBytes == 0:
		r.MaxFetchBytes = DefaultMaxFetchBytes
	case r.MaxFetchBytes < 0:
		return r, fmt.Errorf("bbolt: %w: negative MaxFetchBytes %d", core.ErrInvalidOption, r.MaxFetchBytes)
	}
	switch {
	case r.MaxCommitBytes == 0:
		r.MaxCommitBytes = DefaultMaxCommitBytes
	case r.MaxCommitBytes < 0:
		return r, fmt.Errorf("bbolt: %w: negative MaxCommitBytes %d", core.ErrInvalidOption, r.MaxCommitBytes)
	}
	switch {
	case r.LockTimeout == 0:
		r.LockTimeout = DefaultLockTimeout
	case r.LockTimeout < 0:
		return r, fmt.Errorf("bbolt: %w: negative LockTimeout %v", core.ErrInvalidOption, r.LockTimeout)
	}
	if r.FileMode == 0 {
		r.FileMode = 0o600
	}
	if r.MaxMessagesPerPartition < 0 {
		return r, fmt.Errorf("bbolt: %w: negative MaxMessagesPerPartition %d; 0 keeps every message", core.ErrInvalidOption, r.MaxMessagesPerPartition)
	}
	return r, nil
}

// Names of the top-level buckets. See the package doc for the layout.
var (
	bucketInfo    = []byte("sluice")  // "format" -> formatVersion
	bucketMeta    = []byte("meta")    // stream name -> partition count (uint32, big-endian)
	bucketStreams = []byte("streams") // stream name -> bucket: partition (uint32) -> bucket: index (uint64) -> data
	bucketIndex   = []byte("index")   // stream \x00 partition (uint32) client_id -> saved index (uint64)

	keyFormat = []byte("format")
)

// formatVersion is the on-disk layout version this package reads and writes.
const formatVersion = 1

// Store is a Sluice backend in one bbolt file. It implements [core.Storage],
// [core.IndexStorage] (consumer indexes live in the same file), [core.StreamDeleter],
// [core.IndexDeleter], [core.PartitionCounter] and [core.AsyncAppender].
//
// A Store is safe for concurrent use. Every write (Append, CreateStream, DeleteStream,
// SaveIndex, DeleteIndexes) is handed to one committer goroutine owned by the Store, which covers all writes
// waiting at that moment with one bbolt transaction and one fsync (group commit); each caller
// returns when the transaction holding its write has committed. Reads (Fetch, GetIndex,
// Partitions) run in their own read-only transactions, concurrently with writes.
type Store struct {
	db    *bolt.DB
	opts  Options
	owned bool // Close closes db

	mu     sync.Mutex
	queue  []*op // writes waiting for the committer; guarded by mu
	closed bool  // guarded by mu
	wake   chan struct{}
	done   chan struct{} // closed when the committer has exited

	closeOnce sync.Once
	closeErr  error

	// next is the next index of each partition the committer has appended to. Only the
	// committer goroutine touches it.
	next map[partKey]uint64
}

type partKey struct {
	stream    string
	partition int
}

var (
	_ core.Storage          = (*Store)(nil)
	_ core.IndexStorage     = (*Store)(nil)
	_ core.StreamDeleter    = (*Store)(nil)
	_ core.PartitionCounter = (*Store)(nil)
	_ core.AsyncAppender    = (*Store)(nil)
	_ core.IndexDeleter     = (*Store)(nil)
)

// New opens (creating it if needed) the bbolt database at path and starts the Store's
// committer. If path is an existing directory, or does not exist and its last element has no
// extension (no '.'), it is a directory (created with its parents if needed) and the database
// is the file DefaultFileName inside it; otherwise path is the database file itself (its
// parent directories are created if needed).
//
// New waits at most opts.LockTimeout, and no longer than ctx allows, for another process to
// release the file; a file that stays locked returns an error matching [core.ErrUnavailable].
// Invalid options return [core.ErrInvalidOption]. nil opts means all defaults.
func New(ctx context.Context, path string, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	file, newDirs, err := resolvePath(path)
	if err != nil {
		return nil, err
	}
	// A file New creates, and the directories it creates for it, exist after a crash of the
	// machine only once the directory holding each has been fsynced: fsync of the file itself
	// (what bbolt does) does not persist its directory entry. Without that, appends
	// acknowledged as durable could vanish with the whole file.
	_, statErr := os.Stat(file)
	newFile := errors.Is(statErr, fs.ErrNotExist)
	timeout := o.LockTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	// bbolt waits for the lock without a context: wait in short rounds, so that a
	// cancelled ctx (a hub interrupted while another process holds the file) ends the
	// wait within one round instead of after the whole LockTimeout.
	start := time.Now()
	var db *bolt.DB
	for {
		round := max(min(timeout-time.Since(start), lockWaitRound), time.Millisecond)
		db, err = bolt.Open(file, o.FileMode, &bolt.Options{
			Timeout:        round,
			NoSync:         o.NoSync,
			FreelistType:   bolt.FreelistMapType,
			NoFreelistSync: !o.SyncFreelist,
			OpenFile:       openFile,
		})
		if !errors.Is(err, bolterrors.ErrTimeout) || ctx.Err() != nil || time.Since(start) >= timeout {
			break
		}
	}
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("bbolt: open %s: stopped waiting for another process to release the file: %w", file, ctx.Err())
			}
			return nil, fmt.Errorf("bbolt: open %s: %w: the file is locked by another process (waited %v): %w (is another sluice hub using it? stop it, or name another path)", file, core.ErrUnavailable, timeout, err)
		}
		var pe *fs.PathError
		switch {
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum):
			return nil, fmt.Errorf("bbolt: %w: %s is not a bbolt database (%w); name a directory, a new file, or a database a hub wrote", core.ErrInvalidOption, file, err)
		case errors.As(err, &pe) && pe.Path == file:
			return nil, fmt.Errorf("bbolt: %w%s", err, pathHint(err)) // it names the file already
		}
		return nil, fmt.Errorf("bbolt: open %s: %w%s", file, err, hint(err))
	}
	if newFile && !o.NoSync {
		// The parent of each new directory, then the directory holding the file.
		dirs := make([]string, 0, len(newDirs)+1)
		for _, d := range newDirs {
			dirs = append(dirs, filepath.Dir(d))
		}
		dirs = append(dirs, filepath.Dir(file))
		for _, d := range dirs {
			if err := syncDir(d); err != nil {
				_ = db.Close()
				return nil, fmt.Errorf("bbolt: open %s: fsync directory %s, so that the new file survives a crash: %w", file, d, err)
			}
		}
	}
	s, err := newStore(db, o, true)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// NewWithDB returns a Store that keeps its buckets ("sluice", "meta", "streams", "index") in
// db, an already open, writable bbolt database, for example one a device also uses for other
// data. The caller keeps ownership of db: Close stops the Store but does not close db, and
// the caller must not close db before the Store. Nothing else may write the Store's buckets
// (the Store keeps the next index of each partition in memory), and at most one Store may use
// a db at a time. opts.NoSync, SyncFreelist, LockTimeout and FileMode are ignored: they are
// db's business.
// NewWithDB creates the buckets in a write transaction: a write transaction the caller
// keeps open delays it, whatever ctx (checked on entry only; bbolt's transactions cannot be
// cancelled). Close likewise waits for the Store's own transactions.
func NewWithDB(ctx context.Context, db *bolt.DB, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("bbolt: %w: nil *bolt.DB", core.ErrInvalidOption)
	}
	return newStore(db, o, false)
}

func newStore(db *bolt.DB, o Options, owned bool) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		info, err := tx.CreateBucketIfNotExists(bucketInfo)
		if err != nil {
			return err
		}
		switch v := info.Get(keyFormat); {
		case v == nil:
			if err := info.Put(keyFormat, binary.BigEndian.AppendUint32(nil, formatVersion)); err != nil {
				return err
			}
		case len(v) != 4 || binary.BigEndian.Uint32(v) != formatVersion:
			return fmt.Errorf("%w: %s holds a Sluice database in format %x; this version reads format %d", core.ErrInvalidOption, db.Path(), v, formatVersion)
		}
		for _, name := range [][]byte{bucketMeta, bucketStreams, bucketIndex} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, mapErr("open "+db.Path(), "", err)
	}
	s := &Store{
		db:    db,
		opts:  o,
		owned: owned,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		next:  make(map[partKey]uint64),
	}
	go s.commitLoop()
	return s, nil
}

// resolvePath turns the path given to New into the database file, creating directories. It
// also returns the directories it created, outermost first.
func resolvePath(path string) (string, []string, error) {
	if path == "" {
		return "", nil, fmt.Errorf("bbolt: %w: empty database path; give a directory or a file", core.ErrInvalidOption)
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return filepath.Join(path, DefaultFileName), nil, nil
	case err == nil:
		return path, nil, nil
	case !errors.Is(err, os.ErrNotExist):
		// Not a bad option: the file system refused (no permission, a file where a
		// directory should be), which the operator fixes there or by naming another path.
		return "", nil, fmt.Errorf("bbolt: database path %q: %w%s", path, err, pathHint(err))
	}
	dir, file := path, DefaultFileName
	if filepath.Ext(path) != "" {
		dir, file = filepath.Dir(path), filepath.Base(path)
	}
	var created []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			break
		}
		created = append([]string{d}, created...)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := mkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("bbolt: create directory for the database: %w%s", err, pathHint(err))
	}
	return filepath.Join(dir, file), created, nil
}

// openFile opens the database file for bbolt. A variable for tests.
var openFile = os.OpenFile

// mkdirAll creates the directories for the database file. A variable for tests: they run
// as root, whom permissions do not stop.
var mkdirAll = os.MkdirAll

// pathHint is hint for a database path the file system refuses, with advice also for the
// refusals hint has none for (a file where a directory should be, a directory where the
// file should be).
func pathHint(err error) string {
	if h := hint(err); h != "" {
		return h
	}
	return "; fix the path named, or name another"
}

// hint returns advice on what to do about err, a failure to open or write the database file
// that only an operator can fix, with a leading "; ", or "" when it has none.
func hint(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return "; the hub must be able to read and write the database file and create files in its directory: fix the permissions (or the read-only mount), or name another path"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, bolterrors.ErrMaxSizeReached):
		return "; the disk (or the database's maximum size) is full: free space, or bound the file with retention (max_messages); deleting streams frees pages the file reuses, not disk space"
	}
	return ""
}

// syncDir fsyncs directory dir, which makes the entries created in it durable. A variable
// for tests.
var syncDir = func(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there; NTFS journals their entries
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.db.Path() }

// Capabilities reports "bbolt": dense indexes from 0, persistent, and the configured
// MaxMessageSize and MaxPartitions. Consumer indexes are kept in the same file
// (NativeIndexStorage).
func (s *Store) Capabilities() core.Capabilities {
	return core.Capabilities{
		Name:               "bbolt",
		DenseIndex:         true,
		Persistent:         true,
		MaxMessageSize:     s.opts.MaxMessageSize,
		MaxPartitions:      s.opts.MaxPartitions,
		NativeIndexStorage: true,
	}
}

// CreateStream creates stream with the given number of partitions, or returns the partition
// count of the existing stream (which may differ from partitions). It returns once the
// stream is durable. See [core.Storage].
func (s *Store) CreateStream(ctx context.Context, stream string, partitions int) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("bbolt: create stream: %w", err)
	}
	if err := core.ValidatePartitionCount(partitions, s.opts.MaxPartitions); err != nil {
		return 0, fmt.Errorf("bbolt: create stream %q: %w", stream, err)
	}
	var got int
	o := &op{apply: func(tx *bolt.Tx) error {
		n, err := s.txCreateStream(tx, stream, partitions)
		got = n
		return err
	}}
	if err := s.do(ctx, o); err != nil {
		return 0, mapErr("create stream", stream, err)
	}
	return got, nil
}

func (s *Store) txCreateStream(tx *bolt.Tx, stream string, partitions int) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get([]byte(stream)); v != nil {
		return decodePartitions(stream, v)
	}
	sb, err := tx.Bucket(bucketStreams).CreateBucket([]byte(stream))
	if err != nil {
		return 0, abort(err)
	}
	for p := range partitions {
		if _, err := sb.CreateBucket(partitionKey(p)); err != nil {
			return 0, abort(err)
		}
	}
	if err := meta.Put([]byte(stream), partitionKey(partitions)); err != nil {
		return 0, abort(err)
	}
	return partitions, nil
}

// Partitions returns the partition count of an existing stream; a missing stream returns
// [core.ErrStreamNotFound].
func (s *Store) Partitions(ctx context.Context, stream string) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("bbolt: partitions: %w", err)
	}
	var n int
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		n, err = streamPartitions(tx, stream)
		return err
	})
	if err != nil {
		return 0, mapErr("partitions", stream, err)
	}
	return n, nil
}

// DeleteStream deletes stream, all its messages and every consumer index saved for it. A
// stream created again under the same name starts again at index 0. A missing stream returns
// [core.ErrStreamNotFound].
func (s *Store) DeleteStream(ctx context.Context, stream string) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return fmt.Errorf("bbolt: delete stream: %w", err)
	}
	o := &op{apply: func(tx *bolt.Tx) error {
		// Existence only: a stream whose stored partition count is damaged can be deleted.
		if tx.Bucket(bucketMeta).Get([]byte(stream)) == nil {
			return fmt.Errorf("%w; create it with CreateStream first", core.ErrStreamNotFound)
		}
		// The committer's cache must forget the stream even if this transaction fails
		// (it then re-reads the partitions from the file).
		for k := range s.next {
			if k.stream == stream {
				delete(s.next, k)
			}
		}
		if err := tx.Bucket(bucketMeta).Delete([]byte(stream)); err != nil {
			return abort(err)
		}
		if err := tx.Bucket(bucketStreams).DeleteBucket([]byte(stream)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return abort(err)
		}
		return deleteIndexes(tx, stream)
	}}
	if err := s.do(ctx, o); err != nil {
		return mapErr("delete stream", stream, err)
	}
	return nil
}

// DeleteIndexes deletes every consumer index saved for stream, which need not exist (a
// backend that keeps its indexes here, as Kinesis can, calls it when it deletes a stream). It
// is group-committed like SaveIndex.
func (s *Store) DeleteIndexes(ctx context.Context, stream string) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return fmt.Errorf("bbolt: delete indexes: %w", err)
	}
	o := &op{apply: func(tx *bolt.Tx) error { return deleteIndexes(tx, stream) }}
	if err := s.do(ctx, o); err != nil {
		return mapErr("delete indexes", stream, err)
	}
	return nil
}

// deleteIndexes deletes the keys of stream's saved indexes (see indexKey) in tx.
func deleteIndexes(tx *bolt.Tx, stream string) error {
	prefix := append([]byte(stream), 0)
	c := tx.Bucket(bucketIndex).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return abort(err)
		}
	}
	return nil
}

// Append appends msgs to one partition and returns their indexes: consecutive, starting at
// the partition's next index. It returns once the group commit holding the messages has been
// written and fsynced. Append copies msgs before it queues them, so the caller may reuse them
// as soon as Append returns, even on error.
//
// If ctx ends while the messages wait for their commit, Append returns ctx.Err(); the
// messages may still be committed under the indexes they would have had (they are dropped
// only if the committer had not started on them yet). At-least-once callers retry, and may
// thus store a message twice. See [core.Storage].Append for the other errors.
func (s *Store) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	if err := s.checkAppend(stream, partition, msgs); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		// Still report a missing stream, a bad partition or a closed store.
		_, err := s.Partitions(ctx, stream)
		if err == nil {
			err = s.view(ctx, func(tx *bolt.Tx) error {
				_, err := partitionBucket(tx, stream, partition)
				return err
			})
		}
		if err != nil {
			return nil, mapErr("append", stream, err)
		}
		return []uint64{}, nil
	}
	// Copy msgs into one buffer: the committer uses them after a cancelled caller returned.
	o, idx := s.appendOp(stream, partition, core.CopyMessages(msgs))
	if err := s.do(ctx, o); err != nil {
		return nil, mapErr("append", stream, err)
	}
	return idx, nil
}

// checkAppend validates the arguments of Append and AppendAsync.
func (s *Store) checkAppend(stream string, partition int, msgs [][]byte) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return fmt.Errorf("bbolt: append: %w", err)
	}
	if err := core.ValidateMessages(msgs, s.opts.MaxMessageSize); err != nil {
		return fmt.Errorf("bbolt: append %q: %w", stream, err)
	}
	if partition < 0 {
		return fmt.Errorf("bbolt: append %q: %w: negative partition %d", stream, core.ErrInvalidArgument, partition)
	}
	return nil
}

// appendOp returns the op that appends msgs (validated) and the slice it fills with their
// indexes.
func (s *Store) appendOp(stream string, partition int, msgs [][]byte) (*op, []uint64) {
	size := 0
	for _, m := range msgs {
		size += len(m)
	}
	idx := make([]uint64, len(msgs))
	return &op{size: size, apply: func(tx *bolt.Tx) error {
		return s.txAppend(tx, stream, partition, msgs, idx)
	}}, idx
}

// AppendAsync implements [core.AsyncAppender]. It queues the append for the committer and
// returns; done runs on the committer's goroutine once the group commit that holds the
// append is durable (or failed). Appends queued one after another are applied in that
// order, so the hub can keep several appends to a partition in flight and they share
// commits (one fsync) with each other and with index saves. msgs is not copied: it is read
// until done is called. A cancelled ctx fails the append only if the committer has not
// written it yet, and done is then called when the committer reaches it.
func (s *Store) AppendAsync(ctx context.Context, stream string, partition int, msgs [][]byte, done func([]uint64, error)) {
	if err := s.checkAppend(stream, partition, msgs); err != nil {
		done(nil, err)
		return
	}
	if len(msgs) == 0 {
		done(s.Append(ctx, stream, partition, msgs)) // it still reports a missing stream
		return
	}
	o, idx := s.appendOp(stream, partition, msgs)
	o.then = func(err error) {
		if err != nil {
			done(nil, mapErr("append", stream, err))
			return
		}
		done(idx, nil)
	}
	if err := s.enqueue(ctx, o); err != nil {
		done(nil, mapErr("append", stream, err))
	}
}

func (s *Store) txAppend(tx *bolt.Tx, stream string, partition int, data [][]byte, idx []uint64) error {
	b, err := partitionBucket(tx, stream, partition)
	if err != nil {
		return err
	}
	b.FillPercent = 1 // keys only ever grow: fill pages completely
	k := partKey{stream, partition}
	next, ok := s.next[k]
	if !ok {
		if last, _ := b.Cursor().Last(); last != nil {
			i, err := decodeIndex(last)
			if err != nil || i == math.MaxUint64 {
				return fmt.Errorf("%w: stream %q partition %d: last key % x", errCorrupt, stream, partition, last)
			}
			next = i + 1
		}
	}
	// The last index must stay below math.MaxUint64, so that next never wraps to 0: only a
	// damaged file, or another writer, puts a partition that close to the end.
	if uint64(len(data)) > math.MaxUint64-next {
		return fmt.Errorf("%w: stream %q partition %d: no %d indexes left after index %d", errCorrupt, stream, partition, len(data), next-1)
	}
	// With retention, the messages of the batch beyond the newest MaxMessagesPerPartition
	// get their indexes but are not written: trim would delete them at once.
	keep := s.opts.MaxMessagesPerPartition
	skip := 0
	if keep > 0 && len(data) > keep {
		skip = len(data) - keep
	}
	var key [8]byte
	for i, m := range data {
		idx[i] = next
		next++
		if i < skip {
			continue
		}
		binary.BigEndian.PutUint64(key[:], idx[i])
		if err := b.Put(key[:], m); err != nil {
			return abort(err)
		}
	}
	s.next[k] = next
	if keep > 0 && next > uint64(keep) {
		if err := trim(b, next-uint64(keep)); err != nil {
			return abort(fmt.Errorf("stream %q partition %d: delete the messages beyond MaxMessagesPerPartition: %w", stream, partition, err))
		}
	}
	return nil
}

// trim deletes from partition bucket b every message whose index is below oldest. It seeks
// to oldest and deletes backwards: after Cursor.Delete, Prev returns the message before the
// deleted one, whereas Next would skip one (bbolt shifts the keys of the node) and a loop on
// First would walk again over every leaf page emptied so far. The caller keeps oldest at or
// below the last index, so the last message stays and the next index is still derived from
// the last key, also after a reopen.
func trim(b *bolt.Bucket, oldest uint64) error {
	var seek [8]byte
	binary.BigEndian.PutUint64(seek[:], oldest)
	c := b.Cursor()
	c.Seek(seek[:])
	for k, _ := c.Prev(); k != nil; k, _ = c.Prev() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Fetch returns up to limit messages of one partition with index >= from, in index order,
// starting with a cursor seek to from. It returns fewer than limit when it reaches the end
// of the partition or holds Options.MaxFetchBytes bytes (but always at least one message when
// one exists). The returned slices belong to the caller. See [core.Storage].Fetch.
func (s *Store) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("bbolt: fetch: %w", err)
	}
	if err := core.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("bbolt: fetch %q: %w", stream, err)
	}
	var out []core.Message
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, err := partitionBucket(tx, stream, partition)
		if err != nil {
			return err
		}
		// First pass: find how many messages and bytes to return; second: copy them into
		// one allocation.
		var seek [8]byte
		binary.BigEndian.PutUint64(seek[:], from)
		c := b.Cursor()
		n, size := 0, 0
		for k, v := c.Seek(seek[:]); k != nil && n < limit && (n == 0 || size < s.opts.MaxFetchBytes); k, v = c.Next() {
			n++
			size += len(v)
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		out = make([]core.Message, 0, n)
		buf := make([]byte, 0, size)
		for k, v := c.Seek(seek[:]); k != nil && len(out) < n; k, v = c.Next() {
			i, err := decodeIndex(k)
			if err != nil {
				return fmt.Errorf("%w: stream %q partition %d: message key % x", errCorrupt, stream, partition, k)
			}
			buf = append(buf, v...)
			out = append(out, core.Message{
				Index: i,
				Data:  buf[len(buf)-len(v) : len(buf) : len(buf)],
			})
		}
		return nil
	})
	if err != nil {
		return nil, mapErr("fetch", stream, err)
	}
	return out, nil
}

// GetIndex returns the index saved for (clientID, stream, partition): the next index the
// consumer will read. A key never saved returns [core.ErrIndexNotFound]. The stream need not
// exist. See [core.IndexStorage].
func (s *Store) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	key, err := indexKey("get index", clientID, stream, partition)
	if err != nil {
		return 0, err
	}
	var index uint64
	err = s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIndex).Get(key)
		if v == nil {
			return fmt.Errorf("%w: client %q, partition %d", core.ErrIndexNotFound, clientID, partition)
		}
		i, err := decodeIndex(v)
		index = i
		return err
	})
	if err != nil {
		return 0, mapErr("get index", stream, err)
	}
	return index, nil
}

// SaveIndex saves index for (clientID, stream, partition) unless a higher index is saved
// already (read, compare and write in one transaction). It is group-committed like Append
// and returns once the value is durable; if ctx ends first it returns ctx.Err() and the value
// may or may not be saved. The stream need not exist. See [core.IndexStorage].
func (s *Store) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	key, err := indexKey("save index", clientID, stream, partition)
	if err != nil {
		return err
	}
	o := &op{apply: func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIndex)
		if v := b.Get(key); v != nil {
			if cur, err := decodeIndex(v); err != nil || cur >= index {
				return err // a damaged value is reported, not overwritten
			}
		}
		if err := b.Put(key, binary.BigEndian.AppendUint64(nil, index)); err != nil {
			return abort(err)
		}
		return nil
	}}
	if err := s.do(ctx, o); err != nil {
		return mapErr("save index", stream, err)
	}
	return nil
}

// Close stops accepting calls, waits for the committer to commit every write already queued
// (so each of those callers gets its result), and closes the database if New opened it.
// Close waits only for writes already queued, each bounded by disk I/O; it never waits for
// new work. Calls after Close return [core.ErrClosed]; a second Close returns nil.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.signal()
		<-s.done
		if s.owned {
			if err := s.db.Close(); err != nil {
				s.closeErr = fmt.Errorf("bbolt: close %s: %w", s.db.Path(), err)
			}
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}

// view runs fn in a read-only transaction, after checking ctx and that the Store is open.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return core.ErrClosed
	}
	// A Close racing with this read makes bolt return ErrDatabaseNotOpen (mapped to
	// ErrClosed) or waits for this read to finish: bolt's Close waits for open
	// transactions.
	return s.db.View(fn)
}

// streamPartitions returns the partition count of stream, or ErrStreamNotFound.
func streamPartitions(tx *bolt.Tx, stream string) (int, error) {
	v := tx.Bucket(bucketMeta).Get([]byte(stream))
	if v == nil {
		return 0, fmt.Errorf("%w; create it with CreateStream first", core.ErrStreamNotFound)
	}
	return decodePartitions(stream, v)
}

// partitionBucket returns the bucket of (stream, partition), or ErrStreamNotFound /
// ErrInvalidArgument.
func partitionBucket(tx *bolt.Tx, stream string, partition int) (*bolt.Bucket, error) {
	n, err := streamPartitions(tx, stream)
	if err != nil {
		return nil, err
	}
	if err := core.ValidatePartition(stream, partition, n); err != nil {
		return nil, err
	}
	sb := tx.Bucket(bucketStreams).Bucket([]byte(stream))
	if sb == nil {
		return nil, fmt.Errorf("%w: stream %q has metadata but no message bucket", errCorrupt, stream)
	}
	b := sb.Bucket(partitionKey(partition))
	if b == nil {
		return nil, fmt.Errorf("%w: stream %q has no bucket for partition %d", errCorrupt, stream, partition)
	}
	return b, nil
}

func partitionKey(p int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(p)) }

// decodePartitions decodes a stream's partition count from "meta".
func decodePartitions(stream string, v []byte) (int, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("%w: stream %q: partition count % x", errCorrupt, stream, v)
	}
	n := binary.BigEndian.Uint32(v)
	if n < 1 || n > core.MaxPartitions {
		return 0, fmt.Errorf("%w: stream %q: %d partitions", errCorrupt, stream, n)
	}
	return int(n), nil
}

// decodeIndex decodes a message key or a saved index: 8 bytes, big-endian.
func decodeIndex(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: index value % x is not 8 bytes", errCorrupt, v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// indexKey validates a consumer index key and encodes it as
// stream \x00 partition(uint32, big-endian) client_id. Stream names and client ids contain
// no NUL byte, so keys are unambiguous and all keys of one stream share the prefix
// stream \x00.
func indexKey(what, clientID, stream string, partition int) ([]byte, error) {
	if err := core.ValidateIndexKey(clientID, stream, partition); err != nil {
		return nil, fmt.Errorf("bbolt: %s: %w", what, err)
	}
	key := make([]byte, 0, len(stream)+5+len(clientID))
	key = append(key, stream...)
	key = append(key, 0)
	key = binary.BigEndian.AppendUint32(key, uint32(partition))
	return append(key, clientID...), nil
}

// errCorrupt reports a database whose buckets do not match the layout.
var errCorrupt = errors.New("database layout is corrupt")

// mapErr is the one place that turns errors from bbolt and the committer into Sluice errors:
// bbolt's "database not open" becomes core.ErrClosed; core sentinels and context errors keep
// matching; bbolt's own error stays in the chain.
func mapErr(what, stream string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ae *abortError
	if errors.As(err, &ae) {
		err = ae.err
	}
	where := "bbolt: " + what
	if stream != "" {
		where = fmt.Sprintf("bbolt: %s %q", what, stream)
	}
	switch {
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		if errors.Is(err, core.ErrClosed) {
			return fmt.Errorf("%s: %w", where, err)
		}
		return fmt.Errorf("%s: %w: %w", where, core.ErrClosed, err)
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("%s: %w: %w", where, core.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w%s", where, err, hint(err))
}
