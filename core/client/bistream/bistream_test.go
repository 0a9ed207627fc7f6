package bistream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// marker is part of every plaintext; the hub's storage file must never contain it.
const marker = "PLAINTEXT-MARKER-7f3a"

var fastBackoff = client.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2, Jitter: 0.5}

// testHub is a hub on a bbolt file that can be restarted on the same address.
type testHub struct {
	t     *testing.T
	path  string
	addr  string
	store *bbolt.Store
	h     *hub.Hub
}

func startHub(t *testing.T) *testHub {
	t.Helper()
	th := &testHub{t: t, path: filepath.Join(t.TempDir(), "hub.db"), addr: "127.0.0.1:0"}
	th.start()
	t.Cleanup(th.stop)
	return th
}

func (th *testHub) start() {
	th.t.Helper()
	s, err := bbolt.New(context.Background(), th.path, nil)
	if err != nil {
		th.t.Fatal(err)
	}
	h, err := hub.New(&core.Backend{Storage: s, Index: s})
	if err != nil {
		th.t.Fatal(err)
	}
	a, err := h.Listen(th.addr)
	if err != nil {
		th.t.Fatal(err)
	}
	th.addr, th.store, th.h = a.String(), s, h
}

// preload creates stream on the hub's store and appends msgs to it, as a hub would have
// stored them.
func (th *testHub) preload(ctx context.Context, stream string, msgs ...[]byte) {
	th.t.Helper()
	if _, err := th.store.CreateStream(ctx, stream, 1); err != nil {
		th.t.Fatal(err)
	}
	if _, err := th.store.Append(ctx, stream, 0, msgs); err != nil {
		th.t.Fatal(err)
	}
}

// envelope encodes a stream message that carries payload to the worker at to.
func envelope(to, payload string) []byte {
	e := bistream.Envelope{Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(to)}, Payload: []byte(payload)}}
	return e.Append(nil)
}

func (th *testHub) stop() {
	if th.h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := th.h.Shutdown(ctx); err != nil {
		th.t.Errorf("hub shutdown: %v", err)
	}
	if err := th.store.Close(); err != nil {
		th.t.Errorf("close store: %v", err)
	}
	th.h, th.store = nil, nil
}

// inbox records the payloads delivered to a worker, in order.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (b *inbox) add(s string) {
	b.mu.Lock()
	b.msgs = append(b.msgs, s)
	b.mu.Unlock()
}

func (b *inbox) get() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.msgs...)
}

// device is one side: a node that lives for the whole test (workers, secure channels) and
// a link to the hub (client, transport, subscription) that comes and goes.
type device struct {
	t     *testing.T
	name  string
	node  *routing.Node
	inbox string
	cli   *client.Client
	tr    *bistream.Transport
	sub   *bistream.Subscription
}

func newDevice(t *testing.T, name string, opts ...routing.Option) *device {
	t.Helper()
	n, err := routing.NewNode(opts...)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, name: name, node: n, inbox: "inbox-" + name}
	t.Cleanup(func() {
		_ = d.tryOffline()
		_ = n.Close()
	})
	return d
}

// online connects the device to the hub and subscribes to its inbox.
func (d *device) online(hubAddr string, opts ...bistream.Option) {
	d.t.Helper()
	cli, err := client.Dial(hubAddr, client.WithDialTimeout(2*time.Second))
	if err != nil {
		d.t.Fatal(err)
	}
	tr, err := bistream.New(d.node, cli, append([]bistream.Option{
		bistream.WithPublisherOptions(client.WithBackoff(fastBackoff), client.WithRequestTimeout(2*time.Second)),
		bistream.WithConsumerOptions(client.WithConsumerBackoff(fastBackoff), client.WithPullWait(time.Second), client.WithConsumerRequestTimeout(2*time.Second)),
	}, opts...)...)
	if err != nil {
		d.t.Fatal(err)
	}
	sub, err := tr.Subscribe(d.inbox, "device-"+d.name)
	if err != nil {
		d.t.Fatal(err)
	}
	d.cli, d.tr, d.sub = cli, tr, sub
}

// offline stops the device's link completely: subscription (saving its position),
// publishers (after their confirms), TCP connections and their goroutines.
func (d *device) offline() {
	d.t.Helper()
	if err := d.tryOffline(); err != nil {
		d.t.Errorf("%s offline: %v", d.name, err)
	}
}

