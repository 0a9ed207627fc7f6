package kafka

import (
	"fmt"
	"testing"
	"time"

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
	ra.put(k, id, 0, 4, records(5, 6, 8), 100, false)
	if got, seq, _ := ra.take(k, id, 2, 10); got != nil || seq {
		t.Fatalf("take(2) = %v, %v; want nothing: offset 2 is before the entry", got, seq)
	}
	if got, seq, _ := ra.take(k, id, 10, 10); got != nil || seq {
		t.Fatalf("take(10) = %v, %v; want nothing: offset 10 is past the entry", got, seq)
	}
	// 9 is the end of the entry: a sequential miss, which leaves the entry to its reader.
	if got, seq, _ := ra.take(k, id, 9, 10); got != nil || !seq || len(ra.parts[k][0].msgs) != 3 {
		t.Fatalf("take(9) = %v, %v; want nothing, sequential, the entry untouched", got, seq)
	}
	if got, seq, _ := ra.take(k, [16]byte{2}, 4, 10); got != nil || seq {
		t.Fatalf("take of another topic id = %v, %v; want nothing", got, seq)
	}
	if ra.entries != 0 || ra.bytes != 0 {
		t.Fatalf("after a take with another topic id: %d entries, %d bytes; want the entry dropped", ra.entries, ra.bytes)
	}

	ra.put(k, id, 0, 4, records(5, 6, 8), 100, false)
	got, seq, _ := ra.take(k, id, 4, 1)
	if len(got) != 1 || got[0].Index != 5 || string(got[0].Data) != "v5" || !seq {
		t.Fatalf("take(4, limit 1) = %v, %v; want [5 v5], sequential", got, seq)
	}
	// The caller owns the slice: growing it leaves the next message alone.
	_ = append(got[0].Data, "XX"...)
	got, _, _ = ra.take(k, id, 6, 10)
	if len(got) != 2 || string(got[0].Data) != "v6" || got[1].Index != 8 || string(got[1].Data) != "v8" {
		t.Fatalf("take(6) = %v; want [6 v6] [8 v8]", got)
	}
	if ra.bytes != 0 {
		t.Fatalf("%d bytes kept after every message was taken; want 0", ra.bytes)
	}
	// Everything was taken: 9 is where the reader goes on, a sequential miss.
	if got, seq, _ := ra.take(k, id, 9, 10); got != nil || !seq {
		t.Fatalf("take(9) after the entry was used up = %v, %v; want nothing, sequential", got, seq)
	}
	if got, _, _ := ra.take(k, id, 6, 10); got != nil {
		t.Fatalf("take(6) again = %v; want nothing: each message is handed out once", got)
	}

	// Readers at several positions have their own entries, up to readAheadReaders.
	ra.forget("t")
	for r := range readAheadReaders + 1 {
		base := int64(100 * r)
		ra.put(k, id, base, base+1, records(base+1, base+2), 10, false)
	}
	if n := len(ra.parts[k]); n != readAheadReaders {
		t.Fatalf("%d entries for one partition; want %d", n, readAheadReaders)
	}
	if got, _, _ := ra.take(k, id, 1, 10); got != nil {
		t.Fatalf("take(1) = %v; want nothing: the oldest reader's entry was evicted", got)
	}
	for r := 1; r <= readAheadReaders; r++ {
		base := int64(100 * r)
		if got, _, _ := ra.take(k, id, base+1, 10); len(got) != 2 || got[0].Index != uint64(base+1) {
			t.Fatalf("reader %d: take(%d) = %v", r, base+1, got)
		}
	}
	// A reader's next fetch replaces its own entry.
	ra.put(k, id, 403, 410, records(410), 10, false)
	if n := len(ra.parts[k]); n != readAheadReaders {
		t.Fatalf("%d entries after a reader fetched again; want %d", n, readAheadReaders)
	}

	// Beyond the byte budget only the position is kept.
	ra.forget("t")
	if ra.entries != 0 || ra.bytes != 0 || len(ra.parts) != 0 {
		t.Fatalf("after forget: %d entries, %d bytes", ra.entries, ra.bytes)
	}
	ra.put(k, id, 0, 1, records(1, 2), readAheadBytes+1, false)
	if got, seq, _ := ra.take(k, id, 1, 10); got != nil || !seq {
		t.Fatalf("take(1) after an oversized put = %v, %v; want nothing, sequential", got, seq)
	}
	if ra.bytes != 0 {
		t.Fatalf("%d bytes kept; want 0", ra.bytes)
	}
}

