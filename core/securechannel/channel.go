package securechannel

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/flynn/noise"
)

// DefaultRekeyAfter is the default number of messages a sender encrypts under one key
// epoch before it rotates the key.
const DefaultRekeyAfter = 1 << 20

// MaxEpochSkip is how many key epochs ahead of its current one a receiver follows in one
// step (when the messages of the epochs in between were lost or are still on their way).
// A message further ahead is rejected with ErrDecrypt; this bounds the work a forged header
// can cause.
const MaxEpochSkip = 64

// Channel is an established secure channel: it seals messages for the peer and opens the
// peer's messages. Seal and Open may be called concurrently (each direction has its own lock).
//
// Each sealed message carries its epoch and nonce in the clear, so messages may arrive out of
// order, be duplicated or be lost: Open accepts each (epoch, nonce) once, within the replay
// window, and returns ErrReplay (ErrDuplicate) otherwise. A message that fails authentication
// returns ErrDecrypt and changes nothing.
type Channel struct {
	peer       PublicKey
	local      PublicKey
	binding    []byte
	initiator  bool
	rekeyAfter uint64

	sendMu sync.Mutex
	send   sendState

	recvMu sync.Mutex
	cur    recvEpoch
	prev   *recvEpoch // the epoch before cur, kept for stragglers; nil if none
	// held are the messages a saved state still owed: not handled when it was saved, and
	// below the replay window of their epoch then (see snapshot), and those whose delivery
	// was cut short after the window passed them (see forget). Each is accepted once,
	// whatever the windows say; a save forgets those handled since (and an epoch's key with
	// its last one). Sorted by epoch; usually empty.
	held []heldEpoch
}

// heldEpoch is the key of one epoch and the nonces of its held messages.
type heldEpoch struct {
	epoch  uint32
	key    [32]byte
	cipher *transportCipher
	nonces []heldNonce // increasing
}

// heldNonce is one held message; taken once it was accepted (forget gives it back).
type heldNonce struct {
	n     uint64
	taken bool
}

// heldNonce returns the held message (epoch, n) and its epoch, or nil. It searches
// (c.held by epoch, then its nonces), since it runs with the receive direction locked for
// every message below a window or of a retired epoch (replays an attacker may send at will)
// and for every unhandled label a save finds below a window.
func (c *Channel) heldNonce(epoch uint32, n uint64) (*heldEpoch, *heldNonce) {
	i, ok := slices.BinarySearchFunc(c.held, epoch, func(he heldEpoch, e uint32) int { return cmp.Compare(he.epoch, e) })
	if !ok {
		return nil, nil
	}
	he := &c.held[i]
	j, ok := slices.BinarySearchFunc(he.nonces, n, func(hn heldNonce, n uint64) int { return cmp.Compare(hn.n, n) })
	if !ok {
		return nil, nil
	}
	return he, &he.nonces[j]
}

type sendState struct {
	epoch  uint32
	nonce  uint64
	key    [32]byte
	cipher *transportCipher // guarded by sendMu
	// limited is set once the channel's state was exported (MarshalBinary) or restored: Seal
	// then uses only positions below limit, the first one a saved state may restart from.
	limited bool
	limit   position
}

type recvEpoch struct {
	epoch  uint32
	key    [32]byte
	cipher *transportCipher
	win    window
}

func newChannel(sendKey, recvKey [32]byte, peer, local PublicKey, binding []byte, initiator bool, rekeyAfter uint64) *Channel {
	return &Channel{
		peer:       peer,
		local:      local,
		binding:    binding,
		initiator:  initiator,
		rekeyAfter: rekeyAfter,
		send:       sendState{key: sendKey, cipher: newTransportCipher(sendKey)},
		cur:        recvEpoch{key: recvKey, cipher: newTransportCipher(recvKey)},
	}
}

// rekey is Noise's REKEY(k): the first 32 bytes of ENCRYPT(k, 2^64-1, empty, zeros).
// It is one-way, so a key does not reveal the keys of earlier epochs.
func rekey(k [32]byte) [32]byte {
	cs := noise.UnsafeNewCipherState(suite, k, 0)
	cs.Rekey()
	return cs.UnsafeKey()
}

