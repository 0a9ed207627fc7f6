package client

import (
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzOpenOutbox writes an arbitrary stream name and message (or a nested bucket) into an
// outbox file: openOutbox never panics, refuses another stream's file, and returns only
// messages stored under 8-byte keys.
func FuzzOpenOutbox(f *testing.F) {
	f.Add([]byte("s"), seqKey(1), []byte("m"), false)
	f.Add([]byte("t"), seqKey(1), []byte("m"), false)
	f.Add([]byte("s"), []byte{1}, []byte{}, false)
	f.Add([]byte("s"), seqKey(2), []byte{}, true)
	f.Fuzz(func(t *testing.T, stream, key, val []byte, nested bool) {
		path := filepath.Join(t.TempDir(), "outbox")
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			meta, _ := tx.CreateBucket(bucketMeta)
			msgs, _ := tx.CreateBucket(bucketMessages)
			if err := meta.Put(keyStream, stream); err != nil || nested {
				_, err2 := msgs.CreateBucket(key)
				return errors.Join(err, err2)
			}
			return msgs.Put(key, val)
		})
		if cerr := db.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Skip(err) // bbolt refuses the key
		}
		o, items, err := openOutbox(path, "s", 0)
		if err != nil {
			return
		}
		defer o.close()
		for _, it := range items {
			if string(stream) != "s" || nested || len(key) != 8 || it.size != len(val) {
				t.Fatalf("opened stream %q: item %d of %d bytes from key % x (nested %v)", stream, it.seq, it.size, key, nested)
			}
			data, err := o.read([]uint64{it.seq})
			if err != nil || string(data[0]) != string(val) {
				t.Fatalf("read item %d = %q, %v; want %q", it.seq, data, err, val)
			}
		}
		if string(stream) != "s" {
			t.Fatalf("opened the outbox of stream %q as s", stream)
		}
	})
}
