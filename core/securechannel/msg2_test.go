package securechannel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// stallWorker is a worker that hands the payload of each message it takes to the test. On a
// node whose mailboxes hold one message (routing.WithMailboxSize(1)), fill makes it busy with
// one message and queues another, so that a send to it with an ended ctx is cut short, and
// free lets it take them.
type stallWorker struct {
	node    *routing.Node
	name    string
	arrived chan string
	release chan struct{}
}

// newStallWorker registers a stallWorker at name on node.
func newStallWorker(t *testing.T, node *routing.Node, name string) *stallWorker {
	t.Helper()
	w := &stallWorker{node: node, name: name, arrived: make(chan string, 10), release: make(chan struct{})}
	if err := node.Register(name, routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		w.arrived <- string(m.Payload)
		if string(m.Payload) == "busy" {
			select {
			case <-w.release:
			case <-ctx.Done():
			}
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	return w
}

// fill makes the worker's mailbox full: a send to it with an ended ctx is cut short.
func (w *stallWorker) fill(t *testing.T) {
	t.Helper()
	for _, p := range []string{"busy", "queued"} {
		if err := w.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(w.name)}, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	if p := w.next(t); p != "busy" {
		t.Fatalf("got %q", p)
	}
}

// free lets the worker go on, and takes what fill queued; fill may be called again after.
func (w *stallWorker) free(t *testing.T) {
	t.Helper()
	close(w.release)
	if p := w.next(t); p != "queued" {
		t.Fatalf("got %q", p)
	}
	w.release = make(chan struct{}) // the worker is idle: the next fill's "busy" waits on it
}

// next returns the payload of the next message the worker takes, within 10s.
func (w *stallWorker) next(t *testing.T) string {
	t.Helper()
	return nextPayload(t, w.arrived)
}

// msg2Fixture is a listener on a node whose "raw" worker (a stallWorker) gets the listener's
// messages 2. The node's mailboxes hold one message, so that a send of message 2 can be cut
// short.
type msg2Fixture struct {
	node       *routing.Node
	l          *Listener
	ida        *Identity
	idb        *Identity
	cfgA, cfgB Config // an initiator of ida and the listener, of idb, trusting each other
	raw        *stallWorker
}

func newMsg2Fixture(t *testing.T, ida, idb *Identity) *msg2Fixture {
	t.Helper()
	node, err := routing.NewNode(routing.WithMailboxSize(1), routing.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	f := &msg2Fixture{node: node, ida: ida, idb: idb}
	f.cfgA = Config{Identity: ida, Trust: TrustKeys(idb.PublicKey())}
	f.cfgB = Config{Identity: idb, Trust: TrustKeys(ida.PublicKey())}
	f.l = listen(t, node, "sc", f.cfgB)
	f.raw = newStallWorker(t, node, "raw")
	return f
}

// sendCutShort writes message 1 of the initiator hs to the listener, its return route to the
// "raw" worker, and delivers it as a stopping subscription does (its ctx ended) while message
// 2 cannot be queued: the listener must return the error, so that message 1 comes again. It
// returns message 1, for the test to deliver again.
func (f *msg2Fixture) sendCutShort(t *testing.T, hs *Handshake) wire.TransportMessage {
	t.Helper()
	m1 := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("sc")}, ReturnRoute: wire.Route{wire.Local("raw")}, Payload: mustWrite(t, hs)}
	f.deliverCutShort(t, m1)
	return m1
}

// deliverCutShort delivers m1 as sendCutShort does: with an ended ctx, while message 2 cannot
// be queued. The listener must return the error.
func (f *msg2Fixture) deliverCutShort(t *testing.T, m1 wire.TransportMessage) {
	t.Helper()
	f.raw.fill(t)
	stopped, stop := context.WithCancel(context.Background())
	stop()
	if err := f.node.Send(stopped, m1.Clone()); !errors.Is(err, context.Canceled) {
		t.Fatalf("delivering message 1 while message 2 cannot be sent: %v, want context.Canceled (cut short, so that it comes again)", err)
	}
	f.raw.free(t)
}

// restart saves sc, a channel of f's listener, to a session file and restores it with the
// listener of a new msg2Fixture of the same identities, as a restarted device does. It
// returns the new fixture and the restored channel.
func (f *msg2Fixture) restart(t *testing.T, sc *SecureChannel) (*msg2Fixture, *SecureChannel) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.session")
	if err := sc.SaveSession(path); err != nil {
		t.Fatal(err)
	}
	g := newMsg2Fixture(t, f.ida, f.idb)
	rc, err := g.l.RestoreSession(path)
	if err != nil {
		t.Fatal(err)
	}
	return g, rc
}

