package routing

import (
	"context"
	"testing"
)

// BenchmarkTracker measures following one message, as a stream subscription does: a label
// added with 256 messages pending ahead of it and the oldest one handled, so that the
// pending labels slide along.
func BenchmarkTracker(b *testing.B) {
	tr := NewTracker()
	const depth = 256
	for i := range depth {
		tr.add(uint64(i))
	}
	b.ReportAllocs()
	var next uint64 = depth
	for b.Loop() {
		tl := trackedFrom(tr.Context(context.Background(), next))
		tl.add()
		tr.done(next - depth)
		next++
	}
}
