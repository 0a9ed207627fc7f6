package conformancetest_test

import (
	"context"
	"slices"
	"testing"

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
}
