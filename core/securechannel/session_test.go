package securechannel

import (
	"bytes"
	"context"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// restoreChannel round-trips c through MarshalBinary and UnmarshalChannel and saves the
// restored channel's state once, as a restarted process does before sending.
func restoreChannel(t *testing.T, state []byte) *Channel {
	t.Helper()
	c, err := UnmarshalChannel(state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Seal([]byte("x")); !errors.Is(err, ErrReservationExhausted) {
		t.Fatalf("restored channel sealed before its state was saved again: %v", err)
	}
	if _, err := c.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	return c
}

// mustMarshal returns c's state (a Channel's or a SecureChannel's), as saving it does.
func mustMarshal(t *testing.T, c encoding.BinaryMarshaler) []byte {
	t.Helper()
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// savedKind returns the kind of session (kindEstablished, kindAwaiting3, ...) that the
// session file at path, sealed for id, holds.
func savedKind(t *testing.T, id *Identity, path string) uint8 {
	t.Helper()
	state, err := readSession(id, path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := decodeSession(state)
	if err != nil {
		t.Fatal(err)
	}
	return s.kind
}

// sealsLeft seals on c until its reservation is exhausted and returns how many messages it
// sealed: at most 2*ReserveNonces, so that a channel that never runs out fails the caller's
// check instead of looping for ever.
func sealsLeft(t *testing.T, c *Channel) int {
	t.Helper()
	n := 0
	for range 2 * ReserveNonces {
		if _, err := c.Seal([]byte("y")); err != nil {
			if !errors.Is(err, ErrReservationExhausted) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	return n
}

func TestChannelStateRestore(t *testing.T) {
	for _, rekeyAfter := range []uint64{0, 3} {
		t.Run(fmt.Sprint("rekeyAfter=", rekeyAfter), func(t *testing.T) {
			a, b := pair(t, rekeyAfter)
			var opened [][]byte
			for i := range 7 {
				m := seal(t, a, fmt.Sprint("a", i))
				open(t, b, m, fmt.Sprint("a", i))
				opened = append(opened, m)
				open(t, a, seal(t, b, fmt.Sprint("b", i)), fmt.Sprint("b", i))
			}
			inFlight := seal(t, a, "in flight") // sealed before the save, opened after the restore
			sa, sb := mustMarshal(t, a), mustMarshal(t, b)

			// Drop everything; restore both ends from their states.
			a2, b2 := restoreChannel(t, sa), restoreChannel(t, sb)
			if a2.PeerIdentity() != a.PeerIdentity() || a2.LocalIdentity() != a.LocalIdentity() || !a2.Initiator() || b2.Initiator() {
				t.Fatal("identities or roles not restored")
			}
			if !bytes.Equal(a2.ChannelBinding(), b.ChannelBinding()) {
				t.Fatal("channel binding not restored")
			}
			open(t, b2, inFlight, "in flight")
			for i := range 5 {
				open(t, b2, seal(t, a2, fmt.Sprint("a'", i)), fmt.Sprint("a'", i))
				open(t, a2, seal(t, b2, fmt.Sprint("b'", i)), fmt.Sprint("b'", i))
			}
			// Messages opened before the save are still replays.
			for i, m := range append(opened, inFlight) {
				if _, err := b2.Open(m); !errors.Is(err, ErrReplay) {
					t.Fatalf("old message %d after restore: %v, want ErrReplay", i, err)
				}
			}
		})
	}
}

// TestNonceReservationAfterCrash saves a channel, sends without saving again, "crashes", and
// restores the old state: the restored sender's positions are above every one used, and the
// peer (which opened the messages sent before the crash) opens what it sends.
func TestNonceReservationAfterCrash(t *testing.T) {
	for _, rekeyAfter := range []uint64{0, 1, 3, 100} {
		t.Run(fmt.Sprint("rekeyAfter=", rekeyAfter), func(t *testing.T) {
			a, b := pair(t, rekeyAfter)
			open(t, b, seal(t, a, "before"), "before")
			saved := mustMarshal(t, a)
			var last Header
			sent := 0
			// Bounded: a channel that never runs out of reserved nonces fails below instead
			// of looping for ever.
			for range 2 * ReserveNonces {
				m, err := a.Seal([]byte("after the save"))
				if errors.Is(err, ErrReservationExhausted) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				last, _, _ = ParseHeader(m)
				open(t, b, m, "after the save")
				sent++
			}
			if want := reservation(a.rekeyAfter); uint64(sent) != want {
				t.Fatalf("sealed %d messages on one reservation, want %d", sent, want)
			}
			// Crash: no final save. The restored sender starts above everything used.
			a2 := restoreChannel(t, saved)
			m := seal(t, a2, "after the restart")
			h, _, _ := ParseHeader(m)
			if !(position{last.Epoch, last.Nonce}).less(position{h.Epoch, h.Nonce}) {
				t.Fatalf("restored sender used epoch %d nonce %d, not above the last used %d/%d", h.Epoch, h.Nonce, last.Epoch, last.Nonce)
			}
			open(t, b, m, "after the restart")
			// Restoring the same state twice cannot reuse a nonce either: the second copy
			// starts where the first copy's save reserved.
			a3 := restoreChannel(t, mustMarshal(t, a2))
			h3, _, _ := ParseHeader(seal(t, a3, "third"))
			if !(position{h.Epoch, h.Nonce}).less(position{h3.Epoch, h3.Nonce}) {
				t.Fatal("a second restore reused a position")
			}
		})
	}
}

func TestUnmarshalChannelRejectsCorrupt(t *testing.T) {
	a, _ := pair(t, 0)
	good := mustMarshal(t, a)
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"version":   append([]byte{9}, good[1:]...),
		"flags":     append([]byte{good[0], 0x80}, good[2:]...),
	}
	// A receiver with a previous epoch (epoch 0) besides the current one (epoch 1).
	a1, b1 := pair(t, 1)
	open(t, b1, seal(t, a1, "0"), "0")
	open(t, b1, seal(t, a1, "1"), "1")
	withPrev := mustMarshal(t, b1)
	cur := 2 + 2*KeySize + 1 + len(b1.binding) + 8 + 4 + 8 + KeySize // the current epoch's window
	if len(withPrev) != cur+2*windowStateSize {
		t.Fatalf("state with a previous epoch is %d bytes, want %d", len(withPrev), cur+2*windowStateSize)
	}
	reservedMax := bytes.Clone(withPrev) // the window holds the nonce Noise reserves
	copy(reservedMax[cur+4+KeySize+1:], bytes.Repeat([]byte{0xff}, 8))
	cases["reserved nonce in the window"] = reservedMax
	prevEpoch := bytes.Clone(withPrev) // the previous epoch does not precede the current one
	prevEpoch[cur+windowStateSize+3] = 7
	cases["previous epoch not the one before"] = prevEpoch
	prevOfZero := bytes.Clone(withPrev) // current epoch 0, previous epoch MaxUint32 (0-1)
	binary.BigEndian.PutUint32(prevOfZero[cur:], 0)
	binary.BigEndian.PutUint32(prevOfZero[cur+windowStateSize:], math.MaxUint32)
	cases["previous epoch of epoch 0"] = prevOfZero
	aboveMax := bytes.Clone(withPrev) // the current window (highest nonce 0) holds nonce 5
	aboveMax[cur+4+KeySize+1+8+7] |= 1 << 5
	cases["nonce above the highest in the window"] = aboveMax
	sendAt := 2 + 2*KeySize + 1 + len(a.binding) + 8 + 4 // the send nonce
	unnormalised := bytes.Clone(good)                    // a send position past its epoch's last nonce
	binary.BigEndian.PutUint64(unnormalised[sendAt:], DefaultRekeyAfter)
	cases["send nonce at the rekey threshold"] = unnormalised
	noRekey := bytes.Clone(good) // no nonce in an epoch; sending at (MaxUint32, 0), used up
	binary.BigEndian.PutUint64(noRekey[sendAt-8-4:], 0)
	binary.BigEndian.PutUint32(noRekey[sendAt-4:], math.MaxUint32)
	binary.BigEndian.PutUint64(noRekey[sendAt:], 0)
	cases["rekey threshold 0"] = noRekey
	cases["no channel binding"] = mustMarshal(t, newChannel([32]byte{1}, [32]byte{2}, PublicKey{}, PublicKey{}, nil, true, DefaultRekeyAfter))
	if _, err := UnmarshalChannel(withPrev); err != nil {
		t.Fatalf("state with a previous epoch: %v", err)
	}
	for name, b := range cases {
		if _, err := UnmarshalChannel(b); !errors.Is(err, ErrSessionCorrupt) {
			t.Errorf("%s: %v, want ErrSessionCorrupt", name, err)
		}
	}
}

func TestSealSession(t *testing.T) {
	id, other := mustIdentity(t), mustIdentity(t)
	state := []byte("channel keys")
	s1, err := SealSession(id, state)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := SealSession(id, state)
	if bytes.Equal(s1, s2) || bytes.Contains(s1, state) {
		t.Fatal("sealed sessions are not randomised, or hold the state in the clear")
	}
	// Each seal has a key of its own (from its salt): the same state under the same key and
	// nonce would give the same ciphertext (the tag differs anyway: the salt is authenticated),
	// and two different states their XOR.
	head := len(sessionMagic) + saltSize
	if bytes.Equal(s1[head:len(s1)-TagSize], s2[head:len(s2)-TagSize]) {
		t.Fatal("two seals of the same state have the same ciphertext: they share a key")
	}
	got, err := OpenSession(id, s1)
	if err != nil || !bytes.Equal(got, state) {
		t.Fatalf("OpenSession = %q, %v", got, err)
	}
	if _, err := OpenSession(other, s1); !errors.Is(err, ErrSessionCorrupt) {
		t.Fatalf("opened with another identity: %v", err)
	}
	// The key comes from the private key: knowing the public key is not enough.
	if _, err := OpenSession(&Identity{public: id.public, private: other.private}, s1); !errors.Is(err, ErrSessionCorrupt) {
		t.Fatalf("opened with the identity's public key and another private key: %v", err)
	}
	for i := range s1 {
		bad := bytes.Clone(s1)
		bad[i] ^= 1
		if _, err := OpenSession(id, bad); !errors.Is(err, ErrSessionCorrupt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
}

// TestSessionRestoreOnNewNode saves both ends of a routing channel to files, drops the
// nodes, restores the channels on new nodes at the same addresses and checks that messages
// continue both ways, that old ciphertexts replayed after the restore are dropped, and that
// the session files are 0600 and hold no key in the clear.
func TestSessionRestoreOnNewNode(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	f.send(t, sc, "before")
	if m := f.app.next(t); string(m.Payload) != "echo: before" {
		t.Fatalf("reply %q", m.Payload)
	}
	<-f.peers
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.session"), filepath.Join(dir, "b.session")
	if err := sc.SaveSession(pathA); err != nil {
		t.Fatal(err)
	}
	if err := rc.SaveSession(pathB); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pathA, pathB} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", p, st.Mode().Perm())
		}
		raw, _ := os.ReadFile(p)
		if bytes.Contains(raw, sc.Address().Value) || bytes.Contains(raw, f.ida.public[:]) {
			t.Fatalf("%s holds the channel's state in the clear", p)
		}
	}
	addrA, addrB := sc.Address(), rc.Address()
	f.net.mu.Lock()
	old := append([][]byte(nil), f.net.seen...) // every ciphertext sent so far
	f.net.mu.Unlock()

	// Both processes stop: every node and channel is dropped.
	f.listener.Close()
	f.a.Close()
	f.b.Close()

	// New nodes, same names; B's listener and echo worker as at boot, then the channels.
	na, nb := f.net.node(t, "a"), f.net.node(t, "b")
	app := make(inbox, 100)
	if err := na.Register("app", app); err != nil {
		t.Fatal(err)
	}
	l2 := listen(t, nb, "sc", f.cfgB)
	if err := nb.Register("echo", echo(&l2, f.peers)); err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreSession(na, f.cfgB, pathA); !errors.Is(err, ErrSessionCorrupt) {
		t.Fatalf("restored A's session with B's identity: %v", err)
	}
	sa, err := RestoreSession(na, f.cfgA, pathA)
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	sb, err := l2.RestoreSession(pathB)
	if err != nil {
		t.Fatal(err)
	}
	if !sa.Address().Equal(addrA) || !sb.Address().Equal(addrB) {
		t.Fatal("restored channels are not at their saved addresses")
	}
	if got, ok := l2.Channel(addrB); !ok || got != sb {
		t.Fatal("the listener does not know its restored channel")
	}
	if sa.PeerIdentity() != f.idb.PublicKey() || sb.PeerIdentity() != f.ida.PublicKey() {
		t.Fatal("restored channels lost the peer identities")
	}
	stateA, err := readSession(f.cfgA.Identity, pathA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(na, f.cfgA, stateA); !errors.Is(err, routing.ErrAddressInUse) || !strings.Contains(err.Error(), "restored on the node already?") {
		t.Fatalf("restoring a channel twice on one node: %v, want ErrAddressInUse asking whether it is restored already", err)
	}
	// The same for B's channel through another listener of B's node: the failed restore
	// leaves that listener without the channel, and B's restored channel at its addresses.
	l3 := listen(t, nb, "sc3", f.cfgB)
	if _, err := l3.RestoreSession(pathB); !errors.Is(err, routing.ErrAddressInUse) {
		t.Fatalf("restoring a listener's channel twice on one node: %v, want ErrAddressInUse", err)
	}
	if st := l3.Stats(); st.Pending != 0 || st.Open != 0 || len(l3.Channels()) != 0 {
		t.Fatalf("after a failed restore the listener has %+v, channels %v; want none", st, l3.Channels())
	}

	// Messages continue both ways: A -> B's echo -> back through B's channel to A.
	for i := range 3 {
		send(t, na, sa, fmt.Sprint("after ", i))
		if m := app.next(t); string(m.Payload) != fmt.Sprint("echo: after ", i) {
			t.Fatalf("reply %q", m.Payload)
		}
		if got := <-f.peers; got != f.ida.PublicKey() {
			t.Fatalf("B's application sees %s", got)
		}
	}
	// Replay every ciphertext of before the restart at both channels: all dropped.
	before := sb.Stats().Duplicates + sa.Stats().Duplicates
	for _, p := range old {
		if typ, _ := PeekType(p); typ != TypeData {
			continue
		}
		for _, dec := range []string{sb.decAddr, sa.decAddr} {
			node := map[string]*routing.Node{sb.decAddr: nb, sa.decAddr: na}[dec]
			_ = node.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(dec)}, Payload: p})
		}
	}
	waitFor(t, func() bool { return sb.Stats().Duplicates+sa.Stats().Duplicates >= before+2 })
	select {
	case m := <-app:
		t.Fatalf("a replayed message reached A's application: %q", m.Payload)
	case p := <-f.peers:
		t.Fatalf("a replayed message reached B's application (from %s)", p)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestSessionRestoreResponderAwaitingMessage3 saves a responder that answered handshake
// message 2 and stops; the initiator sends message 3 and data while the responder is gone;
// the restored responder completes the handshake and delivers the data.
func TestSessionRestoreResponderAwaitingMessage3(t *testing.T) {
	f := newFixture(t, false, 0)
	_, _, path, off := f.dialWhileBOffline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	nb, l2 := f.crashBWithEcho(t)
	sb, err := l2.RestoreSession(path)
	if err != nil {
		t.Fatal(err)
	}
	if sb.PeerIdentity() != (PublicKey{}) {
		t.Fatal("a responder waiting for message 3 knows its peer")
	}
	msgs := off.online()
	if len(msgs) < 2 {
		t.Fatalf("held %d messages, want message 3 and data", len(msgs))
	}
	sendAll(t, nb, msgs)
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if m := f.app.next(t); string(m.Payload) != "echo: while B is offline" {
		t.Fatalf("reply %q", m.Payload)
	}
	if got := <-f.peers; got != f.ida.PublicKey() || sb.PeerIdentity() != f.ida.PublicKey() {
		t.Fatalf("restored responder sees %s", got)
	}
	// B sealed its reply only after saving the open channel: the file no longer holds the
	// half-open handshake, which the same message 3, delivered again after a crash, would
	// complete with the same keys (and B would seal from nonce 0 again).
	if k := savedKind(t, f.idb, path); k != kindEstablished {
		t.Fatalf("after B's reply its session file holds kind %d, want the open channel (%d)", k, kindEstablished)
	}
}

func TestRestoreErrors(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	state := mustMarshal(t, sc)
	node := (&memNet{}).node(t, "x")
	untrusting := f.cfgA
	untrusting.Trust = TrustKeys()
	if _, err := Restore(node, untrusting, state); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("restore with a policy that no longer trusts the peer: %v", err)
	}
	errGone := errors.New("revoked")
	untrusting.Trust = TrustPolicyFunc(func(PublicKey) error { return errGone }) // without ErrUntrusted
	if _, err := Restore(node, untrusting, state); !errors.Is(err, ErrUntrusted) || !errors.Is(err, errGone) {
		t.Fatalf("restore with a policy whose error does not wrap ErrUntrusted: %v, want ErrUntrusted wrapping it", err)
	}
	if _, err := f.listener.Restore(state); err == nil {
		t.Fatal("a listener restored an initiator's channel")
	}
	if _, err := RestoreSession(node, f.cfgA, filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	for name, cfg := range map[string]Config{
		"no identity":     {Trust: f.cfgA.Trust},
		"no trust policy": {Identity: f.cfgA.Identity},
	} {
		if _, err := Restore(node, cfg, state); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("restore with %s: %v, want core.ErrInvalidOption", name, err)
		}
	}
	// A listener of the same identity refuses an initiator's channel too.
	la := listen(t, node, "la", f.cfgA)
	if _, err := la.Restore(state); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("a listener restored an initiator's channel of its identity: %v, want core.ErrInvalidArgument", err)
	}
	if _, err := Restore(node, f.cfgA, state[:len(state)-1]); !errors.Is(err, ErrSessionCorrupt) {
		t.Fatalf("truncated state: %v", err)
	}

	// States that decode but make no sense are corrupt: the side of the channel and the
	// presence of handshake message 1 must agree (a responder's state without it, or an
	// initiator's with one), message 1 must be one, the two addresses must differ, and the
	// route to the peer must not be empty.
	res := onlyChannel(t, f.listener)
	waitFor(t, func() bool { return res.PeerIdentity() != PublicKey{} }) // message 3 read
	res.mu.Lock()
	resCh := res.ch
	res.mu.Unlock()
	sc.mu.Lock()
	iniCh := sc.ch
	sc.mu.Unlock()
	m1, err := NewInitiator(f.cfgA)
	if err != nil {
		t.Fatal(err)
	}
	hello := mustWrite(t, m1)
	for name, c := range map[string]*SecureChannel{
		"responder without message 1":              {ch: resCh},
		"initiator with message 1":                 {ch: iniCh, hello: hello},
		"responder with a message 3 for message 1": {ch: resCh, hello: append([]byte{byte(TypeHandshake3)}, make([]byte, handshake3Size-1)...)},
		"one address for both":                     {ch: iniCh, decAddr: "enc"},
		"no route to the peer":                     {ch: iniCh, peerRoute: wire.Route{}},
	} {
		if c.decAddr == "" {
			c.decAddr = "dec"
		}
		if c.peerRoute == nil {
			c.peerRoute = wire.Route{wire.Local("peer")}
		}
		c.encAddr, c.done = "enc", make(chan struct{})
		b, _, _, err := c.snapshot(false)
		if err != nil {
			t.Fatal(err)
		}
		restore := func() (*SecureChannel, error) { return Restore(node, f.cfgA, b) }
		if !c.ch.initiator {
			restore = func() (*SecureChannel, error) { return f.listener.Restore(b) }
		}
		if _, err := restore(); !errors.Is(err, ErrSessionCorrupt) {
			t.Errorf("%s: %v, want ErrSessionCorrupt", name, err)
		}
	}
}

// TestSessionKeepsUnhandledAcceptable saves B's channel while B's application is stuck on
// one message with two more in its mailbox, then drops B's node as a crash would. The
// channel restored from the file accepts those three again when their ciphertexts come
// again (a stream delivers them again, since it did not move past them), while the message
// B handled before the save stays a duplicate.
func TestSessionKeepsUnhandledAcceptable(t *testing.T) {
	f := newFixture(t, false, 0)
	before, after := make(chan string, 10), make(chan string, 10) // B's application, before and after the crash
	stuck := make(chan struct{})
	if err := f.b.Register("app-b", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		if string(m.Payload) == "m1" {
			close(stuck)
			<-ctx.Done() // until the crash
			return ctx.Err()
		}
		before <- string(m.Payload) // m2 may still come here while the node closes
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	sc := f.dial(t)
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	f.net.mu.Lock()
	first := len(f.net.seen)
	f.net.mu.Unlock()
	toB := func(p string) {
		t.Helper()
		if err := f.a.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{sc.Address(), wire.Local("app-b")}, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	toB("m0")
	if m := <-before; m != "m0" {
		t.Fatalf("B's application got %q, want m0", m)
	}
	for _, p := range []string{"m1", "m2", "m3"} {
		toB(p)
	}
	recvWithin(t, stuck, "the handler stuck")
	waitFor(t, func() bool { return rc.Stats().Delivered == 4 })
	path := filepath.Join(t.TempDir(), "b.session")
	if err := rc.SaveSession(path); err != nil {
		t.Fatal(err)
	}
	f.net.mu.Lock()
	var ciphertexts [][]byte // m0..m3 as B received them
	for _, p := range f.net.seen[first:] {
		if typ, _ := PeekType(p); typ == TypeData {
			ciphertexts = append(ciphertexts, p)
		}
	}
	f.net.mu.Unlock()
	if len(ciphertexts) != 4 {
		t.Fatalf("%d data messages crossed to B, want 4", len(ciphertexts))
	}

	// The crash: B's node goes, with m1 cut short and m2, m3 still queued.
	nb, l2 := f.crashB(t)
	if err := nb.Register("app-b", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		after <- string(m.Payload)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	sb, err := l2.RestoreSession(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ciphertexts {
		if err := nb.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(sb.decAddr)}, Payload: bytes.Clone(p)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"m1", "m2", "m3"} {
		select {
		case m := <-after:
			if m != want {
				t.Fatalf("after the restart B's application got %q, want %q", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("after the restart %s never reached B's application: the restored replay window took it for a duplicate", want)
		}
	}
	if d := sb.Stats().Duplicates; d != 1 {
		t.Fatalf("restored channel dropped %d duplicates, want 1 (m0, handled before the save)", d)
	}
}

// TestRestoreWithOtherIdentity restores a state with a configuration whose identity is not
// the one that saved it (but trusts the same peer): refused as ErrSessionCorrupt.
func TestRestoreWithOtherIdentity(t *testing.T) {
	f := newFixture(t, false, 0)
	state := mustMarshal(t, f.dial(t))
	node := (&memNet{}).node(t, "x")
	other := f.cfgA
	other.Identity = mustIdentity(t)
	if c, err := Restore(node, other, state); !errors.Is(err, ErrSessionCorrupt) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("restore with another identity: %v, want ErrSessionCorrupt", err)
	}
}

// TestRestoreKeepsPreviousEpochWindow restores a receiver that holds two key epochs: the
// messages it opened in either epoch stay duplicates, and those it did not open still open.
func TestRestoreKeepsPreviousEpochWindow(t *testing.T) {
	a, b := pair(t, 2) // epoch 0: m0, m1; epoch 1: m2, m3
	var ms [][]byte
	for i := range 4 {
		ms = append(ms, seal(t, a, fmt.Sprint(i)))
	}
	open(t, b, ms[0], "0")
	open(t, b, ms[2], "2")
	b2 := restoreChannel(t, mustMarshal(t, b))
	for _, i := range []int{0, 2} {
		if _, err := b2.Open(ms[i]); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("message %d, opened before the save: %v, want ErrDuplicate", i, err)
		}
	}
	open(t, b2, ms[1], "1")
	open(t, b2, ms[3], "3")
}

// TestReservationNeverMovesBack commits a reservation and then an older one (as two
// concurrent saves finishing out of order would): the later limit stays.
func TestReservationNeverMovesBack(t *testing.T) {
	a, _ := pair(t, 0)
	_, older := a.snapshot(nil, false)
	const sent = 5
	for range sent {
		seal(t, a, "x")
	}
	_, newer := a.snapshot(nil, false)
	a.commitReservation(newer)
	a.commitReservation(older)
	if n := sealsLeft(t, a); n != ReserveNonces {
		t.Fatalf("sealed %d messages after the commits, want %d (the newer reservation)", n, ReserveNonces)
	}
}

// TestFailedSaveKeepsReservation checks that a SaveSession that fails to write its file does
// not extend the channel's reservation: only the nonces reserved by the last file written
// may be used, since a restart restores from that file.
func TestFailedSaveKeepsReservation(t *testing.T) {
	f := newFixture(t, false, 0)
	sc := f.dial(t)
	if err := sc.SaveSession(filepath.Join(t.TempDir(), "session")); err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	ch := sc.ch
	sc.mu.Unlock()
	const sent = 10
	for range sent {
		seal(t, ch, "x")
	}
	if err := sc.SaveSession(filepath.Join(t.TempDir(), "missing", "session")); err == nil {
		t.Fatal("saved into a directory that does not exist")
	}
	if n := sealsLeft(t, ch); n != ReserveNonces-sent {
		t.Fatalf("sealed %d messages after the failed save, want %d (what the file written reserved)", n, ReserveNonces-sent)
	}
}

// blockingSender is a synchronous routing.Sender that signals entered and blocks until
// release is closed.
type blockingSender struct{ entered, release chan struct{} }

func (s blockingSender) Send(context.Context, wire.TransportMessage) error {
	s.entered <- struct{}{}
	<-s.release
	return nil
}

// TestSaveDuringSynchronousDelivery saves B's channel while a message it opened is still
// being delivered to a synchronous sender (no mailbox follows it): the saved replay window
// leaves that message out, so a channel restored from the state accepts it again.
func TestSaveDuringSynchronousDelivery(t *testing.T) {
	f := newFixture(t, false, 0)
	bs := blockingSender{entered: make(chan struct{}, 1), release: make(chan struct{})}
	if err := f.b.RegisterSender("sync-b", bs); err != nil {
		t.Fatal(err)
	}
	sc := f.dial(t)
	rc := recvWithin(t, f.established, "the channel established (OnChannel)")
	f.net.mu.Lock()
	first := len(f.net.seen)
	f.net.mu.Unlock()
	sent := make(chan error, 1)
	go func() {
		sent <- f.a.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{sc.Address(), wire.Local("sync-b")}, Payload: []byte("m")})
	}()
	<-bs.entered
	state, err := rc.MarshalBinary()
	close(bs.release)
	if serr := <-sent; serr != nil {
		t.Fatal(serr)
	}
	if err != nil {
		t.Fatal(err)
	}
	var ciphertext []byte
	f.net.mu.Lock()
	for _, p := range f.net.seen[first:] {
		if typ, _ := PeekType(p); typ == TypeData {
			ciphertext = p
		}
	}
	f.net.mu.Unlock()
	if ciphertext == nil {
		t.Fatal("no data message crossed to B")
	}
	s, err := decodeSession(state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.channel.Open(ciphertext); err != nil {
		t.Fatalf("the message being delivered during the save, opened from the saved state: %v, want accepted", err)
	}
	if _, err := rc.ch.Open(ciphertext); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("the live channel, after the delivery: %v, want ErrDuplicate", err)
	}
}
