package securechannel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// labelsOf returns the delivery labels of data messages ms (what a SecureChannel follows
// until their workers handled them).
func labelsOf(tb testing.TB, ms [][]byte) []uint64 {
	tb.Helper()
	var labels []uint64
	for _, m := range ms {
		h, _, err := ParseHeader(m)
		if err != nil {
			tb.Fatal(err)
		}
		labels = append(labels, deliveryLabel(h))
	}
	return labels
}

// backlog seals n messages from a to b and opens them all on b.
func backlog(tb testing.TB, a, b *Channel, n int) [][]byte {
	tb.Helper()
	ms := make([][]byte, n)
	for i := range ms {
		m, err := a.Seal([]byte(fmt.Sprint(i)))
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := b.Open(m); err != nil {
			tb.Fatalf("open %d: %v", i, err)
		}
		ms[i] = m
	}
	return ms
}

// saveWith returns b's state saved while the messages ms are not handled yet.
func saveWith(tb testing.TB, b *Channel, ms [][]byte) []byte {
	tb.Helper()
	labels := labelsOf(tb, ms)
	state, _ := b.snapshot(func() []uint64 { return labels }, false)
	return state
}

// heldState is a state that holds messages (a fuzz seed).
func heldState(tb testing.TB) []byte {
	a, b := pair(tb, 0)
	ms := backlog(tb, a, b, WindowSize+3)
	return saveWith(tb, b, ms[1:3])
}

func wantOpen(t *testing.T, c *Channel, ms [][]byte, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		open(t, c, ms[i], fmt.Sprint(i))
	}
}

