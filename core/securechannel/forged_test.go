package securechannel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// forgedMessages3 returns messages 3 that must fail on the responder of genuine: random bytes
// of the right size; genuine with a bit flipped in its encrypted static key (it fails at once);
// with a bit flipped in its payload tag (the static key authenticates and its DH is mixed
// into the Noise state before the tag fails); and genuine cut short (malformed). genuine is
// a handshake message 3 (handshake3Size bytes).
func forgedMessages3(genuine []byte) [][]byte {
	random := make([]byte, handshake3Size)
	_, _ = rand.Read(random)
	random[0] = byte(TypeHandshake3)
	inKey := bytes.Clone(genuine)
	inKey[10] ^= 1
	inTag := bytes.Clone(genuine)
	inTag[len(inTag)-1] ^= 1
	return [][]byte{random, inKey, inTag, bytes.Clone(genuine[:len(genuine)-1])}
}

// TestHandshakeForgedMessage3 gives a responder waiting for message 3 forged messages 3
// first: each fails and leaves the handshake as it was, and the genuine message 3 then
// completes it with the initiator's keys. A responder whose state was exported or restored
// (a session) still seals nothing before its channel is saved.
func TestHandshakeForgedMessage3(t *testing.T) {
	ia, ib := mustIdentity(t), mustIdentity(t)
	ci := Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())}
	cr := Config{Identity: ib, Trust: TrustKeys(ia.PublicKey())}
	for _, tc := range []struct {
		name            string
		export, restore bool
	}{
		{name: "live"},
		{name: "exported", export: true},
		{name: "restored", export: true, restore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ini, res, m2 := toMessage2(t, ci, cr)
			_, ephemeral, _ := res.awaitingMessage3()
			if tc.export {
				res = exportResponder(t, res, cr, tc.restore)
			}
			if err := ini.ReadMessage(m2); err != nil {
				t.Fatal(err)
			}
			m3 := mustWrite(t, ini)
			for i, forged := range forgedMessages3(m3) {
				err := res.ReadMessage(forged)
				if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("forged message 3 #%d: %v, want ErrDecrypt or ErrMalformed", i, err)
				}
				if res.Err() != nil || res.Complete() || res.Expects() != TypeHandshake3 {
					t.Fatalf("forged message 3 #%d changed the handshake: err %v, complete %v, expects %v", i, res.Err(), res.Complete(), res.Expects())
				}
				if _, ok := res.PeerIdentity(); ok {
					t.Fatalf("forged message 3 #%d left a peer identity", i)
				}
				if _, eph, ok := res.awaitingMessage3(); !ok || !bytes.Equal(eph, ephemeral) {
					t.Fatalf("forged message 3 #%d: the responder's ephemeral key changed", i)
				}
			}
			if err := res.ReadMessage(m3); err != nil {
				t.Fatalf("genuine message 3 after forged ones: %v", err)
			}
			a, err := ini.Channel()
			if err != nil {
				t.Fatal(err)
			}
			b, err := res.Channel()
			if err != nil {
				t.Fatal(err)
			}
			if b.PeerIdentity() != ia.PublicKey() || !bytes.Equal(a.ChannelBinding(), b.ChannelBinding()) {
				t.Fatal("the responder's channel does not match the initiator's")
			}
			open(t, b, seal(t, a, "to the responder"), "to the responder")
			if tc.export {
				// The same message 3 completes an exported state again, with the same keys.
				if _, err := b.Seal([]byte("reply")); !errors.Is(err, ErrReservationExhausted) {
					t.Fatalf("Seal before the channel is saved = %v, want ErrReservationExhausted", err)
				}
				mustMarshal(t, b)
			}
			open(t, a, seal(t, b, "to the initiator"), "to the initiator")
		})
	}
	t.Run("untrusted initiator still ends it", func(t *testing.T) {
		ini, res, m2 := toMessage2(t, ci, Config{Identity: ib, Trust: TrustKeys(mustIdentity(t).PublicKey())})
		if err := ini.ReadMessage(m2); err != nil {
			t.Fatal(err)
		}
		m3 := mustWrite(t, ini)
		if err := res.ReadMessage(forgedMessages3(m3)[0]); !errors.Is(err, ErrDecrypt) || res.Err() != nil {
			t.Fatalf("forged message 3: %v (handshake error %v)", err, res.Err())
		}
		// Message 3 authenticates: only whoever sent message 1 can write it, and the
		// policy refuses its key. That ends the handshake.
		if err := res.ReadMessage(m3); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("genuine message 3 of an untrusted initiator: %v, want ErrUntrusted", err)
		}
		if err := res.ReadMessage(m3); !errors.Is(err, ErrHandshakeFailed) {
			t.Fatalf("after the refusal: %v, want ErrHandshakeFailed", err)
		}
	})
}

