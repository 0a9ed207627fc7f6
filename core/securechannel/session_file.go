package securechannel

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// Session files. A sealed session is
//
//	magic "sluice-session\x00\x01" (16 bytes) | salt (32 random bytes) | ciphertext | tag (16)
//
// The key is HKDF-BLAKE2s(secret = the identity's static private key, salt, info
// sessionInfo); the AEAD is ChaCha20-Poly1305 with nonce 0 (every seal has a new salt, hence
// a new key), and the associated data is the magic, the salt and the identity's public key.
const (
	sessionMagic = "sluice-session\x00\x01"
	sessionInfo  = "sluice/securechannel/session/1"
	saltSize     = 32
	// maxSessionFile bounds what ReadSession reads; a session is far smaller.
	maxSessionFile = 1 << 20
)

// SealSession encrypts a session state (from [SecureChannel.MarshalBinary] or
// [Channel.MarshalBinary]) for storage, under a key derived from id's static private key:
// without id's private key the result reveals only its length.
func SealSession(id *Identity, state []byte) ([]byte, error) {
	if id == nil {
		return nil, fmt.Errorf("%w: securechannel: seal session: nil identity", core.ErrInvalidArgument)
	}
	out := make([]byte, 0, len(sessionMagic)+saltSize+len(state)+TagSize)
	out = append(out, sessionMagic...)
	out = append(out, make([]byte, saltSize)...)
	if _, err := io.ReadFull(rand.Reader, out[len(sessionMagic):]); err != nil {
		return nil, fmt.Errorf("securechannel: seal session: %w", err)
	}
	k, err := sessionKey(id, out[len(sessionMagic):])
	if err != nil {
		return nil, err
	}
	ad := append(bytes.Clone(out), id.public[:]...)
	return suite.Cipher(k).Encrypt(out, 0, ad, state), nil
}

// OpenSession decrypts a session sealed by [SealSession] with the same identity. A damaged
// session, or one sealed by another identity, returns an error matching ErrSessionCorrupt.
func OpenSession(id *Identity, sealed []byte) ([]byte, error) {
	if id == nil {
		return nil, fmt.Errorf("%w: securechannel: open session: nil identity", core.ErrInvalidArgument)
	}
	head := len(sessionMagic) + saltSize
	if len(sealed) < head+TagSize || string(sealed[:len(sessionMagic)]) != sessionMagic {
		return nil, fmt.Errorf("%w: not a sealed session", ErrSessionCorrupt)
	}
	k, err := sessionKey(id, sealed[len(sessionMagic):head])
	if err != nil {
		return nil, err
	}
	ad := append(bytes.Clone(sealed[:head]), id.public[:]...)
	state, err := suite.Cipher(k).Decrypt(nil, 0, ad, sealed[head:])
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (damaged, or sealed by another identity than %s)", ErrSessionCorrupt, id.public)
	}
	return state, nil
}

func sessionKey(id *Identity, salt []byte) ([32]byte, error) {
	var k [32]byte
	b, err := hkdf.Key(suite.Hash, id.private[:], salt, sessionInfo, len(k))
	if err != nil {
		return k, fmt.Errorf("securechannel: session key: %w", err)
	}
	copy(k[:], b)
	return k, nil
}

