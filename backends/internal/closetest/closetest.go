// Package closetest checks, for the backends of this module, that a backend's Close keeps
// the promise of core.Calls.Shutdown: a later Close does not return while the first one
// still waits for a call in flight (its caller may free what that call uses).
package closetest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// SecondCloseWaits registers a call in flight on calls (the backend's core.Calls), starts a
// first Close, then calls Close again and fails t if that returns before the call ended or
// returns an error, or if the first Close does not return once the call ended.
func SecondCloseWaits(t testing.TB, calls *core.Calls, closeFn func() error) {
	t.Helper()
	_, end, err := calls.Begin(context.Background()) // a call in flight
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- closeFn() }()
	for !calls.Closed() { // the first Close has begun: the next one is a later call
		time.Sleep(time.Millisecond)
	}
	var ended atomic.Bool
	go func() {
		time.Sleep(200 * time.Millisecond)
		ended.Store(true)
		end()
	}()
	if err := closeFn(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !ended.Load() {
		t.Fatal("second Close returned while the first still waits for a call in flight")
	}
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("first Close: %v", err)
		}
	case <-time.After(20 * time.Second): // a guard, not a timing assertion
		t.Fatal("first Close has not returned")
	}
}
