// Package conformancetest holds deliberately broken backends: wrappers around a working
// [core.Backend] that each break one storage contract. They exist to prove that the
// conformance suite (and any tool that runs it) catches the breakage and says so readably.
// Never use them for anything else.
//
// A wrapper keeps every optional interface the wrapped Storage implements, in any
// combination, and adds none: [core.StreamDeleter], [core.PartitionCounter] and
// [core.AsyncAppender] (whose done reports indexes mapped as Append's are). So the suite
// runs the same subtests on a wrapped backend as on the backend itself.
package conformancetest

import (
	"context"
	"sync"

	"github.com/sluicehq/sluice/core"
)

// NonMonotonic wraps b so that indexes are not increasing: Append, AppendAsync and Fetch
// report every pair of indexes swapped (0 and 1, 2 and 3, ...). Messages and their order
// are untouched. The conformance suite must fail it.
func NonMonotonic(b *core.Backend) *core.Backend {
	return wrap(b, &storage{
		Storage: b.Storage,
		out:     func(i uint64) uint64 { return i ^ 1 },
		in:      func(from uint64) uint64 { return from },
	})
}

// Sparse wraps b, whose indexes must be dense, so that its indexes are multiples of step
// (>= 2): 0, step, 2*step, ... It is a correct backend with gaps between indexes — unless
// declareDense is true, in which case it still declares [core.Capabilities].DenseIndex and
// the conformance suite must fail exactly the dense-index check.
func Sparse(b *core.Backend, step uint64, declareDense bool) *core.Backend {
	if step < 2 {
		panic("conformancetest: Sparse step must be at least 2")
	}
	return wrap(b, &storage{
		Storage: b.Storage,
		out:     func(i uint64) uint64 { return i * step },
		in: func(from uint64) uint64 {
			q := from / step
			if from%step != 0 {
				q++
			}
			return q
		},
		caps: func(c core.Capabilities) core.Capabilities {
			c.Name += "-sparse"
			c.DenseIndex = declareDense
			return c
		},
	})
}

// wrap returns a backend with s as its Storage and b's IndexStorage. The Storage keeps
// every optional interface b's Storage implements, in any combination:
// [core.StreamDeleter], [core.PartitionCounter] and [core.AsyncAppender] (whose indexes s
// maps too), and no other.
func wrap(b *core.Backend, s *storage) *core.Backend {
	_, del := b.Storage.(core.StreamDeleter)
	_, cnt := b.Storage.(core.PartitionCounter)
	_, async := b.Storage.(core.AsyncAppender)
	d, c, a := deleter{s}, counter{s}, asyncAppender{s}
	var ns core.Storage
	switch {
	case del && cnt && async:
		ns = struct {
			*storage
			deleter
			counter
			asyncAppender
		}{s, d, c, a}
	case del && cnt:
		ns = struct {
			*storage
			deleter
			counter
		}{s, d, c}
	case del && async:
		ns = struct {
			*storage
			deleter
			asyncAppender
		}{s, d, a}
	case cnt && async:
		ns = struct {
			*storage
			counter
			asyncAppender
		}{s, c, a}
	case del:
		ns = struct {
			*storage
			deleter
		}{s, d}
	case cnt:
		ns = struct {
			*storage
			counter
		}{s, c}
	case async:
		ns = struct {
			*storage
			asyncAppender
		}{s, a}
	default:
		ns = s
	}
	return &core.Backend{Storage: ns, Index: b.Index}
}

// storage maps the indexes of the Storage it embeds: out maps an inner index to the one
// reported, in maps a Fetch "from" to the inner one.
type storage struct {
	core.Storage
	out, in func(uint64) uint64
	caps    func(core.Capabilities) core.Capabilities
}

func (s *storage) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	idx, err := s.Storage.Append(ctx, stream, partition, msgs)
	for i := range idx {
		idx[i] = s.out(idx[i])
	}
	return idx, err
}

func (s *storage) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	ms, err := s.Storage.Fetch(ctx, stream, partition, s.in(from), limit)
	for i := range ms {
		ms[i].Index = s.out(ms[i].Index)
	}
	return ms, err
}

func (s *storage) Capabilities() core.Capabilities {
	c := s.Storage.Capabilities()
	if s.caps != nil {
		c = s.caps(c)
	}
	return c
}

// deleter, counter and asyncAppender each add one optional interface of the wrapped
// storage to a wrapper.
type (
	deleter       struct{ s *storage }
	counter       struct{ s *storage }
	asyncAppender struct{ s *storage }
)

func (d deleter) DeleteStream(ctx context.Context, stream string) error {
	return d.s.Storage.(core.StreamDeleter).DeleteStream(ctx, stream)
}

func (c counter) Partitions(ctx context.Context, stream string) (int, error) {
	return c.s.Storage.(core.PartitionCounter).Partitions(ctx, stream)
}

// AppendAsync maps the indexes done reports, as Append does.
func (a asyncAppender) AppendAsync(ctx context.Context, stream string, partition int, msgs [][]byte, done func([]uint64, error)) {
	a.s.Storage.(core.AsyncAppender).AppendAsync(ctx, stream, partition, msgs, func(idx []uint64, err error) {
		for i := range idx {
			idx[i] = a.s.out(idx[i])
		}
		done(idx, err)
	})
}

// NonMonotonicIndex wraps b so that its IndexStorage is not monotonic: every SaveIndex
// replaces the saved value, even with a lower one. Validation, not-found, cancellation and
// Close still come from b's IndexStorage, and it keeps [core.IndexDeleter] when b's
// IndexStorage implements it. The conformance suite must fail it.
func NonMonotonicIndex(b *core.Backend) *core.Backend {
	l := &lastWriteWins{IndexStorage: b.Index, saved: map[indexKey]uint64{}}
	if _, ok := b.Index.(core.IndexDeleter); ok {
		return &core.Backend{Storage: b.Storage, Index: struct {
			*lastWriteWins
			indexDeleter
		}{l, indexDeleter{l}}}
	}
	return &core.Backend{Storage: b.Storage, Index: l}
}

type indexKey struct {
	client, stream string
	partition      int
}

// lastWriteWins keeps the last saved index per key, asking the wrapped IndexStorage first
// so that its errors still apply.
type lastWriteWins struct {
	core.IndexStorage

	mu    sync.Mutex
	saved map[indexKey]uint64
}

func (l *lastWriteWins) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if _, err := l.IndexStorage.GetIndex(ctx, clientID, stream, partition); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.saved[indexKey{clientID, stream, partition}], nil
}

func (l *lastWriteWins) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	if err := l.IndexStorage.SaveIndex(ctx, clientID, stream, partition, index); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.saved[indexKey{clientID, stream, partition}] = index
	return nil
}

// indexDeleter adds the wrapped IndexStorage's core.IndexDeleter to a lastWriteWins.
type indexDeleter struct{ l *lastWriteWins }

func (d indexDeleter) DeleteIndexes(ctx context.Context, stream string) error {
	if err := d.l.IndexStorage.(core.IndexDeleter).DeleteIndexes(ctx, stream); err != nil {
		return err
	}
	d.l.mu.Lock()
	defer d.l.mu.Unlock()
	for k := range d.l.saved {
		if k.stream == stream {
			delete(d.l.saved, k)
		}
	}
	return nil
}
