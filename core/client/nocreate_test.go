package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// runUntilDone runs cons until Run returns, bounded by a guard of 60s (not a timing
// assertion: a Run that does not end returns context.DeadlineExceeded, which no test
// expects).
func runUntilDone(t *testing.T, cons *client.Consumer) error {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return cons.Run(ctx)
}

// TestConsumerWithoutCreateMissingStream: a consumer with WithoutCreate reports a stream
// that does not exist instead of creating it.
func TestConsumerWithoutCreateMissingStream(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	cons, err := client.NewConsumer(c, "absent", func(context.Context, core.Message) error { return nil },
		client.WithoutCreate(), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntilDone(t, cons); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Run on a missing stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := h.Store.Fetch(t.Context(), "absent", 0, 0, 1); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Fetch after Run = %v: the consumer created the stream", err)
	}
	if m := h.Metrics(); m.Creates != 0 {
		t.Fatalf("the hub answered %d stream_create, want none", m.Creates)
	}
}

// TestConsumerWithoutCreateDeletedStream: a stream deleted while a consumer with
// WithoutCreate reads it ends Run with ErrStreamNotFound after the consumer reconnects; it
// is not created again.
func TestConsumerWithoutCreateDeletedStream(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startHubOn(t, &core.Backend{Storage: mem, Index: mem})
	c := dial(t, h.Addr)
	ctx := t.Context()
	if _, err := mem.CreateStream(ctx, "doomed", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Append(ctx, "doomed", 0, [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	cons, err := client.NewConsumer(c, "doomed", func(context.Context, core.Message) error { handled.Add(1); return nil },
		client.WithoutCreate(), client.WithClientID("reader"), client.WithConsumerBackoff(fastBackoff), client.WithPullWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- runUntilDone(t, cons) }() // ends when the stream is gone (or the guard)
	waitFor(t, "the two messages handled", func() bool { return handled.Load() == 2 })
	if err := mem.DeleteStream(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Run after the stream was deleted = %v, want ErrStreamNotFound", err)
	}
	if _, err := mem.Fetch(ctx, "doomed", 0, 0, 1); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Fetch after Run = %v: the consumer created the stream again", err)
	}
	if st := cons.Stats(); st.Reconnects == 0 {
		t.Fatalf("stats %+v: the consumer ended without reconnecting (the test did not test a reconnect)", st)
	}
}

// TestConsumerWithoutCreateReusesRoute: after a reconnect, a consumer with WithoutCreate
// reads on through the worker's route (from sluice_stream_open) without sending
// stream_create, and the stream never gets created by it.
func TestConsumerWithoutCreateReusesRoute(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	ctx := t.Context()
	pc := dial(t, h.Addr)
	conn, err := pc.Open(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.CreateStream(ctx, "kept", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Push(ctx, "kept", 0, [][]byte{[]byte("one")}); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	var starts atomic.Int64
	cons, err := client.NewConsumer(dial(t, px.Addr()), "kept", func(context.Context, core.Message) error { handled.Add(1); return nil },
		client.WithoutCreate(), client.WithConsumerBackoff(fastBackoff), client.WithPullWait(100*time.Millisecond),
		client.WithConsumerSessionStart(func() { starts.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "the first message handled", func() bool { return handled.Load() == 1 })
	creates := h.Metrics().Creates
	for i := 0; px.ResetAll() == 0; i++ { // the connection is open: the first call resets it
		if i == 30_000 {
			t.Fatal("the proxy had no connection to reset")
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "a second session", func() bool { return starts.Load() >= 2 })
	if _, err := conn.Push(ctx, "kept", 0, [][]byte{[]byte("two")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second message handled", func() bool { return handled.Load() == 2 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if got := h.Metrics().Creates; got != creates {
		t.Fatalf("the hub answered %d stream_create after the reconnect, want none", got-creates)
	}
	if st := cons.Stats(); st.Reconnects == 0 {
		t.Fatalf("stats %+v: no reconnect", st)
	}
	if _, err := client.NewConsumer(pc, "kept", func(context.Context, core.Message) error { return nil }, client.WithConsumerSessionStart(nil)); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("nil session start handler: %v, want ErrInvalidOption", err)
	}
}

// TestConsumerRunStopsWhenContextEnds: once Run's ctx has ended (here in the session error
// handler, as a command does that gives up), Run starts no new session.
func TestConsumerRunStopsWhenContextEnds(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // every session fails
	c := dial(t, addr, client.WithDialTimeout(time.Second))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var failures atomic.Int64
	cons, err := client.NewConsumer(c, "s", func(context.Context, core.Message) error { return nil },
		client.WithConsumerBackoff(fastBackoff),
		client.WithConsumerSessionErrors(func(error) { failures.Add(1); cancel() }))
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if st := cons.Stats(); failures.Load() != 1 || st.Reconnects != 0 {
		t.Fatalf("%d session failure(s), stats %+v: want one failure and no session after ctx ended", failures.Load(), st)
	}
}
