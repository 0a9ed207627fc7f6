package bistream_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
)

// TestParseSenderAddress checks that SenderAddress round-trips and that other addresses
// are refused.
func TestParseSenderAddress(t *testing.T) {
	for _, c := range [][2]string{{"inbox-b", "inbox-a"}, {"inbox-b", ""}} {
		to, ret, ok := bistream.ParseSenderAddress(bistream.SenderAddress(c[0], c[1]))
		if !ok || to != c[0] || ret != c[1] {
			t.Fatalf("ParseSenderAddress(SenderAddress(%q, %q)) = %q, %q, %v", c[0], c[1], to, ret, ok)
		}
	}
	for _, bad := range []string{"", "listener", "bistream/", "bistream//x", "bistream/a"} {
		if _, _, ok := bistream.ParseSenderAddress(bad); ok {
			t.Fatalf("ParseSenderAddress(%q) accepted", bad)
		}
	}
}

// listenRestored starts a listener at "listener" on node and restores the channel saved in
// the session file, if there is one (else the channel is nil).
func listenRestored(t *testing.T, node *routing.Node, cfg securechannel.Config, opts *securechannel.ListenOptions, session string) (*securechannel.Listener, *securechannel.SecureChannel) {
	t.Helper()
	l, err := securechannel.Listen(node, "listener", cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(session); err != nil {
		return l, nil
	}
	sc, err := l.RestoreSession(session)
	if err != nil {
		t.Fatal(err)
	}
	return l, sc
}

// TestDeviceProcessRestart runs a secure channel through streams in which device B is
// restarted twice like a process: its node, transport and channel are closed and dropped;
// what survives is its identity, its session file and the index saved on the hub. The
// first restart happens while B's end waits for handshake message 3; after the second, B
// sends first, before it received anything (RegisterRoute). Every message arrives once, in
// order, and an old ciphertext replayed into B's inbox after the restart is dropped.
func TestDeviceProcessRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	th := startHub(t)
	idA, idB := mustIdentity(t), mustIdentity(t)
	cfgB := securechannel.Config{Identity: idB, Trust: securechannel.TrustKeys(idA.PublicKey())}
	session := filepath.Join(t.TempDir(), "b.session")
	a := newDevice(t, "a")
	var gotA, gotB inbox
	if err := a.node.Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		gotA.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}

	// bootB starts a new "process" of B: a node with B's application, a listener, the
	// channel restored from the session file if there is one, and the link to the hub.
	bootB := func() (*device, *securechannel.Listener, *securechannel.SecureChannel) {
		t.Helper()
		b := newDevice(t, "b")
		if err := b.node.Register("app", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
			gotB.add(string(m.Payload))
			return m.Reply(ctx, []byte("ack "+string(m.Payload)))
		})); err != nil {
			t.Fatal(err)
		}
		l, sc := listenRestored(t, b.node, cfgB, &securechannel.ListenOptions{HandshakeTimeout: time.Hour}, session)
		b.online(th.addr)
		if sc != nil {
			if err := b.tr.RegisterRoute(sc.PeerRoute()); err != nil {
				t.Fatal(err)
			}
		}
		return b, l, sc
	}
	// stopB ends B's process: the link (the subscription saves its index), then its channel
	// state (saved after everything it received was handled), then the node.
	stopB := func(b *device, l *securechannel.Listener) {
		t.Helper()
		b.offline()
		chs := l.Channels()
		if len(chs) != 1 {
			t.Fatalf("B's listener has %d channels, want 1", len(chs))
		}
		if err := chs[0].SaveSession(session); err != nil {
			t.Fatal(err)
		}
		_ = l.Close()
		_ = b.node.Close()
	}

	// A starts the handshake; B (first boot) answers and stops, waiting for message 3.
	a.online(th.addr)
	route, err := a.tr.Route("inbox-b", a.inbox)
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
	b, l, restored := bootB()
	if restored != nil {
		t.Fatal("B restored a channel at its first boot")
	}
	waitFor(t, "handshake message 2 published", func() bool {
		st, ok := b.tr.PublisherStats(a.inbox)
		return ok && st.Confirmed >= 1
	})
	stopB(b, l)

	// A completes the handshake and sends while B's process is gone.
	r := <-dialed
	if r.err != nil {
		t.Fatalf("dial through streams: %v", r.err)
	}
	chA := r.ch
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
	old, err := th.store.Fetch(ctx, "inbox-b", 0, 0, 100) // ciphertexts of the first channel phase
	if err != nil {
		t.Fatal(err)
	}

	// B's second process restores the half-open channel and finishes the handshake.
	b, l, chB := bootB()
	if chB == nil {
		t.Fatal("B did not restore its channel")
	}
	if err := chB.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if chB.PeerIdentity() != idA.PublicKey() {
		t.Fatal("B's restored channel is not with A")
	}
	waitFor(t, "B to receive 3 messages", func() bool { return len(gotB.get()) == 3 })
	waitFor(t, "A to receive 3 acks", func() bool { return len(gotA.get()) == 3 })
	stopB(b, l)

	// B's third process sends first, then receives; an old ciphertext replayed is dropped.
	b, l, chB = bootB()
	defer func() { _ = l.Close(); b.offline() }()
	if err := b.node.Send(ctx, wire.TransportMessage{
		OnwardRoute: wire.Route{chB.Address(), wire.Local("app")},
		ReturnRoute: wire.Route{wire.Local("app")},
		Payload:     []byte("hello from B's third process"),
	}); err != nil {
		t.Fatalf("B sends first after the restart: %v", err)
	}
	waitFor(t, "A to receive B's message", func() bool { return len(gotA.get()) == 4 })
	for _, m := range old {
		if _, err := th.store.Append(ctx, "inbox-b", 0, [][]byte{m.Data}); err != nil {
			t.Fatal(err)
		}
	}
	send(4)
	waitFor(t, "B to receive message 4", func() bool { return len(gotB.get()) == 4 })
	for i, m := range gotB.get() {
		if want := fmt.Sprintf("%s #%d", marker, i+1); m != want {
			t.Fatalf("B received %q as message %d, want %q (all: %q)", m, i+1, want, gotB.get())
		}
	}
	if got := gotA.get(); got[3] != "hello from B's third process" {
		t.Fatalf("A received %q", got)
	}
	if st := chB.Stats(); st.Duplicates < 3 {
		t.Fatalf("B's restored channel dropped %d replayed messages, want >= 3 (%+v)", st.Duplicates, st)
	}
	if st := b.sub.Stats(); st.Undeliverable != 0 {
		t.Fatalf("%d messages undeliverable after the restart", st.Undeliverable)
	}
}

