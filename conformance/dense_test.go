package conformance_test

import (
	"context"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
)

// offsetPartitions is a Storage whose partition p > 0 starts its indexes at p*1000 (a
// correct backend with gaps, like one numbering partitions from a shared counter) but that
// still declares DenseIndex, which promises 0, 1, 2, ... in every new partition.
type offsetPartitions struct{ core.Storage }

func offsetOf(p int) uint64 { return uint64(p) * 1000 }

func (s offsetPartitions) Append(ctx context.Context, stream string, p int, msgs [][]byte) ([]uint64, error) {
	idx, err := s.Storage.Append(ctx, stream, p, msgs)
	for i := range idx {
		idx[i] += offsetOf(p)
	}
	return idx, err
}

func (s offsetPartitions) Fetch(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
	if p > 0 {
		from = max(from, offsetOf(p)) - offsetOf(p)
	}
	ms, err := s.Storage.Fetch(ctx, stream, p, from, limit)
	for i := range ms {
		ms[i].Index += offsetOf(p)
	}
	return ms, err
}

// TestRunFalseDenseInLaterPartitionFails checks that DenseIndex is verified in a partition
// other than the first.
func TestRunFalseDenseInLaterPartitionFails(t *testing.T) {
	h := memoryHarness(func(b *core.Backend) *core.Backend {
		if !b.Storage.Capabilities().DenseIndex {
			t.Fatal("the memory backend does not declare DenseIndex")
		}
		return &core.Backend{Storage: offsetPartitions{b.Storage}, Index: b.Index}
	})
	res := conformance.RunSuites(t.Context(), h, nil, storageOnly)
	if f := failedLeaves(res); !slices.Equal(f, []string{"Storage/Index/Dense"}) {
		t.Fatalf("failed leaves = %v; want exactly Storage/Index/Dense (%v)", f, res)
	}
}
