package kafka

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/core"
)

const (
	// readAheadBytes bounds the message bytes a Store keeps read ahead over all partitions.
	readAheadBytes = 16 << 20
	// readAheadTTL is how long an entry may be served.
	readAheadTTL = 2 * time.Second
	// readAheadReaders is how many positions per partition are followed.
	readAheadReaders = 4
	// readAheadEntries bounds the entries over all partitions.
	readAheadEntries = 4096
)

// readAhead keeps, per partition, the messages a broker fetch returned past the limit of
// the Fetch that asked for them, so that the next sequential Fetch of that partition is
// served without a broker round trip. Kafka answers a fetch with whole record batches up
// to a byte budget, so a Fetch usually receives more messages than its limit; a reader
// that pages through a partition (the hub's pulls) would otherwise fetch and decode them
// again. An entry also tells Fetch that a reader is paging sequentially, so that it asks
// the broker for a full budget rather than for about its limit.
//
// An entry covers the offsets [start, end) of one topic ID: every message that exists in
// that range is in msgs (which may be empty: the reader took them all, and the next Fetch
// from end is sequential). Each message is handed out once (Fetch's slices belong to the
// caller). A partition has up to readAheadReaders entries, one per reader position.
type readAhead struct {
	mu      sync.Mutex
	parts   map[partKey][]*aheadEntry
	entries int
	bytes   int
}

type partKey struct {
	topic     string
	partition int32
}

type aheadEntry struct {
	id         [16]byte
	start, end int64
	msgs       []core.Message
	bytes      int // of the fetch responses msgs keep in memory; 0 once msgs is empty
	at         time.Time
	fetched    int           // messages the last broker fetch for this entry brought
	atEnd      bool          // that fetch reached the partition's last stable offset
	fetching   chan struct{} // non-nil while a prefetch extends the entry; closed when it ends
}

// take returns up to limit messages with index >= from that were read ahead, removing
// them and everything before them from their entry. sequential reports whether from is
// covered by an entry (a reader paging through the partition), even if no message was
// left to return; then pending, if not nil, is closed when a prefetch that extends that
// entry ends (take again after it for the messages that follow).
func (ra *readAhead) take(k partKey, id [16]byte, from int64, limit int) (out []core.Message, sequential bool, pending <-chan struct{}) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for _, e := range slices.Clone(ra.parts[k]) {
		if e.id != id || time.Since(e.at) > readAheadTTL {
			ra.dropLocked(k, e)
			continue
		}
		if from < e.start || from > e.end {
			continue
		}
		i := sort.Search(len(e.msgs), func(i int) bool { return int64(e.msgs[i].Index) >= from })
		n := min(limit, len(e.msgs)-i)
		if n == 0 {
			return nil, true, e.fetching // from is the end of the entry
		}
		pending = e.fetching
		out = make([]core.Message, n)
		copy(out, e.msgs[i:i+n])
		e.msgs = e.msgs[i+n:]
		e.start = int64(out[n-1].Index) + 1
		if len(e.msgs) == 0 { // release the fetch response
			e.msgs = nil
			ra.bytes -= e.bytes
			e.bytes = 0
		}
		return out, true, pending
	}
	return nil, false, nil
}

