package securechannel

import (
	"errors"
	"fmt"
	"testing"
)

// labelsOf returns the delivery labels of data messages ms (what SecureChannel follows
// until their workers handled them).
func labelsOf(t *testing.T, ms [][]byte) []uint64 {
	t.Helper()
	var labels []uint64
	for _, m := range ms {
		h, _, err := ParseHeader(m)
		if err != nil {
			t.Fatal(err)
		}
		labels = append(labels, deliveryLabel(h))
	}
	return labels
}

// TestSnapshotBacklogBeyondWindow: the receiver opened more than WindowSize messages after
// the oldest one its application has not handled (a stuck handler with a deep mailbox). A
// state saved then must let a restored channel accept every unhandled message again when
// the stream delivers them after a crash; the handled one before them stays a duplicate.
func TestSnapshotBacklogBeyondWindow(t *testing.T) {
	a, b := pair(t, 0)
	const n = WindowSize + 100
	var ms [][]byte
	for i := range n {
		ms = append(ms, seal(t, a, fmt.Sprint(i)))
		open(t, b, ms[i], fmt.Sprint(i))
	}
	unhandled := ms[1:] // message 0 was handled
	state, _, err := b.snapshot(func() []uint64 { return labelsOf(t, unhandled) })
	if err != nil {
		t.Fatal(err)
	}
	b2 := restoreChannel(t, state)
	if _, err := b2.Open(ms[0]); !errors.Is(err, ErrReplay) {
		t.Errorf("message 0, handled before the save: %v, want ErrReplay", err)
	}
	for i := 1; i < n; i++ {
		open(t, b2, ms[i], fmt.Sprint(i))
	}
}

// TestSnapshotBacklogOfRetiredEpoch: with RekeyAfter 2 the unhandled messages span three
// epochs (0, 1, 2) and a state keeps two. The save must fail (a restored channel could not
// open epoch 0 again: the message would be lost), and succeed once the backlog is of the
// epochs it keeps.
func TestSnapshotBacklogOfRetiredEpoch(t *testing.T) {
	a, b := pair(t, 2) // epoch 0: m0 m1; epoch 1: m2 m3; epoch 2: m4 m5
	var ms [][]byte
	for i := range 6 {
		ms = append(ms, seal(t, a, fmt.Sprint(i)))
		open(t, b, ms[i], fmt.Sprint(i))
	}
	if _, _, err := b.snapshot(func() []uint64 { return labelsOf(t, ms[1:]) }); !errors.Is(err, errUnhandledRetired) {
		t.Fatalf("snapshot with an unhandled message of epoch 0 while the receiver is at epoch 2: %v, want errUnhandledRetired", err)
	}
	state, _, err := b.snapshot(func() []uint64 { return labelsOf(t, ms[2:]) })
	if err != nil {
		t.Fatal(err)
	}
	b2 := restoreChannel(t, state)
	for i := range 2 {
		if _, err := b2.Open(ms[i]); !errors.Is(err, ErrReplay) {
			t.Errorf("message %d, handled before the save: %v, want ErrReplay", i, err)
		}
	}
	for i := 2; i < 6; i++ {
		open(t, b2, ms[i], fmt.Sprint(i))
	}
}

// TestFailedSnapshotLeavesSendUnlimited: a save that fails for the backlog changes nothing,
// not even the send limit a first save sets.
func TestFailedSnapshotLeavesSendUnlimited(t *testing.T) {
	a, b := pair(t, 2)
	var ms [][]byte
	for i := range 6 {
		ms = append(ms, seal(t, a, fmt.Sprint(i)))
		open(t, b, ms[i], fmt.Sprint(i))
	}
	if _, _, err := b.snapshot(func() []uint64 { return labelsOf(t, ms[1:]) }); !errors.Is(err, errUnhandledRetired) {
		t.Fatalf("snapshot: %v, want errUnhandledRetired", err)
	}
	for i := range 4 * reservation(2) { // beyond what a reservation would allow
		if _, err := b.Seal([]byte("x")); err != nil {
			t.Fatalf("seal %d after a failed first save: %v", i, err)
		}
	}
}
