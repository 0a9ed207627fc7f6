package bbolt

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/core"
)

// FuzzStoredValues puts arbitrary bytes where the Store keeps its encodings (partition count,
// a message key and value, a saved index), as a damaged file or another writer of a shared db
// may, then runs every call that reads them: none panics (the committer has no recover), a
// count is in [1, core.MaxPartitions], Fetch is increasing and Append reuses no index. keep
// % 4 is the Store's MaxMessagesPerPartition (0: no retention): retention's cursor walks
// over the stored key too, and a partition holds at most that many messages after Append.
func FuzzStoredValues(f *testing.F) {
	be := func(v uint64, n int) []byte { return binary.BigEndian.AppendUint64(nil, v)[8-n:] }
	f.Add(be(1, 4), be(0, 8), []byte("m"), be(3, 8), uint8(0))
	f.Add([]byte{1}, []byte{7}, []byte("m"), []byte{1}, uint8(1))
	f.Add(be(0, 4), be(1<<64-1, 8), []byte{}, be(1<<64-1, 8), uint8(2))
	f.Add(be(1<<32-1, 4), be(5, 8), []byte("m"), []byte{}, uint8(3))
	f.Add(be(1, 4), be(1<<64-3, 8), []byte("m"), be(0, 8), uint8(1))
	f.Add(be(1, 4), []byte{0, 0, 0}, []byte("m"), be(0, 8), uint8(2))
	f.Fuzz(func(t *testing.T, meta, key, val, saved []byte, keep uint8) {
		ctx := context.Background()
		s, err := New(ctx, filepath.Join(t.TempDir(), "f.db"), &Options{NoSync: true, MaxMessagesPerPartition: int(keep % 4)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.CreateStream(ctx, "s", 1); err != nil {
			t.Fatal(err)
		}
		ik, _ := indexKey("", "c", "s", 0)
		if err := s.db.Update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put([]byte("s"), meta); err != nil {
				return err
			}
			if err := tx.Bucket(bucketStreams).Bucket([]byte("s")).Bucket(partitionKey(0)).Put(key, val); err != nil {
				return err
			}
			return tx.Bucket(bucketIndex).Put(ik, saved)
		}); err != nil {
			t.Skip(err) // bbolt refuses the key
		}
		for _, call := range []func() (int, error){
			func() (int, error) { return s.Partitions(ctx, "s") },
			func() (int, error) { return s.CreateStream(ctx, "s", 1) },
		} {
			if n, err := call(); err == nil && (n < 1 || n > core.MaxPartitions) {
				t.Fatalf("%d partitions from stored % x", n, meta)
			}
		}
		msgs, _ := s.Fetch(ctx, "s", 0, 0, 10)
		for i := 1; i < len(msgs); i++ {
			if msgs[i].Index <= msgs[i-1].Index {
				t.Fatalf("Fetch: index %d after %d", msgs[i].Index, msgs[i-1].Index)
			}
		}
		_, _ = s.GetIndex(ctx, "c", "s", 0)
		_ = s.SaveIndex(ctx, "c", "s", 0, 5)
		idx, err := s.Append(ctx, "s", 0, [][]byte{[]byte("new0"), []byte("new1"), []byte("new2")})
		if err == nil && len(msgs) > 0 && idx[0] <= msgs[len(msgs)-1].Index {
			t.Fatalf("Append at index %d, at or below the stored %d", idx[0], msgs[len(msgs)-1].Index)
		}
		if err == nil && keep%4 > 0 {
			after, err := s.Fetch(ctx, "s", 0, 0, 10)
			if err != nil || len(after) != int(keep%4) || after[len(after)-1].Index != idx[2] || string(after[len(after)-1].Data) != "new2" {
				t.Fatalf("after an Append of 3 reported %v with MaxMessagesPerPartition %d, Fetch(0) = %v, %v; want the newest %d, ending with %d:new2", idx, keep%4, after, err, keep%4, idx[2])
			}
		}
		_ = s.DeleteStream(ctx, "s")
	})
}