// TestStopWithBacklog stops device B while its application is behind: one message in its
// handler, one in its mailbox and the next one waiting for room. B stops the documented way
// (close the transport, drain the node, save the channel, close the node), its next process
// restores the channel, and B's application gets every message exactly once, in order: the
// message whose delivery the stop cut short is not skipped by the subscription nor taken
// for a replay by the channel, and the one in the mailbox is handled before the node closes.
func TestStopWithBacklog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	th := startHub(t)
	idA, idB := mustIdentity(t), mustIdentity(t)
	cfgB := securechannel.Config{Identity: idB, Trust: securechannel.TrustKeys(idA.PublicKey())}
	session := filepath.Join(t.TempDir(), "b.session")
	var got inbox
	gate := make(chan struct{})

	// bootB starts a process of B with a mailbox of one message, whose application waits
	// for the gate before it handles each message (the gate is closed once B restarts).
	bootB := func() (*device, *securechannel.Listener, *securechannel.SecureChannel) {
		t.Helper()
		b := newDevice(t, "b", routing.WithMailboxSize(1))
		if err := b.node.Register("app", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			got.add(string(m.Payload))
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		l, sc := listenRestored(t, b.node, cfgB, nil, session)
		b.online(th.addr)
		return b, l, sc
	}

	a := newDevice(t, "a")
	a.online(th.addr)
	b, l, _ := bootB()
	route, err := a.tr.Route("inbox-b", a.inbox)
	if err != nil {
		t.Fatal(err)
	}
	chA, err := securechannel.Dial(ctx, a.node, append(route, wire.Local("listener")),
		securechannel.Config{Identity: idA, Trust: securechannel.TrustKeys(idB.PublicKey())})
	if err != nil {
		t.Fatalf("dial through streams: %v", err)
	}
	const n = 6
	for i := 1; i <= n; i++ {
		if err := a.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{chA.Address(), wire.Local("app")},
			Payload:     fmt.Appendf(nil, "%s #%d", marker, i),
		}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := a.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	chs := l.Channels()
	if len(chs) != 1 {
		t.Fatalf("B's listener has %d channels, want 1", len(chs))
	}
	// Message 1 in the handler, message 2 in the mailbox, message 3 waiting for room: the
	// subscription delivered handshake messages 1 and 3 and data messages 1 and 2, and is
	// delivering data message 3.
	waitFor(t, "B's subscription to deliver 4 messages", func() bool { return b.sub.Stats().Delivered >= 4 })
	time.Sleep(50 * time.Millisecond) // for the delivery of message 3 to reach the full mailbox
	if st := b.sub.Stats(); st.Delivered != 4 {
		t.Fatalf("B's subscription delivered %d messages with the application stuck, want 4", st.Delivered)
	}

	// B stops: the transport (its delivery of message 3 is cut short), then the backlog,
	// which the application gets to only a little later: Drain waits for it.
	b.offline()
	opened := make(chan struct{})
	go func() { // owned by the test: waited for below
		defer close(opened)
		time.Sleep(100 * time.Millisecond)
		close(gate)
	}()
	defer func() { <-opened }()
	if err := b.node.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := chs[0].SaveSession(session); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	_ = b.node.Close()
	if g := got.get(); len(g) != 2 {
		t.Fatalf("B handled %q before it stopped, want messages 1 and 2", g)
	}

	b, l, chB := bootB()
	defer func() { _ = l.Close(); b.offline() }()
	if chB == nil {
		t.Fatal("B did not restore its channel")
	}
	waitFor(t, fmt.Sprintf("B to handle %d messages", n), func() bool { return len(got.get()) >= n })
	time.Sleep(100 * time.Millisecond) // a message delivered twice would show up by now
	g := got.get()
	if len(g) != n {
		t.Fatalf("B handled %d messages, want %d: %q", len(g), n, g)
	}
	for i, m := range g {
		if want := fmt.Sprintf("%s #%d", marker, i+1); m != want {
			t.Fatalf("B handled %q as message %d, want %q (all: %q)", m, i+1, want, g)
		}
	}
}

