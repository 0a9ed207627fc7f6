package kinesis

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// shardFake is one shard: ListShards lists it, GetRecords returns every record stored from
// any new iterator, and nothing more from the iterator after that; PutRecord stores one.
// The first PutRecord is held until release is closed.
type shardFake struct {
	mu      sync.Mutex
	records [][]byte
	puts    int
	held    chan struct{} // closed when the first PutRecord arrived
	release chan struct{}
	put2    chan struct{} // closed when a second PutRecord was stored
	// goneFirst: the first PutRecord, once released, answers ResourceNotFoundException (the
	// stream was deleted at that moment) and stores nothing; the later ones store theirs.
	goneFirst bool
}

func (f *shardFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Data          []byte
		ShardIterator string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202."); op {
	case "ListShards":
		_, _ = w.Write([]byte(`{"Shards":[{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}}]}`))
	case "GetShardIterator":
		_, _ = w.Write([]byte(`{"ShardIterator":"all"}`))
	case "GetRecords":
		type rec struct {
			Data           []byte
			PartitionKey   string
			SequenceNumber string
		}
		out := struct {
			Records            []rec
			NextShardIterator  string
			MillisBehindLatest int64
		}{Records: []rec{}, NextShardIterator: "end"}
		if in.ShardIterator != "all" {
			_ = json.NewEncoder(w).Encode(out)
			return
		}
		f.mu.Lock()
		for i, d := range f.records {
			out.Records = append(out.Records, rec{d, "p0", fmt.Sprint(i + 1)})
		}
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(out)
	case "PutRecord":
		f.mu.Lock()
		f.puts++
		n := f.puts
		f.mu.Unlock()
		if n == 1 {
			close(f.held)
			<-f.release
			if f.goneFirst {
				w.Header().Set("X-Amzn-ErrorType", "ResourceNotFoundException")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"__type":"ResourceNotFoundException","message":"Stream sluice-s not found"}`))
				return
			}
		}
		f.mu.Lock()
		f.records = append(f.records, in.Data)
		seq := len(f.records)
		f.mu.Unlock()
		if n == 2 {
			close(f.put2)
		}
		fmt.Fprintf(w, `{"ShardId":"shardId-000000000000","SequenceNumber":"%d"}`, seq)
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

// heldShardStore returns a shardFake whose shard ends with a record of index 100 and whose
// first PutRecord is held until f.release is closed (and then, with goneFirst, answered as
// for a stream deleted meanwhile), and a Store of it that does not retry.
func heldShardStore(t *testing.T, goneFirst bool) (*shardFake, *Store) {
	t.Helper()
	old, _ := packRecords(100, [][]byte{[]byte("old")})
	f := &shardFake{records: old, held: make(chan struct{}), release: make(chan struct{}), put2: make(chan struct{}), goneFirst: goneFirst}
	return f, fakeStore(t, f, &Options{MaxRetries: -1})
}

// appendResult is what an Append returned.
type appendResult struct {
	idx []uint64
	err error
}

// goAppend appends the message m to partition 0 of the stream "s" of s in a goroutine; its
// result comes on the channel returned.
func goAppend(ctx context.Context, s *Store, m string) <-chan appendResult {
	c := make(chan appendResult, 1)
	go func() { idx, err := s.Append(ctx, "s", 0, [][]byte{[]byte(m)}); c <- appendResult{idx, err} }()
	return c
}

// TestOneWriterPerPartitionAfterForget: when a stream's cached state is forgotten
// (DeleteStream, or a call that found the stream gone or changed) while its partition's
// writer is still writing, the writer of the state loaded next must not learn the next
// index before that write ended: it would read the shard without the record in flight and
// hand out the same indexes again, and Fetch, which returns each index once, would lose one
// of the two messages. The fake holds the first writer's PutRecord.
func TestOneWriterPerPartitionAfterForget(t *testing.T) {
	f, s := heldShardStore(t, false) // the shard's last record: index 100
	first := goAppend(t.Context(), s, "a")
	<-f.held // the first writer is writing index 101
	s.forget("s", nil)
	second := goAppend(t.Context(), s, "b")
	// A second writer that does not wait writes at once; one that waits for the first
	// writes only after the release. The timer only lets the first write go on in that case.
	select {
	case <-f.put2:
	case <-time.After(2 * time.Second):
	}
	close(f.release)
	a, b := <-first, <-second
	if a.err != nil || b.err != nil {
		t.Fatalf("appends: %v, %v", a.err, b.err)
	}
	if a.idx[0] == b.idx[0] {
		t.Fatalf("both appends got index %d: two writers of one partition handed it out twice", a.idx[0])
	}
}