func wantReplay(t *testing.T, c *Channel, ms [][]byte, idx ...int) {
	t.Helper()
	for _, i := range idx {
		if _, err := c.Open(ms[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("message %d: %v, want ErrReplay", i, err)
		}
	}
}

// TestSnapshotHoldsBacklogBelowWindow: the receiver opened more than WindowSize messages
// after the oldest one its application has not handled (a stuck handler with a deep
// mailbox). A state saved then lets a restored channel accept every unhandled message once
// when the stream delivers them again, and still rejects the one handled before them.
func TestSnapshotHoldsBacklogBelowWindow(t *testing.T) {
	a, b := pair(t, 0)
	const n = WindowSize + 100
	ms := backlog(t, a, b, n)
	b2 := restoreChannel(t, saveWith(t, b, ms[1:])) // message 0 was handled
	wantReplay(t, b2, ms, 0)
	wantOpen(t, b2, ms, 1, n)
	wantReplay(t, b2, ms, 1, 50, n-1) // each once

	// Everything handled now: a save holds nothing any more.
	state := saveWith(t, b2, nil)
	if state[1]&stateHeld != 0 {
		t.Fatal("a state saved with nothing unhandled holds messages")
	}
	wantReplay(t, restoreChannel(t, state), ms, 1, 99, n-1)
}

// TestUnhandledAtTheLastNonceOfAnEpoch: a save tells unhandled messages apart by their
// epoch and the low 32 bits of their nonces (see deliveryLabel), which is the whole nonce
// with MaxRekeyAfter: an unhandled message at the epoch's last nonce is left out of the
// saved window, and accepted once by the restored channel.
func TestUnhandledAtTheLastNonceOfAnEpoch(t *testing.T) {
	a, b := pair(t, MaxRekeyAfter)
	open(t, b, seal(t, a, "first"), "first")
	a.send.nonce = MaxRekeyAfter - 1
	ms := backlog(t, a, b, 1)
	if h, _, _ := ParseHeader(ms[0]); h != (Header{Nonce: MaxRekeyAfter - 1}) {
		t.Fatalf("header %+v", h)
	}
	r := restoreChannel(t, saveWith(t, b, ms))
	wantOpen(t, r, ms, 0, 1)
	wantReplay(t, r, ms, 0)
}

// TestHeldUntilAccepted: held messages not delivered again yet stay held across saves; one
// accepted and still unhandled stays held; one accepted and handled is dropped.
func TestHeldUntilAccepted(t *testing.T) {
	a, b := pair(t, 0)
	ms := backlog(t, a, b, WindowSize+10)
	b2 := restoreChannel(t, saveWith(t, b, ms[1:4])) // 1, 2, 3 below the window
	open(t, b2, ms[1], "1")                          // accepted, still unhandled
	open(t, b2, ms[2], "2")                          // accepted and handled
	b3 := restoreChannel(t, saveWith(t, b2, ms[1:2]))
	wantOpen(t, b3, ms, 1, 2) // unhandled: accepted again
	wantReplay(t, b3, ms, 2)  // handled
	wantOpen(t, b3, ms, 3, 4) // never delivered again yet: still held
	wantReplay(t, b3, ms, 0, 1, 3)
}

// TestHeldForgetAndTamper: a held message whose delivery is cut short (forget) is accepted
// when it comes again, and a tampered copy changes nothing.
func TestHeldForgetAndTamper(t *testing.T) {
	a, b := pair(t, 0)
	ms := backlog(t, a, b, WindowSize+10)
	b2 := restoreChannel(t, saveWith(t, b, ms[1:2]))
	bad := bytes.Clone(ms[1])
	bad[len(bad)-1] ^= 1
	if _, err := b2.Open(bad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered held message: %v, want ErrDecrypt", err)
	}
	open(t, b2, ms[1], "1")
	h, _, _ := ParseHeader(ms[1])
	b2.forget(h, [32]byte{}) // held: its key is kept already
	open(t, b2, ms[1], "1")
	wantReplay(t, b2, ms, 1)
}

// TestHeldStuckMessage: a message that stays unhandled for good (dropped from a mailbox
// whose worker went away) is held by every save, which neither fails nor lets a restored
// channel accept the messages handled after it.
func TestHeldStuckMessage(t *testing.T) {
	a, b := pair(t, 0)
	ms := backlog(t, a, b, 10)
	var size int
	for round := range 4 {
		ms = append(ms, backlog(t, a, b, WindowSize)...)
		state := saveWith(t, b, ms[1:2])
		if round > 0 && len(state) != size {
			t.Fatalf("round %d: state of %d bytes, was %d: it grows with a stuck message", round, len(state), size)
		}
		size = len(state)
		r := restoreChannel(t, state)
		wantReplay(t, r, ms, 0, 2, 9, len(ms)-WindowSize-1, len(ms)-1)
		wantOpen(t, r, ms, 1, 2)
	}
}

// TestHeldBounded: at most MaxHeldMessages are held, the newest, also when just one is too
// many (a state holding more would not restore).
func TestHeldBounded(t *testing.T) {
	for _, lost := range []int{1, 20} { // the oldest below the window
		t.Run(fmt.Sprint("lost=", lost), func(t *testing.T) {
			a, b := pair(t, 0)
			n := MaxHeldMessages + WindowSize + lost
			ms := backlog(t, a, b, n)
			r := restoreChannel(t, saveWith(t, b, ms))
			wantReplay(t, r, ms, 0, lost-1)
			wantOpen(t, r, ms, lost, n)
		})
	}
}

// TestHeldPreviousEpoch: held messages of the previous epoch, and of an epoch retired since
// the restore, are accepted with their own key.
func TestHeldPreviousEpoch(t *testing.T) {
	const rekey = WindowSize + 10
	a, b := pair(t, rekey)
	ms := backlog(t, a, b, rekey+5) // epoch 0 then 5 of epoch 1
	r := restoreChannel(t, saveWith(t, b, ms[2:3]))
	ms = append(ms, backlog(t, a, r, 2*rekey)...) // r moves to epoch 3: epoch 0 retired
	wantOpen(t, r, ms, 2, 3)
	wantReplay(t, r, ms, 1, 3)
}

func TestUnmarshalHeldCorrupt(t *testing.T) {
	good := heldState(t)
	if _, err := UnmarshalChannel(good); err != nil {
		t.Fatal(err)
	}
	// The held section is the end: u16 epochs, u32 epoch, key, u16 nonces, 2 nonces.
	const section = 2 + 4 + 32 + 2 + 2*8
	at := len(good) - section
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, b := range map[string][]byte{
		"no epochs": mutate(func(b []byte) []byte { return binary.BigEndian.AppendUint16(b[:at], 0) }),
		"epoch after the current": mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[at+2:], 7)
			return b
		}),
		"epoch just after the current": mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[at+2:], 1)
			return b
		}),
		"no nonces": mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[at+38:], 0)
			return b[:at+40]
		}),
		"nonces not increasing": mutate(func(b []byte) []byte {
			copy(b[len(b)-8:], b[len(b)-16:len(b)-8])
			return b
		}),
		"reserved nonce": mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[len(b)-8:], 1<<64-1)
			return b
		}),
		"too many": mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[at+38:], MaxHeldMessages+1)
			return b
		}),
		"truncated":            good[:len(good)-1],
		"flag without section": mutate(func(b []byte) []byte { return b[:at] }),
	} {
		if _, err := UnmarshalChannel(b); !errors.Is(err, ErrSessionCorrupt) {
			t.Errorf("%s: %v, want ErrSessionCorrupt", name, err)
		}
	}

	// The held nonces of a retired epoch: no window checks them, only the format.
	const rekey = WindowSize + 10
	a, b := pair(t, rekey)
	ms := backlog(t, a, b, rekey+5) // epoch 0 then 5 of epoch 1
	r := restoreChannel(t, saveWith(t, b, ms[2:3]))
	backlog(t, a, r, 2*rekey) // r moves to epoch 3: epoch 0 retired, its message 2 held
	retired := saveWith(t, r, nil)
	if _, err := UnmarshalChannel(retired); err != nil {
		t.Fatal(err)
	}
	// Other held sections in its place: epoch 0 sections with the given nonces.
	const own = 2 + 4 + 32 + 2 + 8 // its own: epoch 0, nonce 2
	base, key := retired[:len(retired)-own], retired[len(retired)-own+6:len(retired)-10]
	held := func(epochs ...[]uint64) []byte {
		b := binary.BigEndian.AppendUint16(bytes.Clone(base), uint16(len(epochs)))
		for _, nonces := range epochs {
			b = binary.BigEndian.AppendUint32(b, 0)
			b = append(b, key...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(nonces)))
			for _, n := range nonces {
				b = binary.BigEndian.AppendUint64(b, n)
			}
		}
		return b
	}
	first := func(n int) []uint64 {
		ns := make([]uint64, n)
		for i := range ns {
			ns[i] = uint64(i)
		}
		return ns
	}
	if _, err := UnmarshalChannel(held(first(MaxHeldMessages))); err != nil {
		t.Fatalf("MaxHeldMessages held in a retired epoch: %v", err)
	}
	for name, b := range map[string][]byte{
		"one more than MaxHeldMessages": held(first(MaxHeldMessages + 1)),
		"an epoch twice":                held([]uint64{2}, []uint64{3}),
	} {
		if _, err := UnmarshalChannel(b); !errors.Is(err, ErrSessionCorrupt) {
			t.Errorf("%s: %v, want ErrSessionCorrupt", name, err)
		}
	}
	binary.BigEndian.PutUint64(retired[len(retired)-8:], 1<<64-1) // the epoch's only nonce
	if _, err := UnmarshalChannel(retired); !errors.Is(err, ErrSessionCorrupt) {
		t.Errorf("reserved nonce held in a retired epoch: %v, want ErrSessionCorrupt", err)
	}
}

