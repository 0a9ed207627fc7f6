package routing

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/wire"
)

// lowest returns t.Lowest() as a value to compare, -1 for none.
func lowest(t *Tracker) int64 {
	l, ok := t.Lowest()
	if !ok {
		return -1
	}
	return int64(l)
}

func TestTrackerFollowsMessagesUntilHandled(t *testing.T) {
	n := newNode(t, WithMailboxSize(2))
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	if err := n.RegisterSender("sync", &fakeTransport{}); err != nil {
		t.Fatal(err)
	}
	tr := NewTracker()
	if got := lowest(tr); got != -1 {
		t.Fatalf("lowest of a new tracker: %d, want none", got)
	}
	to := func(addr, p string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: []byte(p)}
	}
	bg := context.Background()
	for i, p := range []string{"1", "2", "3"} {
		if err := n.Send(tr.Context(bg, uint64(10+i)), to("slow", p)); err != nil {
			t.Fatal(err)
		}
	}
	// A Sender handles the message in Send: nothing to follow.
	if err := n.Send(tr.Context(bg, 5), to("sync", "s")); err != nil {
		t.Fatal(err)
	}
	<-b.started // "1" (label 10) is being handled, "2" and "3" are queued: the mailbox is full
	if got, l := tr.Pending(), lowest(tr); got != 3 || l != 10 {
		t.Fatalf("pending %d, lowest %d with 1 handling and 2 queued: want 3, 10", got, l)
	}
	// A send that gives up on a full mailbox is not pending.
	cctx, cancel := context.WithCancel(tr.Context(bg, 13))
	cancel()
	if err := n.Send(cctx, to("slow", "4")); !errors.Is(err, context.Canceled) {
		t.Fatalf("send to a full mailbox with a cancelled ctx: %v", err)
	}
	if got := tr.Pending(); got != 3 {
		t.Fatalf("pending after a send that gave up: %d, want 3", got)
	}
	b.release <- struct{}{} // "1" handled
	<-b.got
	<-b.started // "2" is being handled: the handler of "1" has returned
	if got := lowest(tr); got != 11 {
		t.Fatalf("lowest after label 10 was handled: %d, want 11", got)
	}
	close(b.release)
	<-b.got
	<-b.got
	// The handler returns after it passed the payload on: wait for the node to see that.
	deadline := time.Now().Add(10 * time.Second)
	for tr.Pending() != 0 || lowest(tr) != -1 {
		if time.Now().After(deadline) {
			t.Fatalf("still pending after all were handled: %d, lowest %d", tr.Pending(), lowest(tr))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTrackerKeepsUnhandledPending checks that messages a worker never handled stay pending
// when the node closes: the one queued and the one whose handler the close cut short.
func TestTrackerKeepsUnhandledPending(t *testing.T) {
	n := newNode(t)
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	tr := NewTracker()
	for i, p := range []string{"1", "2"} {
		if err := n.Send(tr.Context(context.Background(), uint64(i)), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	<-b.started
	// Closing the node cancels "1"'s handler (it returns ctx.Err()) and drops "2".
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if got, l := tr.Pending(), lowest(tr); got != 2 || l != 0 {
		t.Fatalf("after close: pending %d, lowest %d; want 2 pending from label 0", got, l)
	}
}

func TestTrackerLabelsOutOfOrder(t *testing.T) {
	tr := NewTracker()
	for _, l := range []uint64{7, 3, 7, 5, 9} {
		tr.add(l)
	}
	steps := []struct {
		done uint64
		want int64
	}{{3, 5}, {7, 5}, {5, 7}, {9, 7}, {7, -1}}
	for _, s := range steps {
		tr.done(s.done)
		if got := lowest(tr); got != s.want {
			t.Fatalf("after done(%d): lowest %d, want %d", s.done, got, s.want)
		}
	}
	if got := tr.Pending(); got != 0 {
		t.Fatalf("pending %d after all were done", got)
	}
}

// TestTrackersChain checks that a message sent with a ctx carrying two Trackers (one
// derived from the other's) is followed by both, each under its own label.
func TestTrackersChain(t *testing.T) {
	n := newNode(t)
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	outer, inner := NewTracker(), NewTracker()
	ctx := inner.Context(outer.Context(context.Background(), 7), 42)
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	<-b.started
	if lo, li := lowest(outer), lowest(inner); lo != 7 || li != 42 {
		t.Fatalf("lowest pending: outer %d, inner %d; want 7 and 42", lo, li)
	}
	if got := inner.Labels(nil); len(got) != 1 || got[0] != 42 {
		t.Fatalf("inner labels %v, want [42]", got)
	}
	close(b.release)
	<-b.got
	deadline := time.Now().Add(10 * time.Second)
	for outer.Pending()+inner.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still pending after the message was handled: outer %d, inner %d", outer.Pending(), inner.Pending())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTrackerModel compares the Tracker with a map of label counts on random sequences:
// labels mostly increasing, handled mostly in order, sometimes out of order.
func TestTrackerModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	tr := NewTracker()
	model := map[uint64]int{}
	var queued []uint64 // added and not done, in add order
	next := uint64(0)
	for step := range 20000 {
		if len(queued) == 0 || r.IntN(2) == 0 {
			l := next
			if r.IntN(10) == 0 && next > 5 {
				l = next - uint64(r.IntN(5)) // an older label again
			} else {
				next += uint64(r.IntN(3))
			}
			tr.add(l)
			model[l]++
			queued = append(queued, l)
		} else {
			k := 0
			if r.IntN(5) == 0 {
				k = r.IntN(len(queued)) // out of order
			}
			l := queued[k]
			queued = append(queued[:k], queued[k+1:]...)
			tr.done(l)
			if model[l]--; model[l] == 0 {
				delete(model, l)
			}
		}
		var want []uint64
		for l := range model {
			want = append(want, l)
		}
		slices.Sort(want)
		got := tr.Labels(nil)
		if !slices.Equal(got, want) || tr.Pending() != len(queued) {
			t.Fatalf("step %d: labels %v (pending %d), want %v (%d)", step, got, tr.Pending(), want, len(queued))
		}
		// The count of live labels drives compaction: it must stay exact.
		if tr.labels != len(want) {
			t.Fatalf("step %d: %d labels counted with pending messages, want %d", step, tr.labels, len(want))
		}
		if lo, ok := tr.Lowest(); ok != (len(want) > 0) || ok && lo != want[0] {
			t.Fatalf("step %d: lowest %d %v, want %v", step, lo, ok, want)
		}
	}
}

// keeper is a Sender that keeps every message to handle it later, held with Hold.
type keeper struct {
	mu   sync.Mutex
	held []*Held
}

func (k *keeper) Send(ctx context.Context, _ wire.TransportMessage) error {
	k.mu.Lock()
	k.held = append(k.held, Hold(ctx))
	k.mu.Unlock()
	return nil
}

// TestHoldKeepsMessagePending checks that a message a Sender holds stays pending with every
// Tracker of its ctx until it is released, that what the Sender hands on with the Held's
// Context keeps it pending until handled (under its own labels, not those of the ctx it is
// sent with), and that Release counts once.
func TestHoldKeepsMessagePending(t *testing.T) {
	n := newNode(t)
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{}), got: make(chan []byte, 10)}
	if err := n.Register("slow", b); err != nil {
		t.Fatal(err)
	}
	k := &keeper{}
	if err := n.RegisterSender("keep", k); err != nil {
		t.Fatal(err)
	}
	to := func(addr string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: []byte("x")}
	}
	bg := context.Background()
	outer, inner, other := NewTracker(), NewTracker(), NewTracker()
	if err := n.Send(inner.Context(outer.Context(bg, 7), 42), to("keep")); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(bg, to("keep")); err != nil { // followed by no Tracker
		t.Fatal(err)
	}
	if lo, li := lowest(outer), lowest(inner); lo != 7 || li != 42 {
		t.Fatalf("held message: lowest pending outer %d, inner %d; want 7 and 42", lo, li)
	}
	k.mu.Lock()
	h, none := k.held[0], k.held[1]
	k.mu.Unlock()

	// Handed on under the held labels, not under those of the ctx it is sent with.
	type key struct{}
	parent := context.WithValue(other.Context(bg, 99), key{}, "v")
	hctx := h.Context(parent)
	if hctx.Value(key{}) != "v" {
		t.Fatal("Held.Context lost the parent's values")
	}
	if err := n.Send(hctx, to("slow")); err != nil {
		t.Fatal(err)
	}
	<-b.started
	h.Release()
	h.Release() // counts once
	if lo, li, lt := lowest(outer), lowest(inner), lowest(other); lo != 7 || li != 42 || lt != -1 {
		t.Fatalf("released while handed on: lowest outer %d, inner %d, parent's %d; want 7, 42, none", lo, li, lt)
	}
	if po, pi := outer.Pending(), inner.Pending(); po != 1 || pi != 1 {
		t.Fatalf("pending outer %d, inner %d after one Release twice; want 1 and 1 (the message in the mailbox)", po, pi)
	}
	// A Held that follows nothing hides the parent's Trackers too.
	if err := n.Send(none.Context(other.Context(bg, 5)), to("slow")); err != nil {
		t.Fatal(err)
	}
	none.Release()
	if lt := lowest(other); lt != -1 {
		t.Fatalf("a message sent with the Context of a Held that follows nothing is followed (lowest %d)", lt)
	}
	close(b.release)
	<-b.got
	<-b.got
	deadline := time.Now().Add(10 * time.Second)
	for outer.Pending()+inner.Pending()+other.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still pending after the message was handled: outer %d, inner %d, other %d", outer.Pending(), inner.Pending(), other.Pending())
		}
		time.Sleep(time.Millisecond)
	}
}
