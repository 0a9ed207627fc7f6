// Package native wraps brokers' own clients as a minimal core.Storage for the benchmark's
// "native" path (see package hub/bench): what an application gets by using the broker
// directly, without Sluice's backend, with the same message sizes and batching. Only
// CreateStream (one partition), Append, Fetch, Capabilities, Close and DeleteStream are
// meant to be used; they are not conformant backends (no validation, no error mapping).
package native

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sluicehq/sluice/core"
)

// Bolt is a bbolt database used directly: one bucket per stream, keys are big-endian
// indexes from the bucket's sequence, and Append runs in bolt's DB.Batch, which coalesces
// concurrent writers into one transaction (one fsync), as a bbolt application would. Bolt
// keeps bbolt's defaults: a batch waits up to MaxBatchDelay (10 ms) for more callers, so with
// the push workload's few concurrent Appends that wait, not the disk, sets its rate.
type Bolt struct {
	db *bolt.DB
}

var (
	_ core.Storage       = (*Bolt)(nil)
	_ core.StreamDeleter = (*Bolt)(nil)
)

// OpenBolt opens (creating it) the bbolt file at path with bolt's defaults (fsync on commit).
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("native bbolt: %w", err)
	}
	return &Bolt{db: db}, nil
}

// CreateStream creates the stream's bucket; partitions are ignored (there is one).
func (s *Bolt) CreateStream(_ context.Context, stream string, _ int) (int, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(stream))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("native bbolt: create %q: %w", stream, err)
	}
	return 1, nil
}

// Append puts msgs under the next indexes of the stream in one batched transaction.
func (s *Bolt) Append(ctx context.Context, stream string, _ int, msgs [][]byte) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var idx []uint64
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(stream))
		if b == nil {
			return core.ErrStreamNotFound
		}
		idx = idx[:0] // Batch may run the function again
		for _, m := range msgs {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			i := seq - 1
			if err := b.Put(key(i), m); err != nil {
				return err
			}
			idx = append(idx, i)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("native bbolt: append %q: %w", stream, err)
	}
	return idx, nil
}

// Fetch reads up to limit messages from index from with a cursor seek.
func (s *Bolt) Fetch(ctx context.Context, stream string, _ int, from uint64, limit int) ([]core.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []core.Message
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(stream))
		if b == nil {
			return core.ErrStreamNotFound
		}
		c := b.Cursor()
		for k, v := c.Seek(key(from)); k != nil && len(out) < limit; k, v = c.Next() {
			out = append(out, core.Message{Index: binary.BigEndian.Uint64(k), Data: append([]byte(nil), v...)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("native bbolt: fetch %q: %w", stream, err)
	}
	return out, nil
}

// DeleteStream deletes the stream's bucket.
func (s *Bolt) DeleteStream(_ context.Context, stream string) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(stream)) })
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return core.ErrStreamNotFound
	}
	return err
}

// Capabilities names the client.
func (s *Bolt) Capabilities() core.Capabilities {
	return core.Capabilities{Name: "bbolt-native", DenseIndex: true, Persistent: true, MaxMessageSize: 1 << 30, MaxPartitions: 1}
}

// Close closes the database.
func (s *Bolt) Close() error { return s.db.Close() }

func key(i uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], i)
	return k[:]
}