// SaveSession writes the channel's state (see [SecureChannel.MarshalBinary]) to path,
// sealed with [SealSession] under the channel's identity, atomically (a reader sees the old
// file or the new one), with permissions 0600. The directory must exist.
//
// The channel's send nonces are reserved only once the file is written (and synced): if
// SaveSession fails, the channel keeps its previous reservation (a channel never saved
// before keeps the nonces up to the position the failed file would have restarted from,
// and then refuses to seal until a save succeeds). A channel that has no reserved nonce left
// (restored and not sealing since, or its reservation used up) reserves none: the file
// records where it stands, and the channel reserves when it next seals, so that a device
// that restarts without sending does not skip nonces at every restart. Afterwards the channel
// remembers path and saves itself there again whenever its reserved nonces run out, so
// sending never stops for lack of a reservation, and, for a responder saved while waiting
// for handshake message 3, as soon as message 3 completes the handshake. Save again after
// receiving, before acknowledging what was received (for example before a stream consumer
// saves its index), so that a restart does not deliver it again. Messages the channel delivered into a
// worker's mailbox and that the worker has not handled yet are left out of the saved replay
// windows: a channel restored after a crash accepts them again. Those the window has passed
// (more than WindowSize messages behind the newest one opened in their epoch) are saved as
// held messages, at most MaxHeldMessages, which the restored channel accepts once each; an
// unhandled message of an epoch older than the two a state keeps is lost (see the
// limitations in docs/security.md).
// Likewise, an IK responder
// whose early data was not handled yet saves that, and the restored channel delivers the
// early data when handshake message 1 comes again; one whose message 2 was not sent (its
// send was cut short) saves message 2, which the restored channel sends then.
//
// A channel saves its state one way: SaveSession returns an error matching
// core.ErrInvalidArgument for a channel whose state was taken with MarshalBinary (and
// MarshalBinary refuses a channel saved with SaveSession or restored with RestoreSession).
// Each way reserves send nonces that the other's state does not record, so restoring the
// other one after a crash would reuse nonces. To move a channel to a session file, restore
// its latest MarshalBinary state with [Restore] (or [Listener.Restore]) and save that
// channel with SaveSession: the file then supersedes the state.
func (c *SecureChannel) SaveSession(path string) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if c.marshaled {
		return fmt.Errorf("securechannel: save session %s: %w: the channel's state was taken with MarshalBinary, which reserves send nonces that a session file would not record (a channel restored from one state after the other would reuse nonces); keep saving it with MarshalBinary, or restore its latest state with Restore (a listener's channel with Listener.Restore) and save that channel with SaveSession", path, core.ErrInvalidArgument)
	}
	return c.saveLocked(path, true)
}

// saveLocked is SaveSession with c.saveMu held. With lazy, a channel that has no reserved
// send nonce left reserves none (see Channel.snapshot): it saves again, reserving, when it
// next seals (resaveAndSeal).
func (c *SecureChannel) saveLocked(path string, lazy bool) error {
	state, ch, limit, err := c.snapshot(lazy)
	if err != nil {
		return fmt.Errorf("securechannel: save session %s: %w", path, err)
	}
	sealed, err := SealSession(c.id, state)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, sealed, true); err != nil {
		return fmt.Errorf("securechannel: save session %s: %w", path, err)
	}
	if ch != nil {
		ch.commitReservation(limit)
		c.releaseUnsaved()
	}
	c.sessionPath = path
	return nil
}

// releaseUnsaved releases the message 3 kept pending until the open channel was saved (see
// SecureChannel.unsaved): a state of the open channel was stored. The hold was taken before
// the channel opened, so a snapshot that found the channel open covers it.
func (c *SecureChannel) releaseUnsaved() {
	c.mu.Lock()
	h := c.unsaved
	c.unsaved = nil
	c.mu.Unlock()
	if h != nil {
		h.Release()
	}
}

// resaveAndSeal saves the session to its file again, to reserve more nonces, and seals pt.
// It is called when Seal returned ErrReservationExhausted.
func (c *SecureChannel) resaveAndSeal(ch *Channel, pt []byte) ([]byte, error) {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if sealed, err := ch.Seal(pt); !errors.Is(err, ErrReservationExhausted) {
		return sealed, err // another sender saved meanwhile
	}
	if c.sessionPath == "" {
		return nil, ErrReservationExhausted
	}
	if err := c.saveLocked(c.sessionPath, false); err != nil {
		return nil, err
	}
	return ch.Seal(pt)
}

