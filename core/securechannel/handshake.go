package securechannel

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/flynn/noise"
	"github.com/sluicehq/sluice/core"
)

// ProtocolName is the full Noise protocol name of every channel.
const ProtocolName = "Noise_XX_25519_ChaChaPoly_BLAKE2s"

// prologue binds the handshake to this protocol and version: a peer speaking anything else
// fails the handshake instead of misreading messages.
var prologue = []byte("sluice/securechannel/1")

var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// Config configures a Handshake.
type Config struct {
	// Identity is this side's static key pair. Required.
	Identity *Identity
	// Trust decides which peers are accepted. Required: use TrustKeys, or TrustAnyInsecure
	// to accept anybody.
	Trust TrustPolicy
	// RekeyAfter is how many messages the channel encrypts under one key before it rotates
	// to the next epoch. 0 means DefaultRekeyAfter; at most MaxRekeyAfter.
	RekeyAfter uint64
	// Random is the source of ephemeral keys; nil means crypto/rand. It must be safe for
	// concurrent use when the Config is (a Listener, concurrent Dials). Meant for tests.
	Random io.Reader
}

func (c Config) validate() error {
	if c.Identity == nil {
		return fmt.Errorf("securechannel: %w: Config.Identity is nil; load one with LoadIdentity", core.ErrInvalidOption)
	}
	if c.Trust == nil {
		return fmt.Errorf("securechannel: %w: Config.Trust is nil; use TrustKeys(...) or, for tests, TrustAnyInsecure()", core.ErrInvalidOption)
	}
	if c.RekeyAfter > MaxRekeyAfter {
		return fmt.Errorf("securechannel: %w: Config.RekeyAfter %d is above %d", core.ErrInvalidOption, c.RekeyAfter, uint64(MaxRekeyAfter))
	}
	return nil
}

// MaxRekeyAfter is the largest Config.RekeyAfter: a saved session tells unhandled messages
// apart by their epoch and the low 32 bits of their nonces, so an epoch has at most 2^32.
const MaxRekeyAfter = 1 << 32

// Handshake is the transport-independent handshake state machine. The XX pattern (both
// sides learn the other's static key during the handshake):
//
//	initiator: WriteMessage -> msg1;  ReadMessage(msg2);  WriteMessage -> msg3;  Channel
//	responder: ReadMessage(msg1);  WriteMessage -> msg2;  ReadMessage(msg3);  Channel
//
// The IK pattern, when the initiator knows the responder's static key already
// ([NewInitiatorIK]); its first message may carry early data:
//
//	initiator: WriteMessageWithPayload(early) -> msg1;  ReadMessage(msg2);  Channel
//	responder: ReadMessage(msg1);  EarlyData;  WriteMessage -> msg2;  Channel
//
// A responder accepts either pattern: the type of the first message decides.
//
// The trust policy is checked as soon as the peer's static key is known: XX initiator when it
// reads message 2, XX responder when it reads message 3, IK responder when it reads message
// 1, IK initiator when it is created. A Handshake is not safe for concurrent use.
//
// ReadMessage errors that leave the handshake as it was (it may continue): ErrMalformed,
// ErrHandshakeState (an unexpected type: a duplicate or a stray message), and ErrDecrypt for
// XX message 3 (a forged or damaged message 3: the responder keeps waiting for the genuine
// one, see ReadMessage). Errors that end it: ErrDecrypt for any other message, and
// ErrUntrusted; afterwards every call returns ErrHandshakeFailed.
type Handshake struct {
	cfg       Config
	initiator bool
	hs        *noise.HandshakeState // nil for a responder until the first message
	pattern   []MessageType         // message types in order; nil until known
	step      int                   // index in pattern of the next message
	peerKnown bool                  // the peer's static key passed the trust policy
	early     []byte                // IK early data received by the responder
	hello     []byte                // message 1, kept by the responder (session state)
	failed    error
	channel   *Channel
	// exported is set once the responder's state was exported (exportAwaitingMessage3) or restored
	// from an export: the same message 3 can complete it again from that state, with the same
	// keys, so its channel seals nothing before the channel's own state is saved (it starts
	// with no reserved nonces).
	exported bool
}

