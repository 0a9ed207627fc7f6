package securechannel

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// ReserveNonces is how many send nonces a saved channel state reserves: the state records
// the sender's position ReserveNonces messages ahead of the live channel, and the live
// channel refuses to go past that position until the state is saved again. A process that
// crashes after a save and restarts from it therefore never reuses a nonce; it skips at most
// ReserveNonces of them (no more than the replay window, so a receiver that gets messages in
// order loses none). With a RekeyAfter below 64 the reservation is 16 epochs instead, so
// that a restored sender stays well within MaxEpochSkip of its peer.
const ReserveNonces = 1024

// reservation returns how many send nonces a saved state reserves (see ReserveNonces).
func reservation(rekeyAfter uint64) uint64 {
	const epochs = MaxEpochSkip / 4
	if rekeyAfter >= ReserveNonces/epochs {
		return ReserveNonces
	}
	return rekeyAfter * epochs
}

// channelStateVersion is the first byte of an encoded Channel state.
const channelStateVersion = 1

// Flags of an encoded Channel state.
const (
	stateInitiator = 1 << 0
	statePrev      = 1 << 1
	stateHeld      = 1 << 2 // held messages follow the receive epochs
	stateFlags     = stateInitiator | statePrev | stateHeld
)

// MaxHeldMessages is the most unhandled messages below the replay window that a saved state
// keeps (see snapshot); beyond it, the oldest are left out.
const MaxHeldMessages = 4096

// maxBindingSize bounds the channel binding in a saved state (BLAKE2s gives 32 bytes).
const maxBindingSize = 64

// windowStateSize is the size of an encoded receive epoch: epoch u32, key, any u8, max u64,
// bitmap.
const windowStateSize = 4 + 32 + 1 + 8 + WindowSize/8

// position is a sender's place in the channel: (epoch, nonce), ordered lexicographically.
type position struct {
	epoch uint32
	nonce uint64
}

func (p position) less(q position) bool {
	return p.epoch < q.epoch || (p.epoch == q.epoch && p.nonce < q.nonce)
}

// advance returns the send position n messages after (epoch, nonce) and its key, following
// the rekey rule of Seal (nonces 0..rekeyAfter-1 in each epoch). The result is normalised
// (nonce < rekeyAfter) unless the last epoch is used up, where it is (MaxUint32, rekeyAfter).
func advance(epoch uint32, nonce uint64, key [32]byte, n, rekeyAfter uint64) (position, [32]byte) {
	for n > 0 || nonce >= rekeyAfter {
		if nonce >= rekeyAfter {
			if epoch == math.MaxUint32 {
				return position{epoch, rekeyAfter}, key
			}
			epoch, nonce, key = epoch+1, 0, rekey(key)
			continue
		}
		step := min(n, rekeyAfter-nonce)
		nonce += step
		n -= step
	}
	return position{epoch, nonce}, key
}

