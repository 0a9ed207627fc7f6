package securechannel

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
)

// fixedIdentity returns a deterministic identity, so that fuzz seeds stay valid.
func fixedIdentity(tb testing.TB, b byte) *Identity {
	tb.Helper()
	id, err := identityFromPrivate(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// fixedHandshakes returns an initiator and a responder whose ephemeral keys are deterministic.
func fixedHandshakes(tb testing.TB) (*Handshake, *Handshake) {
	tb.Helper()
	ini, err := NewInitiator(Config{Identity: fixedIdentity(tb, 1), Trust: TrustAnyInsecure(), Random: rand.NewChaCha8([32]byte{1})})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := NewResponder(Config{Identity: fixedIdentity(tb, 2), Trust: TrustAnyInsecure(), Random: rand.NewChaCha8([32]byte{2})})
	if err != nil {
		tb.Fatal(err)
	}
	return ini, res
}

// fixedIK returns a deterministic IK initiator towards fixedIdentity(2).
func fixedIK(tb testing.TB) *Handshake {
	tb.Helper()
	h, err := NewInitiatorIK(Config{Identity: fixedIdentity(tb, 1), Trust: TrustAnyInsecure(), Random: rand.NewChaCha8([32]byte{3})}, fixedIdentity(tb, 2).PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// FuzzHandshakeRead feeds arbitrary bytes to every handshake step that reads network bytes:
// XX (responder reading message 1, initiator reading message 2, responder reading message 3)
// and IK (responder reading message 1, initiator reading message 2). Seeds are the genuine
// messages of deterministic handshakes. A responder waiting for message 3 must still complete
// with the genuine message 3 after any message that it refused.
func FuzzHandshakeRead(f *testing.F) {
	ini, res := fixedHandshakes(f)
	m1, _ := ini.WriteMessage()
	_ = res.ReadMessage(m1)
	m2, _ := res.WriteMessage()
	_ = ini.ReadMessage(m2)
	m3, _ := ini.WriteMessage()
	for step, m := range [][]byte{m1, m2, m3} {
		f.Add(uint8(step), m)
	}
	ik := fixedIK(f)
	ik1, _ := ik.WriteMessageWithPayload([]byte("early data"))
	_, res2 := fixedHandshakes(f)
	_ = res2.ReadMessage(ik1)
	ik2, _ := res2.WriteMessage()
	f.Add(uint8(3), ik1)
	f.Add(uint8(4), ik2)
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte{2})
	f.Add(uint8(2), []byte{3, 0, 0})
	f.Fuzz(func(t *testing.T, step uint8, msg []byte) {
		ini, res := fixedHandshakes(t)
		var target *Handshake
		var m3 []byte // step 2: the genuine message 3
		switch step % 5 {
		case 0:
			target = res
		case 1:
			w, _ := ini.WriteMessage()
			if err := res.ReadMessage(w); err != nil {
				t.Fatal(err)
			}
			target = ini
		case 2:
			w, _ := ini.WriteMessage()
			_ = res.ReadMessage(w)
			w, _ = res.WriteMessage()
			if err := ini.ReadMessage(w); err != nil {
				t.Fatal(err)
			}
			m3, _ = ini.WriteMessage()
			target = res
		case 3: // a responder reading IK message 1
			target = res
		case 4: // an IK initiator reading message 2
			target = fixedIK(t)
			if _, err := target.WriteMessageWithPayload([]byte("early data")); err != nil {
				t.Fatal(err)
			}
		}
		before := target.Expects()
		err := target.ReadMessage(msg)
		if err == nil {
			return
		}
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrHandshakeState) || (m3 != nil && errors.Is(err, ErrDecrypt)) {
			// Non-fatal errors leave the handshake waiting for the same message; for the
			// responder waiting for message 3, a message 3 that fails authentication too.
			if target.Expects() != before || target.Err() != nil {
				t.Fatalf("non-fatal %v changed the handshake", err)
			}
			if m3 != nil {
				if err := target.ReadMessage(m3); err != nil {
					t.Fatalf("genuine message 3 refused after a refused one: %v", err)
				}
				a, _ := ini.Channel()
				b, err := target.Channel()
				if err != nil {
					t.Fatal(err)
				}
				if pt, err := b.Open(seal(t, a, "x")); err != nil || string(pt) != "x" {
					t.Fatalf("the channel completed after a refused message 3 does not open the initiator's message: %q, %v", pt, err)
				}
			}
			return
		}
		if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrUntrusted) {
			t.Fatalf("unexpected error class: %v", err)
		}
		if target.Err() == nil || target.Complete() {
			t.Fatalf("fatal %v did not end the handshake", err)
		}
	})
}

// FuzzParseHeader checks the message type and data header parsers (PeekType, ParseHeader):
// they never panic, agree with each other, accept only well-sized messages, and the header
// round-trips.
func FuzzParseHeader(f *testing.F) {
	f.Add(appendHeader(nil, Header{Epoch: 1, Nonce: 2}))
	f.Add(append(appendHeader(nil, Header{Epoch: 0, Nonce: 0}), make([]byte, TagSize)...))
	f.Add(append(appendHeader(nil, Header{Epoch: 1<<32 - 1, Nonce: 1<<64 - 1}), make([]byte, TagSize)...))
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, handshake1Size))
	f.Add(append([]byte{2}, make([]byte, handshake2Size-1)...))
	f.Add(append([]byte{5}, make([]byte, ik1MinSize-1)...))
	f.Add(append([]byte{6}, make([]byte, ik2Size-1)...))
	// One byte beyond the bounds of the messages of variable size.
	f.Add(append([]byte{5}, make([]byte, ik1MinSize-2)...))
	f.Add(append([]byte{5}, make([]byte, MaxSealedSize)...))
	f.Add(append(appendHeader(nil, Header{}), make([]byte, TagSize-1)...))
	f.Add(append(appendHeader(nil, Header{}), make([]byte, MaxSealedSize+1-HeaderSize)...))
	f.Fuzz(func(t *testing.T, msg []byte) {
		typ, perr := PeekType(msg)
		if perr != nil && !errors.Is(perr, ErrMalformed) {
			t.Fatalf("PeekType error %v is not ErrMalformed", perr)
		}
		if perr == nil {
			lo, hi := 0, 0
			switch typ {
			case TypeHandshake1:
				lo, hi = handshake1Size, handshake1Size
			case TypeHandshake2:
				lo, hi = handshake2Size, handshake2Size
			case TypeHandshake3:
				lo, hi = handshake3Size, handshake3Size
			case TypeIK1:
				lo, hi = ik1MinSize, MaxSealedSize
			case TypeIK2:
				lo, hi = ik2Size, ik2Size
			case TypeData:
				lo, hi = Overhead, MaxSealedSize
			}
			if len(msg) < lo || len(msg) > hi || hi == 0 {
				t.Fatalf("PeekType accepted %v of %d bytes", typ, len(msg))
			}
		}
		h, ct, err := ParseHeader(msg)
		if (err == nil) != (perr == nil && typ == TypeData) {
			t.Fatalf("ParseHeader err %v disagrees with PeekType %v, %v", err, typ, perr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if len(ct) < TagSize || len(msg) > MaxSealedSize {
			t.Fatalf("accepted %d bytes", len(msg))
		}
		if !bytes.Equal(appendHeader(nil, h), msg[:HeaderSize]) {
			t.Fatal("header does not round-trip")
		}
	})
}

// FuzzOpen feeds arbitrary bytes to Channel.Open: only genuine sealed messages may open, each
// exactly once, and failures leave the channel working.
func FuzzOpen(f *testing.F) {
	keyA, keyB := [32]byte{1}, [32]byte{2}
	sender := newChannel(keyA, keyB, PublicKey{}, PublicKey{}, nil, true, 2)
	genuine := map[string]string{}
	for _, pt := range []string{"", "a", "hello", "x", "epoch two", "three"} { // epochs 0, 0, 1, 1, 2, 2
		m, err := sender.Seal([]byte(pt))
		if err != nil {
			f.Fatal(err)
		}
		genuine[string(m)] = pt
		f.Add(m)
	}
	f.Add([]byte{4})
	f.Add(make([]byte, Overhead))
	probe, _ := sender.Seal([]byte("probe")) // epoch 3: reachable from any epoch the fuzzer moves to
	f.Fuzz(func(t *testing.T, msg []byte) {
		recv := newChannel(keyB, keyA, PublicKey{}, PublicKey{}, nil, false, 2)
		pt, err := recv.Open(msg)
		if err != nil {
			if _, ok := genuine[string(msg)]; ok {
				t.Fatalf("genuine message refused: %v", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrReplay) {
				t.Fatalf("unexpected error class: %v", err)
			}
		} else {
			want, ok := genuine[string(msg)]
			if !ok || string(pt) != want {
				t.Fatalf("forged message opened: %x -> %q", msg, pt)
			}
			if _, err := recv.Open(msg); !errors.Is(err, ErrDuplicate) {
				t.Fatalf("second open: %v", err)
			}
		}
		if got, err := recv.Open(probe); err != nil || string(got) != "probe" {
			t.Fatalf("channel broken after %x: %q, %v", msg, got, err)
		}
	})
}

// FuzzUnmarshalChannel feeds arbitrary bytes to the channel state decoder (a session file
// after decryption): it must never panic, and a state it accepts must work (save, restore
// again, seal).
func FuzzUnmarshalChannel(f *testing.F) {
	for _, rekeyAfter := range []uint64{0, 2} {
		a, b := pair(f, rekeyAfter)
		for i := range 5 {
			m, _ := a.Seal([]byte{byte(i)})
			_, _ = b.Open(m)
		}
		sa, _ := a.MarshalBinary()
		sb, _ := b.MarshalBinary()
		f.Add(sa)
		f.Add(sb)
	}
	f.Add(heldState(f)) // with held messages
	f.Add([]byte{channelStateVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalChannel(b)
		if err != nil {
			if !errors.Is(err, ErrSessionCorrupt) {
				t.Fatalf("error does not match ErrSessionCorrupt: %v", err)
			}
			return
		}
		state, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalChannel(state); err != nil {
			t.Fatalf("re-encoded state refused: %v", err)
		}
		if _, err := c.Seal([]byte("x")); err != nil && !errors.Is(err, ErrExhausted) {
			t.Fatalf("restored and saved channel cannot seal: %v", err)
		}
	})
}

// FuzzDecodeSession feeds arbitrary bytes to the SecureChannel state decoder (what Restore
// reads): it must never panic, and errors match ErrSessionCorrupt.
func FuzzDecodeSession(f *testing.F) {
	a, _ := pair(f, 0)
	open := &SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: wire.Route{wire.Local("bistream/inbox-b/inbox-a"), wire.Local("peer")}, ch: a, done: make(chan struct{})}
	s1, _, _, err := open.snapshot(false)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s1)
	ini, res := fixedHandshakes(f)
	m1, _ := ini.WriteMessage()
	_ = res.ReadMessage(m1)
	_, _ = res.WriteMessage()
	half := &SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: wire.Route{wire.Local("peer")}, hs: res, hello: m1, done: make(chan struct{})}
	s2, _, _, err := half.snapshot(false)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s2)
	ik1, err := fixedIK(f).WriteMessageWithPayload([]byte("early"))
	if err != nil {
		f.Fatal(err)
	}
	_, b := pair(f, 0)
	ikResponder := &SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: wire.Route{wire.Local("peer")}, ch: b, hello: ik1, ikEarly: ikEarlyWaiting, done: make(chan struct{})}
	s3, _, _, err := ikResponder.snapshot(false) // with kindEarlyUnhandled
	if err != nil {
		f.Fatal(err)
	}
	if s, err := decodeSession(s3); err != nil || !s.earlyUnhandled {
		f.Fatalf("IK responder seed: %v, early data unhandled %v", err, err == nil && s.earlyUnhandled)
	}
	f.Add(s3)
	ikResponder.unsent2 = append([]byte{byte(TypeIK2)}, make([]byte, ik2Size-1)...)
	s4, _, _, err := ikResponder.snapshot(false) // with kindUnsent2
	if err != nil {
		f.Fatal(err)
	}
	if s, err := decodeSession(s4); err != nil || len(s.unsent2) != ik2Size {
		f.Fatalf("IK responder seed with message 2 unsent: %v", err)
	}
	f.Add(s4)
	cfg := Config{Identity: fixedIdentity(f, 2), Trust: TrustAnyInsecure()}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession(b)
		if err != nil {
			if !errors.Is(err, ErrSessionCorrupt) {
				t.Fatalf("error does not match ErrSessionCorrupt: %v", err)
			}
			return
		}
		if s.kind == kindAwaiting3 {
			if _, err := restoreResponder(cfg, s.hello, s.ephemeral); err != nil && !errors.Is(err, ErrSessionCorrupt) {
				t.Fatalf("restore responder: %v", err)
			}
		}
	})
}