func TestReadAheadPrefetch(t *testing.T) {
	k := partKey{"t", 0}
	id := [16]byte{1}
	var ra readAhead

	// A fetch returned 0-1 to its caller and read 2-5 ahead.
	ra.put(k, id, 0, 2, records(2, 3, 4, 5), 100, false)
	if got, _, _ := ra.take(k, id, 2, 2); len(got) != 2 {
		t.Fatalf("take(2, limit 2) = %v", got)
	}
	if _, _, ok := ra.startPrefetch(k, id, 7); ok {
		t.Fatal("prefetch started for a position no entry covers")
	}
	e, from, ok := ra.startPrefetch(k, id, 4)
	if !ok || from != 6 {
		t.Fatalf("startPrefetch(4) = %v, %d; want a prefetch from 6, the end of the entry", ok, from)
	}
	if _, _, again := ra.startPrefetch(k, id, 4); again {
		t.Fatal("a second prefetch started while one is in flight")
	}
	// The reader takes the rest, then finds the prefetch pending.
	if got, _, _ := ra.take(k, id, 4, 10); len(got) != 2 {
		t.Fatalf("take(4) = %v", got)
	}
	got, seq, pending := ra.take(k, id, 6, 10)
	if got != nil || !seq || pending == nil {
		t.Fatalf("take(6) during the prefetch = %v, %v, pending %v; want nothing, sequential, pending", got, seq, pending != nil)
	}
	// The prefetch brings 6, 7 and 9 (8 holds no message).
	ra.endPrefetch(k, e, 6, 10, records(6, 7, 9), 50, true, true)
	select {
	case <-pending:
	default:
		t.Fatal("pending not closed when the prefetch ended")
	}
	got, _, pending = ra.take(k, id, 6, 10)
	if len(got) != 3 || got[0].Index != 6 || got[2].Index != 9 || string(got[2].Data) != "v9" || pending != nil {
		t.Fatalf("take(6) after the prefetch = %v (pending %v); want 6, 7, 9", got, pending != nil)
	}
	// That fetch reached the end of the partition: no prefetch until a Fetch says otherwise.
	if _, _, ok := ra.startPrefetch(k, id, 10); ok {
		t.Fatal("prefetch started after a fetch that reached the end")
	}
	if ra.bytes != 0 {
		t.Fatalf("%d bytes kept after every message was taken; want 0", ra.bytes)
	}

	// A prefetch whose entry was dropped meanwhile adds nothing; a failed one leaves the entry.
	ra.put(k, id, 10, 10, nil, 0, false)
	e, from, ok = ra.startPrefetch(k, id, 10)
	if !ok || from != 10 {
		t.Fatalf("startPrefetch(10) on an empty entry = %v, %d", ok, from)
	}
	ra.endPrefetch(k, e, 10, 10, nil, 0, false, false)
	if got, seq, pending := ra.take(k, id, 10, 10); got != nil || !seq || pending != nil {
		t.Fatalf("take(10) after a failed prefetch = %v, %v, %v; want nothing, sequential, not pending", got, seq, pending != nil)
	}
	e, _, _ = ra.startPrefetch(k, id, 10)
	ra.forget("t")
	ra.endPrefetch(k, e, 10, 12, records(10, 11), 50, false, true)
	if ra.entries != 0 || ra.bytes != 0 {
		t.Fatalf("a prefetch of a dropped entry was kept: %d entries, %d bytes", ra.entries, ra.bytes)
	}

	// More than the last fetch brought is left: no second prefetch yet.
	ra.put(k, id, 20, 21, records(21, 22), 10, false)
	e2, _, ok := ra.startPrefetch(k, id, 21)
	if !ok {
		t.Fatal("no prefetch for a reader with what its last fetch brought left")
	}
	ra.endPrefetch(k, e2, 23, 26, records(23, 24, 25), 10, false, true)
	if _, _, ok := ra.startPrefetch(k, id, 21); ok {
		t.Fatal("prefetch started with more than the last fetch left")
	}
}

