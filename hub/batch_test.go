package hub_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// gated holds every Append until the test releases it.
type gated struct {
	core.Storage
	started chan int      // receives len(msgs) when an Append starts
	release chan struct{} // one receive per Append
}

func (g *gated) Append(ctx context.Context, s string, p int, msgs [][]byte) ([]uint64, error) {
	g.started <- len(msgs)
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Storage.Append(ctx, s, p, msgs)
}

func newGated(t *testing.T) (*gated, *core.Backend) {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	g := &gated{Storage: s, started: make(chan int, 100), release: make(chan struct{})}
	return g, &core.Backend{Storage: g, Index: s}
}

// queued waits until the partition's push queue holds n requests.
func queued(t *testing.T, h *hub.Hub, stream string, n int) {
	t.Helper()
	for hub.QueueLen(h, stream, 0) < n {
		time.Sleep(time.Millisecond)
	}
}

// TestConcurrentPushesOneAppend checks the single writer's batching deterministically: while
// one Append is in progress, the pushes that arrive are all written by the next Append.
func TestConcurrentPushesOneAppend(t *testing.T) {
	g, b := newGated(t)
	h, addr := hubtest.Start(t, b)
	c := hubtest.Dial(t, addr)
	s := c.Create("batched")

	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 0, Data: []byte("first")})
	if n := <-g.started; n != 1 {
		t.Fatalf("first Append of %d messages, want 1", n)
	}
	for i := 1; i <= 9; i++ {
		c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: uint64(i), Data: []byte("next")})
	}
	queued(t, h, "batched", 9)
	g.release <- struct{}{}
	if n := <-g.started; n != 9 {
		t.Fatalf("second Append of %d messages, want the 9 queued pushes", n)
	}
	g.release <- struct{}{}
	for i := range 10 {
		pc := c.ExpectConfirm()
		if pc.Status != wire.StatusOK || pc.RequestID != uint64(i) || pc.Index != uint64(i) {
			t.Fatalf("confirm %d = %+v, want OK with index %d", i, pc, i)
		}
	}
	if m := h.Metrics(); m.Appends != 2 || m.MaxBatch != 9 || m.Pushes != 10 {
		t.Fatalf("metrics %+v, want 2 appends, max batch 9, 10 pushes", m)
	}
}

// TestShutdownConfirmsInFlight checks that Shutdown appends and confirms the pushes already
// queued, answers parked long-polls, and refuses new requests with a reply.
func TestShutdownConfirmsInFlight(t *testing.T) {
	g, b := newGated(t)
	h, addr := hubtest.Start(t, b)
	c := hubtest.Dial(t, addr)
	s := c.Create("draining")
	waiter := hubtest.Dial(t, addr)
	ws := waiter.Create("draining")
	waiter.Send(ws.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 5, Index: 100, Limit: 10, WaitMS: 60_000})

	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("in flight")})
	<-g.started
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("queued")})
	queued(t, h, "draining", 1)

	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	for !hub.IsClosing(h) {
		time.Sleep(time.Millisecond)
	}
	// A new request during the drain gets an answer, not silence.
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("late")})
	if reason := c.ExpectError(); reason == "" {
		t.Fatal("empty reason")
	}
	// The index service too: a save is not taken.
	c.Send(wire.Route{wire.Local(hub.IndexAddress)}, wire.ProtocolIndexSave, wire.IndexSaveRequest{RequestID: 3, ClientID: "c", StreamName: "draining", Index: 1})
	if reason := c.ExpectRequestError(wire.ProtocolIndexSave, 3); reason == "" {
		t.Fatal("empty reason")
	}
	g.release <- struct{}{} // the in-flight append
	<-g.started
	g.release <- struct{}{} // the queued one
	for i := uint64(1); i <= 2; i++ {
		if pc := c.ExpectConfirm(); pc.Status != wire.StatusOK || pc.RequestID != i {
			t.Fatalf("confirm %+v, want request %d OK", pc, i)
		}
	}
	if pr := waiter.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 5 || len(pr.Messages) != 0 {
		t.Fatalf("parked pull at shutdown: %+v, want request 5 empty", pr)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.ExpectClosed()
}

// TestShutdownPushNotTaken checks that a push arriving while the hub drains is answered as
// not taken, the way the hub answers any request it no longer serves: a plain stream_push
// gets an `error` reply and a sluice_push_batch a sluice_error naming it. A confirm with
// status ERROR would say the hub tried to store the message and failed, which a publisher
// counts against the message (client.WithMaxRejections) although nothing refused it.
func TestShutdownPushNotTaken(t *testing.T) {
	g, b := newGated(t)
	var logs hubtest.LogBuffer
	h, addr := hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := hubtest.Dial(t, addr)
	s := c.Create("draining")
	unused := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "draining-unused", 2)[1] // no worker yet
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("in flight")})
	<-g.started

	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	for !hub.PushesClosed(h, "draining", 0) {
		time.Sleep(time.Millisecond)
	}
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("late")})
	// The reason says what to do: a plain Ockam client has nothing else to go by.
	if reason := c.ExpectError(); !strings.Contains(reason, "send it again once reconnected") {
		t.Errorf("the error reply to a push not taken says %q, not what to do", reason)
	}
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 3, Messages: [][]byte{[]byte("late")}})
	c.ExpectRequestError(wire.ProtocolPushBatch, 3)
	// A partition whose worker starts during the drain answers the same way.
	c.Send(unused.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 4, Data: []byte("late")})
	c.ExpectError()
	c.Send(unused.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 5, Limit: 1, WaitMS: 10_000})
	c.ExpectRequestError(wire.ProtocolPullWait, 5)

	g.release <- struct{}{}
	if pc := c.ExpectConfirm(); pc.Status != wire.StatusOK || pc.RequestID != 1 {
		t.Fatalf("confirm %+v, want request 1 OK", pc)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if m := h.Metrics(); m.PushErrors != 0 || m.Pushes != 1 {
		t.Fatalf("metrics %+v, want no push error and 1 push", m)
	}
	// Refusals while stopping are routine (clients send them again): not a warning each.
	if text := logs.String(); strings.Contains(text, "error repl") {
		t.Errorf("requests refused while stopping were logged at Info or above:\n%s", text)
	}
}

// TestShutdownDeadline checks that a Shutdown whose ctx ends cancels a stuck Append and
// confirms its push with status ERROR.
func TestShutdownDeadline(t *testing.T) {
	g, b := newGated(t)
	h, addr := hubtest.Start(t, b)
	c := hubtest.Dial(t, addr)
	s := c.Create("stuck")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("x")})
	<-g.started // never released
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with an expired ctx and a stuck append returned nil")
	}
	if pc := c.ExpectConfirm(); pc.Status != wire.StatusError {
		t.Fatalf("stuck push confirmed %v, want ERROR", pc.Status)
	}
}
