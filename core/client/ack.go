package client

import (
	"context"
	"sync"
)

// Ack is the future result of one [Publisher.Publish]: it completes when the hub confirmed
// the message (PushConfirm OK, sent only after the durable append) or when the publisher gave
// up on it. It is safe for concurrent use.
type Ack struct {
	done  chan struct{}
	once  sync.Once
	index uint64
	err   error
}

func newAck() *Ack { return &Ack{done: make(chan struct{})} }

// complete sets the result once; later calls are ignored.
func (a *Ack) complete(index uint64, err error) {
	a.once.Do(func() {
		a.index, a.err = index, err
		close(a.done)
	})
}

// Done returns a channel that is closed when the result is known.
func (a *Ack) Done() <-chan struct{} { return a.done }

// Wait blocks until the result is known or ctx ends. It returns the index the hub assigned
// to the message, or the error that ended it: an error matching [core.ErrClosed] when the
// publisher was closed before the message was confirmed (with an outbox the message stays
// there and is sent again by the next publisher on the same outbox), or ctx's error (the
// message is still being delivered).
func (a *Ack) Wait(ctx context.Context) (uint64, error) {
	select {
	case <-a.done:
		return a.index, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