var (
	patternXX = []MessageType{TypeHandshake1, TypeHandshake2, TypeHandshake3}
	patternIK = []MessageType{TypeIK1, TypeIK2}
)

// NewInitiator starts the initiator side of an XX handshake.
func NewInitiator(cfg Config) (*Handshake, error) {
	h, err := newHandshake(cfg, true)
	if err != nil {
		return nil, err
	}
	return h, h.start(patternXX, nil)
}

// NewInitiatorIK starts the initiator side of an IK handshake with the responder whose
// static key is known. The key must be accepted by cfg.Trust (else ErrUntrusted). The first
// message can be written, and carry early data, before the responder is reachable.
func NewInitiatorIK(cfg Config, responder PublicKey) (*Handshake, error) {
	h, err := newHandshake(cfg, true)
	if err != nil {
		return nil, err
	}
	if err := h.trust(responder); err != nil {
		return nil, err
	}
	return h, h.start(patternIK, responder[:])
}

// NewResponder starts the responder side of a handshake; the first message read decides
// between XX and IK.
func NewResponder(cfg Config) (*Handshake, error) { return newHandshake(cfg, false) }

func newHandshake(cfg Config, initiator bool) (*Handshake, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.RekeyAfter == 0 {
		cfg.RekeyAfter = DefaultRekeyAfter
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	return &Handshake{cfg: cfg, initiator: initiator}, nil
}

// start creates the Noise state for pattern. peerStatic is the responder's key for IK.
func (h *Handshake) start(pattern []MessageType, peerStatic []byte) error {
	np := noise.HandshakeXX
	if pattern[0] == TypeIK1 {
		np = noise.HandshakeIK
		if !h.initiator {
			peerStatic = nil
		}
	}
	id := h.cfg.Identity
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   suite,
		Random:        h.cfg.Random,
		Pattern:       np,
		Initiator:     h.initiator,
		Prologue:      prologue,
		StaticKeypair: noise.DHKey{Private: id.private[:], Public: id.public[:]},
		PeerStatic:    peerStatic,
	})
	if err != nil {
		return fmt.Errorf("securechannel: new handshake: %w", err)
	}
	h.hs, h.pattern = hs, pattern
	return nil
}

func (h *Handshake) trust(peer PublicKey) error {
	if err := checkTrust(h.cfg.Trust, peer); err != nil {
		return err
	}
	h.peerKnown = true
	return nil
}

