package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// asOldHub makes the gate answer sluice_stream_open as a hub that does not know it: with an
// Ockam `error` reply.
func asOldHub(ctx context.Context, msg *routing.Message, protocol string) bool {
	if protocol != wire.ProtocolStreamOpen {
		return false
	}
	_ = msg.Reply(ctx, wire.EncodePayload(wire.ProtocolError, wire.Error{Reason: "stream: unknown protocol \"sluice_stream_open\""}))
	return true
}

// TestConnOpenStream: OpenStream learns the routes of every partition of a stream the hub
// never saw created, and never creates a missing stream; after the stream is deleted it
// reports it missing and the Conn forgets its routes.
func TestConnOpenStream(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startHubOn(t, &core.Backend{Storage: mem, Index: mem})
	ctx := t.Context()
	const stream = "opened"
	if _, err := mem.CreateStream(ctx, stream, 3); err != nil {
		t.Fatal(err)
	}
	conn, err := dial(t, h.Addr).Open(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if n, exists, err := conn.OpenStream(ctx, "absent"); err != nil || exists || n != 0 {
		t.Fatalf("OpenStream of a missing stream = %d, %v, %v; want 0, false, nil", n, exists, err)
	}
	if _, err := mem.Partitions(ctx, "absent"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("after OpenStream the backend reports Partitions = %v: the stream was created", err)
	}

	n, exists, err := conn.OpenStream(ctx, stream)
	if err != nil || !exists || n != 3 {
		t.Fatalf("OpenStream = %d, %v, %v; want 3, true, nil", n, exists, err)
	}
	if got, ok := conn.Partitions(stream); !ok || got != 3 {
		t.Fatalf("Partitions = %d, %v; want 3, true", got, ok)
	}
	for p := range 3 {
		want := fmt.Sprintf("m%d", p)
		idx, err := conn.Push(ctx, stream, p, [][]byte{[]byte(want)})
		if err != nil {
			t.Fatalf("Push to partition %d: %v", p, err)
		}
		msgs, err := conn.Pull(ctx, stream, p, idx[0], 10, 0)
		if err != nil || len(msgs) != 1 || string(msgs[0].Data) != want {
			t.Fatalf("Pull of partition %d = %v, %v; want %q", p, msgs, err, want)
		}
	}
	if m := h.Metrics(); m.Creates != 0 {
		t.Fatalf("the hub answered %d stream_create*, want none", m.Creates)
	}

	if err := mem.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	if n, exists, err := conn.OpenStream(ctx, stream); err != nil || exists || n != 0 {
		t.Fatalf("OpenStream of the deleted stream = %d, %v, %v; want 0, false, nil", n, exists, err)
	}
	if _, ok := conn.Partitions(stream); ok {
		t.Fatal("the Conn still knows the partitions of the deleted stream")
	}
	if _, err := conn.Push(ctx, stream, 0, [][]byte{[]byte("x")}); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Push to the deleted stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := mem.Partitions(ctx, stream); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("the backend reports Partitions = %v: the deleted stream was created again", err)
	}
	if err := conn.Err(); err != nil {
		t.Fatalf("the Conn failed: %v", err)
	}
}