// FuzzOpenSequence opens genuine messages in whatever order the fuzzer picks, with
// duplicates, and saves and restores the receiving channel between them (FuzzOpen opens
// one message into a fresh channel, so it never reaches the epoch switches and the
// replay windows with content). Against a model of the receiver (its current epoch): each
// genuine message opens at most once, with its plaintext; it is refused only as a
// duplicate, from a retired epoch (older than the one before the current), or from too far
// ahead (more than MaxEpochSkip epochs); and every state the channel reaches restores.
func FuzzOpenSequence(f *testing.F) {
	const (
		rekeyAfter = 2
		restoreOp  = 0xff // any other byte b opens msgs[b%len(msgs)]
	)
	keyA, keyB := [32]byte{1}, [32]byte{2}
	binding := []byte("binding")
	sender := newChannel(keyA, keyB, PublicKey{}, PublicKey{}, binding, true, rekeyAfter)
	var msgs [][]byte // 2 per epoch: epochs 0 to 69, so MaxEpochSkip can be exceeded
	for i := range 140 {
		m, err := sender.Seal([]byte{byte(i)})
		if err != nil {
			f.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	f.Add([]byte{0, 1, 2, 3, 4, 5})
	f.Add([]byte{5, 4, 3, 2, 1, 0})
	f.Add([]byte{0, 0, restoreOp, 0, 1, 1})
	f.Add([]byte{1, 6, 0, 5, 4, restoreOp, 3, 7, 2})
	f.Add([]byte{130, 0, 66, 2, 131, restoreOp, 67, 64, 129})
	f.Fuzz(func(t *testing.T, ops []byte) {
		recv := newChannel(keyB, keyA, PublicKey{}, PublicKey{}, binding, false, rekeyAfter)
		opened := map[int]bool{}
		cur := 0 // the receiver's current epoch
		for step, op := range ops {
			if op == restoreOp {
				state, err := recv.MarshalBinary()
				if err != nil {
					t.Fatalf("step %d: save: %v", step, err)
				}
				if recv, err = UnmarshalChannel(state); err != nil {
					t.Fatalf("step %d: a state the channel reached does not restore: %v", step, err)
				}
				continue
			}
			i := int(op) % len(msgs)
			epoch := i / rekeyAfter
			pt, err := recv.Open(msgs[i])
			var want error
			switch {
			case epoch < cur-1:
				want = ErrReplay
			case opened[i]:
				want = ErrDuplicate
			case epoch > cur+MaxEpochSkip:
				want = ErrDecrypt
			}
			switch {
			case want == nil && err != nil:
				t.Fatalf("step %d: message %d (epoch %d, current %d) refused: %v", step, i, epoch, cur, err)
			case want != nil && !errors.Is(err, want):
				t.Fatalf("step %d: message %d (epoch %d, current %d): %v, want %v", step, i, epoch, cur, err, want)
			case err == nil && (len(pt) != 1 || pt[0] != byte(i)):
				t.Fatalf("step %d: message %d opened as % x", step, i, pt)
			}
			if err == nil {
				opened[i] = true
				cur = max(cur, epoch)
			}
		}
	})
}
