package securechannel

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/flynn/noise"

	"github.com/sluicehq/sluice/core"
)

func mustIdentity(tb testing.TB) *Identity {
	tb.Helper()
	id, err := GenerateIdentity()
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// handshake runs a full XX handshake between fresh handshakes built from ci and cr and
// returns the three messages and both handshakes (not failing on errors: it returns the first).
func runHandshake(tb testing.TB, ci, cr Config) (ini, res *Handshake, err error) {
	tb.Helper()
	ini, err = NewInitiator(ci)
	if err != nil {
		tb.Fatal(err)
	}
	res, err = NewResponder(cr)
	if err != nil {
		tb.Fatal(err)
	}
	m1, err := ini.WriteMessage()
	if err != nil {
		return ini, res, err
	}
	if err := res.ReadMessage(m1); err != nil {
		return ini, res, err
	}
	m2, err := res.WriteMessage()
	if err != nil {
		return ini, res, err
	}
	if err := ini.ReadMessage(m2); err != nil {
		return ini, res, err
	}
	m3, err := ini.WriteMessage()
	if err != nil {
		return ini, res, err
	}
	return ini, res, res.ReadMessage(m3)
}

// toMessage2 starts an XX handshake between fresh handshakes built from ci and cr: the
// initiator writes message 1, the responder reads it and writes message 2, which it returns
// for the initiator to read.
func toMessage2(t *testing.T, ci, cr Config) (ini, res *Handshake, m2 []byte) {
	t.Helper()
	ini, err := NewInitiator(ci)
	if err != nil {
		t.Fatal(err)
	}
	res, err = NewResponder(cr)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.ReadMessage(mustWrite(t, ini)); err != nil {
		t.Fatal(err)
	}
	return ini, res, mustWrite(t, res)
}

// exportResponder exports res, a responder of cr that wrote message 2 and waits for message
// 3, as saving its channel does. With restore it returns the responder restored from that
// export, as a restarted process has it; else res itself.
func exportResponder(t *testing.T, res *Handshake, cr Config, restore bool) *Handshake {
	t.Helper()
	hello, eph, ok := res.exportAwaitingMessage3()
	if !ok {
		t.Fatal("a responder that wrote message 2 cannot be exported")
	}
	if !restore {
		return res
	}
	restored, err := restoreResponder(cr, hello, eph)
	if err != nil {
		t.Fatal(err)
	}
	return restored
}

// pair returns an established initiator and responder channel.
func pair(tb testing.TB, rekeyAfter uint64) (a, b *Channel) {
	tb.Helper()
	ia, ib := mustIdentity(tb), mustIdentity(tb)
	ini, res, err := runHandshake(tb,
		Config{Identity: ia, Trust: TrustKeys(ib.PublicKey()), RekeyAfter: rekeyAfter},
		Config{Identity: ib, Trust: TrustKeys(ia.PublicKey()), RekeyAfter: rekeyAfter})
	if err != nil {
		tb.Fatal(err)
	}
	a, err = ini.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	b, err = res.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	return a, b
}

func TestHandshakeEstablishesChannel(t *testing.T) {
	ia, ib := mustIdentity(t), mustIdentity(t)
	ini, res, err := runHandshake(t,
		Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())},
		Config{Identity: ib, Trust: TrustKeys(ia.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	if !ini.Complete() || !res.Complete() {
		t.Fatalf("complete: initiator %v responder %v", ini.Complete(), res.Complete())
	}
	a, _ := ini.Channel()
	b, _ := res.Channel()
	if a.PeerIdentity() != ib.PublicKey() || b.PeerIdentity() != ia.PublicKey() {
		t.Fatal("peer identities do not match the static keys")
	}
	if !bytes.Equal(a.ChannelBinding(), b.ChannelBinding()) {
		t.Fatal("channel bindings differ")
	}
	if k, ok := res.PeerIdentity(); !ok || k != ia.PublicKey() {
		t.Fatalf("responder PeerIdentity = %v, %v", k, ok)
	}
	for _, dir := range []struct {
		name     string
		from, to *Channel
	}{{"initiator to responder", a, b}, {"responder to initiator", b, a}} {
		msg, err := dir.from.Seal([]byte("hello " + dir.name))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := dir.to.Open(msg)
		if err != nil {
			t.Fatalf("%s: %v", dir.name, err)
		}
		if string(pt) != "hello "+dir.name {
			t.Fatalf("%s: got %q", dir.name, pt)
		}
	}
}

func TestHandshakeUntrusted(t *testing.T) {
	ia, ib, other := mustIdentity(t), mustIdentity(t), mustIdentity(t)
	t.Run("initiator refuses responder", func(t *testing.T) {
		ini, res, err := runHandshake(t,
			Config{Identity: ia, Trust: TrustKeys(other.PublicKey())},
			Config{Identity: ib, Trust: TrustKeys(ia.PublicKey())})
		if !errors.Is(err, ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
		// The initiator refused after message 2: it must not produce message 3.
		if _, err := ini.WriteMessage(); !errors.Is(err, ErrHandshakeFailed) || !errors.Is(err, ErrUntrusted) {
			t.Fatalf("WriteMessage after refusal: %v", err)
		}
		if _, err := ini.Channel(); err == nil {
			t.Fatal("initiator has a channel")
		}
		if res.Complete() {
			t.Fatal("responder completed")
		}
	})
	t.Run("responder refuses initiator", func(t *testing.T) {
		ini, res, err := runHandshake(t,
			Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())},
			Config{Identity: ib, Trust: TrustKeys(other.PublicKey())})
		if !errors.Is(err, ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
		if _, err := res.Channel(); !errors.Is(err, ErrHandshakeFailed) {
			t.Fatalf("responder Channel: %v", err)
		}
		if !ini.Complete() {
			t.Fatal("initiator should consider itself complete after writing message 3")
		}
	})
	t.Run("policy error without ErrUntrusted", func(t *testing.T) {
		errNope := errors.New("not on the guest list")
		nope := TrustPolicyFunc(func(PublicKey) error { return errNope })
		_, _, err := runHandshake(t,
			Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())},
			Config{Identity: ib, Trust: nope})
		if !errors.Is(err, ErrUntrusted) || !errors.Is(err, errNope) {
			t.Fatalf("err = %v, want ErrUntrusted wrapping the policy's error", err)
		}
	})
	t.Run("TrustAnyInsecure accepts anybody", func(t *testing.T) {
		_, _, err := runHandshake(t,
			Config{Identity: ia, Trust: TrustAnyInsecure()},
			Config{Identity: ib, Trust: TrustAnyInsecure()})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestHandshakeConfigErrors(t *testing.T) {
	if _, err := NewInitiator(Config{Trust: TrustAnyInsecure()}); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("nil identity: %v", err)
	}
	if _, err := NewResponder(Config{Identity: mustIdentity(t)}); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("nil trust: %v", err)
	}
	big := Config{Identity: mustIdentity(t), Trust: TrustAnyInsecure(), RekeyAfter: MaxRekeyAfter + 1}
	if _, err := NewInitiator(big); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("RekeyAfter above MaxRekeyAfter: %v", err)
	}
	big.RekeyAfter = MaxRekeyAfter
	if _, err := NewInitiator(big); err != nil {
		t.Fatalf("RekeyAfter = MaxRekeyAfter: %v", err)
	}
}

