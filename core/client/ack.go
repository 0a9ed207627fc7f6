package client

import (
	"context"
	"sync"
)

// Ack is the future result of one [Publisher.Publish]: it completes when the hub confirmed
// the message (PushConfirm OK, sent only after the durable append) or when the publisher gave
// up on it. It is safe for concurrent use.
type Ack struct {
	mu       sync.Mutex
	complete bool
	done     chan struct{} // made by the first Done before completion: most acks are never awaited
	index    uint64
	err      error
}

// finish sets the result once; later calls are ignored.
func (a *Ack) finish(index uint64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.complete {
		return
	}
	a.complete, a.index, a.err = true, index, err
	if a.done != nil {
		close(a.done)
	}
}

// Done returns a channel that is closed when the result is known.
func (a *Ack) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		a.done = make(chan struct{})
		if a.complete {
			close(a.done)
		}
	}
	return a.done
}

// result returns whether the result is known, and the result.
func (a *Ack) result() (ok bool, index uint64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.complete, a.index, a.err
}

// Wait blocks until the result is known or ctx ends. It returns the index the hub assigned
// to the message, or the error that ended it: an error matching [core.ErrClosed] when the
// publisher was closed before the message was confirmed (with an outbox the message stays
// there and is sent again by the next publisher on the same outbox), or ctx's error (the
// message is still being delivered).
func (a *Ack) Wait(ctx context.Context) (uint64, error) {
	if ok, index, err := a.result(); ok {
		return index, err
	}
	select {
	case <-a.Done():
		_, index, err := a.result()
		return index, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
