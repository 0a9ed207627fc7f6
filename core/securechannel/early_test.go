package securechannel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// heldBack keeps what node "a" sends to "b" after message 1 (message 3 and data messages)
// from reaching b, so that a test delivers it to b itself, as a stream subscription would:
// labelled with its stream index by a routing.Tracker.
type heldBack struct {
	mu   sync.Mutex
	m3   *wire.TransportMessage
	data []wire.TransportMessage
}

func holdBack(f *fixture) *heldBack {
	h := &heldBack{}
	f.net.mu.Lock()
	f.net.fault = func(from string, m wire.TransportMessage) []wire.TransportMessage {
		typ, _ := PeekType(m.Payload)
		if from != "a" || (typ != TypeHandshake3 && typ != TypeData) {
			return []wire.TransportMessage{m}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		c := m.Clone()
		if typ == TypeHandshake3 {
			h.m3 = &c
		} else {
			h.data = append(h.data, c)
		}
		return nil
	}
	f.net.mu.Unlock()
	return h
}

// message3 returns a copy of the message 3 held back.
func (h *heldBack) message3(t *testing.T) wire.TransportMessage {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m3 == nil {
		t.Fatal("no message 3 was sent")
	}
	return h.m3.Clone()
}

// dataMessage returns a copy of the i-th data message held back.
func (h *heldBack) dataMessage(t *testing.T, i int) wire.TransportMessage {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if i >= len(h.data) {
		t.Fatalf("%d data messages were sent, want at least %d", len(h.data), i+1)
	}
	return h.data[i].Clone()
}

// halfOpen returns the listener's one channel, which waits for message 3.
func halfOpen(t *testing.T, l *Listener) *SecureChannel {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.hellos) != 1 || l.pending != 1 {
		t.Fatalf("the listener has %d channels, %d pending; want one half-open", len(l.hellos), l.pending)
	}
	for _, c := range l.hellos {
		return c
	}
	return nil
}

// TestEarlyDataPendingAcrossSessionRestore: a data message that overtakes message 3 stays
// pending with the subscription that delivered it while the responder keeps it, so the
// subscription never saves its position past it. A responder saved while waiting for message
// 3 (its session does not hold that message) and restarted (or crashed) then gets it again
// from the stream, and delivers it once message 3 arrives.
func TestEarlyDataPendingAcrossSessionRestore(t *testing.T) {
	f := newFixture(t, false, 0)
	hb := holdBack(f)
	f.send(t, f.dial(t), "overtook message 3")
	rc := halfOpen(t, f.listener)
	// The stream of b's inbox: the data message at index 7, message 3 at index 8.
	stream := map[uint64]wire.TransportMessage{7: hb.dataMessage(t, 0), 8: hb.message3(t)}
	ctx := context.Background()
	sub := routing.NewTracker()
	if err := f.b.Send(sub.Context(ctx, 7), stream[7].Clone()); err != nil {
		t.Fatal(err)
	}
	if l, ok := sub.Lowest(); !ok || l != 7 {
		t.Fatalf("the data message kept until message 3 is not pending (lowest %d, %v): the subscription saves its position past it", l, ok)
	}
	path := filepath.Join(t.TempDir(), "b.session")
	if err := rc.SaveSession(path); err != nil { // the device stops (or crashes after a save)
		t.Fatal(err)
	}
	// The device restarts, and the subscription resumes from the position it saved: past
	// what it delivered, but not past what is pending.
	sb, _, sub2 := crashAndResume(t, f, stream, sub, 8, func(l *Listener) (*SecureChannel, error) { return l.RestoreSession(path) })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sb.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	if m := f.app.next(t); string(m.Payload) != "echo: overtook message 3" {
		t.Fatalf("reply %q", m.Payload)
	}
	waitFor(t, func() bool { return sub2.Pending() == 0 })
}

