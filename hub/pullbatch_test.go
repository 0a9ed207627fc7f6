package hub_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// expectParts reads the parts of the sluice_pull_batch reply to request id, up to the one
// with More false, and returns them.
func expectParts(t *testing.T, c *hubtest.Conn, id uint64) []wire.PullBatchPart {
	t.Helper()
	var parts []wire.PullBatchPart
	for {
		r := c.Expect(wire.ProtocolPullBatch)
		p, err := wire.DecodePullBatchPart(r.Data)
		if err != nil {
			t.Fatalf("decode PullBatchPart: %v", err)
		}
		if p.RequestID != id {
			t.Fatalf("part for request %d, want %d", p.RequestID, id)
		}
		parts = append(parts, p)
		if !p.More {
			return parts
		}
		if len(p.Messages) == 0 {
			t.Fatalf("part %d is empty but says more follow", len(parts))
		}
	}
}

// TestPullBatch pulls many frames' worth of messages with one sluice_pull_batch: the reply
// comes in several parts, each within a frame, the messages continuing each other in order,
// and it stops at the limit, at max_bytes, and at the end of the stream.
func TestPullBatch(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: s}, hub.WithMaxPullBytes(256<<10))
	c := hubtest.Dial(t, addr)
	st := c.Create("batches")
	const n, size = 400, 1024
	for i := range n {
		if pc := c.Push(st, uint64(i+1), bytes.Repeat([]byte{byte(i)}, size)); pc.Status != 0 {
			t.Fatalf("push %d: status %v", i, pc.Status)
		}
	}
	// collect checks that the parts hold the messages from index from on, in order, and
	// returns how many.
	collect := func(parts []wire.PullBatchPart, from uint64) int {
		t.Helper()
		next := from
		for _, p := range parts {
			for _, m := range p.Messages {
				if m.Index != next || len(m.Data) != size || m.Data[0] != byte(next) {
					t.Fatalf("got index %d (%d bytes), want index %d", m.Index, len(m.Data), next)
				}
				next++
			}
		}
		return int(next - from)
	}

	// Everything the hub allows: max_bytes 1 MiB is capped at the hub's 256 KiB, so the
	// reply stops after the frame in which the data reaches 256 KiB.
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 1, Index: 0, Limit: n, MaxBytes: 1 << 20})
	parts := expectParts(t, c, 1)
	got := collect(parts, 0)
	if len(parts) < 4 {
		t.Fatalf("%d parts for %d messages of %d bytes; want them spread over several frames", len(parts), got, size)
	}
	if got*size < 256<<10 || got*size > 256<<10+wire.MaxFrame {
		t.Fatalf("the batch brought %d bytes; want the hub's 256 KiB cap plus at most one frame", got*size)
	}

	// The limit ends a batch exactly.
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 2, Index: 10, Limit: 150, MaxBytes: 1 << 20})
	if got := collect(expectParts(t, c, 2), 10); got != 150 {
		t.Fatalf("limit 150: %d messages", got)
	}

	// A tiny max_bytes still brings a frame.
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 3, Index: 0, Limit: n, MaxBytes: 1})
	if parts := expectParts(t, c, 3); len(parts) != 1 || len(parts[0].Messages) == 0 {
		t.Fatalf("max_bytes 1: %d parts; want one non-empty part", len(parts))
	}

	// The end of the stream ends a batch: from 300, the last 100 messages.
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 4, Index: 300, Limit: n, MaxBytes: 1 << 20})
	if got := collect(expectParts(t, c, 4), 300); got != 100 {
		t.Fatalf("from 300: %d messages, want the last 100", got)
	}

	// Past the end, a batch long-polls like sluice_pull_wait: it answers when a message
	// lands, or with one empty part when the wait passes.
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 5, Index: n, Limit: 10, WaitMS: 50, MaxBytes: 1 << 20})
	if parts := expectParts(t, c, 5); len(parts) != 1 || len(parts[0].Messages) != 0 {
		t.Fatalf("past the end: %d parts, %d messages; want one empty part", len(parts), len(parts[0].Messages))
	}
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 6, Index: n, Limit: 10, WaitMS: 60_000, MaxBytes: 1 << 20})
	if _, err := c.TryRecv(50 * time.Millisecond); err == nil {
		t.Fatal("a long-polling batch answered before any message landed")
	}
	pusher := hubtest.Dial(t, addr)
	if pc := pusher.Push(pusher.Create("batches"), 1, bytes.Repeat([]byte{byte(n % 256)}, size)); pc.Status != 0 {
		t.Fatalf("push: status %v", pc.Status)
	}
	if got := collect(expectParts(t, c, 6), n); got != 1 {
		t.Fatalf("after the push: %d messages, want 1", got)
	}
}

// TestPullBatchStopsAtMaxBytes checks the max_bytes bound exactly: a batch stops after the
// frame whose message data reaches max_bytes, also when the data equals it.
func TestPullBatchStopsAtMaxBytes(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: s})
	c := hubtest.Dial(t, addr)
	st := c.Create("maxbytes")
	// One message per frame: the first part carries exactly size bytes.
	const size = 40_000
	for i := range 3 {
		if pc := c.Push(st, uint64(i+1), bytes.Repeat([]byte{byte(i)}, size)); pc.Status != wire.StatusOK {
			t.Fatalf("push %d: status %v", i, pc.Status)
		}
	}
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 1, Index: 0, Limit: 3, MaxBytes: size})
	parts := expectParts(t, c, 1)
	if len(parts) != 1 || len(parts[0].Messages) != 1 || parts[0].Messages[0].Index != 0 {
		t.Fatalf("max_bytes %d with messages of %d bytes: %d parts; want one part with message 0", size, size, len(parts))
	}
	// One byte more lets a second frame follow.
	c.Send(st.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 2, Index: 0, Limit: 3, MaxBytes: size + 1})
	if parts := expectParts(t, c, 2); len(parts) != 2 {
		t.Fatalf("max_bytes %d with messages of %d bytes: %d parts, want 2", size+1, size, len(parts))
	}
}
