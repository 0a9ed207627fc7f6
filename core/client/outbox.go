package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sluicehq/sluice/core"
)

// The outbox file layout: bucket "meta" holds "stream" and "partition" (the stream
// partition the outbox belongs to) and bucket "messages" maps an 8-byte big-endian sequence number to the
// message bytes. Sequence numbers increase in publish order, so a cursor walks the messages
// in their original order.
var (
	bucketMeta     = []byte("meta")
	bucketMessages = []byte("messages")
	keyStream      = []byte("stream")
	keyPartition   = []byte("partition") // decimal; absent in files older than it: 0
)

// outbox keeps unconfirmed messages in a bbolt file so that they survive a device restart.
type outbox struct {
	db      *bolt.DB
	touched byte // what touch read at open (kept so that the reads are not optimised away)
}

// outboxItem is one message found in the outbox: its sequence number and size. Its bytes
// stay in the file until it is sent (see outbox.read).
type outboxItem struct {
	seq  uint64
	size int
}

// outboxLockWait is how long opening an outbox waits for the file's lock, which another
// publisher holding the file keeps until it closes.
const outboxLockWait = time.Second

// openOutbox opens (creating if needed) the outbox at path for a partition of stream and
// returns the messages still in it, in publish order, without their bytes (a device back
// after a long time offline may hold more than it has memory for). An outbox written for
// another stream or partition is refused with core.ErrInvalidOption. A damaged file, and one
// another publisher holds open, are errors.
func openOutbox(path, stream string, partition int) (_ *outbox, _ []outboxItem, err error) {
	// bbolt reads the file through a memory map: in a file cut short (a torn copy, a
	// damaged disk) it reads past the end, which faults (SIGBUS) and would kill the process,
	// at every start of the device. Such a fault while the file is opened and read (which
	// touches every page the messages are on, see touch) is an error instead. After a fault inside
	// bolt.Open the file stays open (and locked) until the process exits: bolt.Open returned
	// no handle to close it with.
	var db *bolt.DB
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if _, fault := r.(interface{ Addr() uintptr }); !fault {
			panic(r)
		}
		if db != nil {
			_ = db.Close()
		}
		err = fmt.Errorf("client: open outbox %q: the file is damaged (reading it faulted: %v): move it away to start without the messages it held", path, r)
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: outboxLockWait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, nil, fmt.Errorf("client: open outbox %q: another publisher has it open, in this process or another (waited %v for its lock): give each publisher its own outbox file, or close the other first: %w", path, outboxLockWait, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("client: open outbox %q: %w", path, err)
	}
	// Concurrent puts are coalesced into one transaction (one fsync); a lone Publish should
	// not wait long for company.
	db.MaxBatchDelay = time.Millisecond
	var items []outboxItem
	var touched byte
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		part := []byte(strconv.Itoa(partition))
		if got := meta.Get(keyStream); got == nil {
			if err := meta.Put(keyStream, []byte(stream)); err != nil {
				return err
			}
			if err := meta.Put(keyPartition, part); err != nil {
				return err
			}
		} else if string(got) != stream {
			return fmt.Errorf("%w: client: outbox %q belongs to stream %q, not %q; use one outbox file per stream", core.ErrInvalidOption, path, got, stream)
		}
		if got := meta.Get(keyPartition); got == nil && partition != 0 || got != nil && string(got) != string(part) {
			if got == nil {
				got = []byte("0")
			}
			return fmt.Errorf("%w: client: outbox %q belongs to partition %s of stream %q, not partition %d; use one outbox file per stream partition", core.ErrInvalidOption, path, got, stream, partition)
		}
		msgs, err := tx.CreateBucketIfNotExists(bucketMessages)
		if err != nil {
			return err
		}
		return msgs.ForEach(func(k, v []byte) error {
			if len(k) != 8 || v == nil { // v == nil: a nested bucket, which no put makes
				return fmt.Errorf("client: outbox %q: corrupt key %x", path, k)
			}
			items = append(items, outboxItem{seq: binary.BigEndian.Uint64(k), size: len(v)})
			touched ^= touch(v)
			return nil
		})
	})
	if err != nil {
		return nil, nil, errors.Join(err, db.Close())
	}
	return &outbox{db: db, touched: touched}, items, nil
}

// touch reads a byte of every memory page v spans, so that a file cut short faults while
// openOutbox reads it, where the fault is an error, and not when a message is sent later.
func touch(v []byte) (x byte) {
	for i := 0; i < len(v); i += pageSize {
		x ^= v[i]
	}
	if len(v) > 0 {
		x ^= v[len(v)-1]
	}
	return x
}

var pageSize = os.Getpagesize()

// read returns copies of the messages seqs, in that order.
func (o *outbox) read(seqs []uint64) ([][]byte, error) {
	out := make([][]byte, len(seqs))
	err := o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMessages)
		for i, seq := range seqs {
			v := b.Get(seqKey(seq))
			if v == nil {
				return fmt.Errorf("message %d is missing", seq)
			}
			out[i] = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: outbox read: %w", err)
	}
	return out, nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// put stores one message durably. Concurrent calls are coalesced into one transaction
// (bolt's Batch), so many publishers share one fsync.
func (o *outbox) put(seq uint64, data []byte) error {
	err := o.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).Put(seqKey(seq), data)
	})
	if err != nil {
		return fmt.Errorf("client: outbox put: %w", err)
	}
	return nil
}

// remove deletes confirmed messages in one transaction.
func (o *outbox) remove(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMessages)
		for _, s := range seqs {
			if err := b.Delete(seqKey(s)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("client: outbox remove: %w", err)
	}
	return nil
}

func (o *outbox) close() error { return o.db.Close() }
