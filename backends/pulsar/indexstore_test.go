package pulsar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"
)

// TestIndexTakesMaximum: two Stores that save the same key concurrently can leave the index
// topic with a lower record after a higher one (each read the topic before the other wrote).
// A Store that reads the topic must take the highest value, not the last record.
func TestIndexTakesMaximum(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	query := "prefix=indexmax-" + hex.EncodeToString(b) + "-" // a fresh index topic
	w, err := openStore(t, ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Create the index topic as SaveIndex does, then append what two racing SaveIndex
	// calls can: 10, then 5 (one Store would not append 5 after reading 10).
	cctx, end, err := w.calls.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.index.lock(cctx); err != nil {
		end()
		t.Fatal(err)
	}
	err = w.catchUpIndex(cctx)
	w.index.unlock()
	if err != nil {
		end()
		t.Fatal(err)
	}
	for _, v := range []uint64{10, 5} {
		rec := encodeIndexRecord(indexRecord{ClientID: "c", Stream: "s", Partition: 0, Index: v})
		if _, err := w.appendTopic(cctx, indexTopic, 0, [][]byte{rec}); err != nil {
			end()
			t.Fatalf("append index record %d: %v", v, err)
		}
	}
	end()
	r, err := openStore(t, ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.GetIndex(ctx, "c", "s", 0); err != nil || got != 10 {
		t.Fatalf("GetIndex after records 10 then 5 = %d, %v; want 10, the highest", got, err)
	}
}