// halfOpenSavedThenMessage3 saves the listener's half-open channel with save, then delivers
// message 3 to it under a Tracker as a stream subscription would (index 8; the initiator's
// first data message, sent meanwhile, is at index 9), and returns that stream and the
// Tracker.
func halfOpenSavedThenMessage3(t *testing.T, f *fixture, save func(*SecureChannel)) (map[uint64]wire.TransportMessage, *routing.Tracker) {
	t.Helper()
	hb := holdBack(f)
	sa := f.dial(t) // the initiator's channel is open once it sent message 3
	rc := halfOpen(t, f.listener)
	save(rc)
	f.send(t, sa, "after message 3")
	stream := map[uint64]wire.TransportMessage{8: hb.message3(t), 9: hb.dataMessage(t, 0)}
	sub := routing.NewTracker()
	if err := f.b.Send(sub.Context(context.Background(), 8), stream[8].Clone()); err != nil {
		t.Fatal(err)
	}
	if rc.PeerIdentity() != f.ida.PublicKey() {
		t.Fatal("message 3 did not complete the handshake")
	}
	return stream, sub
}

// crashAndResume closes b's listener and node without saving anything more (a crash),
// starts a new node "b" with a listener and the echo worker, restores the responder with
// restore, and delivers the stream from the position the subscription saved: past what it
// delivered (up to last), but not past what is pending with sub. It returns the restored
// responder, the index it resumed from, and the Tracker of the resumed subscription.
func crashAndResume(t *testing.T, f *fixture, stream map[uint64]wire.TransportMessage, sub *routing.Tracker, last uint64, restore func(*Listener) (*SecureChannel, error)) (*SecureChannel, uint64, *routing.Tracker) {
	t.Helper()
	resume := last
	if l, ok := sub.Lowest(); ok {
		resume = min(resume, l)
	}
	nb, l2 := f.crashBWithEcho(t)
	sb, err := restore(l2)
	if err != nil {
		t.Fatal(err)
	}
	sub2 := routing.NewTracker()
	for i := resume; i <= last; i++ {
		if err := nb.Send(sub2.Context(context.Background(), i), stream[i].Clone()); err != nil {
			t.Fatal(err)
		}
	}
	return sb, resume, sub2
}

// TestMessage3PendingUntilSaved: a responder saved while it waited for message 3 completes
// the handshake when message 3 comes, but its saved state is still the half-open handshake
// until the open channel is saved. Message 3 stays pending with the subscription that
// delivered it until then: after a crash before that save, the subscription delivers message
// 3 again, and the restored responder completes the handshake. (Message 3 was handled at
// once, so the subscription saved its position past it, and the restored responder waited
// for a message 3 that never came again: what the initiator sent on its open channel was
// kept until the handshake timeout, then lost.)
func TestMessage3PendingUntilSaved(t *testing.T) {
	f := newFixture(t, false, 0)
	var state []byte
	stream, sub := halfOpenSavedThenMessage3(t, f, func(rc *SecureChannel) {
		state = mustMarshal(t, rc)
	})
	sb, resume, _ := crashAndResume(t, f, stream, sub, 9, func(l *Listener) (*SecureChannel, error) { return l.Restore(state) })
	if sb.PeerIdentity() != f.ida.PublicKey() {
		t.Fatalf("the restored responder never got message 3 (the subscription resumed at %d, past it): the channel is lost", resume)
	}
	select {
	case who := <-f.peers: // the data message was delivered, through the channel
		if who != f.ida.PublicKey() {
			t.Fatalf("delivered from %v, want %v", who, f.ida.PublicKey())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the data message sent after message 3 was not delivered")
	}
}

// TestMessage3CompletesSavedSession: a responder saved to a session file while it waited for
// message 3 saves the open channel there when message 3 completes the handshake, so that
// message 3 does not stay pending (the subscription moves past it) and a crash afterwards
// restores the open channel.
func TestMessage3CompletesSavedSession(t *testing.T) {
	f := newFixture(t, false, 0)
	path := filepath.Join(t.TempDir(), "b.session")
	stream, sub := halfOpenSavedThenMessage3(t, f, func(rc *SecureChannel) {
		if err := rc.SaveSession(path); err != nil {
			t.Fatal(err)
		}
	})
	if n := sub.Pending(); n != 0 {
		t.Fatalf("%d message(s) pending after message 3 completed a channel with a session file", n)
	}
	sb, _, _ := crashAndResume(t, f, stream, sub, 9, func(l *Listener) (*SecureChannel, error) { return l.RestoreSession(path) })
	if sb.PeerIdentity() != f.ida.PublicKey() {
		t.Fatal("the restored responder is not open: its file still held the half-open handshake")
	}
	if m := f.app.next(t); string(m.Payload) != "echo: after message 3" {
		t.Fatalf("reply %q", m.Payload)
	}
}

// TestEarlyDataPendingUntilHandled: once message 3 arrived, a data message that overtook it
// stays pending under its own stream index (not that of message 3) until the worker it was
// delivered to handled it.
func TestEarlyDataPendingUntilHandled(t *testing.T) {
	f := newFixture(t, false, 0)
	slow := f.slowWorker(t)
	hb := holdBack(f)
	sc := f.dial(t)
	ctx := context.Background()
	if err := f.a.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{sc.Address(), wire.Local("slow")}, Payload: []byte("early")}); err != nil {
		t.Fatal(err)
	}
	sub := routing.NewTracker()
	if err := f.b.Send(sub.Context(ctx, 7), hb.dataMessage(t, 0)); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Send(sub.Context(ctx, 8), hb.message3(t)); err != nil { // opens the channel and delivers
		t.Fatal(err)
	}
	if got := sub.Labels(nil); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("pending labels %v while the early message waits for its worker, want [7]", got)
	}
	if m := <-slow; string(m.Payload) != "early" {
		t.Fatalf("delivered %q", m.Payload)
	}
	waitFor(t, func() bool { return sub.Pending() == 0 })
}

