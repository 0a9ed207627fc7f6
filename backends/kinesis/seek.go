package kinesis

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/core"
)

// maxSeekEntries bounds a partition's seek map. When it is full every other entry is dropped,
// so the map stays spread over the whole range it has seen with gaps that at most double.
const maxSeekEntries = 4096

// seekMap is a sparse, sorted map from a record's first index to its sequence number.
type seekMap struct {
	mu      sync.Mutex
	entries []seekEntry
}

type seekEntry struct {
	first uint64
	seq   string
}

func (m *seekMap) add(first uint64, seq string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].first >= first })
	if i < len(m.entries) && m.entries[i].first == first {
		return
	}
	m.entries = append(m.entries, seekEntry{})
	copy(m.entries[i+1:], m.entries[i:])
	m.entries[i] = seekEntry{first, seq}
	if len(m.entries) > maxSeekEntries {
		kept := m.entries[:0]
		for j, e := range m.entries {
			if j%2 == 0 || j == len(m.entries)-1 {
				kept = append(kept, e)
			}
		}
		m.entries = kept
	}
}

// floor returns the entry with the largest first index <= index.
func (m *seekMap) floor(index uint64) (seekEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].first > index })
	if i == 0 {
		return seekEntry{}, false
	}
	return m.entries[i-1], true
}

// seek finds where to start reading for index from: the nearest known record at or below it,
// else a binary search over arrival timestamps (records are written by one writer in index
// order, so their first indexes grow with time), else the trim horizon.
func (s *Store) seek(ctx context.Context, name string, part *partition, from uint64) (iterFrom, error) {
	if e, ok := part.seeks.floor(from); ok {
		return iterFrom{seq: e.seq}, nil
	}
	first, ok, err := s.probe(ctx, name, part, iterFrom{})
	if err != nil || !ok || first.first >= from {
		return iterFrom{}, err // empty shard, or from is at or before the oldest record
	}
	part.seeks.add(first.first, first.seq)
	best := first
	lo, hi := first.at, time.Now()
	for range 48 {
		if hi.Sub(lo) <= time.Millisecond {
			break
		}
		mid := lo.Add(hi.Sub(lo) / 2)
		r, ok, err := s.probe(ctx, name, part, iterFrom{at: mid, atSet: true})
		if err != nil {
			return iterFrom{}, err
		}
		if !ok || r.first > from {
			hi = mid
			continue
		}
		part.seeks.add(r.first, r.seq)
		best, lo = r, mid
	}
	return iterFrom{seq: best.seq}, nil
}

type probed struct {
	first uint64
	seq   string
	at    time.Time
}

// probe returns the first Sluice record at or after position f that decodes.
func (s *Store) probe(ctx context.Context, name string, part *partition, f iterFrom) (probed, bool, error) {
	it, err := s.iterator(ctx, name, part.shardID, f)
	if err != nil {
		return probed{}, false, err
	}
	var found probed
	var ok bool
	err = s.readToEnd(ctx, it, func(recs []kinesisRecord) bool {
		for _, r := range recs {
			// A corrupt record is no landmark: its first index may be anything.
			if first, err := recordFirstIndex(r.Data); err == nil && unpackRecord(r.Data, func(uint64, []byte) bool { return false }) == nil {
				found, ok = probed{first: first, seq: aws.ToString(r.SequenceNumber), at: aws.ToTime(r.ApproximateArrivalTimestamp)}, true
				return false
			}
		}
		return true
	})
	return found, ok, err
}

// kinesisRecord is a record as GetRecords returns it.
type kinesisRecord = types.Record

// iterTTL is how long a remembered shard iterator is used; Kinesis expires them after five
// minutes.
const iterTTL = 4 * time.Minute

// maxCachedIters bounds the remembered iterators per partition (one per consumer position).
const maxCachedIters = 8

// maxAheadBytes bounds the messages kept with a remembered iterator: those a Fetch read past
// its limit (a packed record is read whole).
const maxAheadBytes = 4 << 20

// maxAheadTotal bounds the messages kept read ahead over all partitions of a Store.
const maxAheadTotal = 64 << 20

// iterCache remembers, for a partition, where a Fetch stopped: the messages it read past its
// limit and the shard iterator after them, keyed by the next index. A consumer reading
// sequentially then needs at most one GetRecords call per Fetch instead of a GetShardIterator
// and a GetRecords, and a packed record is read once however many Fetches it takes to hand
// out. Each remembered message is handed out once. The bytes of the messages kept count
// against total, the Store's budget of maxAheadTotal over all partitions.
type iterCache struct {
	mu     sync.Mutex
	m      map[uint64]cachedIter
	total  *atomic.Int64 // the Store's bytes kept over all partitions; nil: no bound
	closed bool          // forget dropped the partition: keep nothing more
}

type cachedIter struct {
	it    *string
	ahead []core.Message // from index next on, before the iterator's position
	bytes int            // of the messages in ahead
	since time.Time
}

// take removes and returns what is remembered for next: the messages read ahead and the
// iterator after them, if it is fresh.
func (c *iterCache) take(next uint64) (*string, []core.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[next]
	if !ok {
		return nil, nil, false
	}
	c.dropLocked(next)
	if time.Since(e.since) > iterTTL {
		return nil, nil, false
	}
	return e.it, e.ahead, true
}

// put remembers the iterator it after the messages ahead for the Fetch from next. It reports
// false, and keeps nothing, when the Store's budget has no room for the messages.
func (c *iterCache) put(next uint64, it *string, ahead []core.Message) bool {
	size := 0
	for _, m := range ahead {
		size += len(m.Data)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return true // nothing is kept for a forgotten partition, and that is no lack of room
	}
	if _, ok := c.m[next]; ok {
		c.dropLocked(next)
	}
	c.expireLocked()
	if len(c.m) >= maxCachedIters {
		var oldest uint64
		var at time.Time
		for k, e := range c.m {
			if at.IsZero() || e.since.Before(at) {
				oldest, at = k, e.since
			}
		}
		c.dropLocked(oldest)
	}
	if c.total != nil && size > 0 && c.total.Add(int64(size)) > maxAheadTotal {
		c.total.Add(-int64(size))
		return false
	}
	if c.m == nil {
		c.m = map[uint64]cachedIter{}
	}
	c.m[next] = cachedIter{it: it, ahead: ahead, bytes: size, since: time.Now()}
	return true
}

// expire drops what is older than iterTTL (Kinesis expired its iterator).
func (c *iterCache) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
}

func (c *iterCache) expireLocked() {
	for k, e := range c.m {
		if time.Since(e.since) > iterTTL {
			c.dropLocked(k)
		}
	}
}

// clear drops everything and keeps nothing from now on (forget dropped the partition).
func (c *iterCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		c.dropLocked(k)
	}
	c.closed = true
}

func (c *iterCache) dropLocked(next uint64) {
	if c.total != nil {
		c.total.Add(-int64(c.m[next].bytes))
	}
	delete(c.m, next)
}
