package loglimit_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/loglimit"
)

// records is a slog.Handler that keeps every record, at every level.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// line is what a test checks of a record.
type line struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r *records) lines() []line {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ls []line
	for _, rec := range r.recs {
		l := line{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
		rec.Attrs(func(a slog.Attr) bool {
			l.attrs[a.Key] = a.Value.String()
			return true
		})
		ls = append(ls, l)
	}
	return ls
}

// warnings returns the lines at Warn.
func (r *records) warnings() []line {
	var ws []line
	for _, l := range r.lines() {
		if l.level == slog.LevelWarn {
			ws = append(ws, l)
		}
	}
	return ws
}

// TestLineCountsHeldBack: within an interval only the first event of a condition is a line
// at its level; the others are held back (at Debug with LineOrDebug), each condition on its
// own, and Stop logs a line that counts those held back, with the attributes of the last.
func TestLineCountsHeldBack(t *testing.T) {
	var rec records
	log := slog.New(&rec)
	l := loglimit.New(time.Hour)
	if got := l.Interval(); got != time.Hour {
		t.Fatalf("Interval() = %v, want 1h", got)
	}
	for i := range 5 {
		l.LineOrDebug(log, slog.LevelWarn, "dropped", "messages", "last", i)
	}
	if !l.Line(log, slog.LevelWarn, "refused", "connections", "last", 0) {
		t.Fatal("the first event of another condition was held back")
	}
	if l.Line(log, slog.LevelWarn, "refused", "connections", "last", 1) {
		t.Fatal("a second event within the interval was logged")
	}
	ws := rec.warnings()
	if len(ws) != 2 || ws[0].msg != "dropped" || ws[0].attrs["messages"] != "1" || ws[0].attrs["last"] != "0" ||
		ws[0].attrs["next_line_after"] != "1h0m0s" || ws[1].msg != "refused" || ws[1].attrs["connections"] != "1" {
		t.Fatalf("warnings %+v, want one per condition, each counting 1", ws)
	}
	debug := 0
	for _, ln := range rec.lines() {
		if ln.level == slog.LevelDebug && ln.msg == "dropped" {
			if _, counted := ln.attrs["messages"]; counted {
				t.Errorf("a held-back event's Debug line has a count: %+v", ln)
			}
			debug++
		}
	}
	if debug != 4 {
		t.Errorf("%d Debug lines for the 4 held-back events, want 4", debug)
	}

	l.Stop()
	ws = rec.warnings()
	if len(ws) != 4 {
		t.Fatalf("after Stop, warnings %+v, want a line per condition with events held back", ws)
	}
	for _, w := range ws[2:] {
		switch w.msg {
		case "dropped":
			if w.attrs["messages"] != "4" || w.attrs["last"] != "4" {
				t.Errorf("Stop's line %+v, want messages=4 last=4 (the last event's attributes)", w)
			}
		case "refused":
			if w.attrs["connections"] != "1" || w.attrs["last"] != "1" {
				t.Errorf("Stop's line %+v, want connections=1 last=1", w)
			}
		default:
			t.Errorf("Stop logged %+v", w)
		}
	}

	// After Stop nothing is scheduled: an event held back is counted by the next line only.
	l.Line(log, slog.LevelWarn, "dropped", "messages")
	l.SetInterval(0)
	if !l.Line(log, slog.LevelWarn, "dropped", "messages") {
		t.Fatal("with interval 0 an event was held back")
	}
	if ws := rec.warnings(); len(ws) != 5 || ws[4].attrs["messages"] != "2" {
		t.Fatalf("warnings %+v, want a fifth counting the event held back after Stop and itself", ws)
	}
}

// TestLineAtEndOfInterval: events held back are counted by a line at the end of the
// interval when no event follows.
func TestLineAtEndOfInterval(t *testing.T) {
	var rec records
	log := slog.New(&rec)
	l := loglimit.New(50 * time.Millisecond)
	defer l.Stop()
	for range 3 {
		l.Line(log, slog.LevelError, "failed", "failures")
	}
	// The lines must count all 3 events. (On a machine so slow that the interval passed
	// between two events, a later event is a line of its own; the count is the same.)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var ls []line
		total := 0
		for _, ln := range rec.lines() {
			if ln.level == slog.LevelError {
				ls = append(ls, ln)
				n, err := strconv.Atoi(ln.attrs["failures"])
				if err != nil {
					t.Fatalf("line %+v without a count", ln)
				}
				total += n
			}
		}
		if total == 3 {
			return
		}
		if total > 3 || time.Now().After(deadline) {
			t.Fatalf("lines %+v count %d events, want 3: those held back are counted at the end of the interval", ls, total)
		}
	}
}

// TestNewDefault: New(0) uses Every.
func TestNewDefault(t *testing.T) {
	if got := loglimit.New(0).Interval(); got != loglimit.Every {
		t.Fatalf("New(0).Interval() = %v, want %v", got, loglimit.Every)
	}
}

// blocking is a slog.Handler whose first Warn record blocks until release is closed.
type blocking struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blocking) Enabled(context.Context, slog.Level) bool { return true }
func (b *blocking) WithAttrs([]slog.Attr) slog.Handler       { return b }
func (b *blocking) WithGroup(string) slog.Handler            { return b }
func (b *blocking) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level != slog.LevelWarn {
		return nil
	}
	first := false
	b.once.Do(func() { first = true })
	if first {
		return nil // the first line, logged by Line itself
	}
	close(b.entered)
	<-b.release
	return nil
}

// TestStopWaitsForLineAtEndOfInterval: a line that the end of an interval is logging when
// Stop is called is logged before Stop returns: the owner's logger need not outlive Stop.
func TestStopWaitsForLineAtEndOfInterval(t *testing.T) {
	b := &blocking{entered: make(chan struct{}), release: make(chan struct{})}
	log := slog.New(b)
	// An interval long enough for the second line to come within it on a loaded machine
	// (were it logged at once, the handler would block the test), short for the test.
	l := loglimit.New(time.Second)
	l.Line(log, slog.LevelWarn, "dropped", "messages")
	l.Line(log, slog.LevelWarn, "dropped", "messages") // held back: a line at the interval's end
	select {
	case <-b.entered: // the end of the interval is logging
	case <-time.After(time.Minute):
		t.Fatal("no line at the end of the interval")
	}
	stopped := make(chan struct{})
	go func() {
		l.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		close(b.release)
		t.Fatal("Stop returned while a line of the limiter was still being logged")
	case <-time.After(100 * time.Millisecond):
	}
	close(b.release)
	<-stopped
}
