package client_test

// Tests that guard delivery guarantees which the rest of the suite left unchecked: each one
// fails for a specific way the client could be wrong (found by mutation testing).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestOutboxKeepsEveryUnconfirmedMessage checks that the outbox keeps a message until its
// confirm arrives (not merely until it was sent: here the hub stores the messages but its
// confirms are held), and that a publisher that recovered messages from the outbox writes
// its own new messages beside them rather than over one of them.
func TestOutboxKeepsEveryUnconfirmedMessage(t *testing.T) {
	const stream, n = "outbox-unconfirmed", 5
	held := holdConfirms(t, stream, n, 16, client.WithCloseTimeout(0))
	h, px, c, p1, path, ctx := held.h, held.px, held.c, held.p, held.path, t.Context()
	if err := p1.Close(); err == nil {
		t.Fatal("Close with unconfirmed messages returned nil")
	}

	// The next publisher on the outbox (the device restarted) finds the five, unconfirmed.
	p2, err := client.NewPublisher(ctx, c, stream, client.WithOutbox(path), client.WithCloseTimeout(0), client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	if st := p2.Stats(); st.Recovered != n {
		_ = p2.Close()
		t.Fatalf("Recovered = %d, want %d: the outbox dropped messages the hub had not confirmed", st.Recovered, n)
	}
	if _, err := p2.Publish(ctx, msg(0, n+1, 16)); err != nil { // durable in the outbox on return
		_ = p2.Close()
		t.Fatal(err)
	}
	if err := p2.Close(); err == nil {
		t.Fatal("Close with unconfirmed messages returned nil")
	}

	px.ResetAll()
	px.Resume()
	c3 := dial(t, px.Addr())
	p3 := newPublisher(t, c3, stream, client.WithOutbox(path), client.WithBackoff(fastBackoff))
	if st := p3.Stats(); st.Recovered != n+1 {
		t.Fatalf("Recovered = %d, want %d: a new message replaced a recovered one in the outbox", st.Recovered, n+1)
	}
	if err := p3.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := h.Store.Fetch(ctx, stream, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	oc := newOrderChecker()
	for _, m := range msgs {
		oc.add(m.Data)
	}
	oc.check(t)
	if got := oc.count(0); got != n+2 {
		t.Fatalf("stream holds %d distinct messages in order, want %d", got, n+2)
	}
}

// TestFlushWaitsForTheLastMessage checks that Flush does not return nil while a message
// published before it is unconfirmed, and that once it returns nil every such Ack is done.
func TestFlushWaitsForTheLastMessage(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p := newPublisher(t, c, "flush-last", client.WithBackoff(fastBackoff))
	ctx := t.Context()
	if _, err := p.PublishSync(ctx, msg(0, 0, 8)); err != nil { // the session is up
		t.Fatal(err)
	}
	px.PauseDirection(faultproxy.Down) // no confirm comes back
	a, err := p.Publish(ctx, msg(0, 1, 8))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = p.Flush(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with a message unconfirmed = %v, want context.DeadlineExceeded", err)
	}
	px.Resume()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Flush returned nil before the Ack of a message published before it was done")
	}
	if _, err := a.Wait(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

// TestCloseWaitsForConfirms checks that Close waits (within its close timeout) for the
// confirms of messages in flight: they are delivered and Close returns nil.
func TestCloseWaitsForConfirms(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p := newPublisher(t, c, "close-waits", client.WithBackoff(fastBackoff), client.WithCloseTimeout(time.Minute))
	ctx := t.Context()
	if _, err := p.PublishSync(ctx, msg(0, 0, 8)); err != nil { // the session is up
		t.Fatal(err)
	}
	px.PauseDirection(faultproxy.Down)
	var acks []*client.Ack
	for i := 1; i <= 3; i++ {
		a, err := p.Publish(ctx, msg(0, uint32(i), 8))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	// Publish with a done context publishes nothing; it returns ErrClosed once Close began.
	done, cancel := context.WithCancel(ctx)
	cancel()
	for i := 0; ; i++ {
		if _, err := p.Publish(done, msg(0, 99, 8)); errors.Is(err, core.ErrClosed) {
			break
		}
		if i == 10_000 {
			t.Fatal("Close did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	px.Resume()
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v, want nil: it should have waited for the confirms", err)
	}
	for i, a := range acks {
		if _, err := a.Wait(ctx); err != nil {
			t.Fatalf("ack %d after Close: %v", i+1, err)
		}
	}
}

// recordLogs is a slog.Handler that hands every record to ch (dropping it when ch is full).
type recordLogs chan slog.Record

func (l recordLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l recordLogs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l recordLogs) WithGroup(string) slog.Handler            { return l }
func (l recordLogs) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r:
	default:
	}
	return nil
}

// retryDelays returns the retry_in of the first n records with message msg.
func retryDelays(t *testing.T, ctx context.Context, logs recordLogs, msg string, n int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for len(out) < n {
		select {
		case r := <-logs:
			if r.Message != msg {
				continue
			}
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "retry_in" {
					out = append(out, a.Value.Duration())
				}
				return true
			})
		case <-ctx.Done():
			t.Fatalf("only %d %q records (%v)", len(out), msg, out)
		}
	}
	return out
}

// TestReconnectBackoffGrows checks that the publisher's and the consumer's delays between
// failed sessions grow by the backoff's factor up to its maximum (no jitter here, so the
// delays are exact) while no session succeeds.
func TestReconnectBackoffGrows(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens there
	c := dial(t, addr, client.WithDialTimeout(time.Second))
	b := client.Backoff{Min: time.Millisecond, Max: 8 * time.Millisecond, Factor: 2}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond, 8 * time.Millisecond}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()

	pubLogs := make(recordLogs, 1000)
	p := newPublisher(t, c, "backoff", client.WithBackoff(b), client.WithCloseTimeout(0), client.WithPublisherLogger(slog.New(pubLogs)))
	if _, err := p.Publish(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if got := retryDelays(t, ctx, pubLogs, "sluice publisher: session failed; reconnecting", len(want)); !slices.Equal(got, want) {
		t.Errorf("publisher retry delays = %v, want %v", got, want)
	}

	consLogs := make(recordLogs, 1000)
	cons, err := client.NewConsumer(c, "backoff", func(context.Context, core.Message) error { return nil },
		client.WithConsumerBackoff(b), client.WithConsumerLogger(slog.New(consLogs)))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	if got := retryDelays(t, ctx, consLogs, "sluice consumer: session failed; reconnecting", len(want)); !slices.Equal(got, want) {
		t.Errorf("consumer retry delays = %v, want %v", got, want)
	}
	_ = stop()
}

// TestConsumerNoDuplicatesWithoutFaults checks that, with no fault, the consumer pulls and
// hands every message exactly once, page after page.
func TestConsumerNoDuplicatesWithoutFaults(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	const n = 50
	publishN(t, c, "no-dups", n)
	var mu sync.Mutex
	var got []uint64
	cons, err := client.NewConsumer(c, "no-dups", func(_ context.Context, m core.Message) error {
		mu.Lock()
		got = append(got, m.Index)
		mu.Unlock()
		return nil
	}, client.WithClientID("once"), client.WithPullLimit(7), client.WithPullWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	waitFor(t, "the stream consumed", func() bool { pos, _ := cons.Position(); return pos == n })
	_ = stop()
	mu.Lock()
	defer mu.Unlock()
	for i, idx := range got {
		if idx != uint64(i) {
			t.Fatalf("handled %v, want 0..%d once each", got, n-1)
		}
	}
	if st := cons.Stats(); st.Received != n || st.Duplicates != 0 || st.Handled != n {
		t.Fatalf("stats %+v: want %d received and handled, no duplicate (no fault happened)", st, n)
	}
}

// flakyIndex fails the first GetIndex with core.ErrUnavailable.
type flakyIndex struct {
	core.IndexStorage
	failed atomic.Bool
}

func (f *flakyIndex) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if f.failed.CompareAndSwap(false, true) {
		return 0, fmt.Errorf("%w: test: injected get failure", core.ErrUnavailable)
	}
	return f.IndexStorage.GetIndex(ctx, clientID, stream, partition)
}

// TestConsumerGetIndexFailureIsNotNotFound checks that a failed read of the saved index is
// retried, not taken for "no saved index": the consumer resumes from the saved index (5),
// not from its start index (10), which would skip messages.
func TestConsumerGetIndexFailureIsNotNotFound(t *testing.T) {
	for _, local := range []bool{false, true} {
		name := "hub-index"
		if local {
			name = "local-index"
		}
		t.Run(name, func(t *testing.T) {
			mem, err := memory.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			ix := &flakyIndex{IndexStorage: mem}
			backend := &core.Backend{Storage: mem, Index: mem}
			opts := []client.ConsumerOption{client.WithClientID("dev"), client.WithStartIndex(10),
				client.WithPullWait(50 * time.Millisecond), client.WithConsumerBackoff(fastBackoff)}
			if local {
				opts = append(opts, client.WithIndexStorage(ix))
			} else {
				backend.Index = ix
			}
			h := startHubOn(t, backend)
			c := dial(t, h.Addr)
			const stream = "flaky-index"
			publishN(t, c, stream, 20)
			if err := mem.SaveIndex(t.Context(), "dev", stream, 0, 5); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var got []uint64
			cons, err := client.NewConsumer(c, stream, func(_ context.Context, m core.Message) error {
				mu.Lock()
				got = append(got, m.Index)
				mu.Unlock()
				return nil
			}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			stop := runConsumer(t, cons)
			waitFor(t, "the stream consumed", func() bool { pos, _ := cons.Position(); return pos == 20 })
			_ = stop()
			if !ix.failed.Load() {
				t.Fatal("the index store was never asked")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) == 0 || got[0] != 5 {
				t.Fatalf("handled %v, want 5..19: a failed GetIndex must not be read as no saved index", got)
			}
		})
	}
}

// TestRefusedBatchIsolatesTheBadMessage checks that when the hub refuses a batch (one of its
// messages is above the hub's limit, so nothing of it is stored), the publisher sends its
// messages one by one: the others are delivered, and only the bad one counts against
// WithMaxRejections and is given up on.
func TestRefusedBatchIsolatesTheBadMessage(t *testing.T) {
	h := startHub(t, hub.WithMaxMessageSize(100))
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	px.Pause() // the first session waits: the three messages are queued before it sends
	p := newPublisher(t, c, "refused-batch", client.WithMaxRejections(2), client.WithBackoff(fastBackoff))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	var acks []*client.Ack
	for _, m := range [][]byte{msg(0, 0, 8), make([]byte, 200), msg(0, 1, 8)} {
		a, err := p.Publish(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	px.Resume()
	for i, a := range acks {
		_, err := a.Wait(ctx)
		if i == 1 {
			if !errors.Is(err, client.ErrGaveUp) {
				t.Errorf("ack of the message above the hub's limit = %v, want ErrGaveUp", err)
			}
		} else if err != nil {
			t.Errorf("ack of message %d: %v", i, err)
		}
	}
	msgs, err := h.Store.Fetch(ctx, "refused-batch", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	oc := newOrderChecker()
	for _, m := range msgs {
		oc.add(m.Data)
	}
	oc.check(t)
	if got := oc.count(0); got != 2 || len(msgs) != 2 {
		t.Fatalf("stream holds %d messages (%d in order), want the two good ones", len(msgs), got)
	}
	if st := p.Stats(); st.GaveUp != 1 || st.Confirmed != 2 {
		t.Fatalf("stats %+v, want GaveUp 1, Confirmed 2", st)
	}
}

// TestResendAfterResetInOrder checks that after a lost connection the publisher resends
// every unconfirmed message, the oldest first and in their original order: here the hub
// never saw the first transmissions (they were held, then the connection was reset), so
// the stream holds each message exactly once, in publish order.
func TestResendAfterResetInOrder(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p := newPublisher(t, c, "resend-order", client.WithBackoff(fastBackoff), client.WithMaxBatch(1))
	ctx := t.Context()
	if _, err := p.PublishSync(ctx, msg(0, 0, 8)); err != nil { // the session is up
		t.Fatal(err)
	}
	px.PauseDirection(faultproxy.Up) // requests are held on their way to the hub
	const n = 4
	var acks []*client.Ack
	for i := 1; i <= n; i++ {
		a, err := p.Publish(ctx, msg(0, uint32(i), 8))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	waitFor(t, "the requests to be sent", func() bool { return p.Stats().Sent >= n+1 })
	px.ResetAll() // the held requests are lost with the connection
	px.Resume()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := h.Store.Fetch(ctx, "resend-order", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, m := range msgs {
		_, seq := parse(m.Data)
		got = append(got, seq)
	}
	if want := []uint32{0, 1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("stream holds seqs %v, want %v: every unconfirmed message resent once, in order", got, want)
	}
	for i, a := range acks {
		if idx, err := a.Wait(ctx); err != nil || idx != uint64(i+1) {
			t.Fatalf("ack %d = %d, %v; want %d", i+1, idx, err, i+1)
		}
	}
	if st := p.Stats(); st.Resent != n || st.Reconnects == 0 {
		t.Fatalf("stats %+v, want Resent %d after a reconnect", st, n)
	}
}

// TestPublisherRejectsMiscountedConfirm: a hub (a fake one on the client's own node) that
// confirms a push request with more indexes than it has messages broke the protocol; the
// publisher must not take that confirm: it fails the session and resends, and the Ack
// reports the index of the next, well-formed confirm.
func TestPublisherRejectsMiscountedConfirm(t *testing.T) {
	node := fakeNode(t)
	registerFakeStreamService(t, node)
	var confirms atomic.Int64
	if err := node.Register("fake.s", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, err := wire.DecodePushBatchRequest(bp.Data)
		if err != nil {
			return err
		}
		first := confirms.Add(1) == 1
		c := wire.PushBatchConfirm{RequestID: req.RequestID, Status: wire.StatusOK}
		for i := range req.Messages {
			if first {
				c.Indexes = append(c.Indexes, 100+uint64(i))
			} else {
				c.Indexes = append(c.Indexes, 200+uint64(i))
			}
		}
		if first { // one index too many
			c.Indexes = append(c.Indexes, 100+uint64(len(req.Messages)))
		}
		fakeReply(ctx, node, m, wire.ProtocolPushBatch, c)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	c := fakeClient(t, node)
	p, err := client.NewPublisher(t.Context(), c, "s", client.WithBackoff(fastBackoff), client.WithCloseTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	idx, err := p.PublishSync(ctx, []byte("m"))
	if err != nil || idx != 200 {
		t.Fatalf("PublishSync = %d, %v; want 200 (from the well-formed confirm after a resend)", idx, err)
	}
	if st := p.Stats(); st.Retried == 0 || st.Resent != 1 {
		t.Fatalf("stats %+v, want a failed session and one resend", st)
	}
}

// TestConfirmedCountedBeforeAck checks that a confirm is counted in Stats before its Ack
// completes: a caller whose PublishSync returned sees its message in Confirmed.
func TestConfirmedCountedBeforeAck(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "confirmed-count")
	ctx := t.Context()
	for i := range 1000 {
		if _, err := p.PublishSync(ctx, msg(0, uint32(i), 8)); err != nil {
			t.Fatal(err)
		}
		if st := p.Stats(); st.Confirmed != uint64(i+1) {
			t.Fatalf("after %d confirmed PublishSync calls, stats %+v", i+1, st)
		}
	}
}

// TestRefusalPausesSending checks that after the hub refuses a request the publisher waits
// its backoff (an hour here) before it sends anything again: neither the refused message
// (given up on at its next attempt, WithMaxRejections(1)) nor a message published after the
// refusal leaves during the pause.
func TestRefusalPausesSending(t *testing.T) {
	h := startHub(t, hub.WithMaxMessageSize(100))
	c := dial(t, h.Addr)
	refusals := make(chan error, 10)
	hour := client.Backoff{Min: time.Hour, Max: time.Hour, Factor: 1}
	p := newPublisher(t, c, "refusal-pause", client.WithMaxBatch(1), client.WithMaxRejections(1),
		client.WithBackoff(hour), client.WithCloseTimeout(0),
		client.WithPublisherSessionErrors(func(err error) {
			select {
			case refusals <- err:
			default:
			}
		}))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	bad, err := p.Publish(ctx, make([]byte, 200))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-refusals:
		if !errors.Is(err, client.ErrRejected) {
			t.Fatalf("error reported = %v, want a refusal", err)
		}
	case <-ctx.Done():
		t.Fatal("no refusal reported")
	}
	good, err := p.Publish(ctx, msg(0, 0, 8))
	if err != nil {
		t.Fatal(err)
	}
	// The pause lasts an hour: within this second nothing may be sent.
	short, stop := context.WithTimeout(ctx, time.Second)
	defer stop()
	if idx, err := good.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("message published during the pause: Wait = %d, %v; want it held (context.DeadlineExceeded)", idx, err)
	}
	select {
	case <-bad.Done():
		_, err := bad.Wait(ctx)
		t.Fatalf("the refused message was given up on during the pause: %v", err)
	default:
	}
	if st := p.Stats(); st.Sent != 1 {
		t.Fatalf("stats %+v, want one transmission during the pause", st)
	}
}

// TestConnPushRefused checks that Conn.Push reports a push the hub refused (status ERROR,
// here a message above the hub's limit) as such: an error matching ErrRejected and
// core.ErrUnavailable, with no index.
func TestConnPushRefused(t *testing.T) {
	h := startHub(t, hub.WithMaxMessageSize(100))
	c := dial(t, h.Addr)
	ctx := t.Context()
	conn := openWithStream(t, c, "conn-refused")
	idx, err := conn.Push(ctx, "conn-refused", 0, [][]byte{make([]byte, 200)})
	if !errors.Is(err, client.ErrRejected) || !errors.Is(err, core.ErrUnavailable) || len(idx) != 0 {
		t.Fatalf("Push of a message the hub refuses = %v, %v; want no index and ErrRejected, ErrUnavailable", idx, err)
	}
	if idx, err := conn.Push(ctx, "conn-refused", 0, [][]byte{[]byte("ok")}); err != nil || len(idx) != 1 || idx[0] != 0 {
		t.Fatalf("Push after a refusal = %v, %v; want [0]", idx, err)
	}
}
