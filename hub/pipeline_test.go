package hub_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// asyncGated is a core.AsyncAppender whose appends are stored at once (in start order) but
// whose done the test calls, in any order it likes.
type asyncGated struct {
	core.Storage
	calls chan *asyncCall // one per AppendAsync, in start order
}

type asyncCall struct {
	n    int
	idx  []uint64
	err  error
	done func([]uint64, error)
}

func (g *asyncGated) AppendAsync(ctx context.Context, s string, p int, msgs [][]byte, done func([]uint64, error)) {
	idx, err := g.Storage.Append(ctx, s, p, msgs)
	g.calls <- &asyncCall{n: len(msgs), idx: idx, err: err, done: done}
}

var _ core.AsyncAppender = (*asyncGated)(nil)

func newAsyncGated(t *testing.T) (*asyncGated, *core.Backend) {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	g := &asyncGated{Storage: s, calls: make(chan *asyncCall, 100)}
	return g, &core.Backend{Storage: g, Index: s}
}

func (g *asyncGated) next(t *testing.T, wantMsgs int) *asyncCall {
	t.Helper()
	c := <-g.calls
	if c.n != wantMsgs {
		t.Fatalf("AppendAsync of %d messages, want %d", c.n, wantMsgs)
	}
	return c
}

func expectConfirms(t *testing.T, c *hubtest.Conn, status wire.Status, ids ...uint64) []wire.PushConfirm {
	t.Helper()
	var out []wire.PushConfirm
	for _, id := range ids {
		pc := c.ExpectConfirm()
		if pc.Status != status || pc.RequestID != id {
			t.Fatalf("confirm %+v, want request %d with status %v", pc, id, status)
		}
		out = append(out, pc)
	}
	return out
}

// TestPipelinedAppends checks that with an AsyncAppender the partition keeps up to
// WithMaxAppendsInFlight appends in flight, batches what arrives meanwhile, and confirms in
// start order even when the backend reports out of order.
func TestPipelinedAppends(t *testing.T) {
	g, b := newAsyncGated(t)
	h, addr := hubtest.Start(t, b, hub.WithMaxAppendsInFlight(2))
	c := hubtest.Dial(t, addr)
	s := c.Create("pipelined")

	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 0, Data: []byte("a")})
	first := g.next(t, 1)
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("b")})
	second := g.next(t, 1) // started while the first is in flight
	for i := uint64(2); i <= 4; i++ {
		c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: i, Data: []byte("c")})
	}
	queued(t, h, "pipelined", 3) // both slots busy: the rest waits
	second.done(second.idx, second.err)
	first.done(first.idx, first.err)
	for i, pc := range expectConfirms(t, c, wire.StatusOK, 0, 1) {
		if pc.Index != uint64(i) {
			t.Fatalf("confirm %+v, want index %d", pc, i)
		}
	}
	third := g.next(t, 3)
	third.done(third.idx, third.err)
	for i, pc := range expectConfirms(t, c, wire.StatusOK, 2, 3, 4) {
		if pc.Index != uint64(i+2) {
			t.Fatalf("confirm %+v, want index %d", pc, i+2)
		}
	}
	if m := h.Metrics(); m.Appends != 3 || m.MaxBatch != 3 || m.Pushes != 5 {
		t.Fatalf("metrics %+v, want 3 appends, max batch 3, 5 pushes", m)
	}
	if pr := c.Pull(s, 9, 0, 10); len(pr.Messages) != 5 || string(pr.Messages[1].Data) != "b" {
		t.Fatalf("pull %+v, want the 5 messages in push order", pr)
	}
}

// TestPipelinedFailure checks that a failed append confirms its pushes with ERROR while the
// appends started after it are confirmed by their own outcome.
func TestPipelinedFailure(t *testing.T) {
	g, b := newAsyncGated(t)
	h, addr := hubtest.Start(t, b)
	c := hubtest.Dial(t, addr)
	s := c.Create("failing")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("x")})
	first := g.next(t, 1)
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("y")})
	second := g.next(t, 1)
	second.done(second.idx, nil)
	first.done(nil, core.ErrUnavailable)
	expectConfirms(t, c, wire.StatusError, 1)
	expectConfirms(t, c, wire.StatusOK, 2)
	if m := h.Metrics(); m.PushErrors != 1 || m.Pushes != 1 {
		t.Fatalf("metrics %+v, want 1 push error, 1 push", m)
	}
}

// TestPipelinedShutdown checks that Shutdown appends what is queued and confirms every
// append in flight once the backend reports.
func TestPipelinedShutdown(t *testing.T) {
	g, b := newAsyncGated(t)
	h, addr := hubtest.Start(t, b, hub.WithMaxAppendsInFlight(2))
	c := hubtest.Dial(t, addr)
	s := c.Create("draining")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("x")})
	first := g.next(t, 1)
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("y")})
	second := g.next(t, 1)
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 3, Data: []byte("z")})
	queued(t, h, "draining", 1)

	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	first.done(first.idx, first.err)
	second.done(second.idx, second.err)
	third := g.next(t, 1)
	third.done(third.idx, third.err)
	expectConfirms(t, c, wire.StatusOK, 1, 2, 3)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestPipelinedShutdownDeadline checks that a Shutdown whose ctx ends confirms the appends
// still in flight with ERROR without waiting for the backend.
func TestPipelinedShutdownDeadline(t *testing.T) {
	g, b := newAsyncGated(t)
	h, addr := hubtest.Start(t, b)
	c := hubtest.Dial(t, addr)
	s := c.Create("stuck")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("x")})
	g.next(t, 1) // never reported
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("y")})
	g.next(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an expired ctx and stuck appends = %v, want context.Canceled", err)
	}
	expectConfirms(t, c, wire.StatusError, 1, 2)
}

func TestWithMaxAppendsInFlightInvalid(t *testing.T) {
	_, b := newAsyncGated(t)
	for _, n := range []int{0, -1, 1025} {
		if h, err := hub.New(b, hub.WithMaxAppendsInFlight(n)); !errors.Is(err, core.ErrInvalidOption) {
			if h != nil {
				h.Close()
			}
			t.Errorf("New(WithMaxAppendsInFlight(%d)) = %v, want ErrInvalidOption", n, err)
		}
	}
}

// TestMaxAppendsInFlightOne checks that 1 keeps one append at a time with an AsyncAppender.
func TestMaxAppendsInFlightOne(t *testing.T) {
	g, b := newGated(t)
	ag := &asyncGatedSync{gated: g}
	h, addr := hubtest.Start(t, &core.Backend{Storage: ag, Index: b.Index}, hub.WithMaxAppendsInFlight(1))
	c := hubtest.Dial(t, addr)
	s := c.Create("one")
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("x")})
	<-g.started
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: 2, Data: []byte("y")})
	queued(t, h, "one", 1) // not started while the first Append runs
	g.release <- struct{}{}
	<-g.started
	g.release <- struct{}{}
	expectConfirms(t, c, wire.StatusOK, 1, 2)
}

// asyncGatedSync declares AppendAsync but must never be asked for it.
type asyncGatedSync struct{ *gated }

func (a *asyncGatedSync) AppendAsync(_ context.Context, _ string, _ int, _ [][]byte, done func([]uint64, error)) {
	done(nil, errors.New("AppendAsync called with WithMaxAppendsInFlight(1)"))
}
