package routing

import "testing"

// TestTrackerStuckLabelBoundsMemory checks that a label pending for good (a message dropped
// unhandled) does not make the Tracker keep an entry for every label handled after it.
func TestTrackerStuckLabelBoundsMemory(t *testing.T) {
	tr := NewTracker()
	tr.add(0) // never done: dropped from a mailbox
	const n = 100_000
	for i := uint64(1); i <= n; i++ {
		tr.add(i)
		if i%2 == 0 {
			tr.add(i) // two messages under one label
			tr.done(i)
		}
		tr.done(i)
	}
	if l, ok := tr.Lowest(); !ok || l != 0 || tr.Pending() != 1 {
		t.Fatalf("Lowest %d, %v, Pending %d; want 0, true, 1", l, ok, tr.Pending())
	}
	if got := tr.Labels(nil); len(got) != 1 || got[0] != 0 {
		t.Fatalf("Labels = %v; want [0]", got)
	}
	tr.mu.Lock()
	kept := len(tr.pending) - tr.head
	tr.mu.Unlock()
	if kept > 1000 {
		t.Fatalf("the Tracker keeps %d entries for 1 pending label after %d labels were handled behind it; want a bounded number", kept, n)
	}
	// Labels still work around the stuck one.
	tr.add(5)
	tr.add(n + 1)
	if got := tr.Labels(nil); len(got) != 3 || got[0] != 0 || got[1] != 5 || got[2] != n+1 {
		t.Fatalf("Labels = %v; want [0 5 %d]", got, n+1)
	}
	tr.done(0)
	if l, ok := tr.Lowest(); !ok || l != 5 {
		t.Fatalf("Lowest after the stuck label was released = %d, %v; want 5, true", l, ok)
	}
}
