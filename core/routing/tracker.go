package routing

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrDropped: a message followed by a [Tracker] was dropped from a mailbox before its worker
// handled it (the worker was unregistered or the node closed).
var ErrDropped = errors.New("routing: a tracked message was dropped before it was handled")

// A Tracker follows messages into workers' mailboxes until their workers have handled them.
// A message sent with a ctx that carries a Tracker ([Tracker.Context]) and queued in a
// mailbox is pending from then until its worker's HandleMessage returns; a message that a
// Sender or Transport takes is handled when its Send returns, so it is never pending. Only
// that first hop is followed: what a worker sends on from its handler uses the worker's own
// ctx.
//
// A component that hands messages to workers and returns before they are handled waits on
// a Tracker before it acknowledges them upstream: a stream subscription saves its position
// only once the messages before it are handled, so a crash never loses what was queued
// (bistream does this). It is safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	pending int
	dropped bool
	idle    chan struct{} // closed when pending drops to zero; nil while nobody waits
}

// NewTracker returns a Tracker with nothing pending.
func NewTracker() *Tracker { return &Tracker{} }

type trackerKey struct{}

// Context returns a copy of parent that carries t: the node follows with t the messages
// sent with it, and with contexts derived from it, into mailboxes.
func (t *Tracker) Context(parent context.Context) context.Context {
	return context.WithValue(parent, trackerKey{}, t)
}

func trackerFrom(ctx context.Context) *Tracker {
	t, _ := ctx.Value(trackerKey{}).(*Tracker)
	return t
}

// Pending returns the number of tracked messages queued or being handled.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// Wait returns nil once no tracked message is pending (at once when none is). It returns
// an error matching ErrDropped when a tracked message was dropped unhandled (from then on,
// for good: the messages after it must not be acknowledged either), and ctx's error when
// ctx ends first. A message dropped while Wait runs may also keep it waiting until ctx ends.
func (t *Tracker) Wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.dropped {
			t.mu.Unlock()
			return ErrDropped
		}
		if t.pending == 0 {
			t.mu.Unlock()
			return nil
		}
		if t.idle == nil {
			t.idle = make(chan struct{})
		}
		idle := t.idle
		t.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("routing: wait for %d pending messages: %w", t.Pending(), ctx.Err())
		}
	}
}

// add counts one message queued in a mailbox.
func (t *Tracker) add() {
	t.mu.Lock()
	t.pending++
	t.mu.Unlock()
}

// done counts one message as handled (or, with dropped, as lost unhandled), or a queueing
// that add counted but that did not happen.
func (t *Tracker) done(dropped bool) {
	t.mu.Lock()
	t.pending--
	t.dropped = t.dropped || dropped
	if (t.pending == 0 || dropped) && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
	t.mu.Unlock()
}