// RestoreSession reads a session file written by [SecureChannel.SaveSession] and restores
// the channel on node with [Restore]: an initiator's channel (restore a responder's with
// [Listener.RestoreSession]). cfg.Identity must be the identity that saved it. The
// restored channel saves itself to path whenever it needs to reserve send nonces (it does
// before its first message). A missing file returns an error matching fs.ErrNotExist.
func RestoreSession(node *routing.Node, cfg Config, path string) (*SecureChannel, error) {
	state, err := readSession(cfg.Identity, path)
	if err != nil {
		return nil, err
	}
	c, err := Restore(node, cfg, state)
	if err != nil {
		return nil, fmt.Errorf("securechannel: restore %s: %w", path, err)
	}
	c.saveMu.Lock()
	c.sessionPath = path
	c.saveMu.Unlock()
	return c, nil
}

// RestoreSession is [RestoreSession] for a responder channel that this listener created
// (see [Listener.Restore]).
func (l *Listener) RestoreSession(path string) (*SecureChannel, error) {
	state, err := readSession(l.cfg.Identity, path)
	if err != nil {
		return nil, err
	}
	c, err := l.restore(state, path)
	if err != nil {
		return nil, fmt.Errorf("securechannel: restore %s: %w", path, err)
	}
	return c, nil
}

func readSession(id *Identity, path string) ([]byte, error) {
	if id == nil {
		return nil, fmt.Errorf("securechannel: %w: Config.Identity is nil; load one with LoadIdentity", core.ErrInvalidOption)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("securechannel: restore session: %w", err)
	}
	defer f.Close()
	sealed, err := io.ReadAll(io.LimitReader(f, maxSessionFile+1))
	if err != nil {
		return nil, fmt.Errorf("securechannel: restore session %s: %w", path, err)
	}
	if len(sealed) > maxSessionFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrSessionCorrupt, path, maxSessionFile)
	}
	state, err := OpenSession(id, sealed)
	if err != nil {
		return nil, fmt.Errorf("securechannel: restore session %s: %w", path, err)
	}
	return state, nil
}

