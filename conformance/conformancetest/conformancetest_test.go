package conformancetest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/conformance/conformancetest"
	"github.com/sluicehq/sluice/core"
)

func open(t *testing.T) *core.Backend {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Backend{Storage: s, Index: s}
}

func indexes(ms []core.Message) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Index)
	}
	return out
}

func TestWrappers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		wrap      func(*core.Backend) *core.Backend
		appended  []uint64
		from      uint64
		fetched   []uint64
		denseCaps bool
	}{
		{"NonMonotonic", conformancetest.NonMonotonic, []uint64{1, 0, 3, 2}, 1, []uint64{0, 3, 2}, true},
		{"Sparse3", func(b *core.Backend) *core.Backend { return conformancetest.Sparse(b, 3, false) }, []uint64{0, 3, 6, 9}, 4, []uint64{6, 9}, false},
		{"Sparse2Dense", func(b *core.Backend) *core.Backend { return conformancetest.Sparse(b, 2, true) }, []uint64{0, 2, 4, 6}, 2, []uint64{2, 4, 6}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.wrap(open(t))
			defer b.Close()
			if _, ok := b.Storage.(core.StreamDeleter); !ok {
				t.Error("wrapper lost core.StreamDeleter")
			}
			if _, err := b.Storage.CreateStream(ctx, "s", 1); err != nil {
				t.Fatal(err)
			}
			idx, err := b.Storage.Append(ctx, "s", 0, [][]byte{{0}, {1}, {2}, {3}})
			if err != nil || !slices.Equal(idx, tc.appended) {
				t.Errorf("Append = %v, %v; want %v", idx, err, tc.appended)
			}
			ms, err := b.Storage.Fetch(ctx, "s", 0, tc.from, 10)
			if err != nil || !slices.Equal(indexes(ms), tc.fetched) {
				t.Errorf("Fetch(from=%d) = %v, %v; want %v", tc.from, indexes(ms), err, tc.fetched)
			}
			if got := b.Storage.Capabilities().DenseIndex; got != tc.denseCaps {
				t.Errorf("DenseIndex = %v, want %v", got, tc.denseCaps)
			}
		})
	}
}

