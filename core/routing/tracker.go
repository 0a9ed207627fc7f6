package routing

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
)

// A Tracker follows messages into workers' mailboxes until their workers have handled them,
// so that whoever handed them on acknowledges upstream only what was handled. Each message
// carries a label, the position of what it came from (a stream message's index): a message
// sent with a ctx from [Tracker.Context] and queued in a mailbox is pending under that label
// until its worker's HandleMessage returns. A message that a worker never handles stays
// pending for good, so nothing is ever acknowledged past it: one dropped from its mailbox
// when the worker is unregistered or the node closes, and one whose handler failed because
// of that (its ctx ended). A message that a Sender or Transport takes is handled when its
// Send returns and is never pending, unless the Sender keeps it to handle later: it then
// holds it with [Hold], and it is pending until the Sender releases it. Only that first hop
// is followed: what a worker sends on from its handler uses the worker's own ctx.
//
// A bistream subscription labels each delivery with its stream index and saves its position
// no further than [Tracker.Lowest], so a crash never loses a message that was queued. It is
// safe for concurrent use.
type Tracker struct {
	mu sync.Mutex
	// pending[head:] holds the labels of pending messages in increasing order, with their
	// counts; a label whose count dropped to zero stays until it reaches the head, so that
	// handling messages in order costs no copying, or until such labels make up most of
	// pending[head:] (behind a label pending for good they would never reach the head), when
	// done drops them all.
	pending []labelCount
	head    int
	n       int // pending messages
	labels  int // entries of pending[head:] whose count is not zero
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
		if t.pending[i].n == 0 {
			t.labels++
		}
		t.pending[i].n++
		return
	}
	t.pending = append(t.pending, labelCount{})
	copy(t.pending[i+1:], t.pending[i:])
	t.pending[i] = labelCount{label: label, n: 1}
	t.labels++
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
	if t.pending[i].n == 0 {
		t.labels--
	}
	for t.head < len(t.pending) && t.pending[t.head].n == 0 {
		t.head++
	}
	switch kept := len(t.pending) - t.head; {
	case kept == 0:
		t.pending, t.head = t.pending[:0], 0
	case kept >= 64 && kept > 2*t.labels:
		// Mostly labels already handled, stuck behind a lower one: drop them (amortised:
		// at least half of what is copied goes).
		w := 0
		for _, lc := range t.pending[t.head:] {
			if lc.n > 0 {
				t.pending[w] = lc
				w++
			}
		}
		t.pending, t.head = t.pending[:w], 0
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

// Held is a message that a Sender keeps to handle after its Send returned, pending with the
// Trackers that followed it into the Sender (see [Hold]). Its methods are safe for
// concurrent use.
type Held struct {
	labels   []heldLabel // innermost Tracker first, as in the chain of the ctx it was held with
	released atomic.Bool
}

type heldLabel struct {
	t     *Tracker
	label uint64
}

// Hold keeps the message that a Sender is handling pending, after its Send returned, with
// every Tracker that ctx carries (see [Tracker.Context]), under their labels, as if it were
// queued in a mailbox: so that whoever acknowledges upstream what was handled (a stream
// subscription saving its position) does not move past it while the Sender keeps it (a
// secure channel keeps data that overtook its handshake). The message stays pending until
// [Held.Release]; one never released stays pending for good, like a message dropped from a
// mailbox. To hand the message on before releasing it, send it with [Held.Context]: then it
// stays pending until it is handled there too. A ctx that carries no Tracker gives a Held
// that follows nothing. Hold keeps neither ctx nor anything derived from it.
func Hold(ctx context.Context) *Held {
	h := &Held{}
	for tl := trackedFrom(ctx); tl != nil; tl = tl.outer {
		h.labels = append(h.labels, heldLabel{tl.t, tl.label})
		tl.t.add(tl.label)
	}
	return h
}

// Context returns a copy of parent (its deadline, cancellation and values) that makes the
// node follow the messages sent with it with the held message's Trackers, under its labels,
// instead of with the Trackers that parent carries: a message sent with it, queued in a
// mailbox before [Held.Release], keeps the held message pending until it is handled.
func (h *Held) Context(parent context.Context) context.Context {
	if len(h.labels) == 0 {
		return untracked{parent}
	}
	var tl *trackedLabel
	for i := len(h.labels) - 1; i >= 0; i-- {
		tl = &trackedLabel{Context: parent, t: h.labels[i].t, label: h.labels[i].label, outer: tl}
	}
	return tl
}

// Release counts the held message as handled (or dropped) with its Trackers. Calls after
// the first do nothing.
func (h *Held) Release() {
	if h.released.Swap(true) {
		return
	}
	for _, l := range h.labels {
		l.t.done(l.label)
	}
}

// untracked hides the Trackers of its parent: messages sent with it are followed by none.
type untracked struct{ context.Context }

func (u untracked) Value(key any) any {
	if key == (trackerKey{}) {
		return (*trackedLabel)(nil)
	}
	return u.Context.Value(key)
}
