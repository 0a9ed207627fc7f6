// Package loglimit rate-limits the log lines of recurring conditions: a flood of events
// (connections refused at a limit, messages to an address that does not exist, a backend
// call that keeps failing) costs a line per interval, not a line per event, and no event
// goes uncounted.
package loglimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Every is the least time between two lines about one condition that a [Limiter] made with
// New(0) allows.
const Every = 10 * time.Second

// Limiter rate-limits the log lines of recurring conditions, each named by its message.
// Events held back are not lost when none follows: at the end of the interval a line
// counts them (see Line), and Stop counts those still held back. A Limiter is safe for
// concurrent use.
type Limiter struct {
	mu      sync.Mutex
	every   time.Duration
	seen    map[string]*limited
	stopped bool // set by Stop: no line is scheduled any more
	// timers counts the timers scheduled and not yet done: a timer is done when stopped
	// before it fired, or when its flush returned. Stop waits for them.
	timers sync.WaitGroup
}

// limited is the state of one condition of a Limiter.
type limited struct {
	logged time.Time // when its last line was logged
	since  uint64    // events since then, not yet reported
	// later logs the line about the events held back since logged (see allow); set while
	// a line is scheduled, with timer.
	later func(n uint64)
	timer *time.Timer
	gen   uint64 // of timer: a flush of an earlier timer, which fired as it was stopped, does nothing
}

// New returns a Limiter that logs a line about one condition at most once every every
// (Every when every is not positive).
func New(every time.Duration) *Limiter {
	if every <= 0 {
		every = Every
	}
	return &Limiter{every: every}
}

// SetInterval changes the interval, for the lines that come after it.
func (l *Limiter) SetInterval(every time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.every = every
}

// Interval returns the interval.
func (l *Limiter) Interval() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.every
}

// Line logs msg with args to log at level unless a line about msg was logged less than the
// interval ago, and reports whether it logged. The line adds the attribute count (a name,
// such as "failures") with the number of events since the previous line, this one
// included, and next_line_after with the interval. An event it holds back is counted by
// the next line about msg, which comes at the latest at the end of the interval, with the
// args of the last event held back: so a burst that ends is still counted in full.
func (l *Limiter) Line(log *slog.Logger, level slog.Level, msg, count string, args ...any) bool {
	line := func(n uint64) {
		log.Log(context.Background(), level, msg, append(args[:len(args):len(args)], count, n, "next_line_after", l.Interval())...)
	}
	n, ok := l.allow(msg, line)
	if ok {
		line(n)
	}
	return ok
}

// LineOrDebug logs msg by Line, and at Debug, without the count, when Line holds it back.
func (l *Limiter) LineOrDebug(log *slog.Logger, level slog.Level, msg, count string, args ...any) {
	if !l.Line(log, level, msg, count, args...) {
		log.Debug(msg, args...)
	}
}

// allow counts one event of msg and reports whether to log it now: when no line about msg
// was logged less than every ago. n is then the number of events the line reports: this
// one and those not logged since the previous line. When it holds the event back, later
// (if not nil) is called with the number of events held back at the end of the interval,
// unless a line about msg was logged meanwhile. later is the last one given, so that the
// line tells of the latest event.
func (l *Limiter) allow(msg string, later func(n uint64)) (n uint64, ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[msg]
	if s == nil {
		if l.seen == nil {
			l.seen = make(map[string]*limited)
		}
		s = &limited{}
		l.seen[msg] = s
	}
	s.since++
	if !s.logged.IsZero() && now.Sub(s.logged) < l.every {
		if later != nil && !l.stopped {
			s.later = later
			if s.timer == nil {
				s.gen++
				gen := s.gen
				l.timers.Add(1)
				s.timer = time.AfterFunc(l.every-now.Sub(s.logged), func() {
					defer l.timers.Done()
					l.flush(msg, gen)
				})
			}
		}
		return 0, false
	}
	l.stopTimer(s) // if it fires anyway, its flush does nothing
	s.later = nil
	n, s.since, s.logged = s.since, 0, now
	return n, true
}

// stopTimer stops the timer of s, if any, and forgets it. l.mu is held.
func (l *Limiter) stopTimer(s *limited) {
	if s.timer == nil {
		return
	}
	if s.timer.Stop() {
		l.timers.Done() // it will not run
	}
	s.timer = nil
	s.gen++
}

// flush logs the line about the events of msg held back, if any: the end of the interval
// of allow, when gen is the generation of the timer of msg (or Stop, with gen 0).
func (l *Limiter) flush(msg string, gen uint64) {
	l.mu.Lock()
	s := l.seen[msg]
	if gen != 0 {
		if gen != s.gen || s.timer == nil {
			l.mu.Unlock() // a timer stopped as it fired: allow or Stop took over
			return
		}
		s.timer = nil
	}
	n, later := s.since, s.later
	if n == 0 || later == nil {
		l.mu.Unlock()
		return
	}
	s.since, s.later, s.logged = 0, nil, time.Now()
	l.mu.Unlock()
	later(n)
}

// Stop logs at once the lines about events held back and schedules no more: their owner
// stops, and its logger may not outlive it. A line the end of an interval is logging is
// logged before Stop returns. Lines after Stop are still rate-limited, but a held-back
// event is only counted by a later line, if one comes.
func (l *Limiter) Stop() {
	l.mu.Lock()
	l.stopped = true
	var msgs []string
	for msg, s := range l.seen {
		if s.timer != nil {
			l.stopTimer(s)
			msgs = append(msgs, msg)
		}
	}
	l.mu.Unlock()
	for _, msg := range msgs {
		l.flush(msg, 0)
	}
	l.timers.Wait() // those that fired as they were stopped, or before
}
