package securechannel

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestWindowModel compares the bitmap window with a simple model (a set of accepted nonces
// and the highest one) on random nonce sequences with small and large jumps.
func TestWindowModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for round := range 200 {
		var w window
		seen := map[uint64]bool{}
		var highest uint64
		any := false
		base := uint64(0)
		if round%2 == 1 {
			base = 1<<64 - 1<<30 // near the top of the range (rounds grow by < 2^23)
		}
		for range 2000 {
			var n uint64
			switch r.IntN(10) {
			case 0: // a big jump ahead
				n = highest + uint64(r.IntN(3*WindowSize))
			case 1: // an exact repeat
				n = highest
			default: // around the top of the window
				back := uint64(r.IntN(WindowSize + 128))
				n = highest + 64
				if back <= n-base { // stay at or above base (no wrap-around)
					n -= back
				} else {
					n = base
				}
			}
			if !any {
				n = base + uint64(r.IntN(100))
			}
			var want error
			switch {
			case any && n <= highest && highest-n >= WindowSize:
				want = ErrReplay // too old, whether it was seen or not
			case seen[n]:
				want = ErrDuplicate
			}
			got := w.check(n)
			if !errors.Is(got, want) || (want == nil) != (got == nil) || (want == ErrReplay && errors.Is(got, ErrDuplicate)) {
				t.Fatalf("round %d: check(%d) with highest %d = %v, want %v", round, n, highest, got, want)
			}
			if got == nil {
				w.accept(n)
				seen[n] = true
				if !any || n > highest {
					highest = n
				}
				any = true
			}
		}
	}
}

// TestWindowForgetLow checks that forgetLow finds the nonce with the given low 32 bits in
// the window, also where the window straddles a multiple of 2^32, and leaves the window
// alone for low bits that match no nonce in it.
func TestWindowForgetLow(t *testing.T) {
	for _, c := range []struct {
		name       string
		accepted   []uint64
		low        uint32
		want       uint64 // the nonce that is accepted again (forgotten)
		unaffected bool   // no nonce of the window matches low
	}{
		{"in the window", []uint64{5, 6, 7}, 6, 6, false},
		{"straddling 2^32", []uint64{1<<32 - 2, 1<<32 - 1, 1 << 32, 1<<32 + 1}, 1<<32 - 1, 1<<32 - 1, false},
		{"above the highest, small nonces", []uint64{3, 4}, 9, 0, true},
		{"older than the window", []uint64{1, 5000}, 1, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var w window
			for _, n := range c.accepted {
				w.accept(n)
			}
			before := w
			w.forgetLow(c.low)
			if c.unaffected {
				if w != before {
					t.Fatalf("forgetLow(%d) changed the window", c.low)
				}
				return
			}
			if err := w.check(c.want); err != nil {
				t.Fatalf("after forgetLow(%d), nonce %d: %v, want accepted again", c.low, c.want, err)
			}
			for _, n := range c.accepted {
				if n != c.want && w.check(n) == nil {
					t.Fatalf("after forgetLow(%d), nonce %d is accepted again too", c.low, n)
				}
			}
		})
	}
}

// TestWindowForgetSlidOut checks that forgetting a nonce that slid out of the window leaves
// alone the newer nonce that now has its place in the bitmap (WindowSize apart): that one
// stays a duplicate.
func TestWindowForgetSlidOut(t *testing.T) {
	var w window
	w.accept(11)
	w.accept(11 + WindowSize) // 11 slides out; 11+WindowSize takes its bit
	w.forget(11)
	if err := w.check(11 + WindowSize); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("check(%d) after forget(11): %v, want ErrDuplicate", 11+WindowSize, err)
	}
	if err := w.check(11); !errors.Is(err, ErrReplay) || errors.Is(err, ErrDuplicate) {
		t.Fatalf("check(11) after forget: %v, want too old", err)
	}
}
