package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Calls keeps count of a backend's calls in flight, so that its Close can refuse new calls,
// wait for the ones running and cancel them. A backend calls Begin at the start of every
// method but Capabilities and Close, including those that never reach the broker (every
// method must return [ErrClosed] after Close), and the returned end when the method
// returns; its Close is Shutdown with a function that calls Wait and Cancel in the order its
// documentation promises (for example: wait a grace period, then cancel). The zero value
// is ready to use; a Calls must not be copied after first use.
type Calls struct {
	mu     sync.Mutex
	closed bool
	n      int                     // calls and goroutines in flight
	idle   chan struct{}           // made by Shutdown; closed once n is 0 after it
	shut   chan struct{}           // made by Shutdown; closed when its shutdown returned
	life   context.Context         // ends when Cancel is called; made on first use
	cancel context.CancelCauseFunc // cancels life with cause ErrClosed
}

// initLocked makes life on first use.
func (c *Calls) initLocked() {
	if c.life == nil {
		c.life, c.cancel = context.WithCancelCause(context.Background())
	}
}

// Begin registers a call. It fails with [ErrClosed] once Shutdown was called, and with ctx's
// error when ctx is already done. The returned context ends with ctx, and also when Cancel
// is called, with cause [ErrClosed] (context.Cause tells the two apart). The caller must
// call end when the call returns.
func (c *Calls) Begin(ctx context.Context) (_ context.Context, end func(), _ error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return nil, nil, err
	}
	c.initLocked()
	c.n++
	life := c.life
	c.mu.Unlock()
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(life, func() { cancel(ErrClosed) })
	return cctx, func() {
		stop()
		cancel(nil)
		c.done()
	}, nil
}

// Go runs f on a new goroutine that Wait waits for, as for a call. It must be called by a
// call in flight (between Begin and its end), which guarantees that Close has not finished
// waiting.
func (c *Calls) Go(f func()) {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		panic("core: Calls.Go outside a call")
	}
	c.n++
	c.mu.Unlock()
	go func() { // owned by the backend: waited for by its Close
		defer c.done()
		f()
	}()
}

func (c *Calls) done() {
	c.mu.Lock()
	c.n--
	if c.n == 0 && c.idle != nil {
		close(c.idle)
	}
	c.mu.Unlock()
}

// Shutdown is the body of a backend's Close. The first call refuses new calls from now on
// (Begin fails with [ErrClosed]), runs shutdown (nil: nothing), which calls Wait and Cancel
// in the order the backend's documentation promises and releases its resources, and
// returns its error. Later and concurrent calls wait until the first call's shutdown has
// returned, then return nil: no Close returns while the backend is still closing, since its
// caller may free what a call in flight uses.
func (c *Calls) Shutdown(shutdown func() error) error {
	c.mu.Lock()
	if c.closed {
		shut := c.shut
		c.mu.Unlock()
		<-shut
		return nil
	}
	c.closed = true
	c.idle = make(chan struct{})
	if c.n == 0 {
		close(c.idle)
	}
	c.shut = make(chan struct{})
	c.mu.Unlock()
	defer close(c.shut)
	if shutdown == nil {
		return nil
	}
	return shutdown()
}

// Closed reports whether Shutdown was called.
func (c *Calls) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Cancel ends the context of every call in flight, and Context, with cause [ErrClosed].
func (c *Calls) Cancel() {
	c.Context()
	c.cancel(ErrClosed)
}

// Context returns a context that ends when Cancel is called, with cause [ErrClosed], for
// work of the backend that belongs to no single call (for example a writer goroutine).
func (c *Calls) Context() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.initLocked()
	return c.life
}

// Wait waits, after Shutdown, until no call or goroutine of Go is in flight, or until timeout
// passed (timeout <= 0: no limit). It reports whether none is left.
func (c *Calls) Wait(timeout time.Duration) bool {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	if idle == nil {
		panic("core: Calls.Wait before Shutdown")
	}
	if timeout <= 0 {
		<-idle
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// Drain is the usual waiting of a backend's Close, in its shutdown (see [Calls.Shutdown]):
// it waits up to grace for the calls in flight and the goroutines of Go, cancels them
// (Cancel), and waits up to grace again for them to end. A call that ignores its context
// (one blocked in a client library that takes none) would otherwise make Close wait for
// good: when some are still running after 2 × grace, Drain returns an error matching
// [ErrUnavailable] that says so, and they finish on their own. grace must be more than 0.
func (c *Calls) Drain(grace time.Duration) error {
	if grace <= 0 {
		panic("core: Calls.Drain with a grace period <= 0")
	}
	if !c.Wait(grace) {
		c.Cancel()
		if !c.Wait(grace) {
			return fmt.Errorf("%w: calls still in flight %s after they were cancelled", ErrUnavailable, grace)
		}
	}
	c.Cancel()
	return nil
}

// CallErr returns the error of the context of a call begun with [Calls.Begin]: nil while it
// has not ended, ctx.Err() when the caller's context ended it, and an error matching both
// [ErrClosed] and ctx.Err() when Cancel did.
func CallErr(ctx context.Context) error {
	err := ctx.Err()
	if err != nil && errors.Is(context.Cause(ctx), ErrClosed) {
		return fmt.Errorf("%w: cancelled by Close: %w", ErrClosed, err)
	}
	return err
}

// OwnTimeout returns err, the error of something a backend's call waited for (a client
// library's operation timeout, an HTTP client's Timeout, a bound of the backend's own) that
// matches context.DeadlineExceeded or context.Canceled although the call's context has not
// ended, made to match neither: a caller that saw them would take the error for the end of
// its own context and give up instead of trying again. errors.Is still matches the other
// errors of err's chain (a core sentinel err wraps), errors.As finds them (a net.Error among
// them says Timeout), and its message is err's. An err that
// matches neither context error is returned as it is. The backend adds the sentinel, usually
// [ErrUnavailable].
func OwnTimeout(err error) error {
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	return &ownTimeout{err}
}

// ownTimeout hides the context errors of err from errors.Is, not the rest of its chain.
type ownTimeout struct{ err error }

func (e *ownTimeout) Error() string { return e.err.Error() }

func (e *ownTimeout) Is(target error) bool {
	if target == context.DeadlineExceeded || target == context.Canceled {
		return false
	}
	return errors.Is(e.err, target)
}

func (e *ownTimeout) As(target any) bool { return errors.As(e.err, target) }
