package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

func TestPublishAndConsume(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "round-trip", client.WithWindow(32))
	ctx := t.Context()

	const n = 500
	acks := make([]*client.Ack, 0, n)
	for i := range n {
		a, err := p.Publish(ctx, msg(0, uint32(i), 16))
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		acks = append(acks, a)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for i, a := range acks {
		idx, err := a.Wait(ctx)
		if err != nil || idx != uint64(i) { // the memory backend's indexes are dense from 0
			t.Fatalf("ack %d = %d, %v; want %d, nil", i, idx, err, i)
		}
	}
	idx, err := p.PublishSync(ctx, msg(0, n, 16))
	if err != nil || idx != n {
		t.Fatalf("PublishSync = %d, %v; want %d, nil", idx, err, n)
	}
	st := p.Stats()
	if st.Published != n+1 || st.Confirmed != n+1 || st.InFlight != 0 {
		t.Fatalf("publisher stats = %+v", st)
	}

	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "round-trip", func(_ context.Context, m core.Message) error {
		oc.add(m.Data)
		return nil
	}, client.WithClientID("reader"), client.WithPullLimit(64), client.WithPullMaxBytes(100), client.WithPullWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "all messages consumed", func() bool { return oc.count(0) == n+1 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	oc.check(t)
	if oc.dups != 0 {
		t.Errorf("%d duplicates without any fault", oc.dups)
	}
	saved, err := h.Store.(core.IndexStorage).GetIndex(ctx, "reader", "round-trip", 0)
	if err != nil || saved != n+1 {
		t.Errorf("saved index = %d, %v; want %d", saved, err, n+1)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := p.Publish(ctx, []byte("late")); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
}

func TestPlainOckamPush(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "plain", client.WithMaxBatch(1))
	for i := range 20 {
		idx, err := p.PublishSync(t.Context(), msg(0, uint32(i), 8))
		if err != nil || idx != uint64(i) {
			t.Fatalf("PublishSync %d = %d, %v", i, idx, err)
		}
	}
}

func TestWindowBackPressure(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p := newPublisher(t, c, "window", client.WithWindow(4), client.WithBackoff(fastBackoff))
	ctx := t.Context()
	if _, err := p.PublishSync(ctx, msg(0, 0, 8)); err != nil { // the session is up
		t.Fatal(err)
	}
	px.Pause()
	var acks []*client.Ack
	for i := 1; i <= 4; i++ {
		a, err := p.Publish(ctx, msg(0, uint32(i), 8))
		if err != nil {
			t.Fatalf("Publish %d with room in the window: %v", i, err)
		}
		acks = append(acks, a)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := p.Publish(short, msg(0, 5, 8))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with a full window = %v, want context.DeadlineExceeded", err)
	}
	if st := p.Stats(); st.InFlight != 4 {
		t.Fatalf("InFlight = %d, want 4", st.InFlight)
	}
	px.Resume()
	for i, a := range acks {
		if idx, err := a.Wait(ctx); err != nil || idx != uint64(i+1) {
			t.Fatalf("ack %d = %d, %v", i+1, idx, err)
		}
	}
	if _, err := p.PublishSync(ctx, msg(0, 5, 8)); err != nil {
		t.Fatalf("Publish after the window drained: %v", err)
	}
}

func TestTimeoutAndRetry(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p := newPublisher(t, c, "timeout", client.WithRequestTimeout(100*time.Millisecond), client.WithBackoff(fastBackoff))
	ctx := t.Context()
	if _, err := p.PublishSync(ctx, msg(0, 0, 8)); err != nil {
		t.Fatal(err)
	}
	px.Pause() // requests are held: they time out and are sent again
	var acks []*client.Ack
	for i := 1; i <= 10; i++ {
		a, err := p.Publish(ctx, msg(0, uint32(i), 8))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	waitFor(t, "a request timeout", func() bool { return p.Stats().Timeouts > 0 })
	px.Resume()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st := p.Stats()
	if st.Retried == 0 || st.Resent < 10 || st.DuplicatesPossible == 0 {
		t.Errorf("stats after timeouts = %+v, want Retried > 0, Resent >= 10, DuplicatesPossible > 0", st)
	}
	// Every message is in the stream at least once, the first occurrences in order.
	oc := newOrderChecker()
	msgs, err := h.Store.Fetch(ctx, "timeout", 0, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		oc.add(m.Data)
	}
	oc.check(t)
	if oc.count(0) != 11 {
		t.Fatalf("stream holds %d distinct messages in order, want 11", oc.count(0))
	}
	for i, a := range acks {
		idx, err := a.Wait(ctx)
		if err != nil {
			t.Fatalf("ack %d: %v", i+1, err)
		}
		if _, seq := parse(msgs[idx].Data); seq != uint32(i+1) {
			t.Errorf("ack %d reports index %d, which holds seq %d", i+1, idx, seq)
		}
	}
	t.Logf("stats: %+v; stream length %d for 11 messages", st, len(msgs))
}

// TestConsumerPullTimesOut: a consumer whose hub stops answering (every byte held) fails its
// session once a pull waited for the pull wait plus the request timeout, says so with an
// error matching ErrTimeout, and goes on with a new session when the hub answers again.
func TestConsumerPullTimesOut(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	const stream = "consumer-timeout"
	pub := newPublisher(t, dial(t, h.Addr), stream) // not through the proxy
	var handled atomic.Int64
	sessionErrs := make(chan error, 100)
	cons, err := client.NewConsumer(dial(t, px.Addr()), stream, func(context.Context, core.Message) error {
		handled.Add(1)
		return nil
	}, client.WithPullWait(100*time.Millisecond), client.WithConsumerRequestTimeout(200*time.Millisecond),
		client.WithConsumerBackoff(fastBackoff),
		client.WithConsumerSessionErrors(func(err error) {
			select {
			case sessionErrs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, cons)
	ctx := t.Context()
	if _, err := pub.PublishSync(ctx, msg(0, 0, 8)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first message handled", func() bool { return handled.Load() == 1 })

	px.Pause() // the hub's answers, and everything else, are held
	select {
	case err := <-sessionErrs:
		if !errors.Is(err, client.ErrTimeout) {
			t.Fatalf("session error %v, want one matching client.ErrTimeout", err)
		}
	case <-time.After(30 * time.Second): // the idle timeout (60s) would end it later
		t.Fatalf("no session failed within 30s of the hub falling silent (pull wait 100ms, request timeout 200ms); stats %+v", cons.Stats())
	}
	px.Resume()
	if _, err := pub.PublishSync(ctx, msg(0, 1, 8)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second message handled", func() bool { return handled.Load() == 2 })
	if st := cons.Stats(); st.PullErrors == 0 || st.Reconnects == 0 {
		t.Errorf("stats %+v, want a failed pull and a new session", st)
	}
}

func TestReconnectAfterReset(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p := newPublisher(t, c, "reset", client.WithBackoff(fastBackoff), client.WithWindow(16))
	ctx := t.Context()

	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "reset", func(_ context.Context, m core.Message) error {
		oc.add(m.Data)
		return nil
	}, client.WithClientID("r"), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff), client.WithConsumerRequestTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, cons)

	const n = 300
	for i := range n {
		if i%50 == 25 {
			px.ResetAll()
		}
		if _, err := p.Publish(ctx, msg(0, uint32(i), 32)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := p.Flush(ctx); err != nil { // the first session is established
				t.Fatal(err)
			}
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	waitFor(t, "all messages consumed", func() bool { return oc.count(0) == n })
	oc.check(t)
	st := p.Stats()
	if st.Reconnects == 0 {
		t.Errorf("publisher stats = %+v, want Reconnects > 0 after resets", st)
	}
	t.Logf("publisher %+v; consumer %+v; duplicates seen %d; proxy %+v", st, cons.Stats(), oc.dups, px.Stats())
}

func TestOutboxSurvivesRestart(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "outbox.db")

	px.Pause() // nothing gets confirmed before the "device restart"
	p1, err := client.NewPublisher(ctx, c, "outbox", client.WithOutbox(path), client.WithCloseTimeout(0), client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var acks []*client.Ack
	for i := range n {
		a, err := p1.Publish(ctx, msg(0, uint32(i), 100))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	if err := p1.Close(); err == nil {
		t.Fatal("Close with unconfirmed messages returned nil")
	}
	for _, a := range acks {
		if _, err := a.Wait(ctx); !errors.Is(err, core.ErrClosed) {
			t.Fatalf("ack after Close = %v, want ErrClosed", err)
		}
	}

	// A new client (a restarted device) on the same outbox file.
	px.ResetAll()
	px.Resume()
	c2 := dial(t, px.Addr())
	p2 := newPublisher(t, c2, "outbox", client.WithOutbox(path), client.WithBackoff(fastBackoff))
	if st := p2.Stats(); st.Recovered != n {
		t.Fatalf("Recovered = %d, want %d", st.Recovered, n)
	}
	if _, err := p2.PublishSync(ctx, msg(0, n, 100)); err != nil {
		t.Fatal(err)
	}
	if err := p2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	msgs, err := h.Store.Fetch(ctx, "outbox", 0, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	oc := newOrderChecker()
	for _, m := range msgs {
		oc.add(m.Data)
	}
	oc.check(t)
	if oc.count(0) != n+1 {
		t.Fatalf("stream holds %d distinct messages in order, want %d", oc.count(0), n+1)
	}
	// The outbox is empty now: a third publisher recovers nothing.
	p3 := newPublisher(t, c2, "outbox", client.WithOutbox(path))
	if st := p3.Stats(); st.Recovered != 0 {
		t.Fatalf("Recovered after everything was confirmed = %d, want 0", st.Recovered)
	}
	if _, err := client.NewPublisher(ctx, c2, "other-stream", client.WithOutbox(filepath.Join(t.TempDir(), "x.db"))); err != nil {
		t.Fatal(err)
	}
}

func TestOutboxOfAnotherStream(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	path := filepath.Join(t.TempDir(), "outbox.db")
	p := newPublisher(t, c, "one", client.WithOutbox(path))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.NewPublisher(t.Context(), c, "two", client.WithOutbox(path)); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("NewPublisher on another stream's outbox = %v, want ErrInvalidOption", err)
	}
}

// publishN publishes n messages and waits for their confirms.
func publishN(t *testing.T, c *client.Client, stream string, n int) {
	t.Helper()
	p := newPublisher(t, c, stream)
	for i := range n {
		if _, err := p.Publish(t.Context(), msg(0, uint32(i), 8)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestConsumerResumesFromSavedIndex(t *testing.T) {
	for _, local := range []bool{false, true} {
		name := "hub-index"
		if local {
			name = "local-index"
		}
		t.Run(name, func(t *testing.T) {
			h := startHub(t)
			c := dial(t, h.Addr)
			publishN(t, c, "resume", 20)
			var opts []client.ConsumerOption
			opts = append(opts, client.WithClientID("dev-1"), client.WithPullLimit(3), client.WithPullWait(50*time.Millisecond))
			if local {
				ix, err := memory.New(nil)
				if err != nil {
					t.Fatal(err)
				}
				opts = append(opts, client.WithIndexStorage(ix))
			}

			// The first consumer handles 0..9 and is stopped while handling 10.
			ctx, cancel := context.WithCancel(t.Context())
			var seen []uint64
			c1, err := client.NewConsumer(c, "resume", func(ctx context.Context, m core.Message) error {
				if m.Index == 10 {
					cancel()
					return ctx.Err()
				}
				seen = append(seen, m.Index)
				return nil
			}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := c1.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			if len(seen) != 10 || seen[9] != 9 {
				t.Fatalf("first consumer handled %v, want 0..9", seen)
			}
			if pos, ok := c1.Position(); !ok || pos != 10 {
				t.Fatalf("Position = %d, %v; want 10, true", pos, ok)
			}

			// The second consumer with the same client id starts at 10.
			var got []uint64
			c2, err := client.NewConsumer(c, "resume", func(_ context.Context, m core.Message) error {
				got = append(got, m.Index)
				return nil
			}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			stop := runConsumer(t, c2)
			waitFor(t, "the rest consumed", func() bool { pos, _ := c2.Position(); return pos == 20 })
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v", err)
			}
			if len(got) != 10 || got[0] != 10 || got[9] != 19 {
				t.Fatalf("second consumer handled %v, want 10..19", got)
			}
		})
	}
}

func TestHandlerErrorPolicies(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	publishN(t, c, "policy", 10)
	boom := errors.New("boom")
	retry := client.Backoff{Min: time.Millisecond, Max: time.Millisecond, Factor: 1}

	t.Run("stop", func(t *testing.T) {
		var calls atomic.Int32
		cons, err := client.NewConsumer(c, "policy", func(_ context.Context, m core.Message) error {
			if m.Index == 5 {
				calls.Add(1)
				return boom
			}
			return nil
		}, client.WithClientID("stopper"), client.WithHandlerRetries(2, retry), client.WithErrorPolicy(client.Stop))
		if err != nil {
			t.Fatal(err)
		}
		err = cons.Run(t.Context())
		var he *client.HandlerError
		if !errors.As(err, &he) || !errors.Is(err, boom) || he.Index != 5 || he.Attempts != 3 {
			t.Fatalf("Run = %v, want a HandlerError at index 5 after 3 attempts wrapping boom", err)
		}
		if calls.Load() != 3 {
			t.Fatalf("handler called %d times on the failing message, want 3", calls.Load())
		}
		saved, err := h.Store.(core.IndexStorage).GetIndex(t.Context(), "stopper", "policy", 0)
		if err != nil || saved != 5 {
			t.Fatalf("saved index = %d, %v; want 5 (the failed message is next)", saved, err)
		}
		if st := cons.Stats(); st.HandlerErrors != 3 || st.Handled != 5 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("skip", func(t *testing.T) {
		var handled []uint64
		cons, err := client.NewConsumer(c, "policy", func(_ context.Context, m core.Message) error {
			if m.Index == 5 {
				return boom
			}
			handled = append(handled, m.Index)
			return nil
		}, client.WithClientID("skipper"), client.WithHandlerRetries(1, retry), client.WithErrorPolicy(client.Skip), client.WithPullWait(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		stop := runConsumer(t, cons)
		waitFor(t, "the stream consumed", func() bool { pos, _ := cons.Position(); return pos == 10 })
		_ = stop()
		if len(handled) != 9 {
			t.Fatalf("handled %v, want every index but 5", handled)
		}
		if st := cons.Stats(); st.Skipped != 1 || st.HandlerErrors != 2 {
			t.Fatalf("stats = %+v, want 1 skipped and 2 handler errors", st)
		}
	})
}

func TestConsumerCloseStopsRun(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	cons, err := client.NewConsumer(c, "idle", func(context.Context, core.Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(context.Background()) }()
	waitFor(t, "Run to start", func() bool { _, ok := cons.Position(); return ok })
	if err := cons.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run after Close = %v, want nil", err)
	}
}

func TestConsumerSurvivesHubOutage(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	publishN(t, c, "outage", 5)
	var n atomic.Int32
	cons, err := client.NewConsumer(c, "outage", func(context.Context, core.Message) error { n.Add(1); return nil },
		client.WithPullWait(20*time.Millisecond), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, cons)
	waitFor(t, "5 messages", func() bool { return n.Load() == 5 })
	px.SetRefuse(true)
	px.ResetAll()
	waitFor(t, "a failed pull", func() bool { return cons.Stats().PullErrors > 0 })
	px.SetRefuse(false)
	publishN(t, dial(t, h.Addr), "outage", 3) // 3 more, indexes 5..7
	waitFor(t, "8 messages", func() bool { return n.Load() == 8 })
	if pos, _ := cons.Position(); pos != 8 {
		t.Fatalf("Position = %d, want 8", pos)
	}
}

func TestMessageTooLarge(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "big")
	if _, err := p.Publish(t.Context(), make([]byte, client.MaxMessageSize+1)); !errors.Is(err, core.ErrMessageTooLarge) {
		t.Fatalf("Publish of an oversized message = %v, want ErrMessageTooLarge", err)
	}
	if _, err := p.PublishSync(t.Context(), make([]byte, client.MaxMessageSize)); err != nil {
		t.Fatalf("Publish of a message of MaxMessageSize: %v", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	for name, o := range map[string]client.PublisherOption{
		"window":   client.WithWindow(0),
		"window+":  client.WithWindow(client.MaxWindow + 1),
		"timeout":  client.WithRequestTimeout(0),
		"batch":    client.WithMaxBatch(0),
		"backoff":  client.WithBackoff(client.Backoff{}),
		"outbox":   client.WithOutbox(""),
		"close":    client.WithCloseTimeout(-1),
		"size":     client.WithMaxMessageSize(client.MaxMessageSize + 1),
		"size0":    client.WithMaxMessageSize(0),
		"refusals": client.WithMaxRejections(-1),
		"nil":      nil,
	} {
		if _, err := client.NewPublisher(t.Context(), c, "s", o); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("publisher %s: %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := client.NewPublisher(t.Context(), c, "bad name!"); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("bad stream name: %v", err)
	}
	h0 := func(context.Context, core.Message) error { return nil }
	for name, o := range map[string]client.ConsumerOption{
		"client id": client.WithClientID(""),
		"limit":     client.WithPullLimit(0),
		"max bytes": client.WithPullMaxBytes(0),
		"wait":      client.WithPullWait(-1),
		"retries":   client.WithHandlerRetries(-1, client.DefaultBackoff),
		"policy":    client.WithErrorPolicy(7),
		"index":     client.WithIndexStorage(nil),
	} {
		if _, err := client.NewConsumer(c, "s", h0, o); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("consumer %s: %v, want ErrInvalidOption", name, err)
		}
	}
	ix, _ := memory.New(nil)
	if _, err := client.NewConsumer(c, "s", h0, client.WithIndexStorage(ix)); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("index storage without client id: %v", err)
	}
	if _, err := client.Dial(""); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("Dial(\"\"): %v", err)
	}
	if _, err := client.Dial("x", client.WithIdleTimeout(0)); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("idle timeout 0: %v", err)
	}
}

// TestNewOnNode runs a publisher and a consumer on the hub's own node: the client reaches
// the services through an empty route, without TCP.
func TestNewOnNode(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	node := fakeNode(t)
	h, err := hub.New(&core.Backend{Storage: s, Index: s}, hub.WithNode(node))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := client.New(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := newPublisher(t, c, "local")
	for i := range 10 {
		if idx, err := p.PublishSync(t.Context(), msg(0, uint32(i), 8)); err != nil || idx != uint64(i) {
			t.Fatalf("PublishSync %d = %d, %v", i, idx, err)
		}
	}
	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "local", func(_ context.Context, m core.Message) error { oc.add(m.Data); return nil },
		client.WithPullWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, cons)
	waitFor(t, "10 messages", func() bool { return oc.count(0) == 10 })
	oc.check(t)
}

// TestClientCloseClosesChildren checks that Client.Close closes the publishers and
// consumers made from it.
func TestClientCloseClosesChildren(t *testing.T) {
	h := startHub(t)
	c, err := client.Dial(h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := client.NewPublisher(t.Context(), c, "children")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishSync(t.Context(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	cons, err := client.NewConsumer(c, "children", func(context.Context, core.Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(context.Background()) }()
	waitFor(t, "the consumer to start", func() bool { _, ok := cons.Position(); return ok })
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run after Client.Close = %v, want nil", err)
	}
	if _, err := p.Publish(t.Context(), []byte("y")); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Publish after Client.Close = %v, want ErrClosed", err)
	}
	if _, err := client.NewPublisher(t.Context(), c, "children"); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("NewPublisher after Client.Close = %v, want ErrClosed", err)
	}
}

// TestClientSecondCloseWaits: a Close called while the first is still closing (a publisher
// waits for the confirm of a message that an unreachable hub never sends) returns only once
// the first has finished, as Publisher.Close and routing.Node.Close do.
func TestClientSecondCloseWaits(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens there
	c, err := client.Dial(addr, client.WithDialTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	p, err := client.NewPublisher(t.Context(), c, "s", client.WithCloseTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(t.Context(), []byte("never confirmed")); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- c.Close() }()
	// The first Close is under way once the publisher refuses new messages; it then waits
	// up to the close timeout for the confirm, and closes the client's node last.
	waitFor(t, "the first Close to start", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := p.Publish(ctx, []byte("x"))
		return errors.Is(err, core.ErrClosed)
	})
	second := c.Close()
	err = c.Node().Register("probe", routing.WorkerFunc(func(context.Context, *routing.Message) error { return nil }))
	if !errors.Is(err, routing.ErrClosed) {
		t.Fatalf("the second Close returned while the first was still closing: the node is open (Register: %v)", err)
	}
	if ferr := <-first; ferr == nil || second != ferr {
		t.Fatalf("the second Close returned %v, the first %v; want the first's error (a message was left unconfirmed)", second, ferr)
	}
}

// TestGiveUpOnRefusedMessage checks WithMaxRejections: a message the hub keeps refusing
// (larger than its limit) fails after the given number of attempts, and the messages after
// it are delivered.
func TestGiveUpOnRefusedMessage(t *testing.T) {
	h := startHub(t, hub.WithMaxMessageSize(100))
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "refused", client.WithMaxRejections(2), client.WithBackoff(fastBackoff))
	ctx := t.Context()
	bad, err := p.Publish(ctx, make([]byte, 200))
	if err != nil {
		t.Fatal(err)
	}
	good, err := p.Publish(ctx, msg(0, 0, 8))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Wait(ctx); !errors.Is(err, client.ErrGaveUp) {
		t.Fatalf("ack of the refused message = %v, want ErrGaveUp", err)
	}
	if _, err := good.Wait(ctx); err != nil {
		t.Fatalf("ack of the next message: %v", err)
	}
	if st := p.Stats(); st.GaveUp != 1 || st.Confirmed != 1 {
		t.Fatalf("stats = %+v, want GaveUp 1, Confirmed 1", st)
	}
	small := newPublisher(t, c, "refused", client.WithMaxMessageSize(100))
	if _, err := small.Publish(ctx, make([]byte, 101)); !errors.Is(err, core.ErrMessageTooLarge) {
		t.Fatalf("Publish above WithMaxMessageSize = %v, want ErrMessageTooLarge", err)
	}
}

// TestFlushReportsUndelivered checks that Flush returns nil only when every message
// published before it was confirmed: a message given up on makes it return an error matching
// the message's (ErrGaveUp), once.
func TestFlushReportsUndelivered(t *testing.T) {
	h := startHub(t, hub.WithMaxMessageSize(100))
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "flush", client.WithMaxRejections(1), client.WithBackoff(fastBackoff))
	ctx := t.Context()
	if _, err := p.Publish(ctx, make([]byte, 200)); err != nil { // the hub refuses it
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, msg(0, 0, 8)); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); !errors.Is(err, client.ErrGaveUp) {
		t.Fatalf("Flush after a message was given up on = %v, want ErrGaveUp", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("second Flush = %v, want nil (the failure was reported)", err)
	}
	if _, err := p.PublishSync(ctx, msg(0, 1, 8)); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush after confirmed messages = %v", err)
	}
}

// logRecords is a slog.Handler that hands every record to ch (dropping it when ch is full).
type logRecords chan slog.Record

func (l logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logRecords) WithGroup(string) slog.Handler            { return l }
func (l logRecords) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r:
	default:
	}
	return nil
}

// TestIdlePublisherDialsOnNextMessage checks that a publisher with nothing to send lets its
// connection close at the client's idle timeout without treating it as a failure (no
// warning, no reconnect, no backoff), and dials again at once for its next message.
func TestIdlePublisherDialsOnNextMessage(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr, client.WithIdleTimeout(time.Second))
	logs := make(logRecords, 100)
	hour := client.Backoff{Min: time.Hour, Max: time.Hour, Factor: 1} // a backoff would block the test
	p := newPublisher(t, c, "idle-publisher", client.WithBackoff(hour), client.WithPublisherLogger(slog.New(logs)))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	if _, err := p.PublishSync(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	// Nothing arrives on the connection now: the idle timeout closes it and the session ends.
	for done := false; !done; {
		select {
		case r := <-logs:
			if !strings.HasPrefix(r.Message, "sluice publisher: session") {
				continue
			}
			if r.Level >= slog.LevelWarn {
				t.Fatalf("idle publisher logged %q at level %v", r.Message, r.Level)
			}
			done = true
		case <-ctx.Done():
			t.Fatal("the idle publisher's session never ended")
		}
	}
	if st := p.Stats(); st.Reconnects != 0 || st.Retried != 0 {
		t.Fatalf("stats %+v: an idle publisher reconnected or counted a failure", st)
	}
	if _, err := p.PublishSync(ctx, []byte("after")); err != nil {
		t.Fatalf("publish after the idle connection closed: %v", err)
	}
	if st := p.Stats(); st.Reconnects != 1 || st.Retried != 0 {
		t.Fatalf("stats %+v, want one reconnect and no failure", st)
	}
}

// TestLongPollWithinIdleTimeout checks that a long poll never outlasts the client's idle
// timeout: a consumer (and a Conn) asking for a wait longer than it on an idle stream get
// their empty answers before the connection counts as idle, instead of losing it on every
// poll.
func TestLongPollWithinIdleTimeout(t *testing.T) {
	h := startHub(t, hub.WithMaxPullWait(time.Minute))
	c := dial(t, h.Addr, client.WithIdleTimeout(2*time.Second))
	ctx := t.Context()
	conn := openWithStream(t, c, "idle")
	if msgs, err := conn.Pull(ctx, "idle", 0, 0, 10, time.Minute); err != nil || len(msgs) != 0 {
		t.Fatalf("long-poll Pull of an idle stream = %v, %v; want no message", msgs, err)
	}
	cons, err := client.NewConsumer(c, "idle", func(context.Context, core.Message) error { return nil },
		client.WithPullWait(time.Minute), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	base := h.Metrics().Pulls
	stop := runConsumer(t, cons)
	waitFor(t, "two empty long polls or a reconnect", func() bool {
		return h.Metrics().Pulls >= base+2 || cons.Stats().Reconnects > 0
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if st := cons.Stats(); st.PullErrors != 0 || st.Reconnects != 0 {
		t.Fatalf("stats %+v: the idle consumer lost its connection", st)
	}
}

// TestSessionErrorHandlers: the publisher and the consumer hand each failed session's error
// to the application (here: nothing listens at the hub's address) before they retry.
func TestSessionErrorHandlers(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens there
	c, err := client.Dial(addr, client.WithDialTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pubErrs, consErrs := make(chan error, 100), make(chan error, 100)
	keep := func(ch chan error) func(error) {
		return func(err error) {
			select {
			case ch <- err:
			default:
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := client.NewPublisher(ctx, c, "s", client.WithBackoff(fastBackoff), client.WithCloseTimeout(0), client.WithPublisherSessionErrors(keep(pubErrs)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Publish(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	cons, err := client.NewConsumer(c, "s", func(context.Context, core.Message) error { return nil },
		client.WithConsumerBackoff(fastBackoff), client.WithConsumerSessionErrors(keep(consErrs)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // stopped below
		defer close(done)
		_ = cons.Run(runCtx)
	}()
	defer func() {
		stop()
		<-done
	}()
	for name, ch := range map[string]chan error{"publisher": pubErrs, "consumer": consErrs} {
		select {
		case err := <-ch:
			var op *net.OpError
			if !errors.As(err, &op) {
				t.Errorf("%s session error %v: want the dial's *net.OpError in its chain", name, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: no session error reported while the hub is unreachable", name)
		}
	}
	if _, err := client.NewPublisher(ctx, c, "s", client.WithPublisherSessionErrors(nil)); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("nil publisher handler: %v, want ErrInvalidOption", err)
	}
	if _, err := client.NewConsumer(c, "s", func(context.Context, core.Message) error { return nil }, client.WithConsumerSessionErrors(nil)); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("nil consumer handler: %v, want ErrInvalidOption", err)
	}
}

// TestPublishWithDoneContext checks that Publish with a context that already ended publishes
// nothing, even when the window has room (a select between a free slot and ctx.Done picks
// at random).
func TestPublishWithDoneContext(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "done-ctx")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 100 {
		if a, err := p.Publish(ctx, msg(0, uint32(i), 16)); !errors.Is(err, context.Canceled) || a != nil {
			t.Fatalf("Publish %d with a done context = %v, %v; want nil, context.Canceled", i, a, err)
		}
	}
	if st := p.Stats(); st.Published != 0 {
		t.Fatalf("Published = %d after Publish with a done context, want 0", st.Published)
	}
}