// dialByHand closes f's listener and runs dial in the background towards a worker "m1" of f's
// node, which takes the initiator's message 1; a responder of f.cfgB reads it and writes
// message 2, for the test to deliver. It returns message 1 as it arrived, the responder,
// message 2, and a function that waits until dial returns.
func (f *msg2Fixture) dialByHand(t *testing.T, dial func(ctx context.Context, to wire.Route) (*SecureChannel, error)) (m1 *routing.Message, res *Handshake, m2 []byte, dialed func() (*SecureChannel, error)) {
	t.Helper()
	f.l.Close()
	m1s := make(inbox, 1) // where the initiator's message 1 goes: no listener
	if err := f.node.Register("m1", m1s); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var sc *SecureChannel
	go func() {
		var err error
		sc, err = dial(t.Context(), wire.Route{wire.Local("m1")})
		done <- err
	}()
	m1 = m1s.next(t)
	res, err := NewResponder(f.cfgB)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.ReadMessage(m1.Payload); err != nil {
		t.Fatal(err)
	}
	return m1, res, mustWrite(t, res), func() (*SecureChannel, error) {
		err := <-done
		return sc, err
	}
}

// complete reads message 2 with the initiator hs, sends message 3 to the channel, and waits
// until the listener's channel is open.
func (f *msg2Fixture) complete(t *testing.T, hs *Handshake, m2 []byte) {
	t.Helper()
	if err := hs.ReadMessage(m2); err != nil {
		t.Fatalf("the initiator reads message 2: %v", err)
	}
	m3, err := hs.WriteMessage()
	if err != nil {
		t.Fatal(err)
	}
	ch := onlyChannel(t, f.l)
	if err := f.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(ch.decAddr)}, Payload: m3}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(t.Context()); err != nil {
		t.Fatalf("the listener's channel after message 3: %v", err)
	}
}

// TestMessage2CutShortSentWhenMessage1ComesAgain: when the listener's send of XX message 2
// is cut short (the subscription that delivered message 1 stops while message 2 cannot be
// queued), the listener returns the error so that message 1 comes again; when it does, the
// listener sends message 2, and the handshake completes. Before, the listener took message 1
// coming again for a duplicate of a channel that had answered it, and sent nothing: the
// initiator never got message 2, and the handshake was lost.
func TestMessage2CutShortSentWhenMessage1ComesAgain(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t))
	hs, err := NewInitiator(f.cfgA)
	if err != nil {
		t.Fatal(err)
	}
	m1 := f.sendCutShort(t, hs)

	if err := f.node.Send(context.Background(), m1.Clone()); err != nil { // it comes again
		t.Fatal(err)
	}
	m2 := []byte(f.raw.next(t))
	if typ, err := PeekType(m2); err != nil || typ != TypeHandshake2 {
		t.Fatalf("after message 1 came again the initiator got %q (%v, %v), want handshake message 2", m2, typ, err)
	}
	f.complete(t, hs, m2)

	if err := f.node.Send(context.Background(), m1.Clone()); err != nil { // a duplicate now
		t.Fatal(err)
	}
	if err := f.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("raw")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if p := f.raw.next(t); p != "marker" {
		t.Fatalf("got %q, want the marker: a message 1 that came again after message 2 was sent was answered again", p)
	}
	if st := f.l.Stats(); st.Accepted != 1 || st.Opened != 1 || st.Duplicates != 2 {
		t.Fatalf("listener stats %+v, want 1 accepted and opened, 2 duplicates", st)
	}
}

