package securechannel

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

func TestHandshakeIK(t *testing.T) {
	ia, ib := mustIdentity(t), mustIdentity(t)
	ini, err := NewInitiatorIK(Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())}, ib.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	res, _ := NewResponder(Config{Identity: ib, Trust: TrustKeys(ia.PublicKey())})
	if _, err := ini.WriteMessageWithPayload(make([]byte, MaxEarlyDataSize+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("too much early data: %v", err)
	}
	m1, err := ini.WriteMessageWithPayload([]byte("early"))
	if err != nil {
		t.Fatal(err)
	}
	if MessageType(m1[0]) != TypeIK1 {
		t.Fatalf("first IK message has type %v", MessageType(m1[0]))
	}
	if err := res.ReadMessage(m1); err != nil {
		t.Fatal(err)
	}
	if string(res.EarlyData()) != "early" {
		t.Fatalf("early data %q", res.EarlyData())
	}
	if k, ok := res.PeerIdentity(); !ok || k != ia.PublicKey() {
		t.Fatal("responder does not know the initiator after IK message 1")
	}
	m2, err := res.WriteMessage()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete() {
		t.Fatal("IK responder not complete after message 2")
	}
	if err := ini.ReadMessage(m2); err != nil {
		t.Fatal(err)
	}
	a, err := ini.Channel()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := res.Channel()
	open(t, b, seal(t, a, "to responder"), "to responder")
	open(t, a, seal(t, b, "to initiator"), "to initiator")
	if a.PeerIdentity() != ib.PublicKey() || b.PeerIdentity() != ia.PublicKey() {
		t.Fatal("wrong peer identities")
	}
}