func TestNonMonotonicIndex(t *testing.T) {
	ctx := context.Background()
	b := conformancetest.NonMonotonicIndex(open(t))
	defer b.Close()
	for _, v := range []uint64{10, 3} {
		if err := b.Index.SaveIndex(ctx, "c", "s", 0, v); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := b.Index.GetIndex(ctx, "c", "s", 0); err != nil || got != 3 {
		t.Errorf("GetIndex = %d, %v; want the last save, 3", got, err)
	}

	// It keeps the inner IndexDeleter, and deleting forgets its own last saves too.
	d, ok := b.Index.(core.IndexDeleter)
	if !ok {
		t.Fatal("NonMonotonicIndex lost core.IndexDeleter")
	}
	if err := d.DeleteIndexes(ctx, "s"); err != nil {
		t.Fatalf("DeleteIndexes: %v", err)
	}
	if _, err := b.Index.GetIndex(ctx, "c", "s", 0); !errors.Is(err, core.ErrIndexNotFound) {
		t.Errorf("GetIndex after DeleteIndexes: %v, want ErrIndexNotFound", err)
	}
	if err := b.Index.SaveIndex(ctx, "c", "s", 0, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Index.GetIndex(ctx, "c", "s", 0); err != nil || got != 1 {
		t.Errorf("GetIndex after DeleteIndexes and a save = %d, %v; want 1", got, err)
	}
	plainIndex := conformancetest.NonMonotonicIndex(&core.Backend{Storage: b.Storage, Index: struct{ core.IndexStorage }{b.Index}})
	if _, ok := plainIndex.Index.(core.IndexDeleter); ok {
		t.Error("NonMonotonicIndex added core.IndexDeleter to an IndexStorage without it")
	}
}

// Storages with each combination of the optional interfaces, over a memory store.
type (
	plain   struct{ core.Storage }
	del     struct{ core.Storage }
	cnt     struct{ core.Storage }
	async   struct{ core.Storage }
	delCnt  struct{ core.Storage }
	delAsyn struct{ core.Storage }
	cntAsyn struct{ core.Storage }
	all     struct{ core.Storage }
)

func deleteStream(s core.Storage, ctx context.Context, stream string) error {
	return s.(core.StreamDeleter).DeleteStream(ctx, stream)
}

func partitions(s core.Storage, ctx context.Context, stream string) (int, error) {
	return s.(core.PartitionCounter).Partitions(ctx, stream)
}

// appendAsync appends synchronously, then calls done.
func appendAsync(s core.Storage, ctx context.Context, stream string, p int, msgs [][]byte, done func([]uint64, error)) {
	done(s.Append(ctx, stream, p, msgs))
}

func (s del) DeleteStream(ctx context.Context, n string) error {
	return deleteStream(s.Storage, ctx, n)
}
func (s delCnt) DeleteStream(ctx context.Context, n string) error {
	return deleteStream(s.Storage, ctx, n)
}
func (s delAsyn) DeleteStream(ctx context.Context, n string) error {
	return deleteStream(s.Storage, ctx, n)
}
func (s all) DeleteStream(ctx context.Context, n string) error {
	return deleteStream(s.Storage, ctx, n)
}

func (s cnt) Partitions(ctx context.Context, n string) (int, error) {
	return partitions(s.Storage, ctx, n)
}
func (s delCnt) Partitions(ctx context.Context, n string) (int, error) {
	return partitions(s.Storage, ctx, n)
}
func (s cntAsyn) Partitions(ctx context.Context, n string) (int, error) {
	return partitions(s.Storage, ctx, n)
}
func (s all) Partitions(ctx context.Context, n string) (int, error) {
	return partitions(s.Storage, ctx, n)
}

func (s async) AppendAsync(ctx context.Context, n string, p int, m [][]byte, done func([]uint64, error)) {
	appendAsync(s.Storage, ctx, n, p, m, done)
}

func (s delAsyn) AppendAsync(ctx context.Context, n string, p int, m [][]byte, done func([]uint64, error)) {
	appendAsync(s.Storage, ctx, n, p, m, done)
}

func (s cntAsyn) AppendAsync(ctx context.Context, n string, p int, m [][]byte, done func([]uint64, error)) {
	appendAsync(s.Storage, ctx, n, p, m, done)
}

func (s all) AppendAsync(ctx context.Context, n string, p int, m [][]byte, done func([]uint64, error)) {
	appendAsync(s.Storage, ctx, n, p, m, done)
}

// optional reports which optional interfaces s implements.
func optional(s core.Storage) (del, cnt, async bool) {
	_, del = s.(core.StreamDeleter)
	_, cnt = s.(core.PartitionCounter)
	_, async = s.(core.AsyncAppender)
	return del, cnt, async
}

// The wrappers keep every optional interface of the wrapped Storage, in each combination,
// and add none; their AppendAsync maps indexes as their Append does.
func TestWrappersKeepOptionalInterfaces(t *testing.T) {
	ctx := context.Background()
	wrappers := []struct {
		name     string
		wrap     func(*core.Backend) *core.Backend
		appended []uint64
	}{
		{"NonMonotonic", conformancetest.NonMonotonic, []uint64{1, 0, 3}},
		{"Sparse3", func(b *core.Backend) *core.Backend { return conformancetest.Sparse(b, 3, false) }, []uint64{0, 3, 6}},
		{"NonMonotonicIndex", conformancetest.NonMonotonicIndex, []uint64{0, 1, 2}},
	}
	inners := []func(core.Storage) core.Storage{
		func(s core.Storage) core.Storage { return plain{s} },
		func(s core.Storage) core.Storage { return del{s} },
		func(s core.Storage) core.Storage { return cnt{s} },
		func(s core.Storage) core.Storage { return async{s} },
		func(s core.Storage) core.Storage { return delCnt{s} },
		func(s core.Storage) core.Storage { return delAsyn{s} },
		func(s core.Storage) core.Storage { return cntAsyn{s} },
		func(s core.Storage) core.Storage { return all{s} },
	}
	for _, w := range wrappers {
		seen := map[[3]bool]bool{}
		for _, inner := range inners {
			b := open(t)
			b.Storage = inner(b.Storage)
			d, c, a := optional(b.Storage)
			seen[[3]bool{d, c, a}] = true
			t.Run(fmt.Sprintf("%s/del=%v,cnt=%v,async=%v", w.name, d, c, a), func(t *testing.T) {
				wb := w.wrap(b)
				defer wb.Close()
				if gd, gc, ga := optional(wb.Storage); gd != d || gc != c || ga != a {
					t.Fatalf("wrapped Storage has StreamDeleter %v, PartitionCounter %v, AsyncAppender %v; want %v, %v, %v", gd, gc, ga, d, c, a)
				}
				if _, err := wb.Storage.CreateStream(ctx, "s", 2); err != nil {
					t.Fatal(err)
				}
				if c {
					if n, err := wb.Storage.(core.PartitionCounter).Partitions(ctx, "s"); err != nil || n != 2 {
						t.Errorf("Partitions = %d, %v; want 2, nil", n, err)
					}
				}
				if a {
					var got []uint64
					var gotErr error
					wb.Storage.(core.AsyncAppender).AppendAsync(ctx, "s", 0, [][]byte{{0}, {1}, {2}}, func(idx []uint64, err error) { got, gotErr = idx, err })
					if gotErr != nil || !slices.Equal(got, w.appended) {
						t.Errorf("AppendAsync reported %v, %v; want %v", got, gotErr, w.appended)
					}
				}
				if d {
					if err := wb.Storage.(core.StreamDeleter).DeleteStream(ctx, "s"); err != nil {
						t.Errorf("DeleteStream: %v", err)
					}
					if _, err := b.Storage.Fetch(ctx, "s", 0, 0, 1); err == nil {
						t.Errorf("the stream is still there after DeleteStream through the wrapper")
					}
				}
			})
		}
		if len(seen) != 8 {
			t.Fatalf("only %d combinations tested", len(seen))
		}
	}
}

// Wrapping bbolt keeps its AppendAsync, so the suite still checks it.
func TestWrapBbolt(t *testing.T) {
	s, err := bbolt.New(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := conformancetest.Sparse(&core.Backend{Storage: s, Index: s}, 2, false)
	defer b.Close()
	if d, c, a := optional(b.Storage); !d || !c || !a {
		t.Errorf("Sparse(bbolt) has StreamDeleter %v, PartitionCounter %v, AsyncAppender %v; want all", d, c, a)
	}
}