// snapshot encodes the channel's state with the send position reservation(RekeyAfter)
// messages ahead, and returns that position: the caller raises the send limit to it
// (commitReservation) once the state is stored durably. A channel that had no limit yet is
// limited to that position at once.
//
// When unhandled is not nil, the messages with the delivery labels it returns (see
// deliveryLabel: messages opened and not handled yet) must be accepted again by a channel
// restored from the state: those in a replay window are left out of it, and those below
// the window of the current or previous epoch are saved as held messages (at most
// MaxHeldMessages, the newest), which a restored channel accepts once each. An unhandled
// message of an older epoch cannot be: its key is gone. unhandled is called with the
// receive direction locked, so the labels and the windows agree.
//
// With lazy, a channel that was limited already and has no reserved nonce left (a channel
// restored from a state and not sealing since, or one that used up its reservation)
// reserves none: the state records its current position, which is its limit, and Seal
// keeps refusing until a state that reserves is stored. A device that restarts without
// sending (only receiving, and saving) then restarts where it stopped, instead of skipping
// a reservation at every restart: skips that add up beyond MaxEpochSkip (16 epochs each
// with a small RekeyAfter) would leave the peer unable to open anything it sends.
func (c *Channel) snapshot(unhandled func() []uint64, lazy bool) ([]byte, position) {
	b := make([]byte, 0, 2+2*KeySize+1+len(c.binding)+8+4+8+32+2*windowStateSize)
	b = append(b, channelStateVersion, 0)
	if c.initiator {
		b[1] |= stateInitiator
	}
	b = append(b, c.local[:]...)
	b = append(b, c.peer[:]...)
	b = append(b, byte(len(c.binding)))
	b = append(b, c.binding...)
	b = binary.BigEndian.AppendUint64(b, c.rekeyAfter)

	c.sendMu.Lock()
	reserve := reservation(c.rekeyAfter)
	if lazy && c.send.limited {
		if next, _ := advance(c.send.epoch, c.send.nonce, c.send.key, 0, c.rekeyAfter); !next.less(c.send.limit) {
			reserve = 0 // nothing reserved is left: reserve when Seal needs it
		}
	}
	pos, key := advance(c.send.epoch, c.send.nonce, c.send.key, reserve, c.rekeyAfter)
	if !c.send.limited {
		// Never saved: nothing stops Seal yet. Stop it at pos now, not once the state is
		// stored, or it could use the nonces from pos on while the state is being written,
		// and a channel restored from it would use them again.
		c.send.limited, c.send.limit = true, pos
	}
	c.sendMu.Unlock()
	b = binary.BigEndian.AppendUint32(b, pos.epoch)
	b = binary.BigEndian.AppendUint64(b, pos.nonce)
	b = append(b, key[:]...)

	c.recvMu.Lock()
	cur := c.cur
	var prev *recvEpoch
	if c.prev != nil {
		p := *c.prev
		prev = &p
	}
	var labels []uint64
	if unhandled != nil {
		labels = unhandled()
	}
	held := c.heldToSaveLocked(labels, &cur, prev)
	c.recvMu.Unlock()

	b = appendRecvEpoch(b, &cur)
	if prev != nil {
		b[1] |= statePrev
		b = appendRecvEpoch(b, prev)
	}
	if len(held) > 0 {
		b[1] |= stateHeld
		b = appendHeld(b, held)
	}
	return b, pos
}

// heldToSaveLocked takes the unhandled messages labels out of the copied windows cur and
// prev, and returns the held messages a state saved now keeps: those of c.held not taken,
// or taken and unhandled, and the unhandled ones below the window of cur or prev. It drops
// the held messages handled since from c.held (see pruneHeldLocked). c.recvMu is held.
func (c *Channel) heldToSaveLocked(labels []uint64, cur, prev *recvEpoch) []heldEpoch {
	unhandled := make(map[uint64]bool, len(labels))
	for _, l := range labels {
		unhandled[l] = true
	}
	byEpoch := map[uint32]*heldEpoch{}
	add := func(epoch uint32, key [32]byte, n uint64) {
		he := byEpoch[epoch]
		if he == nil {
			he = &heldEpoch{epoch: epoch, key: key}
			byEpoch[epoch] = he
		}
		he.nonces = append(he.nonces, heldNonce{n: n})
	}
	for _, he := range c.held {
		for _, hn := range he.nonces {
			if !hn.taken || unhandled[deliveryLabel(Header{Epoch: he.epoch, Nonce: hn.n})] {
				add(he.epoch, he.key, hn.n)
			}
		}
	}
	for _, ep := range []*recvEpoch{prev, cur} {
		if ep == nil {
			continue
		}
		for l := range unhandled {
			if uint32(l>>32) != ep.epoch {
				continue
			}
			n := ep.win.nonceOf(uint32(l))
			if !ep.win.below(n) {
				ep.win.forget(n) // in the window (or above it: never accepted)
			} else if _, hn := c.heldNonce(ep.epoch, n); hn == nil { // else kept above
				add(ep.epoch, ep.key, n)
			}
		}
	}
	c.pruneHeldLocked(unhandled)
	out := make([]heldEpoch, 0, len(byEpoch))
	total := 0
	for _, he := range byEpoch {
		slices.SortFunc(he.nonces, func(a, b heldNonce) int { return cmp.Compare(a.n, b.n) })
		total += len(he.nonces)
		out = append(out, *he)
	}
	slices.SortFunc(out, func(a, b heldEpoch) int { return cmp.Compare(a.epoch, b.epoch) })
	for total > MaxHeldMessages { // keep the newest
		drop := min(total-MaxHeldMessages, len(out[0].nonces))
		out[0].nonces = out[0].nonces[drop:]
		total -= drop
		if len(out[0].nonces) == 0 {
			out = out[1:]
		}
	}
	return out
}