func TestHandshakeIKRefusals(t *testing.T) {
	ia, ib, other := mustIdentity(t), mustIdentity(t), mustIdentity(t)
	t.Run("initiator does not trust the key it was given", func(t *testing.T) {
		_, err := NewInitiatorIK(Config{Identity: ia, Trust: TrustKeys(other.PublicKey())}, ib.PublicKey())
		if !errors.Is(err, ErrUntrusted) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("responder refuses initiator in message 1", func(t *testing.T) {
		ini, _ := NewInitiatorIK(Config{Identity: ia, Trust: TrustAnyInsecure()}, ib.PublicKey())
		res, _ := NewResponder(Config{Identity: ib, Trust: TrustKeys(other.PublicKey())})
		m1, _ := ini.WriteMessageWithPayload([]byte("secret"))
		if err := res.ReadMessage(m1); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("got %v", err)
		}
		if res.EarlyData() != nil {
			t.Fatal("early data of an untrusted initiator is exposed")
		}
		if _, err := res.WriteMessage(); !errors.Is(err, ErrHandshakeFailed) {
			t.Fatalf("after refusal: %v", err)
		}
	})
	t.Run("message 1 for another responder key", func(t *testing.T) {
		ini, _ := NewInitiatorIK(Config{Identity: ia, Trust: TrustAnyInsecure()}, other.PublicKey())
		res, _ := NewResponder(Config{Identity: ib, Trust: TrustAnyInsecure()})
		m1, _ := ini.WriteMessage()
		if err := res.ReadMessage(m1); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("payload only in IK message 1", func(t *testing.T) {
		ini, _ := NewInitiator(Config{Identity: ia, Trust: TrustAnyInsecure()})
		if _, err := ini.WriteMessageWithPayload([]byte("x")); !errors.Is(err, ErrHandshakeState) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRoutingDialIK(t *testing.T) {
	f := newFixture(t, true, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	early := &wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("echo")}, ReturnRoute: wire.Route{wire.Local("app")}, Payload: []byte("early")}
	sc, err := DialIK(ctx, f.a, f.listenerRoute, f.cfgA, f.idb.PublicKey(), early)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if m := f.app.next(t); string(m.Payload) != "echo: early" || !m.ReturnRoute[0].Equal(sc.Address()) {
		t.Fatalf("reply to early data: %q via %s", m.Payload, m.ReturnRoute)
	}
	if got := <-f.peers; got != f.ida.PublicKey() {
		t.Fatal("responder application does not see the initiator's identity for early data")
	}
	f.send(t, sc, "later")
	if m := f.app.next(t); string(m.Payload) != "echo: later" {
		t.Fatalf("reply %q", m.Payload)
	}
	<-f.peers

	// Without early data, nothing goes on (nor is rejected) before the first data message.
	sc2, err := DialIK(ctx, f.a, f.listenerRoute, f.cfgA, f.idb.PublicKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc2.Close()
	f.send(t, sc2, "no early data")
	if m := f.app.next(t); string(m.Payload) != "echo: no early data" {
		t.Fatalf("reply %q", m.Payload)
	}
	<-f.peers
	recvWithin(t, f.established, "the first IK channel established (OnChannel)")
	rc2 := recvWithin(t, f.established, "the second IK channel established (OnChannel)")
	if st := rc2.Stats(); st.Delivered != 1 || st.Rejected != 0 {
		t.Fatalf("IK channel without early data: stats %+v, want the one data message delivered", st)
	}

	// Early data without an onward route: refused before anything is sent.
	if _, err := DialIK(ctx, f.a, f.listenerRoute, f.cfgA, f.idb.PublicKey(), &wire.TransportMessage{Payload: []byte("nowhere")}); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("early data without an onward route: %v, want core.ErrInvalidArgument", err)
	}
	// Untrusted responder key: refused before anything is sent.
	if _, err := DialIK(ctx, f.a, f.listenerRoute, f.cfgA, mustIdentity(t).PublicKey(), nil); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("untrusted responder key: %v", err)
	}
}

// TestRoutingIKReplay replays an IK message 1 with early data after its channel closed: the
// listener remembers it and does not deliver the early data again.
func TestRoutingIKReplay(t *testing.T) {
	f := newFixture(t, false, 0)
	raw := make(inbox, 10)
	if err := f.a.Register("raw", raw); err != nil {
		t.Fatal(err)
	}
	hs, err := NewInitiatorIK(f.cfgA, f.idb.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	inner := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("echo")}, ReturnRoute: wire.Route{wire.Local("raw")}, Payload: []byte("pay me once")}
	m1, err := hs.WriteMessageWithPayload(inner.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	send := func() {
		t.Helper()
		err := f.a.Send(context.Background(), wire.TransportMessage{OnwardRoute: f.listenerRoute, ReturnRoute: wire.Route{wire.Local("raw")}, Payload: m1})
		if err != nil {
			t.Fatal(err)
		}
	}
	send()
	send() // duplicate while the channel lives
	got := map[string]int{}
	for range 2 { // IK message 2 and the echo of the early data (the echo is encrypted)
		m := raw.next(t)
		got[MessageType(m.Payload[0]).String()]++
	}
	if got["ik2"] != 1 || got["data"] != 1 {
		t.Fatalf("raw initiator received %v", got)
	}
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	rc.Close()
	send() // replay after the channel is gone

	// A fresh channel through the same listener: once it works, the replay was handled.
	sc := f.dial(t)
	f.send(t, sc, "fresh")
	if m := f.app.next(t); string(m.Payload) != "echo: fresh" {
		t.Fatalf("reply %q", m.Payload)
	}
	if n := len(f.peers); n != 2 { // the early data once, "fresh" once
		t.Fatalf("echo ran %d times, want 2", n)
	}
	select {
	case m := <-raw:
		t.Fatalf("replay was answered: %v", MessageType(m.Payload[0]))
	default:
	}
	// IK message 1, its duplicate and its replay; then the XX channel of "fresh".
	if s := f.listener.Stats(); s != (ListenerStats{Accepted: 2, Opened: 2, Duplicates: 2, Open: 1}) {
		t.Errorf("listener stats: %+v", s)
	}
}

// TestListenerRemembersBoundedIK: a listener remembers the last maxRememberedIK messages 1
// of IK handshakes (to refuse replays), and forgets the oldest first.
func TestListenerRemembersBoundedIK(t *testing.T) {
	l := &Listener{seenIK: map[ikDigest]struct{}{}}
	for i := range maxRememberedIK + 1 {
		l.rememberIK(fmt.Sprint(i))
	}
	if len(l.seenIK) != maxRememberedIK || len(l.seenOrder) != maxRememberedIK {
		t.Fatalf("remembers %d messages (%d in order), want %d", len(l.seenIK), len(l.seenOrder), maxRememberedIK)
	}
	if _, ok := l.seenIK[sha256.Sum256([]byte("0"))]; ok {
		t.Fatal("the oldest message 1 is still remembered")
	}
	if _, ok := l.seenIK[sha256.Sum256([]byte(fmt.Sprint(maxRememberedIK)))]; !ok {
		t.Fatal("the newest message 1 is not remembered")
	}
}

// ikHello returns an IK message 1 from a's identity to b's listener "sc" as it reaches b
// (from a stream, say), with early data: an inner message to onward on b carrying payload.
// Its return route leads to a's "raw" inbox, which gets message 2.
func ikHello(t *testing.T, f *fixture, onward wire.Route, payload string) wire.TransportMessage {
	t.Helper()
	if err := f.a.Register("raw", make(inbox, 10)); err != nil && !errors.Is(err, routing.ErrAddressInUse) {
		t.Fatal(err)
	}
	hs, err := NewInitiatorIK(f.cfgA, f.idb.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	inner := wire.TransportMessage{OnwardRoute: onward, ReturnRoute: wire.Route{wire.Local("app")}, Payload: []byte(payload)}
	m1, err := hs.WriteMessageWithPayload(inner.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("sc")}, ReturnRoute: wire.Route{mem("a"), wire.Local("raw")}, Payload: m1}
}

// listenerBarrier sends the listener on node a message that it ignores, labelled label with
// sub, and waits until that message is handled: the listener has then handled what was
// sent to it before, whether it handles messages in their delivery or queued in order.
func listenerBarrier(t *testing.T, node *routing.Node, sub *routing.Tracker, label uint64) {
	t.Helper()
	if err := node.Send(sub.Context(context.Background(), label), barrierMessage()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !slices.Contains(sub.Labels(nil), label) })
}

func barrierMessage() wire.TransportMessage {
	return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("sc")}, Payload: []byte{byte(TypeData)}}
}

// onlyChannel returns the listener's one channel.
func onlyChannel(t *testing.T, l *Listener) *SecureChannel {
	t.Helper()
	chs := l.Channels()
	if len(chs) != 1 {
		t.Fatalf("the listener has %d channels, want 1", len(chs))
	}
	return chs[0]
}

// nextPayload returns the next payload from ch, within 10s.
func nextPayload(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return ""
	}
}

