package conformance_test

import (
	"context"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
)

// savesWhenCancelled is an IndexStorage that saves the index even when ctx is already
// cancelled, and only then reports the cancellation.
type savesWhenCancelled struct{ core.IndexStorage }

func (s savesWhenCancelled) SaveIndex(ctx context.Context, client, stream string, p int, index uint64) error {
	if err := s.IndexStorage.SaveIndex(context.WithoutCancel(ctx), client, stream, p, index); err != nil {
		return err
	}
	return ctx.Err()
}

// TestRunIndexSavedWhenCancelledFails checks that the IndexStorage suite, as it claims,
// fails a SaveIndex that saves with an already cancelled context.
func TestRunIndexSavedWhenCancelledFails(t *testing.T) {
	h := memoryHarness(func(b *core.Backend) *core.Backend {
		return &core.Backend{Storage: b.Storage, Index: savesWhenCancelled{b.Index}}
	})
	res := conformance.RunSuites(t.Context(), h, nil, conformance.Suite{Name: "IndexStorage", Run: conformance.IndexStorageTests})
	if f := failedLeaves(res); !slices.Equal(f, []string{"IndexStorage/Cancelled"}) {
		t.Fatalf("failed leaves = %v; want exactly IndexStorage/Cancelled (%v)", f, res)
	}
}