// tryOffline is offline that returns the transport's Close error (unconfirmed messages).
func (d *device) tryOffline() error {
	if d.tr == nil {
		return nil
	}
	err := d.tr.Close()
	if cerr := d.cli.Close(); cerr != nil {
		d.t.Errorf("%s: close client: %v", d.name, cerr)
	}
	d.cli, d.tr, d.sub = nil, nil, nil
	return err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustIdentity(t *testing.T) *securechannel.Identity {
	t.Helper()
	id, err := securechannel.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSecureChannelThroughStreams runs a Noise handshake and a conversation entirely
// through streams on a hub, with the responder offline between the steps, a hub restart in
// the middle, and an at-least-once duplicate; then it checks the hub's file for plaintext.
func TestSecureChannelThroughStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	th := startHub(t)
	idA, idB := mustIdentity(t), mustIdentity(t)
	a, b := newDevice(t, "a"), newDevice(t, "b")

	// B: a listener that trusts A, and an application worker that records and answers.
	var chB *securechannel.SecureChannel
	var chBMu sync.Mutex
	_, err := securechannel.Listen(b.node, "listener", securechannel.Config{Identity: idB, Trust: securechannel.TrustKeys(idA.PublicKey())},
		&securechannel.ListenOptions{HandshakeTimeout: time.Hour, OnChannel: func(c *securechannel.SecureChannel) {
			chBMu.Lock()
			chB = c
			chBMu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	var gotB, gotA inbox
	if err := b.node.Register("app", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		gotB.add(string(m.Payload))
		return m.Reply(ctx, []byte("ack "+string(m.Payload)))
	})); err != nil {
		t.Fatal(err)
	}
	if err := a.node.Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		gotA.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}

	// Step 1: A starts the handshake while B was never online.
	a.online(th.addr)
	route, err := a.tr.Route(b.inbox, a.inbox)
	if err != nil {
		t.Fatal(err)
	}
	type dialResult struct {
		ch  *securechannel.SecureChannel
		err error
	}
	dialed := make(chan dialResult, 1)
	go func() {
		ch, err := securechannel.Dial(ctx, a.node, append(route, wire.Local("listener")),
			securechannel.Config{Identity: idA, Trust: securechannel.TrustKeys(idB.PublicKey())})
		dialed <- dialResult{ch, err}
	}()
	waitFor(t, "handshake message 1 in B's inbox", func() bool {
		m, err := th.store.Fetch(ctx, b.inbox, 0, 0, 10)
		return err == nil && len(m) == 1
	})

	// Step 2: B comes online, answers message 1, and goes offline again.
	b.online(th.addr)
	waitFor(t, "B to read message 1", func() bool { n, ok := b.sub.Position(); return ok && n >= 1 })
	waitFor(t, "handshake message 2 published", func() bool {
		st, ok := b.tr.PublisherStats(a.inbox)
		return ok && st.Confirmed >= 1
	})
	b.offline()

	// Step 3: A reads message 2, completes the handshake (message 3 waits in B's inbox) and
	// sends while B is offline.
	var chA *securechannel.SecureChannel
	select {
	case r := <-dialed:
		if r.err != nil {
			t.Fatalf("dial through streams: %v", r.err)
		}
		chA = r.ch
	case <-ctx.Done():
		t.Fatal("dial did not complete")
	}
	if chA.PeerIdentity() != idB.PublicKey() {
		t.Fatal("A's channel is not with B")
	}
	send := func(i int) {
		t.Helper()
		err := a.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{chA.Address(), wire.Local("app")},
			ReturnRoute: wire.Route{wire.Local("app")},
			Payload:     fmt.Appendf(nil, "%s #%d", marker, i),
		})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for i := 1; i <= 3; i++ {
		send(i)
	}
	if err := a.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Step 4: B comes back, resumes after message 1, completes the handshake and receives.
	b.online(th.addr)
	waitFor(t, "B to receive 3 messages", func() bool { return len(gotB.get()) == 3 })
	waitFor(t, "A to receive 3 replies", func() bool { return len(gotA.get()) == 3 })
	chBMu.Lock()
	peer := chB.PeerIdentity()
	chBMu.Unlock()
	if peer != idA.PublicKey() {
		t.Fatal("B's channel is not with A")
	}

	// Step 5: the hub restarts in the middle of the conversation; both sides reconnect.
	th.stop()
	th.start()
	for i := 4; i <= 5; i++ {
		send(i)
	}
	waitFor(t, "B to receive 5 messages after the hub restart", func() bool { return len(gotB.get()) == 5 })
	waitFor(t, "A to receive 5 replies", func() bool { return len(gotA.get()) == 5 })

	// Step 6: an at-least-once duplicate: re-append B's last stream message byte for byte.
	last, err := th.store.Fetch(ctx, b.inbox, 0, 0, 100)
	if err != nil || len(last) == 0 {
		t.Fatalf("fetch B's inbox: %v", err)
	}
	dup := last[len(last)-1]
	if _, err := th.store.Append(ctx, b.inbox, 0, [][]byte{dup.Data}); err != nil {
		t.Fatal(err)
	}
	send(6) // proves B read past the duplicate
	waitFor(t, "B to receive message 6", func() bool { return len(gotB.get()) == 6 })

	for i, m := range gotB.get() {
		if want := fmt.Sprintf("%s #%d", marker, i+1); m != want {
			t.Fatalf("B received %q as message %d, want %q (all: %q)", m, i+1, want, gotB.get())
		}
	}
	chBMu.Lock()
	stB := chB.Stats()
	chBMu.Unlock()
	if stB.Duplicates < 1 {
		t.Fatalf("B's channel dropped %d duplicates, want >= 1 (stats %+v)", stB.Duplicates, stB)
	}
	if stB.Delivered != 6 {
		t.Fatalf("B's channel delivered %d messages, want 6 (stats %+v)", stB.Delivered, stB)
	}

	// The hub's storage holds ciphertext only.
	a.offline()
	b.offline()
	th.stop()
	raw, err := os.ReadFile(th.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || !bytes.Contains(raw, []byte(b.inbox)) {
		t.Fatal("the hub's file does not hold B's inbox: the plaintext check would prove nothing")
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Fatal("the hub's storage file contains plaintext")
	}
}

// TestUndeliverableAndMalformed checks that stream messages that are not envelopes, and
// envelopes for unknown addresses, are counted and skipped without blocking the stream, and
// logged: a warning per kind and interval, which counts them (anybody who can push to the
// stream can send any number), and one more at Close for those held back.
func TestUndeliverableAndMalformed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	var logs hubtest.LogBuffer
	d := newDevice(t, "x", routing.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))) // the transport logs with the node's logger
	var got inbox
	if err := d.node.Register("w", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		got.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	const malformed = 3
	msgs := [][]byte{envelope("nobody", "lost")}
	for range malformed {
		msgs = append(msgs, []byte("not an envelope"))
	}
	th.preload(ctx, d.inbox, append(msgs, envelope("w", "ok"))...)
	d.online(th.addr)
	waitFor(t, "the valid message", func() bool { return len(got.get()) == 1 })
	st := d.sub.Stats()
	if st.Malformed != malformed || st.Undeliverable != 1 || st.Delivered != 1 {
		t.Fatalf("stats %+v, want %d malformed, 1 undeliverable, 1 delivered", st, malformed)
	}
	waitFor(t, "the position past all of them", func() bool { n, _ := d.sub.Position(); return n == malformed+2 })
	counts := func() (skipped, notEnvelope []string) {
		for line := range strings.Lines(logs.String()) {
			_, n, _ := strings.Cut(line, " messages=")
			n, _, _ = strings.Cut(n, " ")
			switch {
			case !strings.Contains(line, "level=WARN"):
			case strings.Contains(line, "skipped for good"):
				skipped = append(skipped, n)
			case strings.Contains(line, "not an envelope"):
				notEnvelope = append(notEnvelope, n)
			}
		}
		return skipped, notEnvelope
	}
	if s, ne := counts(); !slices.Equal(s, []string{"1"}) || !slices.Equal(ne, []string{"1"}) {
		t.Errorf("warnings counting messages skipped for good %v and not an envelope %v, want [1] and [1]:\n%s", s, ne, logs.String())
	}
	if err := d.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if s, ne := counts(); !slices.Equal(s, []string{"1"}) || !slices.Equal(ne, []string{"1", fmt.Sprint(malformed - 1)}) {
		t.Errorf("after Close, warnings counting messages skipped for good %v and not an envelope %v, want [1] and [1 %d]:\n%s", s, ne, malformed-1, logs.String())
	}
}

