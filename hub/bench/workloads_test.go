package bench

import (
	"bytes"
	"testing"
)

// TestPayloadsDistinct checks what keeps a batch-compressing layer (a Kafka producer) from
// shrinking the workloads' messages: each has the size asked for, none is all zeros, and no
// two are alike, nor do they share a backing array past their length.
func TestPayloadsDistinct(t *testing.T) {
	const size, n = 1024, 64
	msgs := payloads(size, n)
	if len(msgs) != n {
		t.Fatalf("got %d messages, want %d", len(msgs), n)
	}
	seen := make(map[string]int, n)
	zero := make([]byte, size)
	for i, m := range msgs {
		if len(m) != size || cap(m) != size {
			t.Fatalf("message %d: len %d cap %d, want %d", i, len(m), cap(m), size)
		}
		if bytes.Equal(m, zero) {
			t.Fatalf("message %d is all zeros", i)
		}
		if j, ok := seen[string(m)]; ok {
			t.Fatalf("messages %d and %d are the same", j, i)
		}
		seen[string(m)] = i
	}
}
