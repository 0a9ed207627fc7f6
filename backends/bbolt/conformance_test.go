package bbolt

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
)

// harness opens a Store with opts (nil: default options, fsync on) on one file in a fresh
// temporary directory: every Open of the harness opens the same file, as the suite requires.
func harness(tb testing.TB, opts *Options) conformance.Harness {
	dir := tb.TempDir()
	return conformance.Harness{
		Open: func(ctx context.Context) (*core.Backend, error) {
			s, err := New(ctx, dir, opts)
			if err != nil {
				return nil, err
			}
			return &core.Backend{Storage: s, Index: s}, nil
		},
		// 1024 partitions are 1024 empty buckets: cheap, so test the declared maximum.
		CreateMaxPartitions: true,
	}
}

// conformanceRetention is the MaxMessagesPerPartition of the suite's run with retention on:
// the most messages one subtest reads back from one partition (ConcurrentAppend's appenders
// times their messages). The suite checks that every message appended is kept, so with less
// the subtests that read back more messages fail, as they should (see the package doc,
// # Retention). With exactly this many, nothing a subtest reads is deleted, but
// ConcurrentAppend fills its partition to the limit: a Store that deleted a message when a
// partition reached the limit instead of when it passed it fails it.
const conformanceRetention = conformance.DefaultAppenders * conformance.DefaultMessagesPerAppender

func TestConformance(t *testing.T) {
	t.Run("Storage", func(t *testing.T) { conformance.RunStorage(t, harness(t, nil)) })
	t.Run("IndexStorage", func(t *testing.T) { conformance.RunIndexStorage(t, harness(t, nil)) })
	t.Run("StorageWithRetention", func(t *testing.T) {
		conformance.RunStorage(t, harness(t, &Options{MaxMessagesPerPartition: conformanceRetention}))
	})
}

func BenchmarkConformance(b *testing.B) {
	conformance.BenchmarkStorage(b, harness(b, nil))
}
