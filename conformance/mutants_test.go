package conformance_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/conformance/conformancetest"
	"github.com/sluicehq/sluice/core"
)

// This file mutation-tests the suite: each mutant is the memory backend with one bug that a
// real adapter could have, and the suite must fail it, in the subtest that checks the
// contract it breaks. A mutant the suite passes is a gap in the suite.

// hooks replaces some methods of a memory store; a nil field keeps the store's own.
type hooks struct {
	caps          func(core.Capabilities) core.Capabilities
	createStream  func(ctx context.Context, stream string, n int) (int, error)
	append        func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error)
	fetch         func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error)
	deleteStream  func(ctx context.Context, stream string) error
	partitions    func(ctx context.Context, stream string) (int, error)
	getIndex      func(ctx context.Context, client, stream string, p int) (uint64, error)
	saveIndex     func(ctx context.Context, client, stream string, p int, index uint64) error
	deleteIndexes func(ctx context.Context, stream string) error
	close         func() error
}

// mutantStore is a memory store with hooks. When shared, the store outlives the handle, as
// a persistent backend's data outlives its client: Close closes the handle only.
type mutantStore struct {
	s      *memory.Store
	h      hooks
	shared bool
	closed atomic.Bool
}

var (
	_ core.Storage          = (*mutantStore)(nil)
	_ core.IndexStorage     = (*mutantStore)(nil)
	_ core.StreamDeleter    = (*mutantStore)(nil)
	_ core.PartitionCounter = (*mutantStore)(nil)
	_ core.IndexDeleter     = (*mutantStore)(nil)
)

func (m *mutantStore) check() error {
	if m.shared && m.closed.Load() {
		return fmt.Errorf("mutant: %w", core.ErrClosed)
	}
	return nil
}

func (m *mutantStore) Capabilities() core.Capabilities {
	c := m.s.Capabilities()
	c.Name = "mutant"
	if m.shared {
		c.Persistent = true
	}
	if m.h.caps != nil {
		c = m.h.caps(c)
	}
	return c
}

func (m *mutantStore) CreateStream(ctx context.Context, stream string, n int) (int, error) {
	if err := m.check(); err != nil {
		return 0, err
	}
	if m.h.createStream != nil {
		return m.h.createStream(ctx, stream, n)
	}
	return m.s.CreateStream(ctx, stream, n)
}

func (m *mutantStore) Append(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.h.append != nil {
		return m.h.append(ctx, stream, p, msgs)
	}
	return m.s.Append(ctx, stream, p, msgs)
}

func (m *mutantStore) Fetch(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.h.fetch != nil {
		return m.h.fetch(ctx, stream, p, from, limit)
	}
	return m.s.Fetch(ctx, stream, p, from, limit)
}

func (m *mutantStore) DeleteStream(ctx context.Context, stream string) error {
	if err := m.check(); err != nil {
		return err
	}
	if m.h.deleteStream != nil {
		return m.h.deleteStream(ctx, stream)
	}
	return m.s.DeleteStream(ctx, stream)
}

func (m *mutantStore) Partitions(ctx context.Context, stream string) (int, error) {
	if err := m.check(); err != nil {
		return 0, err
	}
	if m.h.partitions != nil {
		return m.h.partitions(ctx, stream)
	}
	return m.s.Partitions(ctx, stream)
}

func (m *mutantStore) GetIndex(ctx context.Context, client, stream string, p int) (uint64, error) {
	if err := m.check(); err != nil {
		return 0, err
	}
	if m.h.getIndex != nil {
		return m.h.getIndex(ctx, client, stream, p)
	}
	return m.s.GetIndex(ctx, client, stream, p)
}

func (m *mutantStore) SaveIndex(ctx context.Context, client, stream string, p int, index uint64) error {
	if err := m.check(); err != nil {
		return err
	}
	if m.h.saveIndex != nil {
		return m.h.saveIndex(ctx, client, stream, p, index)
	}
	return m.s.SaveIndex(ctx, client, stream, p, index)
}

func (m *mutantStore) DeleteIndexes(ctx context.Context, stream string) error {
	if err := m.check(); err != nil {
		return err
	}
	if m.h.deleteIndexes != nil {
		return m.h.deleteIndexes(ctx, stream)
	}
	return m.s.DeleteIndexes(ctx, stream)
}

func (m *mutantStore) Close() error {
	if m.h.close != nil {
		return m.h.close()
	}
	if m.shared {
		m.closed.Store(true)
		return nil
	}
	return m.s.Close()
}

// newMemory returns a memory store as memoryHarness configures it.
func newMemory() *memory.Store {
	s, err := memory.New(&memory.Options{MaxMessageSize: 4096})
	if err != nil {
		panic(err)
	}
	return s
}

// volatile is a harness whose every Open is a new memory store with the hooks mk returns
// for it.
func volatile(mk func(s *memory.Store) hooks) conformance.Harness {
	h := memoryHarness(nil)
	h.Open = func(context.Context) (*core.Backend, error) {
		s := newMemory()
		m := &mutantStore{s: s, h: mk(s)}
		return &core.Backend{Storage: m, Index: m}, nil
	}
	return h
}

// persistent is a harness whose Opens are handles on one memory store that outlives them:
// a correct persistent backend, unless mk's hooks (made anew for each handle) break it.
func persistent(mk func(s *memory.Store) hooks) conformance.Harness {
	h := memoryHarness(nil)
	s := newMemory()
	h.Open = func(context.Context) (*core.Backend, error) {
		m := &mutantStore{s: s, h: mk(s), shared: true}
		return &core.Backend{Storage: m, Index: m}, nil
	}
	return h
}

// wrapped is a harness of memory stores passed through wrap.
func wrapped(wrap func(*core.Backend) *core.Backend) conformance.Harness {
	return memoryHarness(wrap)
}

func noHooks(*memory.Store) hooks { return hooks{} }

// exists reports whether stream exists in s.
func exists(ctx context.Context, s *memory.Store, stream string) bool {
	_, err := s.Partitions(context.WithoutCancel(ctx), stream)
	return err == nil
}

// indexKey is a saved index's key, for mutants that keep indexes themselves.
type indexKey struct {
	client, stream string
	p              int
}

// sideIndexes is an IndexStorage kept beside a memory store (as Kinesis keeps its indexes in
// another backend): the store validates, honours ctx and reports Close; the map holds the
// values. racy makes a save a read, a yield and a write: concurrent saves lose updates.
type sideIndexes struct {
	s     *memory.Store
	racy  bool
	mu    sync.Mutex
	saved map[indexKey]uint64
}

