package client_test

// More tests found by mutation testing (a second round, after mutation_test.go): each one
// fails for a specific way the client could be wrong that the rest of the suite missed.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// TestWindowBoundsInclusive checks that the window bounds are inclusive: 1 and MaxWindow
// are valid windows.
func TestWindowBoundsInclusive(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	for _, n := range []int{1, client.MaxWindow} {
		p, err := client.NewPublisher(t.Context(), c, "window-bounds", client.WithWindow(n))
		if err != nil {
			t.Fatalf("WithWindow(%d): %v, want it accepted", n, err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBatchFitsAFrame checks that a publisher splits a queue of messages whose bytes
// together exceed a frame into requests that each fit one: the queue is built while the hub
// cannot be reached, so the first session finds it all ready at once, and every message is
// confirmed.
func TestBatchFitsAFrame(t *testing.T) {
	const n, size = 12, 16 << 10 // 192 KiB together: at least three frames
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	px.SetRefuse(true)
	p := newPublisher(t, c, "batch-frame", client.WithBackoff(fastBackoff))
	ctx := t.Context()
	acks := make([]*client.Ack, n)
	for i := range acks {
		a, err := p.Publish(ctx, msg(0, uint32(i), size))
		if err != nil {
			t.Fatal(err)
		}
		acks[i] = a
	}
	px.SetRefuse(false)
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second) // a hang guard
	defer cancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v (stats %+v)", err, p.Stats())
	}
	for i, a := range acks {
		if idx, err := a.Wait(ctx); err != nil || idx != uint64(i) {
			t.Fatalf("message %d: index %d, %v", i, idx, err)
		}
	}
}

// TestCloseReportsAnUnflushedFailure checks that Close reports a message given up on that no
// Flush reported, also when its close timeout runs out on another message (so that its own
// wait for confirms reports nothing).
func TestCloseReportsAnUnflushedFailure(t *testing.T) {
	h := startHub(t, hub.WithMaxMessageSize(100))
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p, err := client.NewPublisher(t.Context(), c, "close-unflushed", client.WithMaxRejections(1), client.WithCloseTimeout(0), client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	bad, err := p.Publish(ctx, make([]byte, 200)) // the hub refuses it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Wait(ctx); !errors.Is(err, client.ErrGaveUp) {
		t.Fatalf("ack of the refused message = %v, want ErrGaveUp", err)
	}
	px.Pause() // the next message stays unconfirmed
	if _, err := p.Publish(ctx, msg(0, 0, 8)); err != nil {
		t.Fatal(err)
	}
	err = p.Close()
	px.Resume()
	if !errors.Is(err, client.ErrGaveUp) {
		t.Fatalf("Close = %v, want an error matching ErrGaveUp (no Flush reported the message given up on)", err)
	}
}

// TestPublisherBackoffRestartsAfterProgress checks that a publisher whose sessions each
// confirm a message before they fail waits the backoff's Min before every reconnect: the
// delay grows only while no session makes progress (no jitter here, so delays are exact).
func TestPublisherBackoffRestartsAfterProgress(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	b := client.Backoff{Min: 5 * time.Millisecond, Max: 10 * time.Second, Factor: 4}
	logs := make(recordLogs, 1000)
	p := newPublisher(t, c, "backoff-progress", client.WithBackoff(b), client.WithCloseTimeout(0), client.WithPublisherLogger(slog.New(logs)))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	const rounds = 3
	for i := range rounds {
		if _, err := p.PublishSync(ctx, msg(0, uint32(2*i), 8)); err != nil { // progress
			t.Fatal(err)
		}
		px.Pause()
		sent := p.Stats().Sent
		if _, err := p.Publish(ctx, msg(0, uint32(2*i+1), 8)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the message sent", func() bool { return p.Stats().Sent > sent })
		px.ResetAll() // the session fails with the message in flight
		px.Resume()
	}
	want := slices.Repeat([]time.Duration{b.Min}, rounds)
	if got := retryDelays(t, ctx, logs, "sluice publisher: session failed; reconnecting", rounds); !slices.Equal(got, want) {
		t.Errorf("retry delays = %v, want %v (each failed session had made progress)", got, want)
	}
}

// TestRefusalBackoffRestartsAfterConfirm checks that the pause after a refused request
// starts at the backoff's Min again once a confirm arrived: the refusals before it do not
// count. One message per request, so that each refusal is one message's; here the second
// delay would be an hour, and a publisher that waited it would never confirm the message
// published after the second refusal.
func TestRefusalBackoffRestartsAfterConfirm(t *testing.T) {
	h := startHub(t, hub.WithMaxMessageSize(100))
	c := dial(t, h.Addr)
	b := client.Backoff{Min: time.Millisecond, Max: time.Hour, Factor: 1e7}
	p := newPublisher(t, c, "refusal-backoff", client.WithMaxBatch(1), client.WithMaxRejections(1), client.WithBackoff(b), client.WithCloseTimeout(0))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a hang guard
	defer cancel()
	for i := range 2 {
		bad, err := p.Publish(ctx, make([]byte, 200)) // the hub refuses it
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PublishSync(ctx, msg(0, uint32(i), 8)); err != nil {
			t.Fatalf("round %d: the message after a refusal: %v", i, err)
		}
		if _, err := bad.Wait(ctx); !errors.Is(err, client.ErrGaveUp) {
			t.Fatalf("round %d: ack of the refused message = %v, want ErrGaveUp", i, err)
		}
	}
}

// TestStoppedHandlerIsNotSkipped checks that a handler that returns an error because the
// consumer stopped (its ctx ended) does not count as failed, even under the Skip policy: the
// message is not skipped, and the position saved at the end of Run is that message's, so
// the next Run delivers it again.
func TestStoppedHandlerIsNotSkipped(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	const stream, stuck = "stopped-handler", 3
	publishN(t, c, stream, 6)
	reached := make(chan struct{})
	cons, err := client.NewConsumer(c, stream, func(ctx context.Context, m core.Message) error {
		if m.Index == stuck {
			close(reached)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}, client.WithClientID("stopper"), client.WithErrorPolicy(client.Skip), client.WithHandlerRetries(0, fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	<-reached
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if st := cons.Stats(); st.Skipped != 0 || st.Handled != stuck {
		t.Errorf("stats = %+v, want nothing skipped and %d handled", st, stuck)
	}
	saved, err := h.Store.(core.IndexStorage).GetIndex(t.Context(), "stopper", stream, 0)
	if err != nil || saved != stuck {
		t.Fatalf("saved index = %d, %v; want %d (the message whose handler was stopped)", saved, err, stuck)
	}
}

// TestIdleCloseAfterAFailedSession checks that the requests of a failed session are
// forgotten once the next session resent their messages: when that session's connection
// later closes for being idle, nothing is in flight, so it is no failure (a debug record,
// no warning, no retry counted).
func TestIdleCloseAfterAFailedSession(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr(), client.WithIdleTimeout(time.Second))
	logs := make(recordLogs, 100)
	p := newPublisher(t, c, "idle-after-failure", client.WithBackoff(fastBackoff), client.WithPublisherLogger(slog.New(logs)))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	if _, err := p.PublishSync(ctx, msg(0, 0, 8)); err != nil { // the session is up
		t.Fatal(err)
	}
	px.Pause()
	if _, err := p.Publish(ctx, msg(0, 1, 8)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message sent", func() bool { return p.Stats().Sent == 2 })
	px.ResetAll() // the session fails with the message in flight
	px.Resume()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Two session records: the failure, then the idle end of the next session.
	var levels []slog.Level
	for len(levels) < 2 {
		select {
		case r := <-logs:
			if strings.HasPrefix(r.Message, "sluice publisher: session") {
				levels = append(levels, r.Level)
			}
		case <-ctx.Done():
			t.Fatalf("session records %v: the idle session never ended", levels)
		}
	}
	if levels[0] != slog.LevelWarn || levels[1] != slog.LevelDebug {
		t.Fatalf("session record levels = %v, want [WARN DEBUG]: the idle end of the session after the failure counted as a failure", levels)
	}
	if st := p.Stats(); st.Retried != 1 {
		t.Fatalf("stats %+v, want 1 retry", st)
	}
}

// TestLongPollNotTimedOut checks that the consumer waits for a pull's answer for the pull
// wait plus its request timeout: a request timeout shorter than the pull wait does not fail
// the long polls of an idle stream.
func TestLongPollNotTimedOut(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	const stream = "long-poll-timeout"
	publishN(t, c, stream, 1)
	answered := make(chan int, 10)
	cons, err := client.NewConsumer(c, stream, func(context.Context, core.Message) error { return nil },
		client.WithPullWait(800*time.Millisecond), client.WithConsumerRequestTimeout(400*time.Millisecond),
		client.WithConsumerBackoff(fastBackoff),
		client.WithConsumerPullAnswered(func(n int) { answered <- n }))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "an empty answer or a failed pull", func() bool {
		if cons.Stats().PullErrors > 0 {
			return true
		}
		select {
		case n := <-answered:
			return n == 0
		default:
			return false
		}
	})
	_ = stop()
	if st := cons.Stats(); st.PullErrors != 0 || st.Handled != 1 {
		t.Fatalf("stats %+v: want 1 handled and no failed pull (the long poll timed out)", st)
	}
}

// TestCloseRemovesConfirmedFromOutbox checks that Close deletes from the outbox the
// messages confirmed while it waited for them: the next publisher on the outbox finds none
// (it would send them again). The confirms are held until Close waits for them. Whether
// the run loop deleted some of them before Close does varies from run to run, hence a few
// rounds.
func TestCloseRemovesConfirmedFromOutbox(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), testCloseRemovesConfirmedFromOutbox)
	}
}

func testCloseRemovesConfirmedFromOutbox(t *testing.T) {
	const stream, n = "outbox-close-confirmed", 50
	held := holdConfirms(t, stream, n, 8)
	px, c, p1, path, ctx := held.px, held.c, held.p, held.path, t.Context()
	closed := make(chan error, 1)
	go func() { closed <- p1.Close() }()
	waitFor(t, "Close to wait for confirms", func() bool {
		_, err := p1.Publish(ctx, msg(0, 0, 8))
		return errors.Is(err, core.ErrClosed)
	})
	px.Resume()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	p2, err := client.NewPublisher(ctx, c, stream, client.WithOutbox(path), client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if st := p2.Stats(); st.Recovered != 0 {
		t.Fatalf("Recovered = %d, want 0: Close left confirmed messages in the outbox", st.Recovered)
	}
}

// TestClosedSessionFreesItsAddress checks that a session's reply address leaves the node
// when the session ends (here the publisher's, at Close): a fake hub on the client's own node
// records the address its push requests came from, which is free afterwards.
func TestClosedSessionFreesItsAddress(t *testing.T) {
	node := fakeNode(t)
	registerFakeStreamService(t, node)
	var mu sync.Mutex
	var addrs []string
	if err := node.Register("fake.s", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, err := wire.DecodePushBatchRequest(bp.Data)
		if err != nil {
			return err
		}
		mu.Lock()
		addrs = append(addrs, string(m.ReturnRoute[0].Value))
		mu.Unlock()
		fakeReply(ctx, node, m, wire.ProtocolPushBatch, confirmAll(req))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	c := fakeClient(t, node)
	p, err := client.NewPublisher(t.Context(), c, "s", client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishSync(t.Context(), []byte("m")); err != nil {
		_ = p.Close()
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(addrs) == 0 {
		t.Fatal("no push request reached the fake hub")
	}
	for _, a := range addrs {
		if err := node.Register(a, routing.WorkerFunc(func(context.Context, *routing.Message) error { return nil })); err != nil {
			t.Errorf("register the closed session's address %s: %v, want it free", a, err)
		}
	}
}

// TestFinalSaveWaitsForUnhandled checks that the save at the end of Run waits for what the
// handler handed on (WithUnhandled) to be handled, rather than saving the position below
// it at once: here the message at index 0 is reported unhandled until a few checks after
// Run was told to stop, and the position saved at the end is past every message.
func TestFinalSaveWaitsForUnhandled(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	const stream, n = "final-save-unhandled", 5
	publishN(t, c, stream, n)
	var stopping atomic.Bool
	var checks atomic.Int32
	unhandled := func() (uint64, bool) {
		if !stopping.Load() || checks.Add(1) <= 3 {
			return 0, true // the message at index 0 is not handled yet
		}
		return 0, false
	}
	cons, err := client.NewConsumer(c, stream, func(context.Context, core.Message) error { return nil },
		client.WithClientID("final"), client.WithUnhandled(unhandled))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "the stream handled", func() bool { pos, _ := cons.Position(); return pos == n })
	stopping.Store(true)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	saved, err := h.Store.(core.IndexStorage).GetIndex(t.Context(), "final", stream, 0)
	if err != nil || saved != n {
		t.Fatalf("saved index = %d, %v; want %d (saved once what was handed on was handled)", saved, err, n)
	}
}

// TestNewSessionSavesUnsavedPosition checks that a session saves at its start the position
// that the previous session handled but could not save (its connection was lost with the
// save on its way): the saved index reaches the position while the stream stays idle and
// Run goes on.
func TestNewSessionSavesUnsavedPosition(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	const stream, n = "unsaved-position", 3
	publishN(t, c, stream, n)
	lastHandled := make(chan struct{})
	cons, err := client.NewConsumer(c, stream, func(_ context.Context, m core.Message) error {
		if m.Index == n-1 {
			px.Pause() // the save after this page is held
			close(lastHandled)
		}
		return nil
	}, client.WithClientID("unsaved"), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, cons)
	<-lastHandled
	px.ResetAll() // the session fails with its save lost
	px.Resume()
	waitFor(t, "the position saved by the next session", func() bool {
		saved, err := h.Store.(core.IndexStorage).GetIndex(t.Context(), "unsaved", stream, 0)
		return err == nil && saved == n
	})
	if st := cons.Stats(); st.Handled != n {
		t.Fatalf("stats %+v, want %d handled", st, n)
	}
}

// TestExitSavesNothingUnmoved checks that a Run that ends before it read anything saves no
// position: a saved 0 would make the next Run start there instead of at the start index.
func TestExitSavesNothingUnmoved(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	ix, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	cons, err := client.NewConsumer(c, "exit-unmoved", func(context.Context, core.Message) error { return nil },
		client.WithClientID("unmoved"), client.WithIndexStorage(ix), client.WithStartIndex(5))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := cons.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if i, err := ix.GetIndex(t.Context(), "unmoved", "exit-unmoved", 0); !errors.Is(err, core.ErrIndexNotFound) {
		t.Fatalf("saved index = %d, %v; want none", i, err)
	}
}

// TestConsumerBackoffRestartsAfterProgress checks that a consumer whose sessions each
// receive a message before they fail waits the backoff's Min before every reconnect (no
// jitter here, so delays are exact).
func TestConsumerBackoffRestartsAfterProgress(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	const stream, rounds = "consumer-backoff-progress", 3
	p := newPublisher(t, dial(t, h.Addr), stream)
	b := client.Backoff{Min: 5 * time.Millisecond, Max: 10 * time.Second, Factor: 4}
	logs := make(recordLogs, 1000)
	cons, err := client.NewConsumer(dial(t, px.Addr()), stream, func(context.Context, core.Message) error { return nil },
		client.WithConsumerBackoff(b), client.WithConsumerLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	runConsumer(t, cons)
	for i := range rounds {
		if _, err := p.PublishSync(ctx, msg(0, uint32(i), 8)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the message handled", func() bool { return cons.Stats().Handled == uint64(i+1) })
		px.ResetAll() // the session that received it fails
	}
	want := slices.Repeat([]time.Duration{b.Min}, rounds)
	if got := retryDelays(t, ctx, logs, "sluice consumer: session failed; reconnecting", rounds); !slices.Equal(got, want) {
		t.Errorf("retry delays = %v, want %v (each failed session had received a message)", got, want)
	}
}

// TestSaveIndexReplyWithoutIndex checks that a reply to an index save that says OK but
// carries no index (a fake hub on the client's own node breaks the protocol so) is not
// taken for a save: Conn.SaveIndex returns an error, not 0.
func TestSaveIndexReplyWithoutIndex(t *testing.T) {
	node := fakeNode(t)
	if err := node.Register(client.DefaultIndexService, routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, err := wire.DecodeIndexSaveRequest(bp.Data)
		if err != nil {
			return err
		}
		fakeReply(ctx, node, m, wire.ProtocolIndexSave, wire.IndexReply{RequestID: req.RequestID, Status: wire.StatusOK})
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	c := fakeClient(t, node)
	conn, err := c.Open(t.Context(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if i, err := conn.SaveIndex(t.Context(), "id", "s", 0, 7); err == nil {
		t.Fatalf("SaveIndex = %d, nil; want an error (the reply holds no index)", i)
	}
}