// pruneHeldLocked drops from c.held the messages accepted and handled (taken, and not
// among the unhandled labels), and the epochs left without held messages, with their keys:
// a message taken and not unhandled while the receive direction is locked is handled for
// good (forget gives a message back only while it is being delivered, when its label is
// unhandled), and a replay of it is still rejected, since a held nonce is below its epoch's
// window, or its epoch is retired. c.recvMu is held.
func (c *Channel) pruneHeldLocked(unhandled map[uint64]bool) {
	kept := c.held[:0]
	for _, he := range c.held {
		nonces := he.nonces[:0]
		for _, hn := range he.nonces {
			if !hn.taken || unhandled[deliveryLabel(Header{Epoch: he.epoch, Nonce: hn.n})] {
				nonces = append(nonces, hn)
			}
		}
		clear(he.nonces[len(nonces):])
		if len(nonces) > 0 {
			he.nonces = nonces
			kept = append(kept, he)
		}
	}
	clear(c.held[len(kept):]) // no key of a dropped epoch stays in the array
	if len(kept) == 0 {
		kept = nil
	}
	c.held = kept
}

// appendHeld appends the held messages: u16 epochs, then per epoch u32 epoch, key, u16
// nonces and the nonces (u64, increasing).
func appendHeld(b []byte, held []heldEpoch) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(held)))
	for _, he := range held {
		b = binary.BigEndian.AppendUint32(b, he.epoch)
		b = append(b, he.key[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(he.nonces)))
		for _, hn := range he.nonces {
			b = binary.BigEndian.AppendUint64(b, hn.n)
		}
	}
	return b
}

// deliveryLabel identifies a data message among those a replay window holds: its epoch and
// the low 32 bits of its nonce, which tell apart the nonces of one window (fewer than 2^32
// apart).
func deliveryLabel(h Header) uint64 { return uint64(h.Epoch)<<32 | h.Nonce&math.MaxUint32 }

// commitReservation lets Seal use the positions below limit. The limit never moves back.
func (c *Channel) commitReservation(limit position) {
	c.sendMu.Lock()
	if !c.send.limited || c.send.limit.less(limit) {
		c.send.limited, c.send.limit = true, limit
	}
	c.sendMu.Unlock()
}

func appendRecvEpoch(b []byte, e *recvEpoch) []byte {
	b = binary.BigEndian.AppendUint32(b, e.epoch)
	b = append(b, e.key[:]...)
	if e.win.any {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, e.win.max)
	for _, w := range e.win.bits {
		b = binary.BigEndian.AppendUint64(b, w)
	}
	return b
}

// MarshalBinary returns the channel's state, to restore it with [UnmarshalChannel] after a
// restart of the process: both directions' keys and epochs, the receive replay windows, both
// identities and the channel binding. The state contains the channel's keys: store it as
// secretly as the identity (see [SealSession]).
//
// It reserves ReserveNonces send nonces (fewer with a small RekeyAfter): the state continues after them, and from now on
// Seal uses only the reserved nonces (then returns ErrReservationExhausted) until
// MarshalBinary is called again. The reservation takes effect at once: store the result
// durably before sealing more, or a crash could make a restored channel reuse nonces that
// were sent. [SecureChannel.SaveSession] extends the reservation only after its file is
// written.
//
// Messages opened after the state was taken are not in its replay windows: a channel
// restored from an older state accepts them once more. Save after processing, and before
// acknowledging what was processed, for exactly-once processing across restarts.
func (c *Channel) MarshalBinary() ([]byte, error) {
	b, limit := c.snapshot(nil, false)
	c.commitReservation(limit)
	return b, nil
}

