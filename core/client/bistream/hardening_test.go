package bistream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// offlineDevice returns a node, a client of an unreachable hub, a transport on them, and a
// function that sends a message to the worker "w" through the stream to. Publishing
// succeeds (the publisher accepts the message) but nothing is ever confirmed.
func offlineDevice(t *testing.T, opts ...bistream.Option) (*routing.Node, *client.Client, *bistream.Transport, func(context.Context, string) error) {
	t.Helper()
	node, err := routing.NewNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	cli, err := client.Dial(hubtest.RefusedAddr(t), client.WithDialTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	tr, err := bistream.New(node, cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	send := func(ctx context.Context, to string) error {
		r, err := tr.Route(to, "")
		if err != nil {
			return err
		}
		return node.Send(ctx, wire.TransportMessage{OnwardRoute: append(r, wire.Local("w")), Payload: []byte("m")})
	}
	return node, cli, tr, send
}

// senderRegistered reports whether a stream sender (or anything else) is registered at the
// sender address for (to, ret) on node.
func senderRegistered(t *testing.T, node *routing.Node, to, ret string) bool {
	t.Helper()
	addr := bistream.SenderAddress(to, ret)
	err := node.Register(addr, routing.WorkerFunc(func(context.Context, *routing.Message) error { return nil }))
	if err == nil {
		_ = node.Unregister(addr)
		return false
	}
	if !errors.Is(err, routing.ErrAddressInUse) {
		t.Fatal(err)
	}
	return true
}

// failingSender is a routing.Sender that refuses every message.
type failingSender struct{}

func (failingSender) Send(context.Context, wire.TransportMessage) error {
	return fmt.Errorf("%w: refused", core.ErrInvalidArgument)
}

// TestFailedDeliveryIsSkipped: an inner message whose delivery fails for a reason other than
// the stop (here a sender that refuses it) is counted and skipped; it must not stop the
// subscription, which would then resume at the same message after every restart.
func TestFailedDeliveryIsSkipped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	d := newDevice(t, "x")
	var got inbox
	if err := d.node.Register("w", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error { got.add(string(m.Payload)); return nil })); err != nil {
		t.Fatal(err)
	}
	if err := d.node.RegisterSender("refuses", failingSender{}); err != nil {
		t.Fatal(err)
	}
	th.preload(ctx, d.inbox, envelope("refuses", "bad"), envelope("w", "ok"))
	d.online(th.addr, bistream.WithConsumerOptions(client.WithHandlerRetries(1, fastBackoff)))
	for len(got.get()) == 0 {
		select {
		case <-d.sub.Done():
			t.Fatalf("the subscription stopped: %v", d.sub.Err())
		case <-ctx.Done():
			t.Fatal("the message after the refused one never arrived")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if st := d.sub.Stats(); st.Undeliverable != 1 || st.Delivered != 1 {
		t.Fatalf("stats %+v, want 1 undeliverable, 1 delivered", st)
	}
}

// TestPoisonEnvelopeDoesNotStopSubscription: an envelope routed to the stream sender of its
// own return stream, with nothing after it, made the delivery fail; the subscription retried
// and stopped for good.
func TestPoisonEnvelopeDoesNotStopSubscription(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	d := newDevice(t, "x")
	var got inbox
	if err := d.node.Register("w", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error { got.add(string(m.Payload)); return nil })); err != nil {
		t.Fatal(err)
	}
	poison := bistream.Envelope{ReturnStream: "r", Message: wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local(bistream.SenderAddress("r", d.inbox))}, Payload: []byte("p")}}
	th.preload(ctx, d.inbox, poison.Append(nil), envelope("w", "ok"))
	d.online(th.addr, bistream.WithConsumerOptions(client.WithHandlerRetries(1, fastBackoff)))
	for len(got.get()) == 0 {
		select {
		case <-d.sub.Done():
			t.Fatalf("the subscription stopped: %v", d.sub.Err())
		case <-ctx.Done():
			t.Fatal("the message after the poison envelope never arrived")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// countingListener listens on a loopback port and counts the connections made to it (each
// closed at once): a device that dials an address it should not shows there. It is closed
// when the test ends.
func countingListener(t *testing.T) (net.Listener, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := new(atomic.Int32)
	go func() { // ends when the listener is closed
		for c, err := ln.Accept(); err == nil; c, err = ln.Accept() {
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln, accepted
}

// TestRemoteFirstHopRefused: a stream message whose inner route starts with a TCP address
// must not make the device dial that address (the TCP transport refuses the same for the
// messages its peers send, unless it relays).
func TestRemoteFirstHopRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	ln, accepted := countingListener(t)
	e := bistream.Envelope{Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP(ln.Addr().String()), wire.Local("x")}, Payload: []byte("x")}}
	th.preload(ctx, "inbox-x", e.Append(nil))
	cli, err := client.Dial(th.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	tr, err := bistream.New(cli.Node(), cli) // the client's node, which has a TCP transport
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	sub, err := tr.Subscribe("inbox-x", "device-x")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message handled", func() bool { st := sub.Stats(); return st.Delivered+st.Undeliverable > 0 })
	if st := sub.Stats(); st.Undeliverable != 1 {
		t.Fatalf("stats %+v: the message routed to %s was not refused", st, ln.Addr())
	}
	time.Sleep(100 * time.Millisecond) // a dial, had there been one, would have been accepted by now
	if n := accepted.Load(); n > 0 {
		t.Fatalf("a stream message made the device open %d connection(s) to %s", n, ln.Addr())
	}
}

// TestStreamSenderFirstHopRefused: a stream message whose inner route starts with a stream
// sender must not make the device publish into a stream the pusher chose.
func TestStreamSenderFirstHopRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	d := newDevice(t, "x")
	var got inbox
	if err := d.node.Register("w", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error { got.add(string(m.Payload)); return nil })); err != nil {
		t.Fatal(err)
	}
	// Naming "other" as the return stream also made the device register that sender.
	relay := bistream.Envelope{ReturnStream: "other", Message: wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local(bistream.SenderAddress("other", d.inbox)), wire.Local("w")}, Payload: []byte("relayed")}}
	th.preload(ctx, d.inbox, relay.Append(nil), envelope("w", "ok"))
	d.online(th.addr)
	waitFor(t, "the second message", func() bool { return len(got.get()) == 1 })
	if err := d.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := th.store.Fetch(ctx, "other", 0, 0, 10)
	if err != nil && !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatal(err)
	}
	if len(msgs) > 0 {
		t.Fatalf("a stream message made the device publish %d message(s) into the stream \"other\"", len(msgs))
	}
	if st := d.sub.Stats(); st.Undeliverable != 1 || st.Delivered != 1 {
		t.Fatalf("stats %+v, want 1 undeliverable, 1 delivered", st)
	}
}