// writeFileAtomic writes data to path with mode 0600 through a synced temporary file in the
// same directory, then makes it path: with replace, by a rename (a reader sees the old file
// or the complete new one); without, by a hard link, which fails with fs.ErrExist if path
// exists. The directory is synced afterwards, where directories can be, so that the new
// name survives a crash too.
func writeFileAtomic(path string, data []byte, replace bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*") // mode 0600
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // after the rename: a no-op; after the link: drops the temporary name
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if replace {
		err = os.Rename(name, path)
	} else {
		err = os.Link(name, path)
	}
	if err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// sessionStateVersion is the first byte of an encoded SecureChannel state.
const sessionStateVersion = 1

// Kinds of SecureChannel state (the second byte), and its flag.
const (
	kindEstablished = 1 // the channel is open: the Channel state follows
	kindAwaiting3   = 2 // XX responder that sent message 2: its ephemeral private key follows
	// kindEarlyUnhandled, with kindEstablished for an IK responder: the early data of
	// message 1 was not handled when the state was taken, so the restored channel delivers it
	// when message 1 comes again.
	kindEarlyUnhandled = 1 << 7
	// kindUnsent2, with kindEstablished for an IK responder: message 2 was not known to be
	// sent when the state was taken (its send was cut short); it follows the Channel state,
	// and the restored channel sends it when message 1 comes again. (An XX responder waiting
	// for message 3 writes its message 2 again from its state.)
	kindUnsent2 = 1 << 6
)

// session is a decoded SecureChannel state.
type session struct {
	kind      uint8
	encAddr   string
	decAddr   string
	peerRoute wire.Route
	hello     []byte   // responder: handshake message 1; empty for an initiator
	channel   *Channel // kindEstablished
	ephemeral []byte   // kindAwaiting3
	// earlyUnhandled: kindEarlyUnhandled was set (an IK responder whose early data was not
	// handled).
	earlyUnhandled bool
	// unsent2: the IK responder's message 2, when kindUnsent2 was set.
	unsent2 []byte
}

// snapshot encodes the channel's state. For an established channel it also returns the
// Channel and the send position reserved by the state (to commit once it is stored).
func (c *SecureChannel) snapshot(lazy bool) ([]byte, *Channel, position, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := []byte{sessionStateVersion, 0}
	b = wire.AppendString(b, c.encAddr)
	b = wire.AppendString(b, c.decAddr)
	b = wire.AppendData(b, c.peerRoute.Append(nil))
	b = wire.AppendData(b, c.hello)
	switch {
	case c.ch != nil:
		b[1] = kindEstablished
		if c.earlyUnhandledLocked() {
			b[1] |= kindEarlyUnhandled
		}
		ikUnsent2 := c.unsent2 != nil && len(c.hello) > 0 && MessageType(c.hello[0]) == TypeIK1
		if ikUnsent2 {
			b[1] |= kindUnsent2
		}
		state, limit := c.ch.snapshot(c.unhandledLabels, lazy)
		b = wire.AppendData(b, state)
		if ikUnsent2 {
			b = wire.AppendData(b, c.unsent2)
		}
		return b, c.ch, limit, nil
	case c.hs != nil && c.err == nil:
		if _, eph, ok := c.hs.exportAwaitingMessage3(); ok {
			b[1] = kindAwaiting3
			return wire.AppendData(b, eph), nil, position{}, nil
		}
	}
	if c.err != nil {
		return nil, nil, position{}, fmt.Errorf("%w: the handshake failed: %w", ErrHandshakeState, c.err)
	}
	return nil, nil, position{}, fmt.Errorf("%w: only an open channel, or a responder waiting for handshake message 3, can be saved", ErrHandshakeState)
}

// MarshalBinary returns the state of the channel, to restore it with [Restore] or
// [Listener.Restore] on a new node after a restart of the process: the [Channel] state (see
// [Channel.MarshalBinary], including the nonce reservation, which takes effect at once), the
// channel's two local addresses, and its route to the peer. A responder that sent XX message
// 2 and waits for message 3 can be saved too (its state holds its ephemeral private key, to
// finish the handshake after the restart). Other half-open handshakes return
// ErrHandshakeState. The state holds secret keys: prefer [SecureChannel.SaveSession], which
// seals it.
//
// A channel saves its state one way: MarshalBinary returns an error matching
// core.ErrInvalidArgument for a channel saved with SaveSession or restored with
// RestoreSession, which saves itself to its file when it needs nonces: a state taken on the
// side would reserve nonces that the file does not record, and a channel restored from the
// file after a crash would reuse them. Likewise SaveSession refuses a channel whose state
// was taken with MarshalBinary.
func (c *SecureChannel) MarshalBinary() ([]byte, error) {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if c.sessionPath != "" {
		return nil, fmt.Errorf("securechannel: marshal channel %s: %w: the channel saves its state to the session file %s (SaveSession, RestoreSession), which would not record the send nonces a MarshalBinary state reserves (a channel restored from the file after a crash would reuse nonces); save it with SaveSession only", c.encAddr, core.ErrInvalidArgument, c.sessionPath)
	}
	state, ch, limit, err := c.snapshot(false)
	if err != nil {
		return nil, err
	}
	if ch != nil {
		ch.commitReservation(limit)
		c.releaseUnsaved()
	}
	c.marshaled = true
	return state, nil
}

// decodeSession decodes a SecureChannel state. Errors match ErrSessionCorrupt.
func decodeSession(b []byte) (*session, error) {
	r := wire.NewReader(b, "securechannel.Session")
	if v := r.ReadU8(); r.Err() == nil && v != sessionStateVersion {
		r.Fail(fmt.Sprintf("version %d, want %d", v, sessionStateVersion), nil)
	}
	kind := r.ReadU8()
	s := &session{kind: kind &^ (kindEarlyUnhandled | kindUnsent2), earlyUnhandled: kind&kindEarlyUnhandled != 0}
	s.encAddr = r.ReadString()
	s.decAddr = r.ReadString()
	route := r.ReadData()
	s.hello = bytes.Clone(r.ReadData())
	rest := r.ReadData()
	unsent2 := kind&kindUnsent2 != 0
	if unsent2 {
		s.unsent2 = bytes.Clone(r.ReadData())
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSessionCorrupt, err)
	}
	var err error
	if s.peerRoute, err = wire.DecodeRoute(route); err != nil {
		return nil, fmt.Errorf("%w: route to the peer: %w", ErrSessionCorrupt, err)
	}
	s.peerRoute = s.peerRoute.Clone()
	switch {
	case s.encAddr == "" || s.decAddr == "" || s.encAddr == s.decAddr:
		return nil, fmt.Errorf("%w: local addresses %q and %q", ErrSessionCorrupt, s.encAddr, s.decAddr)
	case len(s.peerRoute) == 0:
		return nil, fmt.Errorf("%w: empty route to the peer", ErrSessionCorrupt)
	}
	if len(s.hello) > 0 {
		if t, err := PeekType(s.hello); err != nil || (t != TypeHandshake1 && t != TypeIK1) {
			return nil, fmt.Errorf("%w: saved handshake message 1 is not one", ErrSessionCorrupt)
		}
	}
	switch s.kind {
	case kindEstablished:
		if s.channel, err = UnmarshalChannel(rest); err != nil {
			return nil, err
		}
		if s.channel.initiator != (len(s.hello) == 0) {
			return nil, fmt.Errorf("%w: a responder's state needs handshake message 1, an initiator's has none", ErrSessionCorrupt)
		}
		if s.earlyUnhandled && (len(s.hello) == 0 || MessageType(s.hello[0]) != TypeIK1) {
			return nil, fmt.Errorf("%w: unhandled early data in the state of a channel that is not an IK responder", ErrSessionCorrupt)
		}
		if unsent2 && (len(s.hello) == 0 || MessageType(s.hello[0]) != TypeIK1) {
			return nil, fmt.Errorf("%w: an unsent message 2 in the state of a channel that is not an IK responder", ErrSessionCorrupt)
		}
		if t, err := PeekType(s.unsent2); unsent2 && (err != nil || t != TypeIK2) {
			return nil, fmt.Errorf("%w: the unsent message 2 is not an IK message 2", ErrSessionCorrupt)
		}
	case kindAwaiting3:
		if s.earlyUnhandled || unsent2 {
			return nil, fmt.Errorf("%w: unhandled early data or an unsent IK message 2 in the state of an XX responder", ErrSessionCorrupt)
		}
		if len(rest) != KeySize || len(s.hello) == 0 || MessageType(s.hello[0]) != TypeHandshake1 {
			return nil, fmt.Errorf("%w: a responder waiting for message 3 needs message 1 and a %d-byte key", ErrSessionCorrupt, KeySize)
		}
		s.ephemeral = bytes.Clone(rest)
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrSessionCorrupt, s.kind)
	}
	return s, nil
}