// TestMessage2CutShortTwice: message 1 comes again while message 2 still cannot be sent
// (the subscription stops again): the listener keeps message 2 and returns the error again,
// and sends message 2 when message 1 comes a third time; the handshake completes.
func TestMessage2CutShortTwice(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t))
	hs, err := NewInitiator(f.cfgA)
	if err != nil {
		t.Fatal(err)
	}
	m1 := f.sendCutShort(t, hs)
	f.deliverCutShort(t, m1) // it comes again, and sending message 2 again is cut short too

	if err := f.node.Send(context.Background(), m1.Clone()); err != nil { // a third time
		t.Fatal(err)
	}
	m2 := []byte(f.raw.next(t))
	if typ, err := PeekType(m2); err != nil || typ != TypeHandshake2 {
		t.Fatalf("after message 1 came a third time the initiator got %q (%v, %v), want handshake message 2", m2, typ, err)
	}
	f.complete(t, hs, m2)
	if st := f.l.Stats(); st.Accepted != 1 || st.Opened != 1 || st.Duplicates != 2 {
		t.Fatalf("listener stats %+v, want 1 accepted and opened, 2 duplicates", st)
	}
}

// TestMessage2CutShortSavedAndRestored: the documented stop of a device (close the
// subscriptions, save every channel of the listener, those waiting for message 3 included)
// while the listener's send of message 2 was cut short: the channel restored from its
// session file sends message 2 when message 1 comes again, and the handshake completes.
func TestMessage2CutShortSavedAndRestored(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t))
	hs, err := NewInitiator(f.cfgA)
	if err != nil {
		t.Fatal(err)
	}
	m1 := f.sendCutShort(t, hs)

	// The restart: a new listener on a new node restores the channel.
	g, _ := f.restart(t, onlyChannel(t, f.l))
	if err := g.node.Send(context.Background(), m1.Clone()); err != nil { // it comes again
		t.Fatal(err)
	}
	m2 := []byte(g.raw.next(t))
	if typ, err := PeekType(m2); err != nil || typ != TypeHandshake2 {
		t.Fatalf("after message 1 came again the initiator got %q (%v, %v), want handshake message 2", m2, typ, err)
	}
	g.complete(t, hs, m2)
}

// TestIKMessage2CutShortSavedAndRestored: the same stop with IK: the listener's channel is
// open once it read message 1, but the initiator needs message 2, which was cut short. The
// channel saved then, and restored, sends message 2 when message 1 comes again, and the
// initiator's handshake completes. Before, the saved state did not say that message 2 was
// not sent, and the restored channel took message 1 for a duplicate: the initiator waited
// for message 2 for good.
func TestIKMessage2CutShortSavedAndRestored(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t))
	hs, err := NewInitiatorIK(f.cfgA, f.idb.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	m1 := f.sendCutShort(t, hs)

	g, rc := f.restart(t, onlyChannel(t, f.l))
	if err := g.node.Send(context.Background(), m1.Clone()); err != nil { // it comes again
		t.Fatal(err)
	}
	m2 := []byte(g.raw.next(t))
	if typ, err := PeekType(m2); err != nil || typ != TypeIK2 {
		t.Fatalf("after message 1 came again the initiator got %q (%v, %v), want IK message 2", m2, typ, err)
	}
	if err := hs.ReadMessage(m2); err != nil || !hs.Complete() {
		t.Fatalf("the initiator reads message 2: %v (complete: %v)", err, hs.Complete())
	}
	ch, err := hs.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ch.ChannelBinding(), rc.ch.ChannelBinding()) {
		t.Fatal("the initiator's channel is not the restored one")
	}

	// Saved again now that message 2 went out, the channel no longer sends it.
	h, _ := g.restart(t, rc)
	if err := h.node.Send(context.Background(), m1.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := h.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("raw")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if p := h.raw.next(t); p != "marker" {
		t.Fatalf("got %q, want the marker: message 2 was sent again after a save that followed its send", p)
	}
}