// TestEarlyDataReleasedOnHandshakeTimeout: when the responder forgets its half-open channel
// (handshake timeout), the data messages it kept are lost, as documented, and no longer
// pending: the subscription that delivered them moves on.
func TestEarlyDataReleasedOnHandshakeTimeout(t *testing.T) {
	f := newFixture(t, false, 0)
	hb := holdBack(f)
	f.send(t, f.dial(t), "never opened")
	rc := halfOpen(t, f.listener)
	sub := routing.NewTracker()
	ctx := context.Background()
	if err := f.b.Send(sub.Context(ctx, 7), hb.dataMessage(t, 0)); err != nil {
		t.Fatal(err)
	}
	if sub.Pending() != 1 {
		t.Fatalf("%d messages pending, want the one kept", sub.Pending())
	}
	rc.mu.Lock()
	rc.timer.Reset(0) // the handshake timeout passes now
	rc.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rc.Wait(wctx); err == nil || wctx.Err() != nil {
		t.Fatalf("Wait after the handshake timeout: %v", err)
	}
	if got := sub.Labels(nil); len(got) != 0 {
		t.Fatalf("labels %v still pending after the half-open channel was forgotten", got)
	}
	// A data message that reaches the channel after that (it raced with the unregistering)
	// is dropped, not kept pending for good.
	if err := (decryptor{rc}).Send(sub.Context(ctx, 9), hb.dataMessage(t, 0)); err != nil {
		t.Fatal(err)
	}
	if got := sub.Labels(nil); len(got) != 0 {
		t.Fatalf("labels %v pending after a data message reached the forgotten channel", got)
	}
}

// TestEarlyDataBeyondBoundsNotHeld: a data message that comes when the half-open channel
// keeps as many as it may is dropped, counted, and not pending; the kept ones are, until
// message 3 delivers them.
func TestEarlyDataBeyondBoundsNotHeld(t *testing.T) {
	f := newFixture(t, false, 0)
	hb := holdBack(f)
	sc := f.dial(t)
	for i := range maxEarly + 1 {
		f.send(t, sc, fmt.Sprint(i))
	}
	rc := halfOpen(t, f.listener)
	sub := routing.NewTracker()
	ctx := context.Background()
	var want []uint64
	for i := range maxEarly + 1 {
		if err := f.b.Send(sub.Context(ctx, uint64(i+1)), hb.dataMessage(t, i)); err != nil {
			t.Fatal(err)
		}
		if i < maxEarly {
			want = append(want, uint64(i+1))
		}
	}
	if got := sub.Labels(nil); !slices.Equal(got, want) {
		t.Fatalf("pending labels %v, want the %d kept messages %v", got, maxEarly, want)
	}
	if got := rc.Stats().Rejected; got != 1 {
		t.Fatalf("Rejected = %d, want the one message beyond the bound", got)
	}
	if err := f.b.Send(sub.Context(ctx, 100), hb.message3(t)); err != nil {
		t.Fatal(err)
	}
	for range maxEarly {
		f.app.next(t)
	}
	waitFor(t, func() bool { return sub.Pending() == 0 })
}

