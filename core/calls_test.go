package core_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

func TestCallsRefuseAfterClose(t *testing.T) {
	var c core.Calls
	if c.Closed() {
		t.Fatal("a new Calls is closed")
	}
	ran := 0
	if err := c.Shutdown(func() error { ran++; return errors.New("first") }); err == nil || err.Error() != "first" {
		t.Fatalf("first Shutdown returned %v, want the error of its function", err)
	}
	if err := c.Shutdown(func() error { ran++; return errors.New("second") }); err != nil {
		t.Fatalf("second Shutdown returned %v, want nil", err)
	}
	if ran != 1 {
		t.Fatalf("Shutdown ran its function %d times, want once", ran)
	}
	if !c.Closed() {
		t.Fatal("Closed is false after Shutdown")
	}
	if _, _, err := c.Begin(context.Background()); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Begin after Close: %v, want ErrClosed", err)
	}
	if !c.Wait(time.Millisecond) {
		t.Fatal("Wait with no call in flight reported calls left")
	}
}

func TestCallsBeginWithDoneContext(t *testing.T) {
	var c core.Calls
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Begin(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Begin with a cancelled ctx: %v, want context.Canceled", err)
	}
	_ = c.Shutdown(nil)
	if !c.Wait(time.Millisecond) {
		t.Fatal("a refused Begin was counted as a call in flight")
	}
}

func TestCallsWaitForCallsAndGoroutines(t *testing.T) {
	var c core.Calls
	_, end, err := c.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var ran atomic.Bool
	c.Go(func() {
		<-release
		ran.Store(true)
	})
	_ = c.Shutdown(nil)
	end()
	if c.Wait(20 * time.Millisecond) {
		t.Fatal("Wait returned while a goroutine of Go was running")
	}
	close(release)
	if !c.Wait(0) {
		t.Fatal("Wait without limit reported calls left")
	}
	if !ran.Load() {
		t.Fatal("Wait returned before the goroutine of Go ended")
	}
}

func TestCallsCancel(t *testing.T) {
	var c core.Calls
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctx, end, err := c.Begin(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer end()
	if c.Context().Err() != nil {
		t.Fatal("Context ended before Cancel")
	}
	_ = c.Shutdown(nil)
	if ctx.Err() != nil {
		t.Fatal("Close alone cancelled a call in flight")
	}
	c.Cancel()
	<-ctx.Done()
	if cause := context.Cause(ctx); !errors.Is(cause, core.ErrClosed) {
		t.Fatalf("cause %v, want ErrClosed", cause)
	}
	if err := core.CallErr(ctx); !errors.Is(err, core.ErrClosed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("CallErr %v, want ErrClosed and context.Canceled", err)
	}
	if cause := context.Cause(c.Context()); !errors.Is(cause, core.ErrClosed) {
		t.Fatalf("Context's cause %v, want ErrClosed", cause)
	}
}

func TestCallsEndedByOwnContext(t *testing.T) {
	var c core.Calls
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, end, err := c.Begin(parent)
	if err != nil {
		t.Fatal(err)
	}
	cancelParent()
	<-ctx.Done()
	if err := core.CallErr(ctx); errors.Is(err, core.ErrClosed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("CallErr of a call whose own ctx ended: %v, want context.Canceled alone", err)
	}
	end()
}

// TestCallsNoCallAfterWait races calls against Close: once Wait reports none left, no call
// or goroutine of Go is running, and none starts.
func TestCallsNoCallAfterWait(t *testing.T) {
	for range 50 {
		var c core.Calls
		var running atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					_, end, err := c.Begin(context.Background())
					if err != nil {
						return
					}
					running.Add(1)
					c.Go(func() {
						running.Add(1)
						runtime.Gosched()
						running.Add(-1)
					})
					running.Add(-1)
					end()
				}
			}()
		}
		_ = c.Shutdown(nil)
		if !c.Wait(10 * time.Second) {
			t.Fatal("calls still in flight after 10 s")
		}
		if n := running.Load(); n != 0 {
			t.Fatalf("%d calls running after Wait", n)
		}
		wg.Wait()
		if n := running.Load(); n != 0 {
			t.Fatalf("%d calls ran after Wait", n)
		}
	}
}

// TestCallsLaterShutdownWaits checks that a Shutdown called while the first one runs returns
// only after the first one's function returned: a backend's second Close must not return
// while the backend is still closing.
func TestCallsLaterShutdownWaits(t *testing.T) {
	var c core.Calls
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	first := make(chan error, 1)
	go func() {
		first <- c.Shutdown(func() error {
			close(started)
			<-release
			finished.Store(true)
			return nil
		})
	}()
	<-started
	second := make(chan error, 1)
	go func() { second <- c.Shutdown(nil) }()
	select {
	case err := <-second:
		t.Fatalf("a later Shutdown returned (%v) while the first one's function ran", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("later Shutdown: %v", err)
	}
	if !finished.Load() {
		t.Fatal("a later Shutdown returned before the first one's function returned")
	}
	if err := <-first; err != nil {
		t.Fatalf("first Shutdown: %v", err)
	}
}

// TestCallsCancelBeforeUse checks that Cancel works on a Calls no call used yet: Context
// ends with cause ErrClosed, and so does the context of a call begun after it.
func TestCallsCancelBeforeUse(t *testing.T) {
	var c core.Calls
	c.Cancel()
	if cause := context.Cause(c.Context()); !errors.Is(cause, core.ErrClosed) {
		t.Fatalf("Context's cause after Cancel: %v, want ErrClosed", cause)
	}
	ctx, end, err := c.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer end()
	<-ctx.Done()
	if err := core.CallErr(ctx); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("CallErr of a call begun after Cancel: %v, want ErrClosed", err)
	}
}