func newSideIndexes(s *memory.Store, racy bool) *sideIndexes {
	return &sideIndexes{s: s, racy: racy, saved: map[indexKey]uint64{}}
}

func (x *sideIndexes) get(ctx context.Context, client, stream string, p int) (uint64, error) {
	if _, err := x.s.GetIndex(ctx, client, stream, p); err != nil && !errors.Is(err, core.ErrIndexNotFound) {
		return 0, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	v, ok := x.saved[indexKey{client, stream, p}]
	if !ok {
		return 0, fmt.Errorf("side: %w", core.ErrIndexNotFound)
	}
	return v, nil
}

func (x *sideIndexes) save(ctx context.Context, client, stream string, p int, index uint64) error {
	if _, err := x.s.GetIndex(ctx, client, stream, p); err != nil && !errors.Is(err, core.ErrIndexNotFound) {
		return err
	}
	k := indexKey{client, stream, p}
	x.mu.Lock()
	cur, ok := x.saved[k]
	if x.racy {
		// A window wide enough that other saves land in it on any machine: a Gosched
		// alone let every save of a run finish undisturbed on a busy 2-core machine.
		x.mu.Unlock()
		time.Sleep(200 * time.Microsecond)
		x.mu.Lock()
	}
	if !ok || index > cur {
		x.saved[k] = index
	}
	x.mu.Unlock()
	return nil
}

func (x *sideIndexes) deleteStream(stream string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range x.saved {
		if k.stream == stream {
			delete(x.saved, k)
		}
	}
}

// hooksWith returns hooks keeping indexes in x; DeleteStream and DeleteIndexes drop the
// stream's unless keepOnDelete.
func hooksWith(s *memory.Store, x *sideIndexes, keepOnDelete bool) hooks {
	return hooks{
		getIndex:  x.get,
		saveIndex: x.save,
		deleteStream: func(ctx context.Context, stream string) error {
			if err := s.DeleteStream(ctx, stream); err != nil {
				return err
			}
			if !keepOnDelete {
				x.deleteStream(stream)
			}
			return nil
		},
		deleteIndexes: func(ctx context.Context, stream string) error {
			if err := s.DeleteIndexes(ctx, stream); err != nil {
				return err
			}
			x.deleteStream(stream)
			return nil
		},
	}
}

// partKey names a partition.
type partKey struct {
	stream string
	p      int
}

// counters reports Append's indexes from a counter per partition of its own instead of the
// store's. Unless racy, that is correct for a partition appended to only through it; racy
// reads, yields and writes the counter, so concurrent appends get the same indexes.
type counters struct {
	s      *memory.Store
	racy   bool
	mu     sync.Mutex
	next   map[partKey]*atomic.Uint64
	serial sync.Mutex // held by each append unless racy
}

func newCounters(s *memory.Store, racy bool) *counters {
	return &counters{s: s, racy: racy, next: map[partKey]*atomic.Uint64{}}
}

func (c *counters) counter(k partKey) *atomic.Uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.next[k]
	if !ok {
		n = new(atomic.Uint64)
		c.next[k] = n
	}
	return n
}

func (c *counters) append(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
	if !c.racy {
		c.serial.Lock()
		defer c.serial.Unlock()
	}
	n := c.counter(partKey{stream, p})
	first := n.Load()
	if c.racy {
		runtime.Gosched()
	}
	idx, err := c.s.Append(ctx, stream, p, msgs)
	if err != nil {
		return nil, err
	}
	for i := range idx {
		idx[i] = first + uint64(i)
	}
	n.Store(first + uint64(len(idx)))
	return idx, nil
}

func (c *counters) deleteStream(ctx context.Context, stream string) error {
	if err := c.s.DeleteStream(ctx, stream); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.next {
		if k.stream == stream {
			delete(c.next, k)
		}
	}
	return nil
}

// bodies keeps one []byte per appended message beside the store, to model a backend that
// shares message buffers with its callers.
type bodies struct {
	mu sync.Mutex
	m  map[partKey]map[uint64][]byte
}

func (b *bodies) put(stream string, p int, idx uint64, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[partKey]map[uint64][]byte{}
	}
	k := partKey{stream, p}
	if b.m[k] == nil {
		b.m[k] = map[uint64][]byte{}
	}
	b.m[k][idx] = data
}

func (b *bodies) get(stream string, p int, idx uint64) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[partKey{stream, p}][idx]
}

// fetchBuffers model a backend that decodes each Fetch into a buffer it reuses for the next
// Fetch of the same reader (here: the same partition and limit).
type fetchBuffers struct {
	mu   sync.Mutex
	bufs map[string][]byte
}

func (f *fetchBuffers) fill(key string, ms []core.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bufs == nil {
		f.bufs = map[string][]byte{}
	}
	total := 0
	for _, m := range ms {
		total += len(m.Data)
	}
	buf := f.bufs[key]
	if cap(buf) < total {
		buf = make([]byte, 0, max(total, 1<<16))
		f.bufs[key] = buf
	}
	buf = buf[:0]
	for i, m := range ms {
		start := len(buf)
		buf = append(buf, m.Data...)
		ms[i].Data = buf[start:len(buf):len(buf)]
	}
}

// appendAsyncFunc is the signature of core.AsyncAppender's AppendAsync.
type appendAsyncFunc = func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error))

// asyncMutant is a mutantStore that implements core.AsyncAppender with appendAsync.
type asyncMutant struct {
	*mutantStore
	appendAsync appendAsyncFunc
}

func (a asyncMutant) AppendAsync(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
	if err := a.check(); err != nil {
		done(nil, err)
		return
	}
	a.appendAsync(ctx, stream, p, msgs, done)
}

// async is a harness like volatile whose Storage implements core.AsyncAppender with the
// function mk returns (nil: a correct one, Append then done), along with mk's hooks.
func async(mk func(s *memory.Store, h *hooks) appendAsyncFunc) conformance.Harness {
	h := memoryHarness(nil)
	h.Open = func(context.Context) (*core.Backend, error) {
		s := newMemory()
		m := &mutantStore{s: s}
		f := mk(s, &m.h)
		if f == nil {
			f = func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
				done(m.Append(ctx, stream, p, msgs))
			}
		}
		return &core.Backend{Storage: asyncMutant{m, f}, Index: m}, nil
	}
	return h
}

type mutant struct {
	name string
	// want names the leaf test that checks the contract the mutant breaks: it must be among
	// the failed ones. Empty for a correct backend, which must pass.
	want string
	h    func() conformance.Harness
}