// TestUnmarshalHeldOutsideTheTooOldZone: a held nonce of the current or previous epoch is
// always below that epoch's replay window, and held with that epoch's key. A state that
// holds a nonce the window can still accept (in it, or above it) would let the message be
// accepted twice: once by the window, and once more as held when the window has passed it.
func TestUnmarshalHeldOutsideTheTooOldZone(t *testing.T) {
	good := heldState(t) // epoch 0, nonces 1 and 2; the window's highest is WindowSize+2
	const section = 2 + 4 + 32 + 2 + 2*8
	at := len(good) - section
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for name, b := range map[string][]byte{
		"nonce in the window": mutate(func(b []byte) { binary.BigEndian.PutUint64(b[len(b)-8:], WindowSize+1) }),
		"nonce the window accepted": mutate(func(b []byte) {
			binary.BigEndian.PutUint64(b[len(b)-8:], WindowSize+2)
		}),
		"nonce above the window": mutate(func(b []byte) { binary.BigEndian.PutUint64(b[len(b)-8:], WindowSize+50) }),
		"key of another epoch":   mutate(func(b []byte) { b[at+6] ^= 1 }),
	} {
		if _, err := UnmarshalChannel(b); !errors.Is(err, ErrSessionCorrupt) {
			t.Errorf("%s: %v, want ErrSessionCorrupt", name, err)
		}
	}

	// What such a state would do: message WindowSize+50 accepted by the window, and again
	// as held once the window has passed it.
	a, b := pair(t, 0)
	ms := backlog(t, a, b, WindowSize+3)
	state := saveWith(t, b, ms[1:3])
	binary.BigEndian.PutUint64(state[len(state)-8:], WindowSize+50)
	r, err := UnmarshalChannel(state)
	if err != nil {
		return // refused: good
	}
	ms = append(ms, backlog(t, a, r, 2*WindowSize)...)
	if _, err := r.Open(ms[WindowSize+50]); err == nil {
		t.Fatal("message WindowSize+50 accepted a second time (as held)")
	}
}

// TestHeldDroppedOnceHandled: once every held message of an epoch was accepted and handled,
// a save forgets them, and the epoch's key with them (it is not kept in memory for the rest
// of the channel's life); they are still rejected as replays.
func TestHeldDroppedOnceHandled(t *testing.T) {
	const rekey = WindowSize + 10
	a, b := pair(t, rekey)
	ms := backlog(t, a, b, rekey+5) // epoch 0 then 5 of epoch 1
	r := restoreChannel(t, saveWith(t, b, ms[2:4]))
	ms = append(ms, backlog(t, a, r, 2*rekey)...) // r moves to epoch 3: epoch 0 retired
	wantOpen(t, r, ms, 2, 4)
	saveWith(t, r, ms[3:4]) // 3 not handled yet: 2 is dropped
	if len(r.held) != 1 || len(r.held[0].nonces) != 1 || r.held[0].nonces[0].n != 3 {
		t.Fatalf("held after a save with message 3 unhandled: %+v", r.held)
	}
	wantReplay(t, r, ms, 2, 3)
	if state := saveWith(t, r, nil); state[1]&stateHeld != 0 {
		t.Fatal("a state saved with nothing unhandled holds messages")
	}
	if len(r.held) != 0 {
		t.Fatalf("%d held epoch(s) kept in memory after every held message was handled", len(r.held))
	}
	wantReplay(t, r, ms, 2, 3)
}
