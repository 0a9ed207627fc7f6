package securechannel

import "math"

// WindowSize is the number of nonces the replay window tracks per key epoch. A message whose
// nonce is WindowSize or more below the highest nonce accepted in its epoch is rejected as
// too old (ErrReplay), because it can no longer be told apart from a replay.
const WindowSize = 1024

// window is a sliding replay window (RFC 6479 style): a ring bitmap indexed by nonce modulo
// WindowSize, covering the nonces (max-WindowSize, max].
type window struct {
	any  bool   // a nonce was accepted
	max  uint64 // the highest nonce accepted; its bit is clear if forget took it back
	bits [WindowSize / 64]uint64
}

// check reports whether nonce n may be accepted, without changing the window: nil, or an
// error matching ErrReplay (ErrDuplicate for an already accepted nonce).
func (w *window) check(n uint64) error {
	if !w.any || n > w.max {
		return nil
	}
	if w.max-n >= WindowSize {
		return ErrReplay
	}
	if w.bits[(n%WindowSize)/64]&(1<<(n%64)) != 0 {
		return ErrDuplicate
	}
	return nil
}

// accept records nonce n; check(n) must have returned nil.
func (w *window) accept(n uint64) {
	switch {
	case !w.any:
		w.any = true
		w.max = n
		w.bits = [WindowSize / 64]uint64{}
	case n > w.max:
		if n-w.max >= WindowSize {
			w.bits = [WindowSize / 64]uint64{}
		} else {
			for i := w.max + 1; i < n; i++ {
				w.bits[(i%WindowSize)/64] &^= 1 << (i % 64)
			}
		}
		w.max = n
	}
	w.bits[(n%WindowSize)/64] |= 1 << (n % 64)
}

// forgetLow is forget for the nonce in the window whose low 32 bits are low.
func (w *window) forgetLow(low uint32) {
	if w.any {
		w.forget(w.nonceOf(low)) // one above the highest nonce was never accepted
	}
}

// nonceOf returns the nonce whose low 32 bits are low: the highest one not above max (or
// one above max, by less than 2^32, when there is none).
func (w *window) nonceOf(low uint32) uint64 {
	n := w.max&^math.MaxUint32 | uint64(low)
	if n > w.max && n >= 1<<32 {
		n -= 1 << 32
	}
	return n
}

// below reports whether nonce n is below the window: accepted or not, it cannot be told
// from a replay any more.
func (w *window) below(n uint64) bool { return w.any && n <= w.max && w.max-n >= WindowSize }

// forget undoes accept(n): n is accepted again. It does nothing when n is not in the window
// (never accepted, or too old by now); the highest nonce stays where it is.
func (w *window) forget(n uint64) {
	if !w.any || n > w.max || w.max-n >= WindowSize {
		return
	}
	w.bits[(n%WindowSize)/64] &^= 1 << (n % 64)
}