// TestRouteErrors checks argument validation and that nothing is sent after Close.
func TestRouteErrors(t *testing.T) {
	n, err := routing.NewNode()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addr := hubtest.RefusedAddr(t) // nothing is dialled here
	cli, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := bistream.New(nil, cli); err == nil {
		t.Fatal("New with a nil node succeeded")
	}
	tr, err := bistream.New(n, cli)
	if err != nil {
		t.Fatal(err)
	}
	// A second Transport on the node is refused: closing either would leave the other
	// without its fallback.
	if tr2, err := bistream.New(n, cli); !errors.Is(err, core.ErrInvalidArgument) || !strings.Contains(err.Error(), "close it first") {
		if tr2 != nil {
			_ = tr2.Close()
		}
		t.Fatalf("a second New on the node = %v, want ErrInvalidArgument saying to close the first", err)
	}
	if _, err := tr.Route("bad name", "inbox"); err == nil {
		t.Fatal("Route accepted an invalid stream name")
	}
	r, err := tr.Route("inbox-b", "inbox-a")
	if err != nil {
		t.Fatal(err)
	}
	if want := wire.Local(bistream.SenderAddress("inbox-b", "inbox-a")); !r[0].Equal(want) {
		t.Fatalf("route %v, want [%v]", r, want)
	}
	// A message with nothing after the stream hop cannot be delivered on the other side.
	err = n.Send(context.Background(), wire.TransportMessage{OnwardRoute: r, Payload: []byte("x")})
	if err == nil {
		t.Fatal("sending with an empty inner onward route succeeded")
	}
	// Nor can one whose inner route the subscriber's decoder refuses: it is refused before
	// anything is published (nothing listens at the hub's address).
	long := make(wire.Route, wire.MaxRouteLen+1)
	for i := range long {
		long[i] = wire.Local("hop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = n.Send(ctx, wire.TransportMessage{OnwardRoute: append(r[:1:1], wire.Local("w")), ReturnRoute: long})
	if !errors.Is(err, wire.ErrRouteTooLong) {
		t.Fatalf("sending with a return route of %d addresses = %v, want wire.ErrRouteTooLong", len(long), err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Route("inbox-b", "inbox-a"); err == nil {
		t.Fatal("Route after Close succeeded")
	}
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: append(r, wire.Local("w"))}); err == nil {
		t.Fatal("sending through a closed transport succeeded")
	}
	again, err := bistream.New(n, cli)
	if err != nil {
		t.Fatalf("New after the first Transport closed: %v", err)
	}
	// One subscription per stream and id: a second would deliver every message twice.
	sub, err := again.Subscribe("inbox-a", "device-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Subscribe("inbox-a", "device-a"); !errors.Is(err, core.ErrInvalidArgument) || !strings.Contains(err.Error(), "already subscribed") {
		t.Fatalf("a second Subscribe with the same stream and id = %v, want ErrInvalidArgument", err)
	}
	other, err := again.Subscribe("inbox-a", "device-b")
	if err != nil {
		t.Fatalf("Subscribe with another id: %v", err)
	}
	for _, s := range []*bistream.Subscription{sub, other} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := again.Subscribe("inbox-a", "device-a"); err != nil {
		t.Fatalf("Subscribe after the first subscription closed: %v", err)
	} else if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOutboxSurvivesRestart checks that messages published while the hub is down stay in
// the device's outbox when the device goes offline, and are delivered after it comes back.
func TestOutboxSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	a, b := newDevice(t, "a"), newDevice(t, "b")
	var got inbox
	if err := b.node.Register("w", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		got.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	b.online(th.addr)
	outbox := t.TempDir()
	opts := []bistream.Option{bistream.WithOutboxDir(outbox), bistream.WithPublisherOptions(client.WithCloseTimeout(50 * time.Millisecond))}

	th.stop()
	a.online(th.addr, opts...)
	route, err := a.tr.Route(b.inbox, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"queued 1", "queued 2"} {
		if err := a.node.Send(ctx, wire.TransportMessage{OnwardRoute: append(route, wire.Local("w")), Payload: []byte(m)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.tryOffline(); err == nil {
		t.Fatal("closing a transport with unconfirmed messages reported no error")
	}
	if _, err := os.Stat(filepath.Join(outbox, b.inbox+".outbox")); err != nil {
		t.Fatalf("no outbox file for %s: %v", b.inbox, err)
	}

	th.start()
	a.online(th.addr, opts...) // sends nothing new: the outbox is reopened and resent
	waitFor(t, "the queued messages", func() bool { return len(got.get()) == 2 })
	if g := got.get(); g[0] != "queued 1" || g[1] != "queued 2" {
		t.Fatalf("received %q, want the queued messages in order", g)
	}
	st, ok := a.tr.PublisherStats(b.inbox)
	if !ok || st.Recovered != 2 {
		t.Fatalf("publisher stats %+v (found %v), want 2 recovered from the outbox", st, ok)
	}
}

// TestOfflineLeavesNoGoroutine checks that taking a device's link offline (transport, then
// client) stops every goroutine it started: subscription, publishers, TCP connections.
func TestOfflineLeavesNoGoroutine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	a, b := newDevice(t, "a"), newDevice(t, "b")
	var got inbox
	if err := b.node.Register("w", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		got.add(string(m.Payload))
		return m.Reply(ctx, []byte("pong"))
	})); err != nil {
		t.Fatal(err)
	}
	if err := a.node.Register("w", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		got.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	// A round trip through both inboxes; the first one also creates the streams (and the
	// hub's workers for them, which stay).
	roundTrip := func(want int) {
		t.Helper()
		a.online(th.addr)
		b.online(th.addr)
		route, err := a.tr.Route(b.inbox, a.inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.node.Send(ctx, wire.TransportMessage{OnwardRoute: append(route, wire.Local("w")), ReturnRoute: wire.Route{wire.Local("w")}, Payload: []byte("ping")}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "ping and pong", func() bool { return len(got.get()) == want })
	}
	roundTrip(2)
	a.offline()
	b.offline()
	time.Sleep(100 * time.Millisecond) // let the hub notice the closed connections
	baseline := runtime.NumGoroutine()

	roundTrip(4)
	if online := runtime.NumGoroutine(); online <= baseline {
		t.Fatalf("%d goroutines online, %d offline: the measure cannot tell anything", online, baseline)
	}
	a.offline()
	b.offline()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines after going offline, %d before going online:\n%s", runtime.NumGoroutine(), baseline, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublishersBounded: every return stream named in a subscribed stream gets a reply
// publisher when a worker answers, and anybody who can push to the stream can name any
// number of them. The transport keeps at most WithMaxPublishers open by closing idle ones,
// and every reply still reaches its stream, also through a publisher opened again.
func TestPublishersBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	d := newDevice(t, "x")
	if err := d.node.Register("echo", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		return d.node.Send(ctx, wire.TransportMessage{OnwardRoute: append(m.ReturnRoute.Clone(), wire.Local("w")), Payload: m.Payload})
	})); err != nil {
		t.Fatal(err)
	}
	const streams, bound = 12, 3
	var msgs [][]byte
	for i := range streams + 1 { // the last one names the first stream again
		e := bistream.Envelope{ReturnStream: fmt.Sprintf("reply-%d", i%streams), Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("echo")}, Payload: []byte(fmt.Sprint("m", i))}}
		msgs = append(msgs, e.Append(nil))
	}
	th.preload(ctx, d.inbox, msgs...)
	outbox := t.TempDir()
	d.online(th.addr, bistream.WithMaxPublishers(bound), bistream.WithOutboxDir(outbox))
	held := func(i int) int {
		got, err := th.store.Fetch(ctx, fmt.Sprintf("reply-%d", i), 0, 0, 10)
		if err != nil && !errors.Is(err, core.ErrStreamNotFound) {
			t.Fatal(err)
		}
		return len(got)
	}
	waitFor(t, "every reply", func() bool {
		n := 0
		for i := range streams {
			n += held(i)
		}
		return n == len(msgs)
	})
	if n := held(0); n != 2 {
		t.Fatalf("reply-0 holds %d messages, want 2", n)
	}
	if st := d.tr.Stats(); st.Publishers > bound || st.Retired < streams+1-bound {
		t.Fatalf("stats %+v: want at most %d publishers open, at least %d closed", st, bound, streams+1-bound)
	}
	if files, err := os.ReadDir(outbox); err != nil || len(files) > bound {
		t.Fatalf("%d files in the outbox directory (err %v), want at most one per open publisher (%d)", len(files), err, bound)
	}
}
