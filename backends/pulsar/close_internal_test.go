package pulsar

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A second Close must not return while the first still waits for a call in flight: its
// caller may free what that call uses. No broker is needed: openURL does no I/O, and the
// call in flight is registered directly.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	s, err := openURL("pulsar://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, end, err := s.calls.Begin(context.Background()) // a call in flight
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- s.Close() }()
	for !s.calls.Closed() { // the first Close has begun: the next one is a later call
		time.Sleep(time.Millisecond)
	}
	var ended atomic.Bool
	go func() {
		time.Sleep(200 * time.Millisecond)
		ended.Store(true)
		end()
	}()
	if err := s.Close(); err != nil {
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
