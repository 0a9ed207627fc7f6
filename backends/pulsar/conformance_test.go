package pulsar

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
)

// harness opens Stores on the shared standalone. Every Open reaches the same cluster and
// namespace, as the suite requires; the index topic is per topic prefix, so the runs of
// this binary do not see each other's saved indexes.
func harness(tb testing.TB, prefix string) conformance.Harness {
	return conformance.Harness{
		Open: func(ctx context.Context) (*core.Backend, error) {
			s, err := openStore(tb, ctx, "prefix="+prefix)
			if err != nil {
				return nil, err
			}
			return backendOf(s), nil
		},
		// Partitions of a partitioned topic are metadata until used: creating
		// MaxPartitions of them is cheap.
		CreateMaxPartitions: true,
	}
}

func TestConformance(t *testing.T) {
	broker(t)
	t.Run("Storage", func(t *testing.T) { conformance.RunStorage(t, harness(t, "storage-")) })
	t.Run("IndexStorage", func(t *testing.T) { conformance.RunIndexStorage(t, harness(t, "index-")) })
}

func BenchmarkConformance(b *testing.B) {
	broker(b)
	conformance.BenchmarkStorage(b, harness(b, "bench-"))
}
