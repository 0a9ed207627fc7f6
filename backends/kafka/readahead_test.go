package kafka_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/kafka"
)

// TestFetchReadAhead pages through a partition with small limits, as the hub does, by two
// readers at different positions in turn, so that Fetches are served partly from what an
// earlier Fetch read ahead and partly from the broker: each reader must get every message
// once, in order, with its own bytes.
func TestFetchReadAhead(t *testing.T) {
	s := dial(t)
	name := fmt.Sprintf("readahead-%d", time.Now().UnixNano())
	createStream(t, s, name, 1)
	const n = 1000
	for i := 0; i < n; i += 100 {
		batch := make([][]byte, 100)
		for j := range batch {
			batch[j] = fmt.Appendf(nil, "message %04d", i+j)
		}
		if _, err := s.Append(t.Context(), name, 0, batch); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	type reader struct {
		next  uint64 // index of the next message
		seq   int    // number of the next message
		limit int
	}
	readers := []*reader{{next: 0, seq: 0, limit: 7}, {limit: 3}}
	// The second reader starts in the middle.
	ms, err := s.Fetch(t.Context(), name, 0, 0, n)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	for len(ms) < n/2 {
		more, err := s.Fetch(t.Context(), name, 0, ms[len(ms)-1].Index+1, n)
		if err != nil || len(more) == 0 {
			t.Fatalf("Fetch: %d messages, %v", len(more), err)
		}
		ms = append(ms, more...)
	}
	readers[1].next, readers[1].seq = ms[n/2].Index, n/2

	for done := false; !done; {
		done = true
		for _, r := range readers {
			if r.seq == n {
				continue
			}
			done = false
			got, err := s.Fetch(t.Context(), name, 0, r.next, r.limit)
			if err != nil {
				t.Fatalf("Fetch(from %d, limit %d): %v", r.next, r.limit, err)
			}
			if len(got) == 0 || len(got) > r.limit {
				t.Fatalf("Fetch(from %d, limit %d) returned %d messages; %d of %d read", r.next, r.limit, len(got), r.seq, n)
			}
			for _, m := range got {
				if want := fmt.Sprintf("message %04d", r.seq); string(m.Data) != want || m.Index < r.next {
					t.Fatalf("Fetch(from %d) returned %q at index %d, want %q at or after %d", r.next, m.Data, m.Index, want, r.next)
				}
				// The slice belongs to the caller: growing it must not touch other messages.
				m.Data = append(m.Data, "XXXXXXXX"...)
				r.next, r.seq = m.Index+1, r.seq+1
			}
		}
	}
	// Past the end: caught up.
	if got, err := s.Fetch(t.Context(), name, 0, readers[0].next, 10); err != nil || len(got) != 0 {
		t.Fatalf("Fetch past the end: %d messages, %v", len(got), err)
	}

	// A stream deleted and created again under the same name is read afresh.
	partial, err := s.Fetch(t.Context(), name, 0, 0, 1)
	if err != nil || len(partial) != 1 {
		t.Fatalf("Fetch: %d messages, %v", len(partial), err)
	}
	if err := s.DeleteStream(t.Context(), name); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if _, err := s.CreateStream(t.Context(), name, 1); err != nil { // deleted by createStream's cleanup
		t.Fatalf("CreateStream again: %v", err)
	}
	if _, err := s.Append(t.Context(), name, 0, [][]byte{[]byte("new 0"), []byte("new 1")}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	got, err := s.Fetch(t.Context(), name, 0, partial[0].Index+1, 10)
	if err != nil || len(got) != 1 || string(got[0].Data) != "new 1" {
		t.Fatalf("Fetch after re-creating the stream: %d messages (%v), %v; want only \"new 1\"", len(got), got, err)
	}
}

// TestFetchReadAheadReplacesReadersEntry: a Fetch served first from what an earlier Fetch
// read ahead and then from the broker replaces its reader's read-ahead entry with one
// holding what the broker brought past its limit. It used to look for the reader's entry at
// the Fetch's from, which the messages taken had moved past: the used-up entry stayed
// beside the new one, and every such Fetch left one more, which took the place of other
// readers' entries (at most 4 per partition) until the 2 s expiry.
func TestFetchReadAheadReplacesReadersEntry(t *testing.T) {
	s := dial(t)
	name := fmt.Sprintf("readahead-entry-%d", time.Now().UnixNano())
	createStream(t, s, name, 1)
	appendN := func(from int) {
		t.Helper()
		batch := make([][]byte, 10) // one Append: one record batch, which Kafka returns whole
		for i := range batch {
			batch[i] = fmt.Appendf(nil, "m%d", from+i)
		}
		if _, err := s.Append(t.Context(), name, 0, batch); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	appendN(0)
	// The broker returns messages 0-9: 0-2 to the caller, 3-9 read ahead.
	got, err := s.Fetch(t.Context(), name, 0, 0, 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("Fetch(0, 3): %d messages, %v", len(got), err)
	}
	appendN(10)
	// 3-9 come from the read-ahead entry, 10-12 from the broker, which also returns 13-19.
	from := got[len(got)-1].Index + 1
	got, err = s.Fetch(t.Context(), name, 0, from, 10)
	if err != nil || len(got) != 10 {
		t.Fatalf("Fetch(%d, 10): %d messages, %v", from, len(got), err)
	}
	for i, m := range got {
		if want := fmt.Sprintf("m%d", 3+i); string(m.Data) != want {
			t.Fatalf("Fetch(%d, 10): message %d is %q, want %q", from, i, m.Data, want)
		}
	}
	if n := kafka.ReadAheadEntries(s, name, 0); n != 1 {
		t.Fatalf("one reader has %d read-ahead entries; want 1: the Fetch replaces the entry it used", n)
	}
	// And the next page comes from the new entry.
	from = got[len(got)-1].Index + 1
	if got, err = s.Fetch(t.Context(), name, 0, from, 10); err != nil || len(got) != 7 || string(got[0].Data) != "m13" {
		t.Fatalf("Fetch(%d, 10): %d messages, %v; want m13-m19", from, len(got), err)
	}
}