// PeerIdentity returns the peer's static public key, authenticated by the handshake and
// accepted by the trust policy.
func (c *Channel) PeerIdentity() PublicKey { return c.peer }

// LocalIdentity returns this side's static public key.
func (c *Channel) LocalIdentity() PublicKey { return c.local }

// Initiator reports whether this side started the handshake.
func (c *Channel) Initiator() bool { return c.initiator }

// ChannelBinding returns a value that is unique to this channel and equal on both sides
// (the Noise handshake hash). The returned slice must not be modified.
func (c *Channel) ChannelBinding() []byte { return c.binding }

// Seal encrypts plaintext into a new data message (header + ciphertext + tag) for the peer.
// The plaintext is not retained. It returns ErrMessageTooLarge if plaintext is longer than
// MaxPlaintextSize, ErrExhausted after the last key epoch, and ErrReservationExhausted when
// the send nonces reserved by the last exported state are used up (see MarshalBinary). Seal
// rotates the key after RekeyAfter messages.
func (c *Channel) Seal(plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintextSize {
		return nil, fmt.Errorf("%w: plaintext is %d bytes, the limit is %d", ErrMessageTooLarge, len(plaintext), MaxPlaintextSize)
	}
	out := make([]byte, HeaderSize, Overhead+len(plaintext))
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	h, err := c.nextSendLocked()
	if err != nil {
		return nil, err
	}
	appendHeader(out[:0], h)
	return c.send.cipher.seal(out, h.Nonce, out[:HeaderSize], plaintext), nil
}

// sealInPlace is Seal without a copy: buf holds HeaderSize bytes of room for the header
// followed by the plaintext, and should have TagSize bytes of spare capacity. It writes the
// header, encrypts the plaintext in place and returns the data message, which shares buf's
// array when the capacity sufficed. On error buf is unchanged.
func (c *Channel) sealInPlace(buf []byte) ([]byte, error) {
	if len(buf) < HeaderSize {
		return nil, fmt.Errorf("%w: no room for the header", ErrMalformed)
	}
	if n := len(buf) - HeaderSize; n > MaxPlaintextSize {
		return nil, fmt.Errorf("%w: plaintext is %d bytes, the limit is %d", ErrMessageTooLarge, n, MaxPlaintextSize)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	h, err := c.nextSendLocked()
	if err != nil {
		return nil, err
	}
	appendHeader(buf[:0], h)
	return c.send.cipher.seal(buf[:HeaderSize], h.Nonce, buf[:HeaderSize], buf[HeaderSize:]), nil
}

// nextSendLocked reserves the next send position, rotating the key (and c.send.cipher) when
// the epoch is used up. c.sendMu is held; the caller encrypts with c.send.cipher before it
// releases the lock, since the cipher's nonce buffer is not safe for concurrent use.
func (c *Channel) nextSendLocked() (Header, error) {
	s := &c.send
	if s.nonce >= c.rekeyAfter {
		if s.epoch == math.MaxUint32 {
			return Header{}, ErrExhausted
		}
		s.epoch++
		s.key = rekey(s.key)
		s.cipher = newTransportCipher(s.key)
		s.nonce = 0
	}
	if s.limited && !(position{s.epoch, s.nonce}).less(s.limit) {
		return Header{}, fmt.Errorf("%w: epoch %d nonce %d", ErrReservationExhausted, s.epoch, s.nonce)
	}
	h := Header{Epoch: s.epoch, Nonce: s.nonce}
	s.nonce++
	return h, nil
}

// Open authenticates and decrypts a data message from the peer and returns the plaintext
// (a new slice). Errors, none of which change the channel:
//   - ErrMalformed: not a data message;
//   - ErrDuplicate (matching ErrReplay): this message was already opened;
//   - ErrReplay: older than the replay window, or from a retired key epoch (except a
//     message held by the state this channel was restored from, accepted once: see
//     SecureChannel.SaveSession);
//   - ErrDecrypt: authentication failed (tampered or forged), or the epoch is more than
//     MaxEpochSkip ahead.
func (c *Channel) Open(msg []byte) ([]byte, error) { return c.open(msg, false, nil) }

// openInPlace is Open that decrypts into msg's own ciphertext bytes instead of a new slice:
// the plaintext returned shares msg's array. Use it only when the caller owns msg and
// drops it on any error (a failed authentication may overwrite its ciphertext). When
// accepting is not nil, it is called with the message's header and its epoch's key once
// the message has authenticated and passed the replay check, just before its replay window
// accepts it, while the receive direction is locked: a snapshot of the windows (see
// snapshot) that holds the message was taken after accepting returned. A caller that may
// forget the message keeps the key for forget.
func (c *Channel) openInPlace(msg []byte, accepting func(h Header, key [32]byte)) ([]byte, error) {
	return c.open(msg, true, accepting)
}

// forget undoes the acceptance of the message with header h by Open, so that the same
// message is accepted, once, when it comes again: its delivery was cut short. key is the
// key of h's epoch (as openInPlace reported it). A message that is still in its epoch's
// replay window is taken out of it. One that the window has passed meanwhile, or whose
// epoch was retired meanwhile (later messages were opened concurrently, by other
// deliveries), becomes a held message with its epoch's key (see Channel.held), accepted
// once whatever the windows say and kept by a save until it was handled: the window alone
// could not tell it from a replay any more.
func (c *Channel) forget(h Header, key [32]byte) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	if _, hn := c.heldNonce(h.Epoch, h.Nonce); hn != nil {
		hn.taken = false
		return
	}
	var ep *recvEpoch
	switch {
	case h.Epoch > c.cur.epoch:
		return // never accepted
	case h.Epoch == c.cur.epoch:
		ep = &c.cur
	case c.prev != nil && h.Epoch == c.prev.epoch:
		ep = c.prev
	}
	if ep != nil {
		if !ep.win.any || h.Nonce > ep.win.max {
			return // never accepted
		}
		if !ep.win.below(h.Nonce) {
			ep.win.forget(h.Nonce)
			return
		}
	}
	c.holdLocked(h.Epoch, key, h.Nonce)
}