// UnmarshalChannel restores a channel from a state returned by [Channel.MarshalBinary].
// The restored channel opens what the saved one would have opened (messages already opened
// before the save are rejected as ErrReplay), and seals from the saved, reserved, position:
// above every nonce the saved channel could have used. It seals nothing before its own
// state is saved again (Seal returns ErrReservationExhausted): store that new state durably
// before sealing, and restore only the newest state stored, in one process at a time. Two
// channels restored from the same state reserve the same nonces and would seal with them
// both, which reveals plaintext to whoever sees the two ciphertexts. A state that does not
// decode returns an error matching ErrSessionCorrupt.
func UnmarshalChannel(b []byte) (*Channel, error) {
	c, err := decodeChannel(b)
	if err != nil {
		return nil, fmt.Errorf("%w: channel state: %s", ErrSessionCorrupt, err)
	}
	return c, nil
}

// stateReader reads fixed-size fields and remembers the first problem.
type stateReader struct {
	b   []byte
	err string
}

func (r *stateReader) next(n int) []byte {
	if r.err != "" {
		return make([]byte, n)
	}
	if len(r.b) < n {
		r.err = fmt.Sprintf("truncated: %d byte(s) left, %d wanted", len(r.b), n)
		return make([]byte, n)
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) u8() byte      { return r.next(1)[0] }
func (r *stateReader) u32() uint32   { return binary.BigEndian.Uint32(r.next(4)) }
func (r *stateReader) u64() uint64   { return binary.BigEndian.Uint64(r.next(8)) }
func (r *stateReader) key() [32]byte { return [32]byte(r.next(32)) }

func (r *stateReader) fail(format string, args ...any) {
	if r.err == "" {
		r.err = fmt.Sprintf(format, args...)
	}
}

func (r *stateReader) recvEpoch() recvEpoch {
	e := recvEpoch{epoch: r.u32(), key: r.key()}
	switch r.u8() {
	case 0:
	case 1:
		e.win.any = true
	default:
		r.fail("window flag is not 0 or 1")
	}
	e.win.max = r.u64()
	for i := range e.win.bits {
		e.win.bits[i] = r.u64()
	}
	w := &e.win
	switch {
	case !w.any && (w.max != 0 || w.bits != [WindowSize / 64]uint64{}):
		r.fail("empty window with a highest nonce or bits")
	case w.any && w.max == math.MaxUint64:
		r.fail("window holds the reserved nonce")
	case w.any && w.max < WindowSize-1 && w.bits != [WindowSize / 64]uint64{}:
		// Nonces above max, or below 0, cannot have been accepted.
		for n := w.max + 1; n < WindowSize; n++ {
			if w.bits[(n%WindowSize)/64]&(1<<(n%64)) != 0 {
				r.fail("window holds nonce %d, above its highest %d", n, w.max)
				break
			}
		}
	}
	e.cipher = newTransportCipher(e.key)
	return e
}

// held reads the held messages (see appendHeld): at least one epoch, epochs increasing and
// not after cur, each with at least one nonce, nonces increasing and not the reserved one,
// at most MaxHeldMessages in all.
func (r *stateReader) held(cur uint32) []heldEpoch {
	n := int(binary.BigEndian.Uint16(r.next(2)))
	if n == 0 {
		r.fail("held messages flagged but none saved")
	}
	var out []heldEpoch
	total := 0
	for i := 0; i < n && r.err == ""; i++ {
		he := heldEpoch{epoch: r.u32(), key: r.key()}
		if he.epoch > cur || (i > 0 && he.epoch <= out[i-1].epoch) {
			r.fail("held epoch %d out of order (current %d)", he.epoch, cur)
		}
		m := int(binary.BigEndian.Uint16(r.next(2)))
		if total += m; m == 0 || total > MaxHeldMessages {
			r.fail("%d held messages in epoch %d (%d in all, at most %d)", m, he.epoch, total, MaxHeldMessages)
		}
		for j := 0; j < m && r.err == ""; j++ {
			nonce := r.u64()
			if nonce == math.MaxUint64 || (j > 0 && nonce <= he.nonces[j-1].n) {
				r.fail("held nonce %d out of order or reserved", nonce)
			}
			he.nonces = append(he.nonces, heldNonce{n: nonce})
		}
		he.cipher = newTransportCipher(he.key)
		out = append(out, he)
	}
	return out
}

// heldInWindowEpoch checks the held messages he of the current or previous epoch (cur,
// prev): saved with that epoch's key, and below its replay window (see snapshot), where
// the window rejects them. One the window could accept would be accepted twice: by the
// window, and once more as held when the window has passed it.
func (r *stateReader) heldInWindowEpoch(he *heldEpoch, cur, prev *recvEpoch) {
	ep := cur
	if he.epoch != cur.epoch {
		if prev == nil || he.epoch != prev.epoch {
			return // retired: only held messages are accepted in it
		}
		ep = prev
	}
	if he.key != ep.key {
		r.fail("held messages of epoch %d with another key than the epoch's", he.epoch)
	}
	for _, hn := range he.nonces {
		if !ep.win.below(hn.n) {
			r.fail("held nonce %d of epoch %d is not below the replay window (highest %d)", hn.n, he.epoch, ep.win.max)
			return
		}
	}
}

func decodeChannel(b []byte) (*Channel, error) {
	r := &stateReader{b: b}
	if v := r.u8(); r.err == "" && v != channelStateVersion {
		return nil, fmt.Errorf("version %d, want %d", v, channelStateVersion)
	}
	flags := r.u8()
	if flags&^stateFlags != 0 {
		r.fail("unknown flags %#x", flags)
	}
	c := &Channel{initiator: flags&stateInitiator != 0}
	c.local = PublicKey(r.next(KeySize))
	c.peer = PublicKey(r.next(KeySize))
	n := int(r.u8())
	if n == 0 || n > maxBindingSize {
		r.fail("channel binding of %d bytes", n)
	}
	c.binding = append([]byte(nil), r.next(n)...)
	c.rekeyAfter = r.u64()
	if c.rekeyAfter == 0 {
		r.fail("rekey threshold 0")
	}
	c.send.epoch = r.u32()
	c.send.nonce = r.u64()
	c.send.key = r.key()
	if r.err == "" && c.send.nonce >= c.rekeyAfter && !(c.send.epoch == math.MaxUint32 && c.send.nonce == c.rekeyAfter) {
		r.fail("send nonce %d is not below the rekey threshold %d", c.send.nonce, c.rekeyAfter)
	}
	c.cur = r.recvEpoch()
	if flags&statePrev != 0 {
		p := r.recvEpoch()
		if r.err == "" && (c.cur.epoch == 0 || p.epoch != c.cur.epoch-1) {
			r.fail("previous receive epoch %d does not precede %d", p.epoch, c.cur.epoch)
		}
		c.prev = &p
	}
	if flags&stateHeld != 0 {
		c.held = r.held(c.cur.epoch)
		for _, he := range c.held {
			r.heldInWindowEpoch(&he, &c.cur, c.prev)
		}
	}
	if r.err == "" && len(r.b) != 0 {
		r.fail("%d trailing byte(s)", len(r.b))
	}
	if r.err != "" {
		return nil, fmt.Errorf("%s", r.err)
	}
	c.send.cipher = newTransportCipher(c.send.key)
	c.send.limited, c.send.limit = true, position{c.send.epoch, c.send.nonce}
	return c, nil
}
