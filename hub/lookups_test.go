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

// blockingStore is a memory store whose first partition-count lookup of a stream answers
// what it found, but only once release is closed.
type blockingStore struct {
	*memory.Store
	calls   atomic.Int64
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) Partitions(ctx context.Context, stream string) (int, error) {
	n, err := s.Store.Partitions(ctx, stream)
	if s.calls.Add(1) == 1 {
		close(s.entered)
		<-s.release
	}
	return n, err
}

// TestStaleLookupDoesNotOverrideNewer: a lookup that answered "not found" before the stream
// was created, but returns after a sluice_stream_info found it, does not replace the newer
// answer: pushes after the sluice_stream_info are taken at once.
func TestStaleLookupDoesNotOverrideNewer(t *testing.T) {
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &blockingStore{Store: m, entered: make(chan struct{}), release: make(chan struct{})}
	h, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: s}, hub.WithLogger(quietLogger))
	hub.SetLookupTTL(h, time.Hour)
	slow, c := hubtest.Dial(t, addr), hubtest.Dial(t, addr)
	// A push to a stream that does not exist yet: its lookup answers late.
	slow.Send(wire.Route{wire.Local("stream.late.0")}, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("a")})
	<-s.entered
	if _, err := s.CreateStream(t.Context(), "late", 1); err != nil {
		t.Fatal(err)
	}
	if rep := c.StreamInfo(100, "late"); !rep.Partitions.Valid || rep.Partitions.Value != 1 {
		t.Fatalf("sluice_stream_info of the created stream: %+v", rep)
	}
	close(s.release)
	if r := recvWithin(t, slow, "the push whose lookup answered late"); r.Protocol != wire.ProtocolPush {
		t.Fatalf("the push whose lookup answered late was answered %q", r.Protocol)
	}
	c.Send(wire.Route{wire.Local("stream.late.0")}, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("a")})
	r := recvWithin(t, c, "stream_push after sluice_stream_info")
	if pc, err := wire.DecodePushConfirm(r.Data); r.Protocol != wire.ProtocolPush || err != nil || pc.Status != wire.StatusOK {
		t.Fatalf("stream_push after sluice_stream_info found the stream answered %q %+v (%v), want status OK", r.Protocol, pc, err)
	}
}