// Restore registers a channel saved with [SecureChannel.MarshalBinary] on node, at the
// addresses it had, so that the routes the peer stored (its route to this channel) keep
// working: the peer notices nothing. cfg must hold the identity that saved it (else
// ErrSessionCorrupt) and a trust policy that still accepts the peer (else ErrUntrusted: a key
// removed from the policy loses its channels at the next restart).
//
// Restore is for an initiator's channel. A responder's state (a channel a [Listener]
// created) returns an error matching core.ErrInvalidArgument: restore it with
// [Listener.Restore], so that the listener knows it. A listener that does not know a channel
// takes its handshake message 1, when it comes again (from a stream, after the restart), for
// a new handshake: it makes a second channel of it, and delivers the early data of an IK
// message 1 again, although the restored channel handled it.
//
// The restored channel seals nothing before its state is saved again, which reserves new
// send nonces (SaveSession; RestoreSession arranges it by itself). Restoring a state twice,
// or on a node where its addresses are taken, fails; a restored channel is closed with Close
// (or node.Close) like any other.
func Restore(node *routing.Node, cfg Config, state []byte) (*SecureChannel, error) {
	c, err := restore(node, cfg, state)
	if err != nil {
		return nil, err
	}
	if !c.initiator {
		return nil, fmt.Errorf("%w: securechannel: restore: a responder's channel (created by a listener); restore it with Listener.Restore or Listener.RestoreSession, so that the listener does not take its handshake message 1 for a new handshake when it comes again", core.ErrInvalidArgument)
	}
	if err := c.register(); err != nil {
		return nil, err
	}
	return c, nil
}

