package main

import (
	"sync"
	"time"

	"github.com/sluicehq/sluice/core/transport/faultproxy"
)

// flakyLink is A's link to the hub: a fault-injecting proxy (package faultproxy) that the
// demo drives so that its faults land where they test something. It injects two faults:
//
//   - a stall that ends in a reset, in the middle of A's sending: the link stops forwarding
//     the hub's answers (what A sends still reaches the hub and is stored, but no confirm
//     comes back), A keeps sending, and the link resets A's connection with those messages
//     in flight. A's publisher must send them again, and the hub stores them twice: the
//     at-least-once duplicates that B's secure channel must drop. The demo decides when
//     (stall, endStall), so it happens on every run.
//   - optionally, a reset of every connection each period, wherever A is in its story.
//
// A periodic reset never falls inside a stall, nor just before it (holdResets): the stall
// resets a working connection on which A's stalled messages are in flight.
type flakyLink struct {
	proxy *faultproxy.Proxy

	mu      sync.Mutex // guards stalled; held by each periodic reset
	stalled bool       // from holdResets or stall until endStall

	stop chan struct{} // closed by close: the periodic resets end
	done chan struct{} // closed when they ended
}

// newFlakyLink starts a flaky link to target on a free loopback port. every > 0 resets every
// connection each every (except during a stall).
func newFlakyLink(target string, every time.Duration) (*flakyLink, error) {
	p, err := faultproxy.New(target)
	if err != nil {
		return nil, err
	}
	l := &flakyLink{proxy: p, stop: make(chan struct{}), done: make(chan struct{})}
	go l.resetEvery(every) // ends at close
	return l, nil
}

// addr returns the address A dials instead of the hub's.
func (l *flakyLink) addr() string { return l.proxy.Addr() }

// resets returns how many connections the link reset so far.
func (l *flakyLink) resets() uint64 { return l.proxy.Stats().Resets }

func (l *flakyLink) resetEvery(every time.Duration) {
	defer close(l.done)
	if every <= 0 {
		<-l.stop
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if !l.stalled {
				l.proxy.ResetAll()
			}
			l.mu.Unlock()
		}
	}
}

// holdResets holds off the periodic resets until endStall, so that a stall that follows
// resets a connection on which A's stalled messages are in flight, and that connection only.
func (l *flakyLink) holdResets() {
	l.mu.Lock()
	l.stalled = true
	l.mu.Unlock()
}

// stall stops the link's answers: from now on what A sends reaches the hub, but nothing
// the hub answers is forwarded until endStall. It holds off the periodic resets too.
func (l *flakyLink) stall() {
	l.holdResets()
	l.proxy.PauseDirection(faultproxy.Down)
}

// endStall resets every connection of the link, dropping what the stall held, and lets the
// link work again: the next connections are forwarded, and the periodic resets resume. It
// returns how many connections it reset. Without a holdResets or stall before, it does
// nothing.
func (l *flakyLink) endStall() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stalled {
		return 0
	}
	n := l.proxy.ResetAll()
	l.proxy.Resume()
	l.stalled = false
	return n
}

// close ends a stall, stops the periodic resets and the proxy.
func (l *flakyLink) close() error {
	l.endStall()
	close(l.stop)
	<-l.done
	return l.proxy.Close()
}
