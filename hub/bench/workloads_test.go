package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
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

// TestReceiverCountsDistinctMessages: delivery is at least once, so a message the publisher
// sent again arrives twice. The e2e-latency reader must wait for n distinct messages, not n
// arrivals (a duplicate would end the wait before the last messages, the slowest, arrived
// and cut the tail off the percentiles), record each latency once and count the duplicates.
func TestReceiverCountsDistinctMessages(t *testing.T) {
	r := newReceiver()
	start := time.Now()
	first, second := stamp(make([]byte, 16), start), stamp(make([]byte, 16), start.Add(time.Millisecond))
	r.receive(make([]byte, 16)) // the warm-up message
	r.receive(first)
	r.receive(first) // resent: its confirm was lost

	done, cancel := context.WithCancel(context.Background())
	cancel() // wait must decide from what arrived, not wait for more
	err := r.wait(done, 2)
	if err == nil {
		t.Fatal("wait(2) returned after one message and its duplicate; want it to wait for the second message")
	}
	if !strings.Contains(err.Error(), "received 1 of 2 messages (and 1 duplicates)") {
		t.Errorf("wait error %q does not say what arrived", err)
	}
	r.receive(second)
	if err := r.wait(done, 2); err != nil {
		t.Fatalf("wait(2) after two distinct messages: %v", err)
	}
	if got := r.l.Count(); got != 2 {
		t.Errorf("%d latencies recorded, want 2 (one per distinct message)", got)
	}
	if got := r.duplicates(); got != 1 {
		t.Errorf("duplicates() = %d, want 1", got)
	}
	if s := latencySample(r.l, time.Second); s.Messages != 2 {
		t.Errorf("sample counts %d messages, want 2", s.Messages)
	}
}
