package hub_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// A long poll with limit 0 can never be answered with a message: it must not hold a pull
// slot while it waits, or a few of them keep every other client's pulls waiting.
func TestZeroLimitLongPollsHoldNoPullSlot(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithMaxConcurrentFetches(1)) // 4 pull slots
	defer h.Close()
	bad := hubtest.Dial(t, addr)
	s := bad.Create("zero-limit")
	bad.Push(s, 1, []byte("m"))
	for i := range 8 {
		bad.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: uint64(i + 1), Limit: 0, WaitMS: 60_000})
		bad.Send(s.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: uint64(i + 1), Limit: 0, WaitMS: 60_000, MaxBytes: 1 << 20})
	}
	good := hubtest.Dial(t, addr)
	good.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: 1, Limit: 1})
	r, err := good.TryRecv(10 * time.Second)
	if err != nil {
		t.Fatalf("a pull behind 16 long polls with limit 0 was not answered: %v", err)
	}
	pr, err := wire.DecodePullResponse(r.Data)
	if err != nil || r.Protocol != wire.ProtocolPull || len(pr.Messages) != 1 {
		t.Fatalf("pull reply %q %+v (%v), want one message", r.Protocol, pr, err)
	}
	// Each is answered, with no messages.
	for range 16 {
		r := bad.Recv()
		var n int
		switch r.Protocol {
		case wire.ProtocolPullWait:
			pr, err := wire.DecodePullResponse(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			n = len(pr.Messages)
		case wire.ProtocolPullBatch:
			part, err := wire.DecodePullBatchPart(r.Data)
			if err != nil || part.More {
				t.Fatalf("pull batch part %+v (%v), want the last", part, err)
			}
			n = len(part.Messages)
		default:
			t.Fatalf("got a %q reply to a long poll", r.Protocol)
		}
		if n != 0 {
			t.Fatalf("a long poll with limit 0 was answered with %d messages", n)
		}
	}
}