// TestSessionUnsent2OnlyForIK: the decoder takes an unsent message 2 only in the state of an
// open IK responder, and only an IK message 2.
func TestSessionUnsent2OnlyForIK(t *testing.T) {
	ik1, err := fixedIK(t).WriteMessageWithPayload([]byte("early"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := pair(t, 0)
	ik2 := append([]byte{byte(TypeIK2)}, make([]byte, ik2Size-1)...)
	state := func(c *SecureChannel) []byte {
		t.Helper()
		s, _, _, err := c.snapshot(false)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	peer := wire.Route{wire.Local("peer")}
	ikResponder := &SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: peer, ch: b, hello: ik1, unsent2: ik2, done: make(chan struct{})}
	s, err := decodeSession(state(ikResponder))
	if err != nil || !bytes.Equal(s.unsent2, ik2) {
		t.Fatalf("decode an IK responder's state with message 2 unsent: %v", err)
	}

	// The flag, with the message, added to other states.
	withUnsent := func(st []byte, m2 []byte) []byte {
		st = slices.Clone(st)
		st[1] |= kindUnsent2
		return wire.AppendData(st, m2)
	}
	initiator := &SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: peer, ch: a, done: make(chan struct{})}
	ini, res := fixedHandshakes(t)
	m1, _ := ini.WriteMessage()
	_ = res.ReadMessage(m1)
	xx2, _ := res.WriteMessage()
	half := &SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: peer, hs: res, hello: m1, done: make(chan struct{})}
	for name, st := range map[string][]byte{
		"initiator":                   withUnsent(state(initiator), ik2),
		"XX responder waiting for m3": withUnsent(state(half), xx2),
		"IK responder, XX message 2":  withUnsent(state(&SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: peer, ch: b, hello: ik1, done: make(chan struct{})}), xx2),
	} {
		if _, err := decodeSession(st); !errors.Is(err, ErrSessionCorrupt) {
			t.Errorf("%s: %v, want ErrSessionCorrupt", name, err)
		}
	}
}

// TestMessage1WithoutReturnRouteRefused: a message 1 without a return route cannot be
// answered. The listener refuses it, as it refuses a message 1 it cannot read, instead of
// keeping a half-open channel (one of MaxPendingHandshakes) whose saved session would not
// restore (a state without a route to the peer is corrupt).
func TestMessage1WithoutReturnRouteRefused(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t))
	for _, ik := range []bool{false, true} {
		var hs *Handshake
		var err error
		if ik {
			hs, err = NewInitiatorIK(f.cfgA, f.idb.PublicKey())
		} else {
			hs, err = NewInitiator(f.cfgA)
		}
		if err != nil {
			t.Fatal(err)
		}
		p1, err := hs.WriteMessage()
		if err != nil {
			t.Fatal(err)
		}
		if err := f.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("sc")}, Payload: p1}); err != nil {
			t.Fatal(err)
		}
	}
	if chs := f.l.Channels(); len(chs) != 0 {
		path := filepath.Join(t.TempDir(), "s")
		serr := chs[0].SaveSession(path)
		_, rerr := newMsg2Fixture(t, f.ida, f.idb).l.RestoreSession(path)
		t.Fatalf("the listener made %d channel(s) for messages 1 without a return route (save: %v, restore: %v)", len(chs), serr, rerr)
	}
	if st := f.l.Stats(); st.Refused != 2 || st.Accepted != 0 {
		t.Fatalf("listener stats %+v, want 2 refused", st)
	}
}

// TestMessage2WithoutReturnRouteDropped: the initiator learns its route to the peer from the
// return route of message 2, which is not authenticated. A message 2 without one (the genuine
// message, its return route stripped on the way) is dropped and counted as Rejected, and the
// initiator waits for one it can answer. Before, an IK initiator opened a channel without a
// route to its peer: every send through it failed, and its saved session did not restore.
func TestMessage2WithoutReturnRouteDropped(t *testing.T) {
	f := newMsg2Fixture(t, mustIdentity(t), mustIdentity(t))
	m1, _, m2, dialed := f.dialByHand(t, func(ctx context.Context, to wire.Route) (*SecureChannel, error) {
		return DialIK(ctx, f.node, to, f.cfgA, f.idb.PublicKey(), nil)
	})
	to := wire.Route{m1.ReturnRoute[0]}
	if err := f.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: to, Payload: bytes.Clone(m2)}); err != nil {
		t.Fatal(err)
	}
	if err := f.node.Send(context.Background(), wire.TransportMessage{OnwardRoute: to, ReturnRoute: wire.Route{wire.Local("peer")}, Payload: m2}); err != nil {
		t.Fatal(err)
	}
	sc, err := dialed()
	if err != nil {
		t.Fatal(err)
	}
	if r := sc.PeerRoute(); r.String() != (wire.Route{wire.Local("peer")}).String() {
		t.Fatalf("the channel's route to its peer is %v, want [peer]", r)
	}
	if st := sc.Stats(); st.Rejected != 1 {
		t.Fatalf("stats %+v, want the message 2 without a return route rejected", st)
	}
}
