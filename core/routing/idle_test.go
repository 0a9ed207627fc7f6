package routing

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

func TestUnregisterIdle(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)
	to := func(addr string) wire.TransportMessage {
		return wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: []byte("x")}
	}

	if ok, err := n.UnregisterIdle("nobody"); ok || !errors.Is(err, ErrNoRoute) {
		t.Fatalf("UnregisterIdle(unknown) = %v, %v; want false, ErrNoRoute", ok, err)
	}
	if err := n.RegisterSender("sender", &fakeTransport{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.UnregisterIdle("sender"); ok || !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("UnregisterIdle(sender) = %v, %v; want false, ErrInvalidArgument", ok, err)
	}

	// A worker whose handler is running is busy, and so is one with a queued message.
	b := &blocker{started: make(chan struct{}, 2), release: make(chan struct{}), got: make(chan []byte, 2)}
	if err := n.Register("w", b); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(ctx, to("w")); err != nil {
		t.Fatal(err)
	}
	<-b.started
	if ok, err := n.UnregisterIdle("w"); ok || err != nil {
		t.Fatalf("UnregisterIdle(handler running) = %v, %v; want false, nil", ok, err)
	}
	if err := n.Send(ctx, to("w")); err != nil {
		t.Fatal(err)
	}
	b.release <- struct{}{} // the first returns; the second starts
	<-b.started
	if ok, err := n.UnregisterIdle("w"); ok || err != nil {
		t.Fatalf("UnregisterIdle(second message) = %v, %v; want false, nil", ok, err)
	}
	b.release <- struct{}{}
	if err := n.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.UnregisterIdle("w"); !ok || err != nil {
		t.Fatalf("UnregisterIdle(idle) = %v, %v; want true, nil", ok, err)
	}
	if err := n.Send(ctx, to("w")); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("Send after UnregisterIdle: %v, want ErrNoRoute", err)
	}

	// From its own handler, a worker is busy.
	own := make(chan error, 1)
	if err := n.Register("self", WorkerFunc(func(ctx context.Context, m *Message) error {
		ok, err := m.Node().UnregisterIdle(m.Address)
		if ok || err != nil {
			own <- fmt.Errorf("UnregisterIdle from own handler = %v, %v; want false, nil", ok, err)
		} else {
			own <- nil
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(ctx, to("self")); err != nil {
		t.Fatal(err)
	}
	if err := <-own; err != nil {
		t.Fatal(err)
	}

	n.Close()
	if ok, err := n.UnregisterIdle("self"); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("UnregisterIdle after Close = %v, %v; want false, ErrClosed", ok, err)
	}
}

// retiree is a worker of TestUnregisterIdleRacesSend: it records each message it handles
// and counts those it handles after it was retired.
type retiree struct {
	handled *[]atomic.Int32 // by message id
	retired atomic.Bool
	late    *atomic.Int64
}

func (r *retiree) HandleMessage(_ context.Context, m *Message) error {
	if r.retired.Load() {
		r.late.Add(1)
	}
	var id int
	if _, err := fmt.Sscan(string(m.Payload), &id); err != nil {
		return err
	}
	(*r.handled)[id].Add(1)
	return nil
}

// TestUnregisterIdleRacesSend races senders with a goroutine that retires their worker
// with UnregisterIdle, as a server retires idle workers: the owner keeps the current worker
// of the address and the fallback hands it back, registering a new one when there is none.
// Every message must be handled exactly once, and never by a worker already retired.
func TestUnregisterIdleRacesSend(t *testing.T) {
	const (
		senders = 4
		perSend = 3000
		addr    = "w"
	)
	ctx := context.Background()
	n := newNode(t, WithMailboxSize(4))
	handled := make([]atomic.Int32, senders*perSend)
	var late atomic.Int64

	var mu sync.Mutex // guards cur: the owner's current worker, as a hub's partition map
	var cur *retiree
	var created atomic.Int64
	n.SetFallback(func(_ context.Context, a string) Worker {
		if a != addr {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if cur == nil {
			cur = &retiree{handled: &handled, late: &late}
			created.Add(1)
			if err := n.Register(addr, cur); err != nil {
				t.Errorf("register: %v", err)
			}
		}
		return cur // registered already: the node keeps that registration
	})

	var wg sync.WaitGroup
	var errs atomic.Int64
	for s := range senders {
		wg.Go(func() {
			for i := range perSend {
				id := s*perSend + i
				msg := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: fmt.Append(nil, id)}
				if err := n.Send(ctx, msg); err != nil {
					if errs.Add(1) < 5 {
						t.Errorf("send %d: %v", id, err)
					}
				}
				runtime.Gosched() // let the worker go idle now and then
			}
		})
	}
	stop := make(chan struct{})
	var retired atomic.Int64
	retirer := make(chan struct{})
	go func() {
		defer close(retirer)
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			if cur != nil {
				ok, err := n.UnregisterIdle(addr)
				if err != nil {
					t.Errorf("UnregisterIdle: %v", err)
				}
				if ok {
					cur.retired.Store(true)
					cur = nil
					retired.Add(1)
				}
			}
			mu.Unlock()
		}
	}()
	wg.Wait()
	close(stop)
	<-retirer

	dctx, cancel := context.WithTimeout(ctx, 20*time.Second) // bounds the wait; not a timing assertion
	defer cancel()
	if err := n.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	lost, twice := 0, 0
	for id := range handled {
		switch handled[id].Load() {
		case 0:
			lost++
		case 1:
		default:
			twice++
		}
	}
	if lost > 0 || twice > 0 {
		t.Errorf("%d of %d messages never handled, %d handled more than once", lost, len(handled), twice)
	}
	if l := late.Load(); l > 0 {
		t.Errorf("%d messages handled by a worker already retired", l)
	}
	if retired.Load() == 0 {
		t.Error("no worker was retired: the race was not exercised")
	}
	t.Logf("%d workers created, %d retired", created.Load(), retired.Load())
}

// racingCtx calls race once, from Send, when Send asks it for a value: after Send looked
// up the destination and before it queues the message, which is where an UnregisterIdle
// from another goroutine can interleave.
type racingCtx struct {
	context.Context
	once sync.Once
	race func()
}

func (c *racingCtx) Value(key any) any {
	c.once.Do(c.race)
	return c.Context.Value(key)
}

// TestUnregisterIdleAtomicWithSend runs UnregisterIdle between Send's look-up of a worker
// and the queueing of its message: the worker must count as busy, and get the message.
func TestUnregisterIdleAtomicWithSend(t *testing.T) {
	n := newNode(t)
	got := make(inbox, 1)
	if err := n.Register("w", got); err != nil {
		t.Fatal(err)
	}
	var ok bool
	var err error
	ctx := &racingCtx{Context: context.Background(), race: func() { ok, err = n.UnregisterIdle("w") }}
	if err := n.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if ok || err != nil {
		t.Fatalf("UnregisterIdle during Send = %v, %v; want false, nil", ok, err)
	}
	if m := receive(t, got); string(m.Payload) != "x" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestUnregisterIdleSparesFallbackWorker: a fallback that hands back a worker it has
// registered itself (as a server keeping its workers in a map does) must not see that
// worker retired before Send has queued its message, or the node would register the
// retired worker again.
func TestUnregisterIdleSparesFallbackWorker(t *testing.T) {
	n := newNode(t)
	got := make(inbox, 1)
	var ok bool
	var err error
	n.SetFallback(func(_ context.Context, a string) Worker {
		if rerr := n.Register(a, got); rerr != nil {
			t.Errorf("register: %v", rerr)
		}
		ok, err = n.UnregisterIdle(a) // the owner's retirer, racing
		return got
	})
	if err := n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if ok || err != nil {
		t.Fatalf("UnregisterIdle from the fallback = %v, %v; want false, nil", ok, err)
	}
	receive(t, got)
	if err := n.Drain(context.Background()); err != nil { // the handler has returned
		t.Fatal(err)
	}
	if ok, err := n.UnregisterIdle("w"); !ok || err != nil {
		t.Fatalf("UnregisterIdle once idle = %v, %v; want true, nil", ok, err)
	}
}