// TestIKEarlyDataPendingUntilHandled: the early data of IK message 1 stays pending under the
// stream index of message 1 until the worker it was delivered to handled it, so a stream
// subscription does not save its position past message 1 before that.
func TestIKEarlyDataPendingUntilHandled(t *testing.T) {
	f := newFixture(t, false, 0)
	slow := f.slowWorker(t)
	m1 := ikHello(t, f, wire.Route{wire.Local("slow")}, "early")
	sub := routing.NewTracker()
	if err := f.b.Send(sub.Context(context.Background(), 7), m1); err != nil {
		t.Fatal(err)
	}
	listenerBarrier(t, f.b, sub, 8)
	if got := sub.Labels(nil); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("pending labels %v while the early data waits for its worker, want [7]: the subscription saves its position past message 1", got)
	}
	select {
	case m := <-slow:
		if string(m.Payload) != "early" {
			t.Fatalf("delivered %q", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("early data not delivered within 10s")
	}
	waitFor(t, func() bool { return sub.Pending() == 0 })
}

// TestIKEarlyDataPendingAcrossSessionRestore: the responder crashes after its channel was
// saved and before the worker handled the early data of IK message 1. The subscription did
// not save its position past message 1, and the restored channel delivers the early data when
// message 1 comes again from the stream, once.
func TestIKEarlyDataPendingAcrossSessionRestore(t *testing.T) {
	f := newFixture(t, false, 0)
	arrived := make(chan string, 10)
	if err := f.b.Register("work", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		arrived <- string(m.Payload)
		<-ctx.Done() // never handled: the process crashes first
		return ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}
	// The stream of b's inbox: message 1 at index 7, a message for the listener at 8.
	stream := map[uint64]wire.TransportMessage{7: ikHello(t, f, wire.Route{wire.Local("work")}, "early"), 8: barrierMessage()}
	ctx := context.Background()
	sub := routing.NewTracker()
	if err := f.b.Send(sub.Context(ctx, 7), stream[7].Clone()); err != nil {
		t.Fatal(err)
	}
	if p := nextPayload(t, arrived); p != "early" {
		t.Fatalf("delivered %q", p)
	}
	listenerBarrier(t, f.b, sub, 8)
	if got := sub.Labels(nil); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("pending labels %v while the early data is being handled, want [7]", got)
	}
	path := filepath.Join(t.TempDir(), "b.session")
	if err := onlyChannel(t, f.listener).SaveSession(path); err != nil {
		t.Fatal(err)
	}
	resume := uint64(9) // past what the subscription delivered, but not past what is pending
	if l, ok := sub.Lowest(); ok {
		resume = min(resume, l)
	}
	nb, l2, work := restartB(t, f) // the crash (the early data was never handled), and the restart
	sb, err := l2.RestoreSession(path)
	if err != nil {
		t.Fatal(err)
	}
	sub2 := routing.NewTracker()
	for i := resume; i <= 8; i++ { // the subscription resumes from its saved position
		if err := nb.Send(sub2.Context(ctx, i), stream[i].Clone()); err != nil {
			t.Fatal(err)
		}
	}
	listenerBarrier(t, nb, sub2, 9)
	if err := nb.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("work")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if m := work.next(t); string(m.Payload) != "early" {
		t.Fatalf("the restored channel delivered %q first, want the early data of message 1", m.Payload)
	}
	if m := work.next(t); string(m.Payload) != "marker" {
		t.Fatalf("then %q, want the marker", m.Payload)
	}
	waitFor(t, func() bool { return sub2.Pending() == 0 })

	// Handled now: message 1 coming once more is a duplicate.
	if err := nb.Send(ctx, stream[7].Clone()); err != nil {
		t.Fatal(err)
	}
	if err := nb.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("work")}, Payload: []byte("marker 2")}); err != nil {
		t.Fatal(err)
	}
	if m := work.next(t); string(m.Payload) != "marker 2" {
		t.Fatalf("got %q after a duplicate message 1, want the marker: the early data was delivered twice", m.Payload)
	}
	if d := sb.Stats().Duplicates; d == 0 {
		t.Fatal("the duplicate message 1 was not counted")
	}
}