// TestRoutingForgedMessage3 delivers forged messages 3 to the responder's half-open channel
// before the genuine one (anybody who can push to the responder's inbox can): the channel
// stays half-open, counts them as rejected, keeps the data that the initiator sent meanwhile,
// and opens when the genuine message 3 arrives; data then flows both ways.
func TestRoutingForgedMessage3(t *testing.T) {
	f := newFixture(t, false, 0)
	var mu sync.Mutex
	var genuine *wire.TransportMessage
	var forged int
	f.net.mu.Lock()
	f.net.fault = func(from string, m wire.TransportMessage) []wire.TransportMessage {
		if typ, _ := PeekType(m.Payload); from != "a" || typ != TypeHandshake3 {
			return []wire.TransportMessage{m}
		}
		mu.Lock()
		defer mu.Unlock()
		g := m.Clone()
		genuine = &g
		var out []wire.TransportMessage
		for _, p := range forgedMessages3(m.Payload) {
			out = append(out, wire.TransportMessage{OnwardRoute: m.OnwardRoute.Clone(), ReturnRoute: m.ReturnRoute.Clone(), Payload: p})
		}
		forged = len(out)
		return out // the genuine message 3 is held back
	}
	f.net.mu.Unlock()

	sc := f.dial(t) // the initiator is open once it sent message 3
	f.send(t, sc, "sent before message 3 arrived")
	var rc *SecureChannel
	f.listener.mu.Lock()
	for _, c := range f.listener.hellos {
		rc = c
	}
	pending := f.listener.pending
	f.listener.mu.Unlock()
	if rc == nil || pending != 1 {
		t.Fatalf("after forged messages 3 the listener has channel %v, %d pending; want the half-open one", rc, pending)
	}
	if got := rc.Stats().Rejected; got != uint64(forged) {
		t.Fatalf("Rejected = %d, want the %d forged messages 3", got, forged)
	}
	rc.mu.Lock()
	early := len(rc.early)
	rc.mu.Unlock()
	if early != 1 {
		t.Fatalf("the half-open channel holds %d early messages, want 1", early)
	}

	mu.Lock()
	m3 := genuine
	mu.Unlock()
	if err := f.b.Send(context.Background(), *m3); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rc.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if m := f.app.next(t); string(m.Payload) != "echo: sent before message 3 arrived" {
		t.Fatalf("reply %q", m.Payload)
	}
	f.send(t, sc, "after")
	if m := f.app.next(t); string(m.Payload) != "echo: after" {
		t.Fatalf("reply %q", m.Payload)
	}
	if got := <-f.peers; got != f.ida.PublicKey() {
		t.Fatalf("responder application sees %s", got)
	}
	if s := rc.Stats(); s.Rejected != uint64(forged) || s.Delivered != 2 {
		t.Fatalf("responder stats %+v, want %d rejected and 2 delivered", s, forged)
	}
}

// TestSessionRestoreResponderForgedMessage3: a responder waiting for message 3 rejects a
// forged message 3 and is saved afterwards; restored in a new process, it rejects forged
// messages 3 again, completes with the genuine one, and seals its first reply only after
// saving the open channel.
func TestSessionRestoreResponderForgedMessage3(t *testing.T) {
	f := newFixture(t, false, 0)
	sc, rc, path, off := f.dialWhileBOffline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	msgs := off.messages()
	var m3 wire.TransportMessage
	for _, m := range msgs {
		if MessageType(m.Payload[0]) == TypeHandshake3 {
			m3 = m
		}
	}
	if len(m3.Payload) != handshake3Size || len(msgs) < 2 {
		t.Fatalf("held %d messages, want message 3 and data", len(msgs))
	}
	forged := forgedMessages3(m3.Payload)
	deliver := func(node *routing.Node, payload []byte) {
		t.Helper()
		m := wire.TransportMessage{OnwardRoute: m3.OnwardRoute.Clone(), ReturnRoute: m3.ReturnRoute.Clone(), Payload: bytes.Clone(payload)}
		if err := node.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}

	// The live responder rejects a forged message 3 (with a valid static key, so its DH went
	// into the Noise state) and is saved again: the file holds the handshake as it was.
	deliver(f.b, forged[2])
	if got := rc.Stats().Rejected; got != 1 {
		t.Fatalf("Rejected = %d, want 1", got)
	}
	if err := rc.SaveSession(path); err != nil {
		t.Fatalf("save the responder after a forged message 3: %v", err)
	}

	nb, l2 := f.crashBWithEcho(t)
	sb, err := l2.RestoreSession(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range forged {
		deliver(nb, p)
	}
	select {
	case <-sb.done:
		t.Fatalf("forged messages 3 settled the restored responder: %v", sb.Wait(ctx))
	default:
	}
	if got := sb.Stats().Rejected; got != uint64(len(forged)) {
		t.Fatalf("restored responder Rejected = %d, want %d", got, len(forged))
	}

	off.online()
	sendAll(t, nb, msgs)
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if m := f.app.next(t); string(m.Payload) != "echo: while B is offline" {
		t.Fatalf("reply %q", m.Payload)
	}
	f.send(t, sc, "after the restore")
	if m := f.app.next(t); string(m.Payload) != "echo: after the restore" {
		t.Fatalf("reply %q", m.Payload)
	}
	if sb.PeerIdentity() != f.ida.PublicKey() {
		t.Fatalf("restored responder sees %s", sb.PeerIdentity())
	}
	// B sealed its replies only after saving the open channel (see
	// TestSessionRestoreResponderAwaitingMessage3): the forged messages did not change that.
	if k := savedKind(t, f.idb, path); k != kindEstablished {
		t.Fatalf("after B's reply its session file holds kind %d, want the open channel (%d)", k, kindEstablished)
	}
}