// holdLocked makes the message (epoch, n) a held message that is not taken: accepted once
// when it comes again. Its epoch is not after the current one, and n is below the epoch's
// replay window (or the epoch is retired), where only held messages are accepted; key is
// the epoch's key. c.recvMu is held.
func (c *Channel) holdLocked(epoch uint32, key [32]byte, n uint64) {
	i, ok := slices.BinarySearchFunc(c.held, epoch, func(he heldEpoch, e uint32) int { return cmp.Compare(he.epoch, e) })
	if !ok {
		c.held = slices.Insert(c.held, i, heldEpoch{epoch: epoch, key: key, cipher: newTransportCipher(key)})
	}
	he := &c.held[i]
	j, ok := slices.BinarySearchFunc(he.nonces, n, func(hn heldNonce, n uint64) int { return cmp.Compare(hn.n, n) })
	if !ok {
		he.nonces = slices.Insert(he.nonces, j, heldNonce{n: n})
	}
}

// unopenInPlace undoes openInPlace's decryption of msg, whose plaintext pt it returned (pt
// shares msg's array): it encrypts pt back into msg with the key and nonce it came with, so
// that msg holds the data message again, byte for byte. This is the encryption the peer did
// (same key, nonce, header and plaintext, hence the same ciphertext), not a new use of the
// nonce. It does nothing when the message's epoch is no longer kept (it would be rejected
// as retired anyway).
func (c *Channel) unopenInPlace(msg, pt []byte) {
	h, _, err := ParseHeader(msg)
	if err != nil || len(msg) != Overhead+len(pt) || (len(pt) > 0 && &pt[0] != &msg[HeaderSize]) {
		return // not what openInPlace returned for msg
	}
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	var ciph *transportCipher
	switch {
	case h.Epoch == c.cur.epoch:
		ciph = c.cur.cipher
	case c.prev != nil && h.Epoch == c.prev.epoch:
		ciph = c.prev.cipher
	default:
		if he, _ := c.heldNonce(h.Epoch, h.Nonce); he != nil {
			ciph = he.cipher
		}
	}
	if ciph != nil {
		ciph.seal(msg[HeaderSize:HeaderSize], h.Nonce, msg[:HeaderSize], pt)
	}
}