// TestReadAheadBounds checks the bounds of the read-ahead: entries expire after
// readAheadTTL, no entry is added beyond readAheadEntries, and no prefetch starts while more
// than half the byte budget is in use or after a prefetch found no room for what it read.
func TestReadAheadBounds(t *testing.T) {
	k := partKey{"t", 0}
	id := [16]byte{1}
	var ra readAhead

	ra.put(k, id, 0, 1, records(1, 2), 10, false)
	ra.parts[k][0].at = time.Now().Add(-readAheadTTL - time.Second)
	if got, seq, _ := ra.take(k, id, 1, 10); got != nil || seq {
		t.Fatalf("take of an expired entry = %v, %v; want nothing", got, seq)
	}
	if ra.entries != 0 || ra.bytes != 0 {
		t.Fatalf("after taking from an expired entry: %d entries, %d bytes; want it dropped", ra.entries, ra.bytes)
	}

	for p := range readAheadEntries {
		ra.put(partKey{"many", int32(p)}, id, 0, 0, nil, 0, false)
	}
	ra.put(k, id, 0, 1, records(1), 10, false)
	if ra.entries != readAheadEntries {
		t.Fatalf("%d entries; want at most %d", ra.entries, readAheadEntries)
	}
	if got, _, _ := ra.take(k, id, 1, 10); got != nil {
		t.Fatalf("take(1) = %v; want nothing: the entry was over the bound", got)
	}
	ra.forget("many")

	// More than half the budget held by another partition: no prefetch.
	ra.put(partKey{"big", 0}, id, 0, 1, records(1), readAheadBytes/2+1, false)
	ra.put(k, id, 0, 1, records(1), 10, false)
	if _, _, ok := ra.startPrefetch(k, id, 1); ok {
		t.Fatal("prefetch started with more than half the byte budget in use")
	}
	ra.forget("big")

	// A prefetch whose response does not fit keeps nothing and stops the prefetches.
	ra.put(k, id, 0, 1, records(1), 10, false)
	e, from, ok := ra.startPrefetch(k, id, 1)
	if !ok || from != 2 {
		t.Fatalf("startPrefetch(1) = %v, %d", ok, from)
	}
	ra.endPrefetch(k, e, from, 4, records(2, 3), readAheadBytes, false, true)
	if got, _, _ := ra.take(k, id, 2, 10); got != nil {
		t.Fatalf("take(2) = %v; want nothing: the prefetch did not fit", got)
	}
	if _, _, ok := ra.startPrefetch(k, id, 2); ok {
		t.Fatal("prefetch started again after one found no room")
	}
	ra.forget("t")

	// A prefetch that read only offsets holding no message moves the entry's end: the
	// reader's next Fetch, from there, is still sequential.
	ra.put(k, id, 0, 2, records(2, 3), 10, false)
	if got, _, _ := ra.take(k, id, 2, 10); len(got) != 2 {
		t.Fatalf("take(2) = %v", got)
	}
	e, from, ok = ra.startPrefetch(k, id, 4)
	if !ok || from != 4 {
		t.Fatalf("startPrefetch(4) = %v, %d", ok, from)
	}
	ra.endPrefetch(k, e, from, 9, nil, 50, false, true)
	if got, seq, _ := ra.take(k, id, 9, 10); got != nil || !seq {
		t.Fatalf("take(9) after a prefetch of markers up to 9 = %v, %v; want nothing, sequential", got, seq)
	}
}