// TestIKEarlyDataHandledNotRedeliveredAfterRestore: a channel saved after the early data of
// IK message 1 was handled does not deliver it again when message 1 comes again after a
// restart (the subscription had not saved its position past it yet).
func TestIKEarlyDataHandledNotRedeliveredAfterRestore(t *testing.T) {
	f, m1, path := ikEarlyDataHandledAndSaved(t)
	ctx := context.Background()
	nb, l2, work2 := restartB(t, f)
	sb, err := l2.RestoreSession(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := nb.Send(ctx, m1.Clone()); err != nil {
		t.Fatal(err)
	}
	listenerBarrier(t, nb, routing.NewTracker(), 1)
	if err := nb.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("work")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if m := work2.next(t); string(m.Payload) != "marker" {
		t.Fatalf("got %q, want the marker: handled early data was delivered again", m.Payload)
	}
	if d := sb.Stats().Duplicates; d != 1 {
		t.Fatalf("Duplicates = %d, want the repeated message 1", d)
	}
}

// TestIKEarlyDataCutShortDeliveredAgain: when the delivery of the early data of IK message 1
// is cut short (the subscription stops while the worker's mailbox is full), the listener
// returns the error, so the subscription does not move past message 1, and delivers the
// early data when message 1 comes again, once; also when the delivery is cut short a second
// time.
func TestIKEarlyDataCutShortDeliveredAgain(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t)) // its "raw" worker gets message 2
	work := newStallWorker(t, f.node, "work")
	hs, err := NewInitiatorIK(f.cfgA, f.idb.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	inner := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("work")}, Payload: []byte("early")}
	p1, err := hs.WriteMessageWithPayload(inner.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	m1 := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("sc")}, ReturnRoute: wire.Route{wire.Local("raw")}, Payload: p1}
	ctx := context.Background()
	work.fill(t) // the mailbox (one message) is full once "busy" is being handled

	stopped, stop := context.WithCancel(ctx)
	stop() // the subscription stops while it delivers message 1
	err = f.node.Send(stopped, m1.Clone())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("delivering message 1 while its early data cannot be delivered: %v, want context.Canceled (cut short, so that it comes again)", err)
	}
	work.free(t)
	work.fill(t) // it comes again, and is cut short again
	if err := f.node.Send(stopped, m1.Clone()); !errors.Is(err, context.Canceled) {
		t.Fatalf("delivering message 1 again while its early data cannot be delivered: %v, want context.Canceled", err)
	}
	work.free(t)
	sub := routing.NewTracker()
	if err := f.node.Send(sub.Context(ctx, 7), m1.Clone()); err != nil { // it comes a third time
		t.Fatal(err)
	}
	if p := work.next(t); p != "early" {
		t.Fatalf("got %q, want the early data", p)
	}
	waitFor(t, func() bool { return sub.Pending() == 0 })
	if err := f.node.Send(ctx, m1.Clone()); err != nil { // and again: delivered already
		t.Fatal(err)
	}
	if err := f.node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("work")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if p := work.next(t); p != "marker" {
		t.Fatalf("got %q, want the marker: the early data was delivered twice", p)
	}
	if d := onlyChannel(t, f.l).Stats().Duplicates; d != 3 {
		t.Fatalf("Duplicates = %d, want the three repeated messages 1", d)
	}
}