var mutants = []mutant{
	{"control: memory", "", func() conformance.Harness { return volatile(noHooks) }},
	{"control: persistent memory", "", func() conformance.Harness { return persistent(noHooks) }},
	{"control: indexes beside the store", "", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks { return hooksWith(s, newSideIndexes(s, false), false) })
	}},
	{"control: own index counter", "", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			c := newCounters(s, false)
			return hooks{append: c.append, deleteStream: c.deleteStream}
		})
	}},

	// Fetch
	{"Fetch skips a message in the middle of its result", "Storage/Fetch/Paging", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if len(ms) >= 3 {
					ms = slices.Delete(ms, len(ms)/2, len(ms)/2+1)
				}
				return ms, err
			}}
		})
	}},
	{"Fetch starts at from+1", "Storage/Index/FetchFromReportedIndex", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				return s.Fetch(ctx, stream, p, from+1, limit)
			}}
		})
	}},
	{"Fetch returns one more than the limit", "Storage/Fetch/Limit", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				if limit > 0 {
					limit++
				}
				return s.Fetch(ctx, stream, p, from, limit)
			}}
		})
	}},
	{"Fetch with limit 0 means no limit", "Storage/Fetch/Limit", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				if limit == 0 {
					limit = 100
				}
				return s.Fetch(ctx, stream, p, from, limit)
			}}
		})
	}},
	{"Fetch of any partition reads partition 0", "Storage/Isolation/Partitions", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				if _, err := s.Fetch(ctx, stream, p, from, 0); err != nil {
					return nil, err
				}
				return s.Fetch(ctx, stream, 0, from, limit)
			}}
		})
	}},
	{"Fetch of a partition also reads the partitions whose number starts with its number (a key prefix scan)", "Storage/Isolation/Partitions", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if err != nil {
					return ms, err
				}
				n, err := s.Partitions(ctx, stream)
				if err != nil {
					return nil, err
				}
				// Keys "<stream>/<partition>/<index>": the scan of prefix "<stream>/1" also
				// finds the keys of partitions 10, 11, ... after those of partition 1.
				for q := range n {
					if q != p && strings.HasPrefix(strconv.Itoa(q), strconv.Itoa(p)) && len(ms) < limit {
						more, err := s.Fetch(ctx, stream, q, from, limit-len(ms))
						if err != nil {
							return nil, err
						}
						ms = append(ms, more...)
					}
				}
				return ms, nil
			}}
		})
	}},
	{"Fetch of a missing stream returns nothing", "Storage/Fetch/StreamNotFound", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if errors.Is(err, core.ErrStreamNotFound) {
					return []core.Message{}, nil
				}
				return ms, err
			}}
		})
	}},
	{"Fetch of a partition out of range says stream not found", "Storage/Fetch/InvalidPartition", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if errors.Is(err, core.ErrInvalidArgument) && core.ValidateStreamName(stream) == nil && limit >= 0 {
					return nil, fmt.Errorf("mutant: %w", core.ErrStreamNotFound)
				}
				return ms, err
			}}
		})
	}},
	{"Fetch reuses its buffer for the next Fetch", "Storage/Fetch/Paging", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var f fetchBuffers
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				f.fill(fmt.Sprint(stream, p, limit), ms)
				return ms, err
			}}
		})
	}},
	{"Fetch returns the same message slice for the next Fetch", "Storage/Fetch/Paging", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var mu sync.Mutex
			scratch := map[string][]core.Message{} // per reader: partition and limit
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if err != nil || len(ms) == 0 {
					return ms, err
				}
				mu.Lock()
				defer mu.Unlock()
				k := fmt.Sprint(stream, p, limit)
				buf := scratch[k]
				if cap(buf) < len(ms) {
					buf = make([]core.Message, 0, max(len(ms), 1024))
				}
				buf = append(buf[:0], ms...)
				scratch[k] = buf
				return buf, nil
			}}
		})
	}},
	{"Fetch returns the stored slices", "Storage/AppendFetch/NotRetained", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var b bodies
			return hooks{
				append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
					idx, err := s.Append(ctx, stream, p, msgs)
					for i := range idx {
						b.put(stream, p, idx[i], slices.Clone(msgs[i]))
					}
					return idx, err
				},
				fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
					ms, err := s.Fetch(ctx, stream, p, from, limit)
					for i := range ms {
						ms[i].Data = b.get(stream, p, ms[i].Index)
					}
					return ms, err
				},
			}
		})
	}},

	{"Fetch from above MaxInt64 reads from the start", "Storage/Fetch/PastEnd", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				if int64(from) < 0 { // Kafka's "earliest" and "latest" offsets are negative
					from = 0
				}
				return s.Fetch(ctx, stream, p, from, limit)
			}}
		})
	}},

	{"Fetch allocates limit messages up front", "Storage/Fetch/Limit", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if err != nil {
					return nil, err
				}
				out := make([]core.Message, 0, limit)
				return append(out, ms...), nil
			}}
		})
	}},
	{"Fetch adds the limit to a position without checking for overflow", "Storage/Fetch/Limit", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				if _, err := s.Fetch(ctx, stream, p, from, min(limit, 0)); err != nil || limit == 0 {
					return []core.Message{}, err
				}
				all, err := s.Fetch(ctx, stream, p, 0, 1<<20) // a cache of the partition
				if err != nil {
					return nil, err
				}
				k, _ := slices.BinarySearchFunc(all, from, func(m core.Message, from uint64) int { return cmp.Compare(m.Index, from) })
				return all[k:min(len(all), k+limit)], nil
			}}
		})
	}},

	{"Fetch returns nothing at a batch boundary", "Storage/Fetch/Paging", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if err == nil && from == 100 { // an empty fetch where a segment or batch ends
					return []core.Message{}, nil
				}
				return ms, err
			}}
		})
	}},
	{"Fetch skips a message that does not fit its byte budget", "Storage/AppendFetch/MixedSizes", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				budget := 8192
				out := ms[:0:0]
				for _, m := range ms {
					if len(m.Data) > budget {
						continue // should stop here instead
					}
					budget -= len(m.Data)
					out = append(out, m)
				}
				if err != nil {
					return nil, err
				}
				return out, nil
			}}
		})
	}},
	{"Fetch truncates messages to its read buffer", "Storage/MaxMessageSize/Accepted", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				for i := range ms {
					ms[i].Data = ms[i].Data[:min(len(ms[i].Data), 1024)]
				}
				return ms, err
			}}
		})
	}},
	{"Fetch returns messages as text (invalid UTF-8 replaced)", "Storage/AppendFetch/AllByteValues", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				for i := range ms {
					ms[i].Data = []byte(strings.ToValidUTF8(string(ms[i].Data), "\uFFFD"))
				}
				return ms, err
			}}
		})
	}},
	{"Fetch with a negative limit returns nothing", "Storage/Fetch/NegativeLimit", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				return s.Fetch(ctx, stream, p, from, max(limit, 0))
			}}
		})
	}},

	// Append
	{"Append reports the first index for every message of a batch", "Storage/Order", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				idx, err := s.Append(ctx, stream, p, msgs)
				for i := range idx {
					idx[i] = idx[0]
				}
				return idx, err
			}}
		})
	}},
	{"Append reports indexes not increasing", "Storage/Index/StrictlyIncreasing", func() conformance.Harness {
		return wrapped(conformancetest.NonMonotonic)
	}},
	{"Append reports one index per batch", "Storage/Order", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				idx, err := s.Append(ctx, stream, p, msgs)
				if len(idx) > 1 {
					idx = idx[:1]
				}
				return idx, err
			}}
		})
	}},
	{"Append reports index+1", "Storage/Index/StrictlyIncreasing", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				idx, err := s.Append(ctx, stream, p, msgs)
				for i := range idx {
					idx[i]++
				}
				return idx, err
			}}
		})
	}},
	{"Append of an empty batch is an error", "Storage/AppendFetch/EmptyBatch", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				if len(msgs) == 0 {
					return nil, fmt.Errorf("mutant: no messages: %w", core.ErrInvalidArgument)
				}
				return s.Append(ctx, stream, p, msgs)
			}}
		})
	}},
	{"Append of an empty batch appends an empty message", "Storage/AppendFetch/EmptyBatch", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				if len(msgs) == 0 {
					_, err := s.Append(ctx, stream, p, [][]byte{nil})
					return []uint64{}, err
				}
				return s.Append(ctx, stream, p, msgs)
			}}
		})
	}},
	{"Append drops empty messages", "Storage/AppendFetch/EmptyMessage", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				kept := slices.DeleteFunc(slices.Clone(msgs), func(m []byte) bool { return len(m) == 0 })
				if len(kept) == 0 && len(msgs) > 0 {
					return []uint64{}, nil
				}
				return s.Append(ctx, stream, p, kept)
			}}
		})
	}},
	{"Append stores a batch in reverse order", "Storage/Order", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				rev := slices.Clone(msgs)
				slices.Reverse(rev)
				return s.Append(ctx, stream, p, rev)
			}}
		})
	}},
	{"Append to any partition appends to partition 0", "Storage/Isolation/Partitions", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				if _, err := s.Fetch(ctx, stream, p, 0, 0); err != nil {
					return nil, err
				}
				return s.Append(ctx, stream, 0, msgs)
			}}
		})
	}},
	{"Append to a missing stream creates it", "Storage/Append/StreamNotFound", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				if core.ValidateStreamName(stream) == nil && !exists(ctx, s, stream) {
					if _, err := s.CreateStream(ctx, stream, 1); err != nil {
						return nil, err
					}
				}
				return s.Append(ctx, stream, p, msgs)
			}}
		})
	}},
	{"Append to a missing stream says invalid argument", "Storage/Append/StreamNotFound", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				idx, err := s.Append(ctx, stream, p, msgs)
				if errors.Is(err, core.ErrStreamNotFound) {
					return nil, fmt.Errorf("mutant: no such topic: %w", core.ErrInvalidArgument)
				}
				return idx, err
			}}
		})
	}},
	{"Append refuses a batch of more than 500 messages", "Storage/Order", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				if len(msgs) > 500 { // a broker's per-request record limit, passed on
					return nil, fmt.Errorf("mutant: %d records in one request, at most 500: %w", len(msgs), core.ErrInvalidArgument)
				}
				return s.Append(ctx, stream, p, msgs)
			}}
		})
	}},
	{"Append stores only the first 500 messages of a batch", "Storage/Order", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				idx, err := s.Append(ctx, stream, p, msgs[:min(len(msgs), 500)])
				for i := len(idx); err == nil && i < len(msgs); i++ {
					idx = append(idx, idx[i-1]+1) // reported, never stored
				}
				return idx, err
			}}
		})
	}},
	{"Append returns the same index slice for every batch", "Storage/Index/StrictlyIncreasing", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var mu sync.Mutex
			var scratch []uint64
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				mu.Lock()
				defer mu.Unlock()
				idx, err := s.Append(ctx, stream, p, msgs)
				if err != nil || len(idx) < 2 { // single appends, the concurrent ones, get their own
					return idx, err
				}
				if cap(scratch) < len(idx) {
					scratch = make([]uint64, len(idx), 1024)
				}
				scratch = scratch[:len(idx)]
				copy(scratch, idx)
				return scratch, nil
			}}
		})
	}},
	{"concurrent Appends to different partitions mix up their targets", "Storage/Isolation/Concurrent", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var target atomic.Pointer[partKey] // one "current batch" for the whole store
			var inflight atomic.Int32
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				if _, err := s.Fetch(ctx, stream, p, 0, 0); err != nil {
					return nil, err
				}
				mine := &partKey{stream, p}
				target.Store(mine)
				runtime.Gosched()
				if inflight.Add(1) > 1 {
					// Another Append is in flight: widen the window until one replaces the target.
					for i := 0; i < 1000 && target.Load() == mine; i++ {
						runtime.Gosched()
					}
				}
				defer inflight.Add(-1)
				k := target.Load()
				return s.Append(ctx, k.stream, k.p, msgs)
			}}
		})
	}},
	{"Append keeps the caller's slices", "Storage/AppendFetch/NotRetained", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var b bodies
			return hooks{
				append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
					idx, err := s.Append(ctx, stream, p, msgs)
					for i := range idx {
						b.put(stream, p, idx[i], msgs[i])
					}
					return idx, err
				},
				fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
					ms, err := s.Fetch(ctx, stream, p, from, limit)
					for i := range ms {
						ms[i].Data = slices.Clone(b.get(stream, p, ms[i].Index))
					}
					return ms, err
				},
			}
		})
	}},
	{"concurrent Appends get the same indexes", "Storage/ConcurrentAppend", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			c := newCounters(s, true)
			return hooks{append: c.append, deleteStream: c.deleteStream}
		})
	}},

	// MaxMessageSize
	{"a message one byte over MaxMessageSize is accepted", "Storage/MaxMessageSize/OneByteOver", func() conformance.Harness {
		return volatile(func(*memory.Store) hooks {
			return hooks{caps: func(c core.Capabilities) core.Capabilities { c.MaxMessageSize--; return c }}
		})
	}},
	{"a message of MaxMessageSize is refused", "Storage/MaxMessageSize/Accepted", func() conformance.Harness {
		return volatile(func(*memory.Store) hooks {
			return hooks{caps: func(c core.Capabilities) core.Capabilities { c.MaxMessageSize++; return c }}
		})
	}},
	{"Append appends the messages before an oversized one", "Storage/MaxMessageSize/OneByteOver", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				var idx []uint64
				for _, m := range msgs {
					ix, err := s.Append(ctx, stream, p, [][]byte{m})
					if err != nil {
						return nil, err
					}
					idx = append(idx, ix...)
				}
				return append([]uint64{}, idx...), nil
			}}
		})
	}},
	{"an oversized message says invalid argument", "Storage/MaxMessageSize/OneByteOver", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				idx, err := s.Append(ctx, stream, p, msgs)
				if errors.Is(err, core.ErrMessageTooLarge) {
					return nil, fmt.Errorf("mutant: record too large: %w", core.ErrInvalidArgument)
				}
				return idx, err
			}}
		})
	}},

	// CreateStream
	{"CreateStream of an existing stream returns the count asked for", "Storage/CreateStream/Idempotent", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{createStream: func(ctx context.Context, stream string, n int) (int, error) {
				if _, err := s.CreateStream(ctx, stream, n); err != nil {
					return 0, err
				}
				return n, nil
			}}
		})
	}},
	{"CreateStream of an existing stream re-creates it", "Storage/CreateStream/Idempotent", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{createStream: func(ctx context.Context, stream string, n int) (int, error) {
				if ctx.Err() == nil && exists(ctx, s, stream) {
					if err := s.DeleteStream(ctx, stream); err != nil {
						return 0, err
					}
				}
				return s.CreateStream(ctx, stream, n)
			}}
		})
	}},
	{"CreateStream creates one partition whatever the count", "Storage/Isolation/Partitions", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{createStream: func(ctx context.Context, stream string, n int) (int, error) {
				if err := core.ValidatePartitionCount(n, 0); err != nil {
					return 0, err
				}
				if _, err := s.CreateStream(ctx, stream, 1); err != nil {
					return 0, err
				}
				return n, nil
			}}
		})
	}},

	{"stream names with a '.' are refused", "Storage/CreateStream/ValidNames", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{createStream: func(ctx context.Context, stream string, n int) (int, error) {
				if strings.Contains(stream, ".") {
					return 0, fmt.Errorf("mutant: %q: %w", stream, core.ErrInvalidArgument)
				}
				return s.CreateStream(ctx, stream, n)
			}}
		})
	}},
	{"concurrent CreateStream calls check, then create over each other", "Storage/CreateStream/Concurrent", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var mu sync.Mutex
			checked := map[string]int{} // creators that found the stream missing
			return hooks{createStream: func(ctx context.Context, stream string, n int) (int, error) {
				if ctx.Err() != nil || core.ValidateStreamName(stream) != nil || exists(ctx, s, stream) {
					return s.CreateStream(ctx, stream, n)
				}
				mu.Lock()
				checked[stream]++
				mu.Unlock()
				// Widen the window between the check and the create until another creator
				// has checked too (or long enough for a lone one).
				for range 10000 {
					mu.Lock()
					both := checked[stream] > 1
					mu.Unlock()
					if both {
						break
					}
					runtime.Gosched()
				}
				_ = s.DeleteStream(ctx, stream) // "create or replace"
				return s.CreateStream(ctx, stream, n)
			}}
		})
	}},
	{"stream names are case-insensitive", "Storage/Isolation/Streams", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			fold := func(name string) string {
				if core.ValidateStreamName(name) != nil {
					return name
				}
				return strings.ToLower(name)
			}
			return hooks{
				createStream: func(ctx context.Context, stream string, n int) (int, error) {
					return s.CreateStream(ctx, fold(stream), n)
				},
				append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
					return s.Append(ctx, fold(stream), p, msgs)
				},
				fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
					return s.Fetch(ctx, fold(stream), p, from, limit)
				},
				deleteStream: func(ctx context.Context, stream string) error { return s.DeleteStream(ctx, fold(stream)) },
				partitions:   func(ctx context.Context, stream string) (int, error) { return s.Partitions(ctx, fold(stream)) },
			}
		})
	}},

	// Contexts and Close
	{"Fetch ignores its context", "Storage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				return s.Fetch(context.WithoutCancel(ctx), stream, p, from, limit)
			}}
		})
	}},
	{"Append appends, then reports the cancelled context", "Storage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				idx, err := s.Append(context.WithoutCancel(ctx), stream, p, msgs)
				if err == nil && ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return idx, err
			}}
		})
	}},
	{"CreateStream creates, then reports the cancelled context", "Storage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{createStream: func(ctx context.Context, stream string, n int) (int, error) {
				got, err := s.CreateStream(context.WithoutCancel(ctx), stream, n)
				if err == nil && ctx.Err() != nil {
					return 0, ctx.Err()
				}
				return got, err
			}}
		})
	}},
	{"DeleteStream ignores its context", "Storage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{deleteStream: func(ctx context.Context, stream string) error {
				return s.DeleteStream(context.WithoutCancel(ctx), stream)
			}}
		})
	}},
	{"GetIndex ignores its context", "IndexStorage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{getIndex: func(ctx context.Context, client, stream string, p int) (uint64, error) {
				return s.GetIndex(context.WithoutCancel(ctx), client, stream, p)
			}}
		})
	}},
	{"Append ignores an expired deadline (checks for cancellation only)", "Storage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
				if errors.Is(ctx.Err(), context.Canceled) {
					return nil, ctx.Err()
				}
				return s.Append(context.WithoutCancel(ctx), stream, p, msgs)
			}}
		})
	}},
	{"Fetch reports an expired deadline as unavailable, without the context's error", "Storage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				if errors.Is(err, context.DeadlineExceeded) {
					return nil, fmt.Errorf("mutant: request timed out: %w", core.ErrUnavailable)
				}
				return ms, err
			}}
		})
	}},
	{"SaveIndex ignores an expired deadline", "IndexStorage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{saveIndex: func(ctx context.Context, client, stream string, p int, index uint64) error {
				if errors.Is(ctx.Err(), context.Canceled) {
					return ctx.Err()
				}
				return s.SaveIndex(context.WithoutCancel(ctx), client, stream, p, index)
			}}
		})
	}},
	{"Close does nothing", "Storage/Closed", func() conformance.Harness {
		return volatile(func(*memory.Store) hooks { return hooks{close: func() error { return nil }} })
	}},
	{"a second Close is an error", "Storage/Closed", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var closed atomic.Bool
			return hooks{close: func() error {
				if closed.Swap(true) {
					return errors.New("mutant: already closed")
				}
				return s.Close()
			}}
		})
	}},

	// StreamDeleter and PartitionCounter
	{"DeleteStream keeps the stream's indexes", "Storage/StreamDeleter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks { return hooksWith(s, newSideIndexes(s, false), true) })
	}},
	{"DeleteStream of a missing stream succeeds", "Storage/StreamDeleter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{deleteStream: func(ctx context.Context, stream string) error {
				if err := s.DeleteStream(ctx, stream); err != nil && !errors.Is(err, core.ErrStreamNotFound) {
					return err
				}
				return nil
			}}
		})
	}},
	{"DeleteStream hides the stream; creating it again brings its messages back", "Storage/StreamDeleter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var mu sync.Mutex
			gone := map[string]bool{}
			isGone := func(stream string) bool { mu.Lock(); defer mu.Unlock(); return gone[stream] }
			notFound := fmt.Errorf("mutant: %w", core.ErrStreamNotFound)
			return hooks{
				deleteStream: func(ctx context.Context, stream string) error {
					if _, err := s.Partitions(ctx, stream); err != nil {
						return err
					}
					if isGone(stream) {
						return notFound
					}
					mu.Lock()
					gone[stream] = true
					mu.Unlock()
					return s.DeleteIndexes(ctx, stream)
				},
				createStream: func(ctx context.Context, stream string, n int) (int, error) {
					got, err := s.CreateStream(ctx, stream, n)
					if err == nil {
						mu.Lock()
						delete(gone, stream)
						mu.Unlock()
					}
					return got, err
				},
				append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
					if isGone(stream) {
						return nil, notFound
					}
					return s.Append(ctx, stream, p, msgs)
				},
				fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
					if isGone(stream) {
						return nil, notFound
					}
					return s.Fetch(ctx, stream, p, from, limit)
				},
				partitions: func(ctx context.Context, stream string) (int, error) {
					if isGone(stream) {
						return 0, notFound
					}
					return s.Partitions(ctx, stream)
				},
			}
		})
	}},
	{"DeleteStream deletes every stream whose name starts with the name", "Storage/StreamDeleter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var mu sync.Mutex
			var names []string
			return hooks{
				createStream: func(ctx context.Context, stream string, n int) (int, error) {
					got, err := s.CreateStream(ctx, stream, n)
					if err == nil {
						mu.Lock()
						names = append(names, stream)
						mu.Unlock()
					}
					return got, err
				},
				deleteStream: func(ctx context.Context, stream string) error {
					if err := s.DeleteStream(ctx, stream); err != nil {
						return err
					}
					mu.Lock()
					defer mu.Unlock()
					for _, n := range names {
						if n != stream && strings.HasPrefix(n, stream) {
							_ = s.DeleteStream(ctx, n) // a prefix scan over topics or buckets
						}
					}
					return nil
				},
			}
		})
	}},
	{"DeleteStream deletes the indexes of every stream whose name starts with the name", "Storage/StreamDeleter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			x := newSideIndexes(s, false)
			h := hooksWith(s, x, true)
			h.deleteStream = func(ctx context.Context, stream string) error {
				if err := s.DeleteStream(ctx, stream); err != nil {
					return err
				}
				x.mu.Lock()
				defer x.mu.Unlock()
				for k := range x.saved {
					if strings.HasPrefix(k.stream, stream) { // a prefix scan without a separator
						delete(x.saved, k)
					}
				}
				return nil
			}
			return h
		})
	}},
	{"Append to a deleted stream creates it again (a partition count cached at CreateStream)", "Storage/StreamDeleter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			var mu sync.Mutex
			counts := map[string]int{} // filled by CreateStream, never emptied by DeleteStream
			cached := func(stream string) (int, bool) { mu.Lock(); defer mu.Unlock(); n, ok := counts[stream]; return n, ok }
			return hooks{
				createStream: func(ctx context.Context, stream string, n int) (int, error) {
					got, err := s.CreateStream(ctx, stream, n)
					if err == nil {
						mu.Lock()
						counts[stream] = got
						mu.Unlock()
					}
					return got, err
				},
				append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
					if n, ok := cached(stream); ok && !exists(ctx, s, stream) {
						// The cache says it exists: produce, and the broker creates the topic.
						if _, err := s.CreateStream(ctx, stream, n); err != nil {
							return nil, err
						}
					}
					return s.Append(ctx, stream, p, msgs)
				},
				partitions: func(ctx context.Context, stream string) (int, error) {
					got, err := s.Partitions(ctx, stream)
					if n, ok := cached(stream); ok && errors.Is(err, core.ErrStreamNotFound) {
						return n, nil
					}
					return got, err
				},
			}
		})
	}},
	{"Partitions reports 1 for every stream", "Storage/PartitionCounter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{partitions: func(ctx context.Context, stream string) (int, error) {
				if _, err := s.Partitions(ctx, stream); err != nil {
					return 0, err
				}
				return 1, nil
			}}
		})
	}},

	// Capabilities
	{"DenseIndex declared, indexes with gaps", "Storage/Index/Dense", func() conformance.Harness {
		return wrapped(func(b *core.Backend) *core.Backend { return conformancetest.Sparse(b, 2, true) })
	}},
	{"MaxPartitions declared above what CreateStream accepts", "Storage/CreateStream/MaxPartitions", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{
				caps: func(c core.Capabilities) core.Capabilities { c.MaxPartitions = 16; return c },
				createStream: func(ctx context.Context, stream string, n int) (int, error) {
					if err := core.ValidatePartitionCount(n, 8); err != nil {
						return 0, err
					}
					return s.CreateStream(ctx, stream, n)
				},
			}
		})
	}},

	// AsyncAppender
	{"control: AppendAsync", "", func() conformance.Harness {
		return async(func(*memory.Store, *hooks) appendAsyncFunc {
			return nil
		})
	}},
	{"AppendAsync calls done twice", "Storage/AppendAsync", func() conformance.Harness {
		return async(func(s *memory.Store, _ *hooks) appendAsyncFunc {
			return func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
				idx, err := s.Append(ctx, stream, p, msgs)
				done(idx, err)
				done(idx, err) // a retry path that reports again
			}
		})
	}},
	{"AppendAsync calls done out of start order", "Storage/AppendAsync", func() conformance.Harness {
		return async(func(s *memory.Store, _ *hooks) appendAsyncFunc {
			var mu sync.Mutex
			var held func() // the done of the previous successful call, not yet called
			return func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
				idx, err := s.Append(ctx, stream, p, msgs)
				if err != nil {
					done(nil, err)
					return
				}
				mu.Lock()
				prev := held
				held = nil
				if prev == nil {
					held = func() { done(idx, nil) }
				}
				mu.Unlock()
				if prev != nil { // pairs complete in reverse
					done(idx, nil)
					prev()
				}
			}
		})
	}},
	{"AppendAsync keeps the caller's slices after done", "Storage/AppendAsync", func() conformance.Harness {
		return async(func(s *memory.Store, h *hooks) appendAsyncFunc {
			var b bodies
			h.fetch = func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
				ms, err := s.Fetch(ctx, stream, p, from, limit)
				for i := range ms {
					if d := b.get(stream, p, ms[i].Index); d != nil {
						ms[i].Data = slices.Clone(d)
					}
				}
				return ms, err
			}
			return func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
				idx, err := s.Append(ctx, stream, p, msgs)
				for i := range idx {
					b.put(stream, p, idx[i], msgs[i])
				}
				done(idx, err)
			}
		})
	}},
	{"AppendAsync to a missing stream creates it", "Storage/AppendAsync", func() conformance.Harness {
		return async(func(s *memory.Store, _ *hooks) appendAsyncFunc {
			return func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
				if core.ValidateStreamName(stream) == nil && !exists(ctx, s, stream) {
					if _, err := s.CreateStream(ctx, stream, 1); err != nil {
						done(nil, err)
						return
					}
				}
				done(s.Append(ctx, stream, p, msgs))
			}
		})
	}},

	{"AppendAsync ignores a cancelled context", "Storage/Cancelled", func() conformance.Harness {
		return async(func(s *memory.Store, _ *hooks) appendAsyncFunc {
			return func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
				done(s.Append(context.WithoutCancel(ctx), stream, p, msgs)) // the producer's own context
			}
		})
	}},
	{"AppendAsync after Close reports the producer's error, not ErrClosed", "Storage/Closed", func() conformance.Harness {
		return async(func(s *memory.Store, _ *hooks) appendAsyncFunc {
			return func(ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
				idx, err := s.Append(ctx, stream, p, msgs)
				if errors.Is(err, core.ErrClosed) {
					err = errors.New("mutant: producer already closed")
				}
				done(idx, err)
			}
		})
	}},

	// IndexStorage
	{"GetIndex of a key never saved returns 0", "IndexStorage/NotFound", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{getIndex: func(ctx context.Context, client, stream string, p int) (uint64, error) {
				v, err := s.GetIndex(ctx, client, stream, p)
				if errors.Is(err, core.ErrIndexNotFound) {
					return 0, nil
				}
				return v, err
			}}
		})
	}},
	{"GetIndex of a key never saved says stream not found", "IndexStorage/NotFound", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{getIndex: func(ctx context.Context, client, stream string, p int) (uint64, error) {
				v, err := s.GetIndex(ctx, client, stream, p)
				if errors.Is(err, core.ErrIndexNotFound) {
					return 0, fmt.Errorf("mutant: no offset: %w", core.ErrStreamNotFound)
				}
				return v, err
			}}
		})
	}},
	{"SaveIndex(0) of a new key is ignored", "IndexStorage/RoundTrip", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{saveIndex: func(ctx context.Context, client, stream string, p int, index uint64) error {
				cur, err := s.GetIndex(ctx, client, stream, p)
				if err != nil && !errors.Is(err, core.ErrIndexNotFound) {
					return err
				}
				if index > cur { // cur is 0 when nothing was saved
					return s.SaveIndex(ctx, client, stream, p, index)
				}
				return nil
			}}
		})
	}},
	{"SaveIndex of a lower index replaces it", "IndexStorage/Monotonic/LowerIgnored", func() conformance.Harness {
		return wrapped(conformancetest.NonMonotonicIndex)
	}},
	{"SaveIndex of a lower index is an error", "IndexStorage/Monotonic/LowerIgnored", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{saveIndex: func(ctx context.Context, client, stream string, p int, index uint64) error {
				if cur, err := s.GetIndex(ctx, client, stream, p); err == nil && index < cur {
					return fmt.Errorf("mutant: index %d below %d: %w", index, cur, core.ErrInvalidArgument)
				}
				return s.SaveIndex(ctx, client, stream, p, index)
			}}
		})
	}},
	{"SaveIndex of the same index is an error", "IndexStorage/Monotonic/EqualIdempotent", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{saveIndex: func(ctx context.Context, client, stream string, p int, index uint64) error {
				if cur, err := s.GetIndex(ctx, client, stream, p); err == nil && index == cur {
					return fmt.Errorf("mutant: index %d already saved: %w", index, core.ErrInvalidArgument)
				}
				return s.SaveIndex(ctx, client, stream, p, index)
			}}
		})
	}},
	{"concurrent SaveIndex calls lose updates", "IndexStorage/ConcurrentSaves", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks { return hooksWith(s, newSideIndexes(s, true), false) })
	}},
	{"indexes ignore the partition", "IndexStorage/KeysIsolated", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{
				getIndex: func(ctx context.Context, client, stream string, p int) (uint64, error) {
					if err := core.ValidateIndexKey(client, stream, p); err != nil {
						return 0, err
					}
					return s.GetIndex(ctx, client, stream, 0)
				},
				saveIndex: func(ctx context.Context, client, stream string, p int, index uint64) error {
					if err := core.ValidateIndexKey(client, stream, p); err != nil {
						return err
					}
					return s.SaveIndex(ctx, client, stream, 0, index)
				},
			}
		})
	}},
	{"indexes keyed by client id and stream name run together", "IndexStorage/KeysIsolated", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			// The key is client+stream, saved under a fixed client id and stream.
			key := func(client, stream string, p int) (string, error) {
				if err := core.ValidateIndexKey(client, stream, p); err != nil {
					return "", err
				}
				return client + stream, nil
			}
			return hooks{
				getIndex: func(ctx context.Context, client, stream string, p int) (uint64, error) {
					k, err := key(client, stream, p)
					if err != nil {
						return 0, err
					}
					return s.GetIndex(ctx, k, "joined", p)
				},
				saveIndex: func(ctx context.Context, client, stream string, p int, index uint64) error {
					k, err := key(client, stream, p)
					if err != nil {
						return err
					}
					return s.SaveIndex(ctx, k, "joined", p, index)
				},
			}
		})
	}},
	{"DeleteIndexes deletes the indexes of every stream whose name starts with the name", "IndexStorage/IndexDeleter", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			x := newSideIndexes(s, false)
			h := hooksWith(s, x, false)
			h.deleteIndexes = func(ctx context.Context, stream string) error {
				if err := s.DeleteIndexes(ctx, stream); err != nil {
					return err
				}
				x.mu.Lock()
				defer x.mu.Unlock()
				for k := range x.saved {
					if strings.HasPrefix(k.stream, stream) {
						delete(x.saved, k)
					}
				}
				return nil
			}
			return h
		})
	}},
	{"DeleteIndexes after Close succeeds", "IndexStorage/Closed", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{deleteIndexes: func(ctx context.Context, stream string) error {
				if err := s.DeleteIndexes(ctx, stream); err != nil && !errors.Is(err, core.ErrClosed) {
					return err
				}
				return nil
			}}
		})
	}},
	{"SaveIndex saves, then reports the cancelled context", "IndexStorage/Cancelled", func() conformance.Harness {
		return volatile(func(s *memory.Store) hooks {
			return hooks{saveIndex: func(ctx context.Context, client, stream string, p int, index uint64) error {
				if err := s.SaveIndex(context.WithoutCancel(ctx), client, stream, p, index); err != nil {
					return err
				}
				return ctx.Err()
			}}
		})
	}},

	// Persistence (Persistent declared)
	{"messages lost on reopen", "Storage/Persistence", func() conformance.Harness {
		return volatile(func(*memory.Store) hooks {
			return hooks{caps: func(c core.Capabilities) core.Capabilities { c.Persistent = true; return c }}
		})
	}},
	{"the index counter restarts at 0 on reopen", "Storage/Persistence", func() conformance.Harness {
		return persistent(func(s *memory.Store) hooks {
			c := newCounters(s, false)
			return hooks{append: c.append, deleteStream: c.deleteStream}
		})
	}},
	{"saved indexes lost on reopen", "IndexStorage/Persistence", func() conformance.Harness {
		return persistent(func(s *memory.Store) hooks { return hooksWith(s, newSideIndexes(s, false), false) })
	}},
	{"messages of partitions after the first lost on reopen", "Storage/Persistence", func() conformance.Harness {
		return persistent(func(s *memory.Store) hooks {
			var mu sync.Mutex
			mine := map[string]bool{} // streams created through this handle
			return hooks{
				createStream: func(ctx context.Context, stream string, n int) (int, error) {
					got, err := s.CreateStream(ctx, stream, n)
					if err == nil {
						mu.Lock()
						mine[stream] = true
						mu.Unlock()
					}
					return got, err
				},
				fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
					ms, err := s.Fetch(ctx, stream, p, from, limit)
					mu.Lock()
					lost := !mine[stream] && p > 0
					mu.Unlock()
					if err == nil && lost {
						return []core.Message{}, nil
					}
					return ms, err
				},
			}
		})
	}},
	{"DeleteStream is not durable: the stream is back after reopen", "Storage/Persistence", func() conformance.Harness {
		return persistent(func(s *memory.Store) hooks {
			var mu sync.Mutex
			gone := map[string]bool{} // deleted through this handle, in its memory only
			isGone := func(stream string) bool { mu.Lock(); defer mu.Unlock(); return gone[stream] }
			notFound := fmt.Errorf("mutant: %w", core.ErrStreamNotFound)
			return hooks{
				deleteStream: func(ctx context.Context, stream string) error {
					if _, err := s.Partitions(ctx, stream); err != nil || isGone(stream) {
						return cmp.Or(err, error(notFound))
					}
					mu.Lock()
					gone[stream] = true
					mu.Unlock()
					return s.DeleteIndexes(ctx, stream)
				},
				createStream: func(ctx context.Context, stream string, n int) (int, error) {
					if isGone(stream) {
						if err := s.DeleteStream(ctx, stream); err != nil {
							return 0, err
						}
						mu.Lock()
						delete(gone, stream)
						mu.Unlock()
					}
					return s.CreateStream(ctx, stream, n)
				},
				append: func(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
					if isGone(stream) {
						return nil, notFound
					}
					return s.Append(ctx, stream, p, msgs)
				},
				fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
					if isGone(stream) {
						return nil, notFound
					}
					return s.Fetch(ctx, stream, p, from, limit)
				},
				partitions: func(ctx context.Context, stream string) (int, error) {
					if isGone(stream) {
						return 0, notFound
					}
					return s.Partitions(ctx, stream)
				},
			}
		})
	}},
	{"CreateStream after reopen returns the count asked for", "Storage/Persistence", func() conformance.Harness {
		return persistent(func(s *memory.Store) hooks {
			var mu sync.Mutex
			known := map[string]bool{} // streams whose partition count this handle has cached
			return hooks{createStream: func(ctx context.Context, stream string, n int) (int, error) {
				got, err := s.CreateStream(ctx, stream, n)
				if err != nil {
					return 0, err
				}
				mu.Lock()
				defer mu.Unlock()
				if !known[stream] { // "already exists" with nothing cached: assume the count asked for
					known[stream] = true
					return n, nil
				}
				return got, nil
			}}
		})
	}},
}

// TestMutants runs the suite against each mutant and checks that it fails, in the subtest
// that checks the contract the mutant breaks, and that the correct controls pass.
func TestMutants(t *testing.T) {
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			res := conformance.Run(t.Context(), m.h(), nil)
			failed := failedLeaves(res)
			if m.want == "" {
				if len(failed) > 0 {
					t.Fatalf("a correct backend failed %v: %q", failed, find(t, res, failed[0]).Failures)
				}
				return
			}
			if len(failed) == 0 {
				t.Fatalf("the suite passed a backend whose %s (%v)", m.name, res)
			}
			if !slices.Contains(failed, m.want) {
				t.Errorf("the suite failed %v, not %s", failed, m.want)
			}
			t.Logf("failed %v; %s: %.300s", failed, m.want, strings.Join(find(t, res, m.want).Failures, "; "))
		})
	}
}
