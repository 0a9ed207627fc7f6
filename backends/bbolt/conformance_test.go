package bbolt

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
)

// harness opens a Store, with default options (fsync on), on one file in a fresh temporary
// directory: every Open of the harness opens the same file, as the suite requires.
func harness(tb testing.TB) conformance.Harness {
	dir := tb.TempDir()
	return conformance.Harness{
		Open: func(ctx context.Context) (*core.Backend, error) {
			s, err := New(ctx, dir, nil)
			if err != nil {
				return nil, err
			}
			return &core.Backend{Storage: s, Index: s}, nil
		},
		// 1024 partitions are 1024 empty buckets: cheap, so test the declared maximum.
		CreateMaxPartitions: true,
	}
}

func TestConformance(t *testing.T) {
	t.Run("Storage", func(t *testing.T) { conformance.RunStorage(t, harness(t)) })
	t.Run("IndexStorage", func(t *testing.T) { conformance.RunIndexStorage(t, harness(t)) })
}

func BenchmarkConformance(b *testing.B) {
	conformance.BenchmarkStorage(b, harness(b))
}