// TestReturnStreamNamesRegisterNoSenders: return streams named by messages that nobody
// answers register nothing (each used to register a sender for good).
func TestReturnStreamNamesRegisterNoSenders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	th := startHub(t)
	d := newDevice(t, "x")
	const names = 500
	var msgs [][]byte
	for i := range names {
		e := bistream.Envelope{ReturnStream: fmt.Sprint("name-", i), Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("nobody")}}}
		msgs = append(msgs, e.Append(nil))
	}
	th.preload(ctx, d.inbox, msgs...)
	d.online(th.addr)
	waitFor(t, "every message", func() bool { n, _ := d.sub.Position(); return n == names })
	registered := 0
	for i := range names {
		if senderRegistered(t, d.node, fmt.Sprint("name-", i), d.inbox) {
			registered++
		}
	}
	if registered > 0 {
		t.Fatalf("%d stream senders registered for %d return streams that nobody answered", registered, names)
	}
}

// TestSendersBounded: the stream senders registered on the node stay within twice
// WithMaxPublishers, and a route through an unregistered sender address still works: the
// transport registers the sender again when a message is routed there, also on a new
// Transport after a restart (without RegisterRoute).
func TestSendersBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	d := newDevice(t, "x")
	d.online(th.addr, bistream.WithMaxPublishers(1))
	const streams = 6
	send := func(i int) {
		t.Helper()
		to := fmt.Sprint("s", i)
		r := wire.Route{wire.Local(bistream.SenderAddress(to, "")), wire.Local("w")}
		if err := d.node.Send(ctx, wire.TransportMessage{OnwardRoute: r, Payload: []byte(to)}); err != nil {
			t.Fatalf("send through %v: %v", r, err)
		}
	}
	for i := range streams {
		if _, err := d.tr.Route(fmt.Sprint("s", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	registered := 0
	for i := range streams {
		if senderRegistered(t, d.node, fmt.Sprint("s", i), "") {
			registered++
		}
	}
	if registered > 2 {
		t.Fatalf("%d stream senders registered, want at most 2 (twice WithMaxPublishers(1))", registered)
	}
	for i := range streams {
		send(i)
	}
	if err := d.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	d.offline()
	d.online(th.addr)
	send(0)
	if err := d.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range streams {
		msgs, err := th.store.Fetch(ctx, fmt.Sprint("s", i), 0, 0, 10)
		want := 1
		if i == 0 {
			want = 2
		}
		if err != nil || len(msgs) != want {
			t.Fatalf("stream s%d holds %d messages (err %v), want %d", i, len(msgs), err, want)
		}
	}
}

// TestFlushWaitsForRetiringPublisher: Flush must include a publisher that is being closed to
// stay within WithMaxPublishers, whose messages are not confirmed yet.
func TestFlushWaitsForRetiringPublisher(t *testing.T) {
	_, _, tr, send := offlineDevice(t, bistream.WithMaxPublishers(1),
		bistream.WithPublisherOptions(client.WithCloseTimeout(100*time.Millisecond), client.WithBackoff(fastBackoff)))
	if err := send(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	go func() { _ = send(sctx, "b") }() // retires the publisher to "a": waits for its confirm
	waitFor(t, `the publisher to "a" retiring`, func() bool { return tr.Stats().Retiring == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := tr.Flush(ctx); err == nil {
		t.Fatal(`Flush returned nil, but the message to "a" was never confirmed (the hub is unreachable)`)
	}
}

// TestCloseClosesRetiringPublisher: Close must close a publisher that is being retired (its
// retirement waiting for confirms with the sender's context), wake the sender, and release
// the outbox, so that a new Transport can open it.
func TestCloseClosesRetiringPublisher(t *testing.T) {
	dir := t.TempDir()
	opts := []bistream.Option{bistream.WithMaxPublishers(1), bistream.WithOutboxDir(dir),
		bistream.WithPublisherOptions(client.WithCloseTimeout(200*time.Millisecond), client.WithBackoff(fastBackoff))}
	node, cli, tr, send := offlineDevice(t, opts...)
	if err := send(context.Background(), "a"); err != nil { // accepted, never confirmed
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- send(context.Background(), "b") }() // retires the publisher to "a" first
	waitFor(t, `the publisher to "a" retiring`, func() bool { return tr.Stats().Retiring == 1 })
	if err := tr.Close(); err == nil {
		t.Error("Close reported no error, but the message to \"a\" was never confirmed")
	}
	select {
	case err := <-sent:
		if !errors.Is(err, core.ErrClosed) {
			t.Errorf("the send to b returned %v, want an error matching core.ErrClosed", err)
		}
	case <-time.After(5 * time.Second): // it returns at once; it used to block for good
		t.Fatal("a send is still blocked 5s after Close returned")
	}
	tr2, err := bistream.New(node, cli, opts...)
	if err != nil {
		t.Fatalf("a new Transport on the same outbox directory: %v", err)
	}
	if st, ok := tr2.PublisherStats("a"); !ok || st.Recovered != 1 {
		t.Errorf("publisher to a: %+v (open %v), want the message recovered from its outbox", st, ok)
	}
	_ = tr2.Close()
}

// TestNewDoesNotWaitForHub: New returns without waiting for the hub when the outbox
// directory holds more outboxes than WithMaxPublishers allows (it used to retire a
// publisher, waiting for confirms that never came): it reopens as many as the bound allows
// and leaves the others to its goroutine, which Close stops.
func TestNewDoesNotWaitForHub(t *testing.T) {
	dir := t.TempDir()
	pubOpts := bistream.WithPublisherOptions(client.WithCloseTimeout(100*time.Millisecond), client.WithBackoff(fastBackoff))
	node, cli, tr, send := offlineDevice(t, bistream.WithOutboxDir(dir), bistream.WithMaxPublishers(2), pubOpts)
	for _, to := range []string{"a", "b"} {
		if err := send(context.Background(), to); err != nil {
			t.Fatal(err)
		}
	}
	_ = tr.Close() // unconfirmed: both outboxes stay
	type result struct {
		tr  *bistream.Transport
		err error
	}
	done := make(chan result, 1)
	go func() {
		tr2, err := bistream.New(node, cli, bistream.WithOutboxDir(dir), bistream.WithMaxPublishers(1), pubOpts)
		done <- result{tr2, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.tr.Close()
		if st := r.tr.Stats(); st.Publishers != 1 || st.PendingOutboxes != 1 {
			t.Fatalf("stats %+v, want one outbox reopened and one pending", st)
		}
	case <-time.After(10 * time.Second): // New returns at once; it used to block forever
		t.Fatal("New still blocked after 10s (hub unreachable, 2 outboxes, WithMaxPublishers(1))")
	}
}

// TestSendDuringNewKeepsOnePublisher: a message routed to a stream's sender while New
// runs (New makes the transport the node's fallback before it reopens the outboxes) opens
// the stream's publisher and its outbox; New must keep that publisher, not open the same
// outbox a second time. It did, and failed once the outbox's one-second lock wait ran out,
// closing the first publisher with what it held unconfirmed.
func TestSendDuringNewKeepsOnePublisher(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	pubOpts := bistream.WithPublisherOptions(client.WithCloseTimeout(50*time.Millisecond), client.WithBackoff(fastBackoff))
	node, cli, tr, send := offlineDevice(t, bistream.WithOutboxDir(dir), pubOpts)
	if err := send(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	_ = tr.Close() // unconfirmed: the outbox of "b" stays
	bistream.SetNewHook(t, func(*bistream.Transport) {
		err := node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.Local(bistream.SenderAddress("b", "")), wire.Local("w")},
			Payload:     []byte("sent while New runs"),
		})
		if err != nil {
			t.Errorf("send while New runs: %v", err)
		}
	})
	tr2, err := bistream.New(node, cli, bistream.WithOutboxDir(dir), pubOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if st := tr2.Stats(); st.Publishers != 1 || st.PendingOutboxes != 0 {
		t.Errorf("stats %+v, want the one publisher to b", st)
	}
	if st, ok := tr2.PublisherStats("b"); !ok || st.InFlight != 2 {
		t.Errorf("publisher to b: %+v (open %v), want 2 messages in flight: the outbox's and the new one", st, ok)
	}
}

// TestRetirementDuringNew: a stream whose publisher is being retired while New runs (a
// message routed to it during New opened the publisher, and a send to another stream
// retires it to stay within the bound) is left pending, not opened a second time; when the
// retirement gives up (the context of the send that began it ended), the publisher is put
// back, and the stream is no longer pending: it has its publisher again.
func TestRetirementDuringNew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	opts := []bistream.Option{
		bistream.WithOutboxDir(dir), bistream.WithMaxPublishers(1),
		bistream.WithPublisherOptions(client.WithCloseTimeout(50*time.Millisecond), client.WithBackoff(fastBackoff)),
	}
	node, cli, tr, send := offlineDevice(t, opts...)
	if err := send(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	_ = tr.Close() // unconfirmed: the outbox of "b" stays
	sendTo := func(ctx context.Context, to string) error {
		return node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{wire.Local(bistream.SenderAddress(to, "")), wire.Local("w")},
			Payload:     []byte("sent while New runs"),
		})
	}
	retireCtx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	retirer := make(chan error, 1)
	// The hook runs inside New, before the test has the Transport to close: it reports
	// with Errorf and returns rather than end the test there.
	bistream.SetNewHook(t, func(tr *bistream.Transport) {
		if err := sendTo(ctx, "b"); err != nil { // opens the publisher of b
			t.Errorf("send to b while New runs: %v", err)
			return
		}
		// The bound is one publisher: the send to c retires b's, and waits for the hub.
		go func() { retirer <- sendTo(retireCtx, "c") }()
		for tr.Stats().Retiring == 0 {
			select {
			case <-ctx.Done():
				t.Errorf("the send to c did not retire the publisher of b: %+v", tr.Stats())
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	tr2, err := bistream.New(node, cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if t.Failed() {
		return
	}
	if st := tr2.Stats(); st.Publishers != 1 || st.Retiring != 1 || st.PendingOutboxes != 1 {
		t.Errorf("stats after New %+v, want b's publisher retiring and its outbox pending", st)
	}
	giveUp()
	if err := <-retirer; !errors.Is(err, context.Canceled) {
		t.Fatalf("the send to c returned %v, want the retirement to give up with its context", err)
	}
	waitFor(t, "b off the pending list once its publisher is back", func() bool { return tr2.Stats().PendingOutboxes == 0 })
	if st := tr2.Stats(); st.Publishers != 1 || st.Retiring != 0 {
		t.Errorf("stats %+v, want the one publisher to b", st)
	}
	if st, ok := tr2.PublisherStats("b"); !ok || st.InFlight != 2 {
		t.Errorf("publisher to b: %+v (open %v), want 2 messages in flight: the outbox's and the one sent while New ran", st, ok)
	}
}

// TestCloseClosesPublishersConcurrently: Close closes its publishers at the same time, not
// one after another (each may take its close timeout when the hub is unreachable): every
// publisher's Close is under way before any returns.
func TestCloseClosesPublishersConcurrently(t *testing.T) {
	const n = 8
	_, _, tr, send := offlineDevice(t, bistream.WithPublisherOptions(client.WithCloseTimeout(50*time.Millisecond)))
	for i := range n {
		if err := send(context.Background(), fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu      sync.Mutex
		started int // publisher Closes begun
		all     = make(chan struct{})
		gaveUp  = make(chan struct{}) // closed when one waited in vain: the others need not
		once    sync.Once
	)
	bistream.SetCloseHook(tr, func(closePublisher func() error) error {
		mu.Lock()
		if started++; started == n {
			close(all)
		}
		mu.Unlock()
		select { // hold this Close until every publisher's has begun
		case <-all:
		case <-gaveUp:
		case <-time.After(10 * time.Second):
			once.Do(func() { close(gaveUp) })
		}
		return closePublisher()
	})
	_ = tr.Close() // the messages are unconfirmed: an error is expected
	mu.Lock()
	defer mu.Unlock()
	select {
	case <-gaveUp:
		t.Fatal("a publisher's Close waited 10s for the others to begin: Close closes them one after another")
	default:
	}
	if started != n {
		t.Fatalf("Close returned with %d of %d publisher Closes begun", started, n)
	}
}

// TestSecondCloseWaitsForFirst: a Close while another is under way waits until it has
// finished, and returns its result. The first Close is held in its publisher's Close until
// the test releases it, so a second Close that returned meanwhile did not wait.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	_, _, tr, send := offlineDevice(t, bistream.WithPublisherOptions(client.WithCloseTimeout(100*time.Millisecond)))
	if err := send(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	bistream.SetCloseHook(tr, func(closePublisher func() error) error {
		close(held) // one publisher: called once
		<-release
		return closePublisher()
	})
	first, second := make(chan error, 1), make(chan error, 1)
	go func() { first <- tr.Close() }()
	select {
	case <-held:
	case <-time.After(time.Minute): // a guard against a hang
		t.Fatal("the first Close did not close the publisher within a minute")
	}
	go func() { second <- tr.Close() }()
	select {
	case err := <-second:
		close(release)
		t.Fatalf("the second Close returned (%v) while the first was still running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	ferr, err := <-first, <-second
	if ferr == nil || err == nil || err.Error() != ferr.Error() {
		t.Fatalf("the second Close returned %v, the first %v; want the same error (a message was left unconfirmed)", err, ferr)
	}
}

// TestRestoredOutboxesWithinBound: after a restart with more outboxes than
// WithMaxPublishers allows, the transport never has more publishers open than the bound;
// it reopens the other outboxes as publishers retire, until every message in them is on
// the hub.
func TestRestoredOutboxesWithinBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const streams, bound = 6, 2
	dir := t.TempDir()
	pubOpts := bistream.WithPublisherOptions(client.WithCloseTimeout(50*time.Millisecond), client.WithBackoff(fastBackoff))
	_, _, tr, send := offlineDevice(t, bistream.WithOutboxDir(dir), bistream.WithMaxPublishers(streams), pubOpts)
	for i := range streams {
		if err := send(ctx, fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = tr.Close() // unconfirmed: every outbox stays

	th := startHub(t)
	d := newDevice(t, "x")
	d.online(th.addr, bistream.WithOutboxDir(dir), bistream.WithMaxPublishers(bound))
	check := func(st bistream.Stats) {
		t.Helper()
		if st.Publishers > bound {
			t.Fatalf("stats %+v: %d publishers open, want at most %d (WithMaxPublishers)", st, st.Publishers, bound)
		}
	}
	check(d.tr.Stats())
	waitFor(t, "every outbox reopened", func() bool {
		st := d.tr.Stats()
		check(st)
		return st.PendingOutboxes == 0
	})
	if err := d.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check(d.tr.Stats())
	for i := range streams {
		msgs, err := th.store.Fetch(ctx, fmt.Sprint("s", i), 0, 0, 10)
		if err != nil || len(msgs) != 1 {
			t.Errorf("stream s%d holds %d messages (err %v), want the one from its outbox", i, len(msgs), err)
		}
	}
	if st := d.tr.Stats(); st.Retired < streams-bound {
		t.Errorf("stats %+v: want at least %d publishers retired to make room", st, streams-bound)
	}
}

// TestRetiringPublisherCountsTowardsBound: a publisher being retired is still open, so a
// send to a third stream must not open a publisher while the bound's only place is taken by
// the retiring one (it used to, passing the bound).
func TestRetiringPublisherCountsTowardsBound(t *testing.T) {
	_, _, tr, send := offlineDevice(t, bistream.WithMaxPublishers(1),
		bistream.WithPublisherOptions(client.WithCloseTimeout(50*time.Millisecond), client.WithBackoff(fastBackoff)))
	if err := send(context.Background(), "a"); err != nil { // accepted, never confirmed
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- send(bctx, "b") }() // retires the publisher to "a": waits for its confirm
	defer func() {
		bcancel()
		if err := <-bdone; !errors.Is(err, context.Canceled) {
			t.Errorf(`the send to "b" returned %v, want context.Canceled`, err)
		}
	}()
	waitFor(t, `the publisher to "a" retiring`, func() bool { return tr.Stats().Retiring == 1 })
	// The hub never confirms "a": the send to "c" waits for room until its context ends.
	cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer ccancel()
	if err := send(cctx, "c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf(`the send to "c" returned %v while the only place was taken by the retiring publisher; want it to wait (context.DeadlineExceeded)`, err)
	}
	if st := tr.Stats(); st.Publishers > 1 {
		t.Errorf("stats %+v: want at most 1 publisher open (WithMaxPublishers(1))", st)
	}
	if _, ok := tr.PublisherStats("c"); ok {
		t.Error(`a publisher to "c" is open`)
	}
}

// TestFlushReportsFailureTakenByRetirement: a publisher with a message that failed for good
// is retired all the same (the send that retires it used to fail with that message's
// error, and the publisher stayed). A failure is reported by one Flush only
// (client.Publisher.Flush). When the publisher is retired while Transport.Flush waits for
// it, the retirement's own Flush may take that report: the
// transport's Flush must still return the failure, not nil, also when the retirement ended
// before that Flush looked at the publishers. (Which Flush takes the report is a race, so
// each round catches a fault only with some odds; several rounds make a miss unlikely.)
func TestFlushReportsFailureTakenByRetirement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const limit = 100 // the hub refuses larger messages (push confirm with status ERROR)
	_, px, node, cli := refusingHubBehindProxy(t, limit)
	tr, err := bistream.New(node, cli, bistream.WithMaxPublishers(1),
		bistream.WithPublisherOptions(client.WithMaxRejections(1), client.WithBackoff(fastBackoff)))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	send := func(ctx context.Context, to string, size int) error {
		r, err := tr.Route(to, "")
		if err != nil {
			return err
		}
		return node.Send(ctx, wire.TransportMessage{OnwardRoute: append(r, wire.Local("w")), Payload: make([]byte, size)})
	}
	for i := range 8 {
		px.Pause()
		if err := send(ctx, fmt.Sprint("refused-", i), 2*limit); err != nil { // accepted; the hub will refuse it
			t.Fatal(err)
		}
		flushed := make(chan error, 1)
		go func() { flushed <- tr.Flush(ctx) }()
		time.Sleep(20 * time.Millisecond) // lets Flush start waiting first (only makes the race likelier)
		sent := make(chan error, 1)
		go func() { sent <- send(ctx, fmt.Sprint("next-", i), 1) }() // retires the publisher of the refused message
		waitFor(t, "the publisher of the refused message retiring", func() bool { return tr.Stats().Retiring == 1 })
		px.Resume()
		if err := <-sent; err != nil {
			t.Fatalf("round %d: the send that retires the publisher of the refused message: %v", i, err)
		}
		if err := <-flushed; !errors.Is(err, client.ErrGaveUp) {
			t.Fatalf("round %d: Flush returned %v; want the failure of the refused message (client.ErrGaveUp)", i, err)
		}
		if err := tr.Flush(ctx); err != nil { // the next round retires the publisher to next-i
			t.Fatal(err)
		}
	}
}

// TestPublishRetriedAfterRetirement: a send that took the stream's publisher just before a
// send to another stream retired it (WithMaxPublishers) finds it closed, and publishes again
// through the stream's new publisher: the send succeeds and the message reaches the hub once.
func TestPublishRetriedAfterRetirement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	d := newDevice(t, "x")
	d.online(th.addr, bistream.WithMaxPublishers(1))
	send := func(to string) error {
		r, err := d.tr.Route(to, "")
		if err != nil {
			return err
		}
		return d.node.Send(ctx, wire.TransportMessage{OnwardRoute: append(r, wire.Local("w")), Payload: []byte("to " + to)})
	}
	var once sync.Once
	bistream.SetPublishHook(d.tr, func(stream string) {
		if stream != "a" {
			return
		}
		once.Do(func() { // the first publish to "a": a send to "b" retires a's publisher meanwhile
			done := make(chan error, 1)
			go func() { done <- send("b") }() // owned here: waited for below
			if err := <-done; err != nil {
				t.Errorf(`the send to "b": %v`, err)
			}
			if st := d.tr.Stats(); st.Retired != 1 {
				t.Errorf("stats %+v after the send to \"b\": want a's publisher retired", st)
			}
		})
	})
	if err := send("a"); err != nil {
		t.Fatalf(`the send to "a" whose publisher was retired before it published: %v`, err)
	}
	if err := d.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"a", "b"} {
		msgs, err := th.store.Fetch(ctx, stream, 0, 0, 10)
		if err != nil || len(msgs) != 1 {
			t.Errorf("stream %s holds %d messages (err %v); want the one sent", stream, len(msgs), err)
			continue
		}
		if env, err := bistream.DecodeEnvelope(msgs[0].Data); err != nil || string(env.Message.Payload) != "to "+stream {
			t.Errorf("stream %s holds %q (err %v); want the envelope of %q", stream, msgs[0].Data, err, "to "+stream)
		}
	}
	if st := d.tr.Stats(); st.Retired < 2 {
		t.Errorf("stats %+v: want a's first publisher and then b's retired", st)
	}
}

// TestReturnRouteFirstHopRefused: an envelope without a return stream carries a return
// route that the pusher wrote entirely, and a secure channel listener answers handshake
// message 1 through it. Its first address must be held to the onward route's rule: the
// device must neither dial a TCP address nor publish into a stream the pusher chose.
func TestReturnRouteFirstHopRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	ln, accepted := countingListener(t)
	hello := func() []byte {
		id, err := securechannel.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		hs, err := securechannel.NewInitiator(securechannel.Config{Identity: id, Trust: securechannel.TrustAnyInsecure()})
		if err != nil {
			t.Fatal(err)
		}
		m1, err := hs.WriteMessage()
		if err != nil {
			t.Fatal(err)
		}
		return m1
	}
	toListener := func(ret wire.Route, payload []byte) []byte {
		e := bistream.Envelope{Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("listener")}, ReturnRoute: ret, Payload: payload}}
		return e.Append(nil)
	}
	th.preload(ctx, "inbox-x",
		toListener(wire.Route{wire.TCP(ln.Addr().String()), wire.Local("x")}, hello()),
		toListener(wire.Route{wire.Local(bistream.SenderAddress("other", "chosen")), wire.Local("x")}, hello()),
		toListener(wire.Route{wire.Local("x")}, hello()), // a local first hop is fine
	)
	cli, err := client.Dial(th.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	id, err := securechannel.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	l, err := securechannel.Listen(cli.Node(), "listener", securechannel.Config{Identity: id, Trust: securechannel.TrustAnyInsecure()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tr, err := bistream.New(cli.Node(), cli) // the client's node, which has a TCP transport
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	sub, err := tr.Subscribe("inbox-x", "device-x")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the messages handled", func() bool { st := sub.Stats(); return st.Delivered+st.Undeliverable >= 3 })
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := sub.Stats(); st.Undeliverable != 2 || st.Delivered != 1 {
		t.Errorf("stats %+v, want 2 undeliverable, 1 delivered", st)
	}
	if st := l.Stats(); st.Accepted != 1 {
		t.Errorf("listener stats %+v, want the one message 1 with a local return route answered", st)
	}
	msgs, err := th.store.Fetch(ctx, "other", 0, 0, 10)
	if err != nil && !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatal(err)
	}
	if len(msgs) > 0 {
		t.Errorf("a stream message made the device publish %d message(s) into the stream \"other\"", len(msgs))
	}
	time.Sleep(100 * time.Millisecond) // a dial, had there been one, would have been accepted by now
	if n := accepted.Load(); n > 0 {
		t.Errorf("a stream message made the device open %d connection(s) to %s", n, ln.Addr())
	}
}

// refusingHubBehindProxy starts a hub on a memory backend that refuses messages larger than
// limit bytes (a push confirm with status ERROR), behind a fault-injecting proxy, and a
// device (a routing node and a client dialled through the proxy), and returns them. When
// the test ends the device closes, the proxy lets everything through again and closes, then
// the hub and the backend close.
func refusingHubBehindProxy(t *testing.T, limit int) (*memory.Store, *faultproxy.Proxy, *routing.Node, *client.Client) {
	t.Helper()
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	h, err := hub.New(&core.Backend{Storage: mem, Index: mem}, hub.WithMaxMessageSize(limit))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.New(a.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		px.SetBlackhole(false)
		px.Resume()
		_ = px.Close()
	})
	node, err := routing.NewNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	cli, err := client.Dial(px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return mem, px, node, cli
}

// TestRegisterRoute: RegisterRoute registers the stream sender at the first address of a
// route when that is a sender address, ignores any other route, and after Close returns an
// error matching core.ErrClosed.
func TestRegisterRoute(t *testing.T) {
	node, _, tr, _ := offlineDevice(t)
	for _, r := range []wire.Route{
		nil,
		{wire.TCP(bistream.SenderAddress("a", "b"))}, // not a local address
		{wire.Local("echo")},
		{wire.Local(bistream.AddressPrefix + "no-slash")},
	} {
		if err := tr.RegisterRoute(r); err != nil {
			t.Errorf("RegisterRoute(%v) = %v, want nil: not a route through a stream sender", r, err)
		}
	}
	if senderRegistered(t, node, "a", "b") {
		t.Fatal("a sender was registered for a route that does not start at a sender address")
	}
	if err := tr.RegisterRoute(wire.Route{wire.Local(bistream.SenderAddress("a", "b")), wire.Local("w")}); err != nil {
		t.Fatal(err)
	}
	if !senderRegistered(t, node, "a", "b") {
		t.Fatal("RegisterRoute of a route through the sender of (a, b) registered no sender")
	}
	_ = tr.Close()
	if err := tr.RegisterRoute(wire.Route{wire.Local(bistream.SenderAddress("c", ""))}); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("RegisterRoute after Close = %v, want core.ErrClosed", err)
	}
}