// TestSessionEarlyUnhandledFlagOnlyForIK: a state that says the early data of IK message 1
// was not handled is refused for any channel that is not an IK responder.
func TestSessionEarlyUnhandledFlagOnlyForIK(t *testing.T) {
	f := newFixture(t, false, 0)
	f.dial(t) // XX
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	state := mustMarshal(t, rc)
	if _, err := decodeSession(state); err != nil {
		t.Fatal(err)
	}
	state[1] |= kindEarlyUnhandled
	if _, err := decodeSession(state); !errors.Is(err, ErrSessionCorrupt) {
		t.Fatalf("decode an XX responder's state with unhandled early data: %v, want ErrSessionCorrupt", err)
	}

	// Nor for an XX responder waiting for message 3.
	holdBack(f)
	f.dial(t)
	var half *SecureChannel
	for _, c := range f.listener.Channels() {
		if c != rc {
			half = c
		}
	}
	if half == nil {
		t.Fatal("no half-open channel")
	}
	state = mustMarshal(t, half)
	if s, err := decodeSession(state); err != nil || s.kind != kindAwaiting3 {
		t.Fatalf("decode a responder waiting for message 3: %v", err)
	}
	state[1] |= kindEarlyUnhandled
	if _, err := decodeSession(state); !errors.Is(err, ErrSessionCorrupt) {
		t.Fatalf("decode the state of a responder waiting for message 3 with unhandled early data: %v, want ErrSessionCorrupt", err)
	}
}

// ikEarlyDataHandledAndSaved makes B's listener take an IK message 1 whose early data goes
// to B's worker "work", waits until the worker handled it, saves the responder channel's
// session. It returns the fixture, message 1 (as the stream would deliver it again) and the
// session file; restartB stops B and starts it again.
func ikEarlyDataHandledAndSaved(t *testing.T) (*fixture, wire.TransportMessage, string) {
	t.Helper()
	f := newFixture(t, false, 0)
	work := make(inbox, 10)
	if err := f.b.Register("work", work); err != nil {
		t.Fatal(err)
	}
	m1 := ikHello(t, f, wire.Route{wire.Local("work")}, "early")
	sub := routing.NewTracker()
	if err := f.b.Send(sub.Context(context.Background(), 7), m1.Clone()); err != nil {
		t.Fatal(err)
	}
	if m := work.next(t); string(m.Payload) != "early" {
		t.Fatalf("delivered %q", m.Payload)
	}
	// Received is not handled yet: wait until the worker returned, or the save would find
	// the early data unhandled and the restored channel would rightly deliver it again.
	waitFor(t, func() bool { return sub.Pending() == 0 })
	path := filepath.Join(t.TempDir(), "b.session")
	if err := onlyChannel(t, f.listener).SaveSession(path); err != nil {
		t.Fatal(err)
	}
	return f, m1, path
}

// restartB stops device B, as a crash would, and starts it again (fixture.crashB) with an
// inbox as its worker "work".
func restartB(t *testing.T, f *fixture) (*routing.Node, *Listener, inbox) {
	t.Helper()
	nb, l2 := f.crashB(t)
	work2 := make(inbox, 10)
	if err := nb.Register("work", work2); err != nil {
		t.Fatal(err)
	}
	return nb, l2, work2
}
