package securechannel

import (
	"context"
	"errors"
	"testing"
	"time"

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
	rc := <-f.established
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
}