// checkTrust asks policy whether it trusts peer; its refusal matches ErrUntrusted, whatever
// error the policy returned.
func checkTrust(policy TrustPolicy, peer PublicKey) error {
	err := policy.Trust(peer)
	if err != nil && !errors.Is(err, ErrUntrusted) {
		err = fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return err
}

// Initiator reports whether this is the initiator side.
func (h *Handshake) Initiator() bool { return h.initiator }

// Complete reports whether the handshake finished and Channel is available.
func (h *Handshake) Complete() bool { return h.channel != nil }

// Err returns the error that ended the handshake, or nil.
func (h *Handshake) Err() error { return h.failed }

// WantsWrite reports whether the next step is WriteMessage (rather than ReadMessage).
func (h *Handshake) WantsWrite() bool {
	if h.failed != nil || h.channel != nil || h.pattern == nil {
		return false
	}
	return h.initiator == (h.step%2 == 0)
}

// Expects returns the type of the message ReadMessage accepts next, or 0 if none. A new
// responder returns TypeHandshake1 but accepts TypeIK1 too.
func (h *Handshake) Expects() MessageType {
	if h.failed != nil || h.channel != nil {
		return 0
	}
	if h.pattern == nil {
		return TypeHandshake1
	}
	if h.WantsWrite() {
		return 0
	}
	return h.pattern[h.step]
}

func (h *Handshake) fail(err error) error {
	h.failed = err
	return err
}

// WriteMessage returns the next handshake message to send to the peer.
func (h *Handshake) WriteMessage() ([]byte, error) { return h.WriteMessageWithPayload(nil) }

// WriteMessageWithPayload is WriteMessage with early data in the first message of an IK
// handshake (at most MaxEarlyDataSize bytes). The early data is encrypted to the responder's
// static key: it is confidential and authenticated, but it is not forward secret and an
// attacker can replay message 1 (see docs/security.md). Other messages take no payload.
func (h *Handshake) WriteMessageWithPayload(payload []byte) ([]byte, error) {
	if h.failed != nil {
		return nil, fmt.Errorf("%w: %w", ErrHandshakeFailed, h.failed)
	}
	if !h.WantsWrite() {
		return nil, fmt.Errorf("%w: WriteMessage called while a message from the peer is expected (or after completion)", ErrHandshakeState)
	}
	t := h.pattern[h.step]
	if len(payload) > 0 && t != TypeIK1 {
		return nil, fmt.Errorf("%w: only IK message 1 carries early data, not %v", ErrHandshakeState, t)
	}
	if len(payload) > MaxEarlyDataSize {
		return nil, fmt.Errorf("%w: early data is %d bytes, the limit is %d", ErrMessageTooLarge, len(payload), MaxEarlyDataSize)
	}
	out := []byte{byte(t)}
	out, cs1, cs2, err := h.hs.WriteMessage(out, payload)
	if err != nil {
		return nil, h.fail(fmt.Errorf("securechannel: write %v: %w", t, err))
	}
	h.step++
	if h.step == len(h.pattern) {
		h.finish(cs1, cs2)
	}
	return out, nil
}

// ReadMessage processes a handshake message from the peer. See Handshake for which errors
// end the handshake.
//
// An XX responder that wrote message 2 keeps its handshake when message 3 fails
// authentication (ErrDecrypt): anybody who can reach the responder's half-open channel can
// send it a message 3 (its address travels in the clear), while only the holder of the
// initiator's ephemeral key, the party that sent message 1, can write one that
// authenticates. The handshake is restored exactly as it was before the attempt, from the
// state that [SecureChannel.SaveSession] saves for a responder waiting for message 3 (message 1
// and the responder's ephemeral key, replayed), so the genuine message 3 still completes it.
// A message 3 that authenticates ends the handshake when the trust policy refuses the
// initiator's static key (ErrUntrusted): only the initiator could have written it.
func (h *Handshake) ReadMessage(msg []byte) error {
	if h.failed != nil {
		return fmt.Errorf("%w: %w", ErrHandshakeFailed, h.failed)
	}
	t, err := PeekType(msg)
	if err != nil {
		return err
	}
	if h.pattern == nil && !h.initiator && (t == TypeHandshake1 || t == TypeIK1) {
		pattern := patternXX
		if t == TypeIK1 {
			pattern = patternIK
		}
		if err := h.start(pattern, nil); err != nil {
			return h.fail(err)
		}
		h.hello = append([]byte(nil), msg...)
	}
	if want := h.Expects(); t != want {
		return fmt.Errorf("%w: got %v, expecting %v", ErrHandshakeState, t, want)
	}
	// Noise's ReadMessage changes the handshake state even when the message fails (it rolls
	// back the chaining key and hash, not the cipher key that a DH token mixed in), so the
	// responder takes the state that restores it first.
	hello, ephemeral, awaiting3 := h.awaitingMessage3()
	payload, cs1, cs2, err := h.hs.ReadMessage(nil, msg[1:])
	if err != nil {
		if awaiting3 {
			return h.rewind(hello, ephemeral, fmt.Errorf("%w: %v: %w; still waiting for the genuine one", ErrDecrypt, t, err))
		}
		return h.fail(fmt.Errorf("%w: %v: %w", ErrDecrypt, t, err))
	}
	clear(ephemeral)
	if !h.peerKnown && len(h.hs.PeerStatic()) == KeySize {
		var peer PublicKey
		copy(peer[:], h.hs.PeerStatic())
		if err := h.trust(peer); err != nil {
			return h.fail(err)
		}
	}
	if t == TypeIK1 {
		h.early = payload
	}
	h.step++
	if h.step == len(h.pattern) {
		h.finish(cs1, cs2)
	}
	return nil
}

// EarlyData returns the early data of IK message 1 (responder), or nil.
func (h *Handshake) EarlyData() []byte { return h.early }

// finish builds the channel. Noise's Split gives (c1, c2): the initiator sends with c1,
// the responder with c2.
func (h *Handshake) finish(cs1, cs2 *noise.CipherState) {
	send, recv := cs1.UnsafeKey(), cs2.UnsafeKey()
	if !h.initiator {
		send, recv = recv, send
	}
	var peer PublicKey
	copy(peer[:], h.hs.PeerStatic())
	binding := append([]byte(nil), h.hs.ChannelBinding()...)
	h.channel = newChannel(send, recv, peer, h.cfg.Identity.public, binding, h.initiator, h.cfg.RekeyAfter)
	if h.exported {
		h.channel.commitReservation(position{})
	}
}

// PeerIdentity returns the peer's static key once it is known and trusted, and false
// before.
func (h *Handshake) PeerIdentity() (PublicKey, bool) {
	var k PublicKey
	if h.failed != nil || !h.peerKnown {
		return k, false
	}
	copy(k[:], h.hs.PeerStatic())
	return k, true
}

// Channel returns the established channel, or ErrHandshakeState before completion.
func (h *Handshake) Channel() (*Channel, error) {
	if h.channel == nil {
		if h.failed != nil {
			return nil, fmt.Errorf("%w: %w", ErrHandshakeFailed, h.failed)
		}
		return nil, fmt.Errorf("%w: handshake not complete", ErrHandshakeState)
	}
	return h.channel, nil
}

// exportAwaitingMessage3 returns what restores an XX responder that wrote message 2 and waits
// for message 3 (see restoreResponder): message 1 and the responder's ephemeral private key.
// From then on the channel the handshake completes starts with no reserved send nonces.
func (h *Handshake) exportAwaitingMessage3() (hello, ephemeral []byte, ok bool) {
	hello, ephemeral, ok = h.awaitingMessage3()
	if ok {
		h.exported = true
	}
	return hello, ephemeral, ok
}

// awaitingMessage3 is exportAwaitingMessage3 for this process's own use: the state stays
// in memory (ReadMessage rewinds to it when message 3 fails), so it does not mark the
// handshake exported. ephemeral is a copy.
func (h *Handshake) awaitingMessage3() (hello, ephemeral []byte, ok bool) {
	if h.initiator || h.failed != nil || h.channel != nil || h.pattern == nil || h.pattern[0] != TypeHandshake1 || h.step != 2 {
		return nil, nil, false
	}
	return h.hello, append([]byte(nil), h.hs.LocalEphemeral().Private...), true
}

// rewind puts an XX responder whose ReadMessage of message 3 failed back into the state it
// had before, from what awaitingMessage3 returned then (restoreResponder replays it), and
// returns readErr. The rest of h (its step, whether it was exported) did not change. If the
// state cannot be rebuilt, which would be a bug, the handshake ends.
func (h *Handshake) rewind(hello, ephemeral []byte, readErr error) error {
	r, err := restoreResponder(h.cfg, hello, ephemeral)
	clear(ephemeral)
	if err != nil {
		return h.fail(fmt.Errorf("%w (and the handshake could not be restored: %w)", readErr, err))
	}
	h.hs = r.hs
	return readErr
}

// restoreResponder rebuilds an XX responder that wrote message 2 and waits for message 3:
// the Noise handshake is deterministic given message 1 and the responder's ephemeral key, so
// replaying both restores the exact state (and the same message 2).
func restoreResponder(cfg Config, hello, ephemeral []byte) (*Handshake, error) {
	h, _, err := replayResponder(cfg, hello, ephemeral)
	return h, err
}

// replayResponder is restoreResponder that also returns message 2, which the replay wrote
// again, byte for byte.
func replayResponder(cfg Config, hello, ephemeral []byte) (*Handshake, []byte, error) {
	if len(ephemeral) != KeySize {
		return nil, nil, fmt.Errorf("%w: ephemeral key of %d bytes", ErrSessionCorrupt, len(ephemeral))
	}
	if t, err := PeekType(hello); err != nil || t != TypeHandshake1 {
		return nil, nil, fmt.Errorf("%w: saved handshake message 1 is not one", ErrSessionCorrupt)
	}
	cfg.Random = bytes.NewReader(ephemeral)
	h, err := NewResponder(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := h.ReadMessage(hello); err != nil {
		return nil, nil, fmt.Errorf("%w: saved handshake message 1: %w", ErrSessionCorrupt, err)
	}
	m2, err := h.WriteMessage()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: replay handshake message 2: %w", ErrSessionCorrupt, err)
	}
	h.exported = true
	return h, m2, nil
}