// Restore is [Restore] for a responder channel created by a listener (a state whose side is
// the responder), with this listener's configuration: the listener's Channel finds it, Close
// closes it, a repeated handshake message 1 of that channel is counted as a duplicate and
// dropped, and a channel that waited for handshake message 3 gets the listener's handshake
// timeout and OnChannel. An IK channel saved before the early data of its message 1 was
// handled delivers it when that message 1 comes again (once).
func (l *Listener) Restore(state []byte) (*SecureChannel, error) {
	return l.restore(state, "")
}

// restore is Restore for a channel saved in the session file path ("" for none). The
// listener tracks the channel, and the channel knows its file, before its addresses are
// registered: from then on the peer's messages (message 3, data) may reach it at once, and
// the handshake they complete must find the channel's listener and file.
func (l *Listener) restore(state []byte, path string) (*SecureChannel, error) {
	c, err := restore(l.node, l.cfg, state)
	if err != nil {
		return nil, err
	}
	if c.initiator {
		return nil, fmt.Errorf("%w: securechannel: listener %s: an initiator's channel; restore it with Restore", core.ErrInvalidArgument, l.address)
	}
	c.sessionPath = path // nobody else sees c yet
	if err := l.track(c, string(c.hello), c.ch != nil, 0); err != nil {
		return nil, err // c has no addresses and no timer yet: nothing to undo
	}
	if err := c.register(); err != nil {
		// Forget c without Close, which would unregister its addresses: they may be
		// another channel's (the same state restored on this node already).
		c.mu.Lock()
		c.closed = true // its handshake timer, if it fires now, closes nothing
		if c.timer != nil {
			c.timer.Stop()
		}
		onClose := c.onClose
		c.mu.Unlock()
		onClose(c)
		return nil, err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed { // the listener closed it before its addresses were registered
		_ = c.node.Unregister(c.encAddr)
		_ = c.node.Unregister(c.decAddr)
		return nil, fmt.Errorf("securechannel: listener %s: %w", l.address, core.ErrClosed)
	}
	return c, nil
}

// restore builds the channel of a saved state, without registering it.
func restore(node *routing.Node, cfg Config, state []byte) (*SecureChannel, error) {
	if node == nil {
		return nil, fmt.Errorf("%w: securechannel: restore: nil node", core.ErrInvalidArgument)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s, err := decodeSession(state)
	if err != nil {
		return nil, err
	}
	c := &SecureChannel{
		node:      node,
		log:       node.Logger(),
		id:        cfg.Identity,
		initiator: s.kind == kindEstablished && s.channel.initiator,
		hello:     s.hello,
		encAddr:   s.encAddr,
		decAddr:   s.decAddr,
		peerRoute: s.peerRoute,
		selfRoute: wire.Route{wire.Local(s.encAddr)},
		done:      make(chan struct{}),
	}
	switch s.kind {
	case kindEstablished:
		ch := s.channel
		if ch.local != cfg.Identity.public {
			return nil, fmt.Errorf("%w: the channel was saved by identity %s, not %s", ErrSessionCorrupt, ch.local, cfg.Identity.public)
		}
		if err := checkTrust(cfg.Trust, ch.peer); err != nil {
			return nil, fmt.Errorf("securechannel: restore: %w", err)
		}
		c.ch = ch
		c.settleLocked(nil)
		if s.earlyUnhandled {
			c.ikEarly = ikEarlyWaiting // delivered when message 1 comes again
		}
		c.unsent2 = s.unsent2 // sent when message 1 comes again
	case kindAwaiting3:
		// Whether message 2 was sent is not in the state (its send may have been cut short
		// before the save): the channel sends it when message 1 comes again.
		if c.hs, c.unsent2, err = replayResponder(cfg, s.hello, s.ephemeral); err != nil {
			return nil, err
		}
	}
	return c, nil
}