func TestHandshakeOutOfTurnAndDuplicates(t *testing.T) {
	ia, ib := mustIdentity(t), mustIdentity(t)
	ini, _ := NewInitiator(Config{Identity: ia, Trust: TrustAnyInsecure()})
	res, _ := NewResponder(Config{Identity: ib, Trust: TrustAnyInsecure()})
	if _, err := res.WriteMessage(); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("responder writes first: %v", err)
	}
	// Stray messages of the right size but not message 1 change nothing in a new responder.
	for _, stray := range []struct {
		t    MessageType
		size int
	}{{TypeHandshake2, handshake2Size}, {TypeHandshake3, handshake3Size}, {TypeIK2, ik2Size}} {
		msg := append([]byte{byte(stray.t)}, make([]byte, stray.size-1)...)
		if err := res.ReadMessage(msg); !errors.Is(err, ErrHandshakeState) {
			t.Fatalf("%v before message 1: %v", stray.t, err)
		}
	}
	m1, _ := ini.WriteMessage()
	if err := ini.ReadMessage(m1); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("initiator reads message 1: %v", err)
	}
	if err := res.ReadMessage(m1); err != nil {
		t.Fatal(err)
	}
	// A duplicate message 1 is refused without breaking the handshake.
	if err := res.ReadMessage(m1); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("duplicate message 1: %v", err)
	}
	m2, err := res.WriteMessage()
	if err != nil {
		t.Fatal(err)
	}
	if hello, _, ok := res.awaitingMessage3(); !ok || !bytes.Equal(hello, m1) {
		t.Fatalf("responder waiting for message 3 keeps %x as message 1, want %x", hello, m1)
	}
	if err := ini.ReadMessage(m2[:len(m2)-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short message 2: %v", err)
	}
	if err := ini.ReadMessage(m2); err != nil {
		t.Fatal(err)
	}
	if err := ini.ReadMessage(m2); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("duplicate message 2: %v", err)
	}
	m3, _ := ini.WriteMessage()
	if err := res.ReadMessage(m3); err != nil {
		t.Fatal(err)
	}
	if err := res.ReadMessage(m3); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("duplicate message 3: %v", err)
	}
}

