package kafka

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// records returns records at the given offsets whose values ("v<offset>") share one buffer,
// as a decoded fetch response's do.
func records(offsets ...int64) []*kgo.Record {
	var buf []byte
	var ends []int
	for _, o := range offsets {
		buf = fmt.Appendf(buf, "v%d", o)
		ends = append(ends, len(buf))
	}
	recs := make([]*kgo.Record, len(offsets))
	start := 0
	for i, o := range offsets {
		recs[i] = &kgo.Record{Offset: o, Value: buf[start:ends[i]]}
		start = ends[i]
	}
	return recs
}

func TestReadAhead(t *testing.T) {
	k := partKey{"t", 0}
	id := [16]byte{1}
	var ra readAhead

	// A fetch from 0 returned offsets 0-3 to the caller; 5, 6 and 8 were read ahead (4 and 7
	// hold no message).
	ra.put(k, id, 0, 4, records(5, 6, 8), 100)
	if got, seq := ra.take(k, id, 2, 10); got != nil || seq {
		t.Fatalf("take(2) = %v, %v; want nothing: offset 2 is before the entry", got, seq)
	}
	if got, seq := ra.take(k, id, 10, 10); got != nil || seq {
		t.Fatalf("take(10) = %v, %v; want nothing: offset 10 is past the entry", got, seq)
	}
	// 9 is the end of the entry: a sequential miss, which leaves the entry to its reader.
	if got, seq := ra.take(k, id, 9, 10); got != nil || !seq || len(ra.parts[k][0].msgs) != 3 {
		t.Fatalf("take(9) = %v, %v; want nothing, sequential, the entry untouched", got, seq)
	}
	if got, seq := ra.take(k, [16]byte{2}, 4, 10); got != nil || seq {
		t.Fatalf("take of another topic id = %v, %v; want nothing", got, seq)
	}
	if ra.entries != 0 || ra.bytes != 0 {
		t.Fatalf("after a take with another topic id: %d entries, %d bytes; want the entry dropped", ra.entries, ra.bytes)
	}

	ra.put(k, id, 0, 4, records(5, 6, 8), 100)
	got, seq := ra.take(k, id, 4, 1)
	if len(got) != 1 || got[0].Index != 5 || string(got[0].Data) != "v5" || !seq {
		t.Fatalf("take(4, limit 1) = %v, %v; want [5 v5], sequential", got, seq)
	}
	// The caller owns the slice: growing it leaves the next message alone.
	_ = append(got[0].Data, "XX"...)
	got, _ = ra.take(k, id, 6, 10)
	if len(got) != 2 || string(got[0].Data) != "v6" || got[1].Index != 8 || string(got[1].Data) != "v8" {
		t.Fatalf("take(6) = %v; want [6 v6] [8 v8]", got)
	}
	if ra.bytes != 0 {
		t.Fatalf("%d bytes kept after every message was taken; want 0", ra.bytes)
	}
	// Everything was taken: 9 is where the reader goes on, a sequential miss.
	if got, seq := ra.take(k, id, 9, 10); got != nil || !seq {
		t.Fatalf("take(9) after the entry was used up = %v, %v; want nothing, sequential", got, seq)
	}
	if got, _ := ra.take(k, id, 6, 10); got != nil {
		t.Fatalf("take(6) again = %v; want nothing: each message is handed out once", got)
	}

	// Readers at several positions have their own entries, up to readAheadReaders.
	ra.forget("t")
	for r := range readAheadReaders + 1 {
		base := int64(100 * r)
		ra.put(k, id, base, base+1, records(base+1, base+2), 10)
	}
	if n := len(ra.parts[k]); n != readAheadReaders {
		t.Fatalf("%d entries for one partition; want %d", n, readAheadReaders)
	}
	if got, _ := ra.take(k, id, 1, 10); got != nil {
		t.Fatalf("take(1) = %v; want nothing: the oldest reader's entry was evicted", got)
	}
	for r := 1; r <= readAheadReaders; r++ {
		base := int64(100 * r)
		if got, _ := ra.take(k, id, base+1, 10); len(got) != 2 || got[0].Index != uint64(base+1) {
			t.Fatalf("reader %d: take(%d) = %v", r, base+1, got)
		}
	}
	// A reader's next fetch replaces its own entry.
	ra.put(k, id, 403, 410, records(410), 10)
	if n := len(ra.parts[k]); n != readAheadReaders {
		t.Fatalf("%d entries after a reader fetched again; want %d", n, readAheadReaders)
	}

	// Beyond the byte budget only the position is kept.
	ra.forget("t")
	if ra.entries != 0 || ra.bytes != 0 || len(ra.parts) != 0 {
		t.Fatalf("after forget: %d entries, %d bytes", ra.entries, ra.bytes)
	}
	ra.put(k, id, 0, 1, records(1, 2), readAheadBytes+1)
	if got, seq := ra.take(k, id, 1, 10); got != nil || !seq {
		t.Fatalf("take(1) after an oversized put = %v, %v; want nothing, sequential", got, seq)
	}
	if ra.bytes != 0 {
		t.Fatalf("%d bytes kept; want 0", ra.bytes)
	}
}