// TestCrashLosesNothingQueued checks that a subscription never saves its position past a
// message that is still in a worker's mailbox: the device "crashes" (its link and node are
// dropped) while its application is stuck on the third of five messages, and the device
// that starts in its place with the same subscription id gets the last three.
func TestCrashLosesNothingQueued(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	var msgs [][]byte
	for i := range 5 {
		msgs = append(msgs, envelope("app", fmt.Sprintf("m%d", i)))
	}
	th.preload(ctx, "inbox-x", msgs...)

	var got inbox
	stuck := make(chan struct{})
	x := newDevice(t, "x")
	if err := x.node.Register("app", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		if string(m.Payload) == "m2" {
			close(stuck)
			<-ctx.Done() // stuck until the crash
			return ctx.Err()
		}
		got.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	x.online(th.addr)
	<-stuck
	waitFor(t, "all five delivered into the mailbox", func() bool { return x.sub.Stats().Delivered == 5 })
	// A subscription that saved its position once the page was in the mailbox would have
	// saved 5 by now; give such a save time to land, then check that none did.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if i, err := th.store.GetIndex(ctx, "device-x", "inbox-x", 0); err == nil && i > 2 {
			t.Fatalf("position %d saved while message 2 was still being handled", i)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The crash: the connection goes first, so nothing more reaches the hub; then the node
	// drops what is in the mailbox.
	if err := x.cli.Close(); err != nil {
		t.Fatal(err)
	}
	_ = x.node.Close()
	_ = x.tr.Close()
	x.cli, x.tr, x.sub = nil, nil, nil
	if g := got.get(); len(g) != 2 {
		t.Fatalf("handled %q before the crash, want m0 and m1", g)
	}

	y := newDevice(t, "x") // the same device after its restart
	if err := y.node.Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		got.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	y.online(th.addr)
	waitFor(t, "m4 after the restart", func() bool { g := got.get(); return len(g) > 0 && g[len(g)-1] == "m4" })
	g := got.get()
	seen := map[string]bool{}
	for _, m := range g {
		seen[m] = true
	}
	for i := range 5 {
		if m := fmt.Sprintf("m%d", i); !seen[m] {
			t.Fatalf("%s lost across the crash; handled %q", m, g)
		}
	}
}

// TestWorkerMayWaitForALaterMessage checks that a subscription keeps delivering while a
// worker it delivered to is still busy: the worker handling the first message waits for a
// second worker to receive the next message of the same stream, which a later pull brings.
func TestWorkerMayWaitForALaterMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	th.preload(ctx, "inbox-x", envelope("first", "for first"), envelope("second", "for second"))
	x := newDevice(t, "x")
	second := make(chan struct{})
	firstDone := make(chan struct{})
	if err := x.node.Register("first", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		defer close(firstDone)
		select {
		case <-second:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})); err != nil {
		t.Fatal(err)
	}
	if err := x.node.Register("second", routing.WorkerFunc(func(context.Context, *routing.Message) error {
		close(second)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	x.online(th.addr, bistream.WithConsumerOptions(client.WithPullLimit(1))) // one message per pull
	select {
	case <-firstDone:
	case <-ctx.Done():
		t.Fatal("the first worker is still waiting for the second message: the subscription stopped delivering")
	}
	waitFor(t, "position 2 saved", func() bool {
		i, err := th.store.GetIndex(ctx, "device-x", "inbox-x", 0)
		return err == nil && i == 2
	})
}
