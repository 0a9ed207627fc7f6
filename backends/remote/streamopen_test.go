package remote_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/backends/remote"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// startGatedHub runs a hub on mem with a gate in front of its stream service, and returns
// a function that opens a Store that talks to the stream service through the gate.
func startGatedHub(t *testing.T, mem *memory.Store) (*hubtest.Gate, func() *remote.Store) {
	t.Helper()
	h, err := hub.New(&core.Backend{Storage: mem, Index: mem})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		_ = mem.Close()
	})
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := hubtest.NewGate(t, h)
	open := func() *remote.Store {
		s, err := remote.New(t.Context(), a.String(), &remote.Options{Timeout: 10 * time.Second,
			ClientOptions: []client.Option{client.WithStreamService(hubtest.GateAddress)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return g, open
}

// TestStreamDeletedWhileLearningRoutes: a Store that learns the routes of an existing stream
// sends no stream_create* (sluice_stream_open creates nothing), so another Store that
// deletes the stream meanwhile (here: the gate, just before it forwards a stream_create*)
// cannot make it create the stream again; and a stream deleted before the route request is
// reported as not found, never created.
func TestStreamDeletedWhileLearningRoutes(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	g, open := startGatedHub(t, mem)
	ctx := t.Context()
	const n = "window"
	if _, err := mem.CreateStream(ctx, n, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Append(ctx, n, 1, [][]byte{[]byte("before")}); err != nil {
		t.Fatal(err)
	}
	g.SetBefore(func(ctx context.Context, _ *routing.Message, protocol string) bool {
		switch protocol {
		case wire.ProtocolCreate, wire.ProtocolCreatePartitioned, wire.ProtocolCreatePartitions:
			_ = mem.DeleteStream(ctx, n) // another Store, between the check and the routes
		}
		return false
	})
	s := open()
	if _, err := s.Append(ctx, n, 1, [][]byte{[]byte("after")}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if c := g.Count(wire.ProtocolCreate, wire.ProtocolCreatePartitioned, wire.ProtocolCreatePartitions); c != 0 {
		t.Fatalf("the Store sent %d stream_create*, want none", c)
	}
	msgs, err := mem.Fetch(ctx, n, 1, 0, 10)
	if err != nil || len(msgs) != 2 || string(msgs[0].Data) != "before" {
		t.Fatalf("partition 1 holds %v (%v), want \"before\" and \"after\": the stream was deleted and created again", msgs, err)
	}

	// Deleted just before the route request: not found, and not created.
	g.SetBefore(func(ctx context.Context, _ *routing.Message, protocol string) bool {
		if protocol == wire.ProtocolStreamOpen {
			_ = mem.DeleteStream(ctx, n)
		}
		return false
	})
	if _, err := open().Fetch(ctx, n, 0, 0, 10); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Fetch of a stream deleted before its routes were learned = %v, want ErrStreamNotFound", err)
	}
	if _, err := mem.Partitions(ctx, n); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("the hub's backend reports Partitions = %v; want ErrStreamNotFound (not created again)", err)
	}
	if c := g.Count(wire.ProtocolCreate, wire.ProtocolCreatePartitioned, wire.ProtocolCreatePartitions); c != 0 {
		t.Fatalf("the Stores sent %d stream_create*, want none", c)
	}
}

// TestOldHubFallback: with a hub that answers sluice_stream_open with an Ockam `error` (it
// does not know it), the Store learns routes with sluice_stream_info and
// stream_create_partitioned, and still reports a missing stream.
func TestOldHubFallback(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	g, open := startGatedHub(t, mem)
	g.SetBefore(func(ctx context.Context, msg *routing.Message, protocol string) bool {
		if protocol != wire.ProtocolStreamOpen {
			return false
		}
		_ = msg.Reply(ctx, wire.EncodePayload(wire.ProtocolError, wire.Error{Reason: "stream: unknown protocol"}))
		return true
	})
	ctx := t.Context()
	const n = "old"
	if _, err := mem.CreateStream(ctx, n, 2); err != nil {
		t.Fatal(err)
	}
	s := open()
	idx, err := s.Append(ctx, n, 1, [][]byte{[]byte("x")})
	if err != nil {
		t.Fatalf("Append through a hub without sluice_stream_open: %v", err)
	}
	if msgs, err := s.Fetch(ctx, n, 1, idx[0], 10); err != nil || len(msgs) != 1 || string(msgs[0].Data) != "x" {
		t.Fatalf("Fetch = %v, %v; want the message appended", msgs, err)
	}
	if _, err := s.Fetch(ctx, "absent", 0, 0, 10); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Fetch of a missing stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := mem.Partitions(ctx, "absent"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("the hub's backend reports Partitions = %v: the missing stream was created", err)
	}
	if g.Count(wire.ProtocolStreamOpen) == 0 || g.Count(wire.ProtocolStreamInfo) == 0 || g.Count(wire.ProtocolCreatePartitioned) == 0 {
		t.Fatal("the Store did not try sluice_stream_open, then fall back to sluice_stream_info and stream_create_partitioned")
	}
}

// TestRetryOnLostSession: an idempotent call whose Conn fails under it (here the hub answers
// the first stream_create* with an Ockam `error`, which fails the Conn) is sent once more on
// a new Conn.
func TestRetryOnLostSession(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	g, open := startGatedHub(t, mem)
	ctx := t.Context()
	var failed atomic.Bool
	g.SetBefore(func(ctx context.Context, msg *routing.Message, protocol string) bool {
		switch protocol {
		case wire.ProtocolCreate, wire.ProtocolCreatePartitioned, wire.ProtocolCreatePartitions:
		default:
			return false
		}
		if !failed.CompareAndSwap(false, true) {
			return false
		}
		_ = msg.Reply(ctx, wire.EncodePayload(wire.ProtocolError, wire.Error{Reason: "session lost"}))
		return true
	})
	if n, err := open().CreateStream(ctx, "s", 2); err != nil || n != 2 {
		t.Fatalf("CreateStream after the Conn failed under it = %d, %v; want 2, nil (retried on a new Conn)", n, err)
	}
	if !failed.Load() {
		t.Fatal("the stream_create* request did not pass the gate")
	}
	if n, err := mem.Partitions(ctx, "s"); err != nil || n != 2 {
		t.Fatalf("the hub's backend reports Partitions = %d, %v; want 2", n, err)
	}
}