func TestHandshakeTamperedMessage2(t *testing.T) {
	ia, ib := mustIdentity(t), mustIdentity(t)
	ini, _ := NewInitiator(Config{Identity: ia, Trust: TrustAnyInsecure()})
	res, _ := NewResponder(Config{Identity: ib, Trust: TrustAnyInsecure()})
	m1, _ := ini.WriteMessage()
	if err := res.ReadMessage(m1); err != nil {
		t.Fatal(err)
	}
	m2, _ := res.WriteMessage()
	m2[40] ^= 1 // inside the encrypted static key
	if err := ini.ReadMessage(m2); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered message 2: %v", err)
	}
	if _, err := ini.WriteMessage(); !errors.Is(err, ErrHandshakeFailed) {
		t.Fatalf("after failure: %v", err)
	}
}

// TestHandshakeProtocolPinned runs the initiator side with flynn/noise directly, as another
// implementation of the documented protocol would: with the same pattern, suite and
// prologue it completes the handshake with a Responder, and with another prologue (another
// protocol or version) reading message 2 fails.
func TestHandshakeProtocolPinned(t *testing.T) {
	for _, c := range []struct {
		name, prologue string
		ok             bool
	}{{"same prologue", "sluice/securechannel/1", true}, {"other prologue", "sluice/securechannel/2", false}} {
		t.Run(c.name, func(t *testing.T) {
			static, err := noise.DH25519.GenerateKeypair(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			ini, err := noise.NewHandshakeState(noise.Config{
				CipherSuite:   noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s),
				Random:        rand.Reader,
				Pattern:       noise.HandshakeXX,
				Initiator:     true,
				Prologue:      []byte(c.prologue),
				StaticKeypair: static,
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := NewResponder(Config{Identity: mustIdentity(t), Trust: TrustAnyInsecure()})
			if err != nil {
				t.Fatal(err)
			}
			m1, _, _, err := ini.WriteMessage([]byte{byte(TypeHandshake1)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.ReadMessage(m1); err != nil {
				t.Fatal(err)
			}
			m2, err := res.WriteMessage()
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = ini.ReadMessage(nil, m2[1:])
			if !c.ok {
				if err == nil {
					t.Fatal("message 2 authenticated under another prologue")
				}
				return
			}
			if err != nil {
				t.Fatalf("read message 2: %v", err)
			}
			m3, cs1, _, err := ini.WriteMessage([]byte{byte(TypeHandshake3)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.ReadMessage(m3); err != nil {
				t.Fatalf("read message 3: %v", err)
			}
			ch, err := res.Channel()
			if err != nil {
				t.Fatal(err)
			}
			if got := ch.PeerIdentity(); !bytes.Equal(got[:], static.Public) {
				t.Fatal("responder's peer identity is not the initiator's static key")
			}
			if !bytes.Equal(ch.ChannelBinding(), ini.ChannelBinding()) {
				t.Fatalf("channel binding %x, want the Noise handshake hash %x", ch.ChannelBinding(), ini.ChannelBinding())
			}
			msg := appendHeader(nil, Header{})
			msg, err = cs1.Encrypt(msg, msg[:HeaderSize], []byte("hello"))
			if err != nil {
				t.Fatal(err)
			}
			open(t, ch, msg, "hello")
		})
	}
}
