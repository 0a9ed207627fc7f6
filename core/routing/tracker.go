package routing

import (
	"context"
	"sort"
	"sync"
)

// A Tracker follows messages into workers' mailboxes until their workers have handled them,
// so that whoever handed them on acknowledges upstream only what was handled. Each message
// carries a label, the position of what it came from (a stream message's index): a message
// sent with a ctx from [Tracker.Context] and queued in a mailbox is pending under that label
// until its worker's HandleMessage returns. A message that a worker never handles stays
// pending for good, so nothing is ever acknowledged past it: one dropped from its mailbox
// when the worker is unregistered or the node closes, and one whose handler failed because
// of that (its ctx ended). A message that a Sender or Transport takes is handled when its
// Send returns and is never pending. Only that first hop is followed: what a worker sends
// on from its handler uses the worker's own ctx.
//
// A bistream subscription labels each delivery with its stream index and saves its position
// no further than [Tracker.Lowest], so a crash never loses a message that was queued. It is
// safe for concurrent use.
type Tracker struct {
	mu sync.Mutex
	// pending[head:] holds the labels of pending messages in increasing order, with their
	// counts; a label whose count dropped to zero stays until it reaches the head, so that
	// handling messages in order costs no copying.
	pending []labelCount
	head    int
	n       int // pending messages
}

type labelCount struct {
	label uint64
	n     int
}

// NewTracker returns a Tracker with nothing pending, as the zero Tracker is.
func NewTracker() *Tracker { return &Tracker{} }

type trackerKey struct{}

// trackedLabel is the ctx that carries a Tracker and a label (one allocation per message,
// where context.WithValue would take two); outer is the one its parent carries, if any: a
// message is followed by every Tracker in the chain.
type trackedLabel struct {
	context.Context // the parent
	t               *Tracker
	label           uint64
	outer           *trackedLabel
}

// Value returns tl for the tracker key and asks the parent otherwise.
func (tl *trackedLabel) Value(key any) any {
	if key == (trackerKey{}) {
		return tl
	}
	return tl.Context.Value(key)
}

// Context returns a copy of parent that makes the node follow with t, under label, the
// messages sent with it (and with contexts derived from it) into mailboxes, as well as with
// the Trackers that parent carries, under their own labels.
func (t *Tracker) Context(parent context.Context, label uint64) context.Context {
	return &trackedLabel{Context: parent, t: t, label: label, outer: trackedFrom(parent)}
}

// add counts one message queued in a mailbox with every Tracker of the chain.
func (tl *trackedLabel) add() {
	for ; tl != nil; tl = tl.outer {
		tl.t.add(tl.label)
	}
}

// done counts one message as handled (or not queued after all) with every Tracker of the
// chain.
func (tl *trackedLabel) done() {
	for ; tl != nil; tl = tl.outer {
		tl.t.done(tl.label)
	}
}

func trackedFrom(ctx context.Context) *trackedLabel {
	tl, _ := ctx.Value(trackerKey{}).(*trackedLabel)
	return tl
}

// Lowest returns the lowest label with a pending message, and whether there is one.
func (t *Tracker) Lowest() (label uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head == len(t.pending) {
		return 0, false
	}
	return t.pending[t.head].label, true
}

// Labels appends the labels with pending messages to dst, in increasing order, and returns
// the result.
func (t *Tracker) Labels(dst []uint64) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, lc := range t.pending[t.head:] {
		if lc.n > 0 {
			dst = append(dst, lc.label)
		}
	}
	return dst
}

// Pending returns the number of messages queued or being handled (including those dropped
// unhandled).
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// add counts one message with label queued in a mailbox.
func (t *Tracker) add(label uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	i := t.find(label)
	if i < len(t.pending) && t.pending[i].label == label {
		t.pending[i].n++
		return
	}
	t.pending = append(t.pending, labelCount{})
	copy(t.pending[i+1:], t.pending[i:])
	t.pending[i] = labelCount{label: label, n: 1}
}

// done counts one message with label as handled, or as not queued after all.
func (t *Tracker) done(label uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.find(label)
	if i == len(t.pending) || t.pending[i].label != label || t.pending[i].n == 0 {
		return // not counted by add: cannot happen
	}
	t.n--
	t.pending[i].n--
	for t.head < len(t.pending) && t.pending[t.head].n == 0 {
		t.head++
	}
	switch {
	case t.head == len(t.pending):
		t.pending, t.head = t.pending[:0], 0
	case t.head >= 64 && 2*t.head >= len(t.pending):
		t.pending = t.pending[:copy(t.pending, t.pending[t.head:])]
		t.head = 0
	}
}

// find returns the position of label in t.pending[t.head:], or where it would be inserted
// there. Labels usually arrive in increasing order, so the common insertion is at the end.
func (t *Tracker) find(label uint64) int {
	if n := len(t.pending); n == t.head || t.pending[n-1].label < label {
		return n
	}
	return t.head + sort.Search(len(t.pending)-t.head, func(i int) bool { return t.pending[t.head+i].label >= label })
}
