package bbolt

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/core"
)

// op is one write waiting for the committer: Append, CreateStream, DeleteStream or
// SaveIndex.
type op struct {
	ctx  context.Context
	size int // message bytes, for the MaxCommitBytes cap

	// apply performs the write in the group's transaction. It must check everything that can
	// make it fail before it writes anything and return such an error as is: the write is
	// then rejected alone and the transaction goes on. An error after it has written must be
	// wrapped with abort: the transaction is rolled back and run again without this op.
	apply func(*bolt.Tx) error

	err  error         // the result, set by the committer before it closes done
	done chan struct{} // closed by the committer (ops queued by do)

	// then, when set, is called by the committer with the result instead of closing done
	// (ops queued by enqueue: nobody waits for them).
	then func(error)
}

// abortError marks an error that made an op leave a partial write in the transaction.
type abortError struct{ err error }

func (e *abortError) Error() string { return e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

func abort(err error) error { return &abortError{err} }

// do queues o for the committer and waits for its result or for ctx to end.
func (s *Store) do(ctx context.Context, o *op) error {
	o.done = make(chan struct{})
	if err := s.enqueue(ctx, o); err != nil {
		return err
	}
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		// Prefer the result if it arrived at the same time.
		select {
		case <-o.done:
			return o.err
		default:
			return ctx.Err()
		}
	}
}

// enqueue queues o for the committer, which reports its result through o.done or o.then.
// When enqueue returns an error, o was not queued and nothing reports a result.
func (s *Store) enqueue(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.ctx = ctx
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return core.ErrClosed
	}
	s.queue = append(s.queue, o)
	s.mu.Unlock()
	s.signal()
	return nil
}

// signal wakes the committer without blocking.
func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// commitLoop is the committer goroutine. It runs until Close has been called and the queue
// is empty, so every queued op gets its result.
func (s *Store) commitLoop() {
	defer close(s.done)
	for range s.wake {
		for {
			batch, closed := s.take()
			if len(batch) == 0 {
				if closed {
					return
				}
				break
			}
			s.commit(batch)
		}
	}
}

// take removes from the queue the ops of the next group commit: every op waiting, up to
// MaxCommitBytes of messages (at least one op).
func (s *Store) take() (batch []*op, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, size := 0, 0
	for n < len(s.queue) && (n == 0 || size+s.queue[n].size <= s.opts.MaxCommitBytes) {
		size += s.queue[n].size
		n++
	}
	if n == len(s.queue) {
		batch, s.queue = s.queue, nil
	} else {
		batch, s.queue = s.queue[:n:n], s.queue[n:]
	}
	return batch, s.closed
}

// commit applies batch in one bbolt transaction: one commit, one fsync. An op rejected by
// its own checks gets its error and the others go on; an op that fails after writing is
// taken out and the transaction is run again without it; a failed commit fails every op.
func (s *Store) commit(batch []*op) {
	live := batch[:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			finish(o, err) // its caller has returned ctx.Err(): nothing was written
			continue
		}
		live = append(live, o)
	}
	results := make([]error, len(live))
	for len(live) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, o := range live {
				err := o.apply(tx)
				var ae *abortError
				if errors.As(err, &ae) {
					failed = i
					return err
				}
				results[i] = err
			}
			return nil
		})
		if err == nil {
			for i, o := range live {
				finish(o, results[i])
			}
			return
		}
		// Rolled back: forget the cached next indexes, the file is the truth.
		clear(s.next)
		if failed < 0 {
			for _, o := range live {
				finish(o, err)
			}
			return
		}
		finish(live[failed], err)
		live = append(live[:failed], live[failed+1:]...)
		results = results[:len(live)]
	}
}

func finish(o *op, err error) {
	if o.then != nil {
		o.then(err)
		return
	}
	o.err = err
	close(o.done)
}