// TestCallsEndReleasesContext checks that end ends the call's context (releasing it from
// the caller's context, which may live much longer), with no cause of Close.
func TestCallsEndReleasesContext(t *testing.T) {
	var c core.Calls
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, end, err := c.Begin(parent)
	if err != nil {
		t.Fatal(err)
	}
	end()
	if ctx.Err() == nil {
		t.Fatal("the context of a call is still live after its end")
	}
	if err := core.CallErr(ctx); errors.Is(err, core.ErrClosed) {
		t.Fatalf("CallErr after end: %v, want no ErrClosed", err)
	}
}

// TestCallsMisuse checks the guards against using a Calls wrongly: Go outside a call and
// Wait before Shutdown panic rather than let Close miss a goroutine or wait forever.
func TestCallsMisuse(t *testing.T) {
	panics := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	var c core.Calls
	panics("Go outside a call", func() { c.Go(func() {}) })
	panics("Wait before Shutdown", func() { c.Wait(time.Millisecond) })
}

// TestCallsDrain: Drain lets calls that end within the grace period finish uncancelled,
// cancels those that do not, and reports (core.ErrUnavailable) calls that ignore their
// context instead of waiting for them for good.
func TestCallsDrain(t *testing.T) {
	t.Run("EndsInTime", func(t *testing.T) {
		var c core.Calls
		ctx, end, err := c.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		shut := make(chan error, 1)
		go func() { shut <- c.Shutdown(func() error { return c.Drain(time.Minute) }) }()
		for !c.Closed() {
			time.Sleep(time.Millisecond)
		}
		// Closing, within its grace period: the call is not cancelled.
		if err := ctx.Err(); err != nil {
			t.Fatalf("the call's context ended within the grace period: %v", err)
		}
		end()
		if err := <-shut; err != nil {
			t.Fatalf("Drain = %v", err)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		var c core.Calls
		ctx, end, err := c.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		go func() { <-ctx.Done(); end() }() // a call that honours its context
		if err := c.Shutdown(func() error { return c.Drain(10 * time.Millisecond) }); err != nil {
			t.Fatalf("Drain = %v", err)
		}
		if err := core.CallErr(ctx); !errors.Is(err, core.ErrClosed) {
			t.Fatalf("the call's error = %v, want one matching ErrClosed", err)
		}
	})
	t.Run("IgnoresContext", func(t *testing.T) {
		var c core.Calls
		_, end, err := c.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer end() // the call ends only after Close gave up on it
		err = c.Shutdown(func() error { return c.Drain(10 * time.Millisecond) })
		if !errors.Is(err, core.ErrUnavailable) {
			t.Fatalf("Drain = %v, want an error matching ErrUnavailable", err)
		}
	})
}

// TestOwnTimeout: a timeout of the backend's own no longer matches the context errors, and
// errors.As still reaches its chain; other errors pass unchanged.
func TestOwnTimeout(t *testing.T) {
	inner := &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}
	for _, err := range []error{context.DeadlineExceeded, context.Canceled, fmt.Errorf("lookup: %w", inner),
		errors.Join(context.DeadlineExceeded, errors.New("connection refused"))} {
		got := core.OwnTimeout(err)
		if errors.Is(got, context.DeadlineExceeded) || errors.Is(got, context.Canceled) || got.Error() != err.Error() {
			t.Errorf("OwnTimeout(%v) = %v: still a context error, or another message", err, got)
		}
	}
	var op *net.OpError
	if !errors.As(core.OwnTimeout(fmt.Errorf("lookup: %w", inner)), &op) || op != inner {
		t.Errorf("OwnTimeout hid the chain from errors.As")
	}
	// The errors of its chain other than the context errors still match: a backend's own
	// timeout that it marked core.ErrUnavailable stays one.
	marked := fmt.Errorf("%w: %w", core.ErrUnavailable, inner)
	if got := core.OwnTimeout(marked); !errors.Is(got, core.ErrUnavailable) || errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("OwnTimeout(%v) = %v: want it to match ErrUnavailable and not DeadlineExceeded", marked, got)
	}
	other := fmt.Errorf("x: %w", core.ErrStreamNotFound)
	if got := core.OwnTimeout(other); got != other {
		t.Errorf("OwnTimeout(%v) = %v, want it unchanged", other, got)
	}
	if core.OwnTimeout(nil) != nil {
		t.Errorf("OwnTimeout(nil) is not nil")
	}
}