// put records that a broker fetch from offset from was read up to (excluding) next, and
// keeps recs, all at offsets >= next, as read ahead; every message that exists at offsets
// [next, last of recs] must be in recs. size is the size of the fetch response, which recs
// keep in memory (their values point into it) until the last of them is taken. put
// replaces the entry of the reader that fetched (the one covering from), or the oldest
// one. It keeps no messages if that would exceed readAheadBytes.
func (ra *readAhead) put(k partKey, id [16]byte, from, next int64, recs []*kgo.Record, size int, atEnd bool) {
	e := &aheadEntry{id: id, start: next, end: next, at: time.Now(), fetched: len(recs), atEnd: atEnd}
	if len(recs) > 0 {
		e.msgs = make([]core.Message, len(recs))
		for i, r := range recs {
			e.msgs[i] = core.Message{Index: uint64(r.Offset), Data: r.Value[:len(r.Value):len(r.Value)]}
		}
		e.end = recs[len(recs)-1].Offset + 1
		e.bytes = size
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for _, old := range slices.Clone(ra.parts[k]) {
		if old.id != id || (old.start <= from && from <= old.end) {
			ra.dropLocked(k, old)
		}
	}
	if es := ra.parts[k]; len(es) >= readAheadReaders {
		ra.dropLocked(k, es[0]) // the oldest
	}
	if ra.bytes+e.bytes > readAheadBytes || ra.entries >= readAheadEntries {
		ra.sweepLocked()
		if ra.entries >= readAheadEntries {
			return
		}
		if ra.bytes+e.bytes > readAheadBytes {
			e.msgs, e.bytes, e.end = nil, 0, e.start // keep only the reader's position
		}
	}
	if ra.parts == nil {
		ra.parts = map[partKey][]*aheadEntry{}
	}
	ra.parts[k] = append(ra.parts[k], e)
	ra.entries++
	ra.bytes += e.bytes
}

// startPrefetch marks for a prefetch the entry of the reader whose next offset is next, and
// returns it and the offset to fetch from, when that reader pages through the partition,
// the last fetch did not reach its end, no more than that fetch brought is left (so a
// reader has at most about two fetches' worth in memory, as a Kafka consumer keeps one
// fetch buffered and one in flight), no prefetch is in flight and the read-ahead budget
// has room. The caller must call
// endPrefetch(k, e, ...) after fetching.
func (ra *readAhead) startPrefetch(k partKey, id [16]byte, next int64) (e *aheadEntry, from int64, ok bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for _, e := range ra.parts[k] {
		if e.id != id || next < e.start || next > e.end {
			continue
		}
		if e.fetching != nil || e.atEnd || len(e.msgs) > e.fetched || ra.bytes > readAheadBytes/2 {
			return nil, 0, false
		}
		e.fetching = make(chan struct{})
		return e, e.end, true
	}
	return nil, 0, false
}

// endPrefetch ends the prefetch of e started at offset from: when the entry still exists
// and still ends at from, recs (all at offsets >= from; every message that exists from from
// to the last of them) are added to it, and its end moves to next when recs is empty (the
// fetch read only offsets that hold no message). size is the fetch response's size, kept in
// memory by recs. With ok false (the fetch failed) the entry is left as it was.
func (ra *readAhead) endPrefetch(k partKey, e *aheadEntry, from, next int64, recs []*kgo.Record, size int, atEnd, ok bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	close(e.fetching)
	e.fetching = nil
	if !ok || !slices.Contains(ra.parts[k], e) || e.end != from {
		return
	}
	e.at, e.fetched, e.atEnd = time.Now(), len(recs), atEnd
	if len(recs) == 0 {
		e.end = max(e.end, next)
		return
	}
	if ra.bytes+size > readAheadBytes {
		e.atEnd = true // no room: stop prefetching until a Fetch puts a fresh entry
		return
	}
	for _, r := range recs {
		e.msgs = append(e.msgs, core.Message{Index: uint64(r.Offset), Data: r.Value[:len(r.Value):len(r.Value)]})
	}
	e.end = recs[len(recs)-1].Offset + 1
	e.bytes += size
	ra.bytes += size
}

// forget drops every entry of topic.
func (ra *readAhead) forget(topic string) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for k, es := range ra.parts {
		if k.topic == topic {
			for _, e := range slices.Clone(es) {
				ra.dropLocked(k, e)
			}
		}
	}
}

// sweepLocked drops the entries older than readAheadTTL.
func (ra *readAhead) sweepLocked() {
	for k, es := range ra.parts {
		for _, e := range slices.Clone(es) {
			if time.Since(e.at) > readAheadTTL {
				ra.dropLocked(k, e)
			}
		}
	}
}

func (ra *readAhead) dropLocked(k partKey, e *aheadEntry) {
	es := ra.parts[k]
	i := slices.Index(es, e)
	if i < 0 {
		return
	}
	es = slices.Delete(es, i, i+1)
	if len(es) == 0 {
		delete(ra.parts, k)
	} else {
		ra.parts[k] = es
	}
	ra.entries--
	ra.bytes -= e.bytes
}