// TestHalfOpenStrayHandshakeMessage: a handshake message that a responder waiting for
// message 3 does not expect (a message 2, an IK message 2: reflected or stray) is counted as
// a duplicate and changes nothing: message 3 still completes the handshake.
func TestHalfOpenStrayHandshakeMessage(t *testing.T) {
	f := newFixture(t, false, 0)
	hb := holdBack(f)
	sc := f.dial(t)
	rc := halfOpen(t, f.listener)
	ctx := context.Background()
	to := wire.Route{wire.Local(rc.decAddr)}
	for _, stray := range []struct {
		t    MessageType
		size int
	}{{TypeHandshake2, handshake2Size}, {TypeIK2, ik2Size}} {
		msg := append([]byte{byte(stray.t)}, make([]byte, stray.size-1)...)
		if err := f.b.Send(ctx, wire.TransportMessage{OnwardRoute: to, Payload: msg}); err != nil {
			t.Fatal(err)
		}
	}
	if st := rc.Stats(); st != (Stats{Duplicates: 2}) {
		t.Fatalf("stats %+v after two stray handshake messages, want 2 duplicates", st)
	}
	if err := f.b.Send(ctx, hb.message3(t)); err != nil {
		t.Fatal(err)
	}
	f.send(t, sc, "after")
	if err := f.b.Send(ctx, hb.dataMessage(t, 0)); err != nil {
		t.Fatal(err)
	}
	if m := f.app.next(t); string(m.Payload) != "echo: after" {
		t.Fatalf("reply %q", m.Payload)
	}
}

// slowWorker registers a worker at "slow" on B's node that hands each message it handles
// to the returned channel: a message delivered to it stays unhandled until the test takes it.
func (f *fixture) slowWorker(t *testing.T) <-chan *routing.Message {
	t.Helper()
	slow := make(chan *routing.Message)
	if err := f.b.Register("slow", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		select {
		case slow <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})); err != nil {
		t.Fatal(err)
	}
	return slow
}

// TestRestoreRacesMessage3: a message 3 that reaches a restored half-open responder as soon
// as its addresses are registered (over a link that is up already) completes a channel that
// its listener knows: Listener.Channel finds it, Stats counts it open and not pending, and the
// channel, restored from a session file, saves itself there. (Restore registered the
// addresses before the listener tracked the channel and before RestoreSession set its file:
// a message 3 in between completed a channel that the listener counted as pending for good
// and did not find, and its callbacks were written while the handshake read them.)
func TestRestoreRacesMessage3(t *testing.T) {
	for i := range 20 {
		f := newFixture(t, false, 0)
		hb := holdBack(f)
		f.dial(t) // the initiator's channel is open once it sent message 3, held back here
		path := filepath.Join(t.TempDir(), "b.session")
		if err := halfOpen(t, f.listener).SaveSession(path); err != nil {
			t.Fatal(err)
		}
		msg3 := hb.message3(t)
		nb, l2 := f.crashB(t) // the device stops before message 3 comes, and starts again
		saved := mustReadFile(t, path)
		sent := make(chan error, 1)
		go func() { // delivers message 3 as soon as the channel's address takes it
			for range 1_000_000 {
				err := nb.Send(context.Background(), msg3.Clone())
				if !errors.Is(err, routing.ErrNoRoute) {
					sent <- err
					return
				}
				runtime.Gosched()
			}
			sent <- errors.New("the restored channel's address never took message 3")
		}()
		sb, err := l2.RestoreSession(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = sb.Wait(wctx)
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if s := l2.Stats(); s.Pending != 0 || s.Open != 1 || s.Opened != 1 {
			t.Fatalf("run %d: listener stats %+v after message 3 opened the restored channel, want 0 pending, 1 open, 1 opened", i, s)
		}
		if c, ok := l2.Channel(sb.Address()); !ok || c != sb {
			t.Fatalf("run %d: Listener.Channel does not find the restored channel", i)
		}
		// The channel saves itself after it opened (Wait returns before).
		waitFor(t, func() bool { return !bytes.Equal(mustReadFile(t, path), saved) })
		l2.Close()
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
