package hub_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// countingStore is a memory store that counts the partition-count lookups made of it.
type countingStore struct {
	*memory.Store
	lookups atomic.Int64
}

func (s *countingStore) Partitions(ctx context.Context, stream string) (int, error) {
	s.lookups.Add(1)
	return s.Store.Partitions(ctx, stream)
}

// TestMissingPartitionLookupsRemembered: requests to partitions that do not exist (a stream
// that was deleted, or never created; a partition past the stream's count) are each answered
// as failed, but cost the backend one lookup per stream while the hub goes by its answer,
// not one per request. A sluice_stream_info (or stream_open) asks the backend again, so a
// stream created meanwhile by another hub or a tool is found at once after it.
func TestMissingPartitionLookupsRemembered(t *testing.T) {
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &countingStore{Store: m}
	h, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: s}, hub.WithLogger(quietLogger))
	hub.SetLookupTTL(h, time.Hour) // every request below within one TTL, however slow the machine
	if _, err := s.CreateStream(t.Context(), "small", 1); err != nil {
		t.Fatal(err)
	}
	c := hubtest.Dial(t, addr)
	id := uint64(0)
	push := func(to string, want wire.Status) {
		t.Helper()
		id++
		c.Send(wire.Route{wire.Local(to)}, wire.ProtocolPush, wire.PushRequest{RequestID: id, Data: []byte("a")})
		r := recvWithin(t, c, "stream_push to "+to)
		if pc, err := wire.DecodePushConfirm(r.Data); r.Protocol != wire.ProtocolPush || err != nil || pc.RequestID != id || pc.Status != want {
			t.Fatalf("stream_push %d to %s answered %q %+v (%v), want status %v", id, to, r.Protocol, pc, err, want)
		}
	}
	lookups := func(want int64, after string) {
		t.Helper()
		if got := s.lookups.Load(); got != want {
			t.Fatalf("%d partition-count lookups after %s, want %d", got, after, want)
		}
	}

	for range 5 {
		push("stream.gone.0", wire.StatusError)
	}
	lookups(1, "5 pushes to a stream that does not exist")
	for range 5 {
		push("stream.small.3", wire.StatusError)
	}
	lookups(2, "5 pushes to a partition past a stream's count")

	// Another hub or a tool creates "gone": the hub still goes by its answer, until asked.
	if _, err := s.CreateStream(t.Context(), "gone", 1); err != nil {
		t.Fatal(err)
	}
	push("stream.gone.0", wire.StatusError)
	lookups(2, "a push to a stream created behind the hub's back")
	if rep := c.StreamInfo(100, "gone"); !rep.Partitions.Valid || rep.Partitions.Value != 1 {
		t.Fatalf("sluice_stream_info of the created stream: %+v", rep)
	}
	lookups(3, "sluice_stream_info")
	push("stream.gone.0", wire.StatusOK)
	lookups(3, "a push to the stream found by sluice_stream_info")

	// An answer older than the TTL is asked again.
	hub.SetLookupTTL(h, 0)
	push("stream.small.3", wire.StatusError)
	push("stream.small.3", wire.StatusError)
	lookups(5, "2 pushes past a stream's count, with answers that expire at once")
}