func (c *Channel) open(msg []byte, inPlace bool, accepting func(Header, [32]byte)) ([]byte, error) {
	h, ct, err := ParseHeader(msg)
	if err != nil {
		return nil, err
	}
	ad := msg[:HeaderSize]
	var dst []byte // nil: Decrypt allocates the plaintext
	if inPlace {
		dst = ct[:0]
	}
	c.recvMu.Lock()
	defer c.recvMu.Unlock()

	var ep *recvEpoch
	switch {
	case h.Epoch == c.cur.epoch:
		ep = &c.cur
	case c.prev != nil && h.Epoch == c.prev.epoch:
		ep = c.prev
	case h.Epoch < c.cur.epoch:
		if pt, ok, err := c.openHeldLocked(h, dst, ad, ct, accepting); ok {
			return pt, err
		}
		return nil, fmt.Errorf("%w: epoch %d is retired (current %d)", ErrReplay, h.Epoch, c.cur.epoch)
	}
	if ep != nil {
		if err := ep.win.check(h.Nonce); err != nil {
			if !errors.Is(err, ErrDuplicate) { // below the window: it may be held
				if pt, ok, herr := c.openHeldLocked(h, dst, ad, ct, accepting); ok {
					return pt, herr
				}
			}
			return nil, fmt.Errorf("%w: epoch %d nonce %d", err, h.Epoch, h.Nonce)
		}
		pt, err := ep.cipher.open(dst, h.Nonce, ad, ct)
		if err != nil {
			return nil, fmt.Errorf("%w: epoch %d nonce %d", ErrDecrypt, h.Epoch, h.Nonce)
		}
		if accepting != nil {
			accepting(h, ep.key)
		}
		ep.win.accept(h.Nonce)
		return pt, nil
	}

	// A later epoch: derive its key, and switch to it only if the message authenticates.
	skip := h.Epoch - c.cur.epoch
	if skip > MaxEpochSkip {
		return nil, fmt.Errorf("%w: epoch %d is more than %d ahead of %d", ErrDecrypt, h.Epoch, MaxEpochSkip, c.cur.epoch)
	}
	before, key := c.cur.key, rekey(c.cur.key)
	for i := uint32(1); i < skip; i++ {
		before, key = key, rekey(key)
	}
	ciph := newTransportCipher(key)
	pt, err := ciph.open(dst, h.Nonce, ad, ct)
	if err != nil {
		return nil, fmt.Errorf("%w: epoch %d nonce %d", ErrDecrypt, h.Epoch, h.Nonce)
	}
	if skip == 1 {
		old := c.cur
		c.prev = &old
	} else {
		// The epoch before the new one was never seen: its messages are all still new.
		c.prev = &recvEpoch{epoch: h.Epoch - 1, key: before, cipher: newTransportCipher(before)}
	}
	c.cur = recvEpoch{epoch: h.Epoch, key: key, cipher: ciph}
	if accepting != nil {
		accepting(h, key)
	}
	c.cur.win.accept(h.Nonce)
	return pt, nil
}

// openHeldLocked opens a message that the windows reject as too old or retired, if it is
// held and not taken (see Channel.held). ok reports whether it was held: then pt and err
// are the result (ErrDuplicate when taken already, ErrDecrypt when it does not
// authenticate, which changes nothing). c.recvMu is held.
func (c *Channel) openHeldLocked(h Header, dst, ad, ct []byte, accepting func(Header, [32]byte)) (pt []byte, ok bool, err error) {
	he, hn := c.heldNonce(h.Epoch, h.Nonce)
	if hn == nil {
		return nil, false, nil
	}
	if hn.taken {
		return nil, true, fmt.Errorf("%w: epoch %d nonce %d (held)", ErrDuplicate, h.Epoch, h.Nonce)
	}
	pt, err = he.cipher.open(dst, h.Nonce, ad, ct)
	if err != nil {
		return nil, true, fmt.Errorf("%w: epoch %d nonce %d", ErrDecrypt, h.Epoch, h.Nonce)
	}
	if accepting != nil {
		accepting(h, he.key)
	}
	hn.taken = true
	return pt, true, nil
}