// TestConnOpenStreamOldHub: a hub that answers sluice_stream_open with an Ockam `error`
// fails that request only, with an error matching errors.ErrUnsupported; the Conn goes on.
// A hub that does not answer it at all times the request out.
func TestConnOpenStreamOldHub(t *testing.T) {
	h := startHub(t)
	g := hubtest.NewGate(t, h.Hub)
	g.SetBefore(asOldHub)
	ctx := t.Context()
	c := dial(t, h.Addr, client.WithStreamService(hubtest.GateAddress))
	conn, err := c.Open(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _, err = conn.OpenStream(ctx, "s")
	if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, client.ErrRejected) {
		t.Fatalf("OpenStream on a hub without sluice_stream_open = %v, want ErrUnsupported and ErrRejected", err)
	}
	if err := conn.Err(); err != nil {
		t.Fatalf("the `error` reply failed the Conn: %v", err)
	}
	if _, exists, err := conn.StreamInfo(ctx, "s"); err != nil || exists {
		t.Fatalf("StreamInfo after the refused OpenStream = %v, %v; want a working Conn and no stream", exists, err)
	}

	var dropped atomic.Int64
	g.SetBefore(func(_ context.Context, _ *routing.Message, protocol string) bool {
		if protocol == wire.ProtocolStreamOpen {
			dropped.Add(1)
			return true // no answer at all
		}
		return false
	})
	silent, err := c.Open(ctx, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if _, _, err := silent.OpenStream(ctx, "s"); !errors.Is(err, client.ErrTimeout) || dropped.Load() != 1 {
		t.Fatalf("OpenStream on a hub that does not answer = %v (%d requests dropped), want ErrTimeout after one", err, dropped.Load())
	}
	if silent.Err() == nil {
		t.Fatal("the timed out OpenStream left the Conn working; a timeout fails it")
	}
}

// TestConsumerWithoutCreateOpensStream: a consumer with WithoutCreate learns the route with
// sluice_stream_open and sends no stream_create, so another Store that deletes the stream
// between the consumer's check and its route request cannot make it create the stream
// again. The gate deletes the stream before it forwards any stream_create.
func TestConsumerWithoutCreateOpensStream(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startHubOn(t, &core.Backend{Storage: mem, Index: mem})
	g := hubtest.NewGate(t, h.Hub)
	ctx := t.Context()
	const stream = "kept-open"
	if _, err := mem.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Append(ctx, stream, 0, [][]byte{[]byte("one")}); err != nil {
		t.Fatal(err)
	}
	g.SetBefore(func(ctx context.Context, _ *routing.Message, protocol string) bool {
		if protocol == wire.ProtocolCreate || protocol == wire.ProtocolCreatePartitioned {
			_ = mem.DeleteStream(ctx, stream) // another Store, in the window
		}
		return false
	})
	var handled, starts atomic.Int64
	cons, err := client.NewConsumer(dial(t, h.Addr, client.WithStreamService(hubtest.GateAddress)), stream,
		func(context.Context, core.Message) error { handled.Add(1); return nil },
		client.WithoutCreate(), client.WithConsumerBackoff(fastBackoff), client.WithPullWait(100*time.Millisecond),
		client.WithConsumerSessionStart(func() { starts.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "a session started", func() bool { return starts.Load() > 0 })
	if n := g.Count(wire.ProtocolCreate) + g.Count(wire.ProtocolCreatePartitioned); n != 0 {
		t.Fatalf("the consumer sent %d stream_create*, want none", n)
	}
	if msgs, err := mem.Fetch(ctx, stream, 0, 0, 10); err != nil || len(msgs) != 1 {
		t.Fatalf("the stream holds %v (%v), want its one message: it was deleted and created again", msgs, err)
	}
	waitFor(t, "the message handled", func() bool { return handled.Load() == 1 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if n := g.Count(wire.ProtocolStreamOpen); n == 0 {
		t.Fatal("the consumer sent no sluice_stream_open")
	}
	if m := h.Metrics(); m.Creates != 0 {
		t.Fatalf("the hub answered %d stream_create*, want none", m.Creates)
	}
}

// TestConsumerWithoutCreateOldHub: with a hub that does not know sluice_stream_open, a
// consumer with WithoutCreate falls back to sluice_stream_info and stream_create, reads the
// stream, and still reports a missing stream instead of creating it.
func TestConsumerWithoutCreateOldHub(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startHubOn(t, &core.Backend{Storage: mem, Index: mem})
	g := hubtest.NewGate(t, h.Hub)
	g.SetBefore(asOldHub)
	ctx := t.Context()
	const stream = "old-hub"
	if _, err := mem.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Append(ctx, stream, 0, [][]byte{[]byte("one")}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, h.Addr, client.WithStreamService(hubtest.GateAddress))
	var handled atomic.Int64
	cons, err := client.NewConsumer(c, stream, func(context.Context, core.Message) error { handled.Add(1); return nil },
		client.WithoutCreate(), client.WithConsumerBackoff(fastBackoff), client.WithPullWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "the message handled", func() bool { return handled.Load() == 1 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if g.Count(wire.ProtocolStreamOpen) == 0 || g.Count(wire.ProtocolStreamInfo) == 0 || g.Count(wire.ProtocolCreate) == 0 {
		t.Fatalf("requests %v: want sluice_stream_open, then sluice_stream_info and stream_create", g.Counts())
	}

	missing, err := client.NewConsumer(c, "absent", func(context.Context, core.Message) error { return nil },
		client.WithoutCreate(), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntilDone(t, missing); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Run on a missing stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := mem.Partitions(ctx, "absent"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("after Run the backend reports Partitions = %v: the stream was created", err)
	}
}
