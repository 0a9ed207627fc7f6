package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
)

// Defaults for the optional [Harness] fields.
const (
	DefaultStreamPrefix        = "conf-"
	DefaultTimeout             = 2 * time.Minute
	DefaultAppenders           = 16
	DefaultMessagesPerAppender = 500
)

// Harness tells the suite how to open the backend under test.
//
// Every call of Open (and Reopen) must open a backend on the SAME underlying data: the same
// bbolt file, the same Kafka cluster. (A backend that does not declare
// [core.Capabilities].Persistent, such as the in-memory one, may return a new, empty
// backend from each Open; cleanup then finds no stream left to delete.) The suite closes
// every backend it opens, runs its subtests one after another and never has two backends
// from the harness open at once (a bbolt file can be open only once at a time): a subtest's
// backend is closed before the next subtest opens its own, and a persistence subtest closes
// its backend before reopening it. (The exception is a Close that hangs: the suite stops
// waiting for it after Timeout and goes on; see Timeout.)
//
// Each subtest uses fresh, random stream names and client ids, both starting with
// StreamPrefix followed by a random part ("conf-<random>-..."), so runs against a shared
// long-lived broker never collide: not in topics, and not in consumer groups or whatever
// else a backend keys saved indexes by. When the backend's Storage implements
// [core.StreamDeleter], the streams a subtest created are deleted when it ends; client ids
// and their saved indexes are left to the backend.
//
// Only Open is required; the zero value of every other field means its default.
type Harness struct {
	// Open opens the backend under test. Required.
	Open func(ctx context.Context) (*core.Backend, error)

	// Reopen, if set, is used instead of Open when a persistence subtest reopens the
	// backend after closing it (for example to open a bbolt file with other options).
	Reopen func(ctx context.Context) (*core.Backend, error)

	// MaxWait is how long the suite keeps polling Fetch for messages that a successful
	// Append reported but that Fetch does not return yet. Zero (the default) demands
	// read-your-writes: an appended message is visible to the next Fetch. Set it only for a
	// broker whose reads are documented as eventually consistent, and say so in the
	// backend's package doc.
	MaxWait time.Duration

	// Timeout bounds each subtest (default DefaultTimeout). The subtest's context, passed to
	// Open, Reopen and every Storage and IndexStorage call, expires Timeout after the
	// subtest starts. Its cleanup (reopening the backend through Open if the subtest closed
	// it and deleting its streams; then closing the backend) gets a context of its own for
	// each of those two steps, which expires Timeout after the step starts. Close takes no
	// context: the suite calls it on
	// another goroutine and waits for it only until the context in force ends; a Close
	// still running then fails the subtest, with a message saying that the goroutine
	// blocked in Close is left behind (leaked). So a hung broker fails the subtest instead
	// of hanging the run, as long as every method that takes a context returns once it
	// ends, as the contracts in package core require: a method that ignores its context
	// hangs the subtest (under go test, until go test's -timeout ends the whole run).
	Timeout time.Duration

	// StreamPrefix starts every stream name the suite creates and every non-empty client id
	// it passes to IndexStorage (default "conf-"). It must be a valid stream-name prefix
	// (it is then a valid client-id prefix too) and leave room for about 40 more
	// characters.
	StreamPrefix string

	// Appenders and MessagesPerAppender size the concurrent-append subtest (defaults 16 and
	// 500). Lower them only for a broker whose per-request latency makes the default
	// impractical, and say so where the harness is defined.
	Appenders           int
	MessagesPerAppender int

	// CreateMaxPartitions makes the MaxPartitions subtest create a stream with
	// Capabilities().MaxPartitions partitions even when that is more than 64 (by default it
	// is skipped then, as creating a thousand Kafka partitions is slow). Set it for cheap
	// in-process backends.
	CreateMaxPartitions bool
}

func (h Harness) timeout() time.Duration {
	if h.Timeout > 0 {
		return h.Timeout
	}
	return DefaultTimeout
}

func (h Harness) prefix() string {
	if h.StreamPrefix != "" {
		return h.StreamPrefix
	}
	return DefaultStreamPrefix
}

// prefixRoom is how many characters the suite adds to Harness.StreamPrefix in its stream
// names: the random part, a label and a sequence number.
const prefixRoom = 40

// checkPrefix says what is wrong with Harness.StreamPrefix, if anything: the suite's names
// must be valid stream names, or every subtest would fail with the backend's "invalid
// argument" for the harness's mistake.
func (h Harness) checkPrefix() error {
	p := h.prefix()
	if err := core.ValidateStreamName(p + strings.Repeat("x", prefixRoom)); err != nil {
		return fmt.Errorf("conformance: Harness.StreamPrefix %q must start valid stream names and leave room for %d more characters (at most %d in all): %w",
			p, prefixRoom, core.MaxStreamNameLen-prefixRoom, err)
	}
	return nil
}

func (h Harness) appenders() (n, per int) {
	n, per = h.Appenders, h.MessagesPerAppender
	if n <= 0 {
		n = DefaultAppenders
	}
	if per <= 0 {
		per = DefaultMessagesPerAppender
	}
	return n, per
}

func (h Harness) reopen(ctx context.Context) (*core.Backend, error) {
	if h.Reopen != nil {
		return h.Reopen(ctx)
	}
	return h.Open(ctx)
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b)
}

// env is one subtest's view of the backend: the backend currently open, a context bounded by
// the harness timeout, and the streams created so far (deleted at the end).
type env struct {
	t      T
	h      Harness
	ctx    context.Context
	prefix string

	mu      sync.Mutex
	b       *core.Backend
	closed  bool // b was closed by the subtest
	streams []string
	seq     int
}

// newEnv opens the backend for subtest t and registers the cleanup that deletes the
// subtest's streams and closes the backend.
func newEnv(t T, h Harness) *env {
	t.Helper()
	if h.Open == nil {
		t.Fatalf("conformance: Harness.Open is nil")
	}
	ctx, cancel := context.WithTimeout(t.Context(), h.timeout())
	e := &env{t: t, h: h, ctx: ctx, prefix: h.prefix() + randomHex(4) + "-"}
	t.Cleanup(func() {
		cancel()
		e.cleanup()
	})
	b, err := h.Open(ctx)
	if err != nil {
		t.Fatalf("Harness.Open: %v", err)
	}
	if b == nil || b.Storage == nil {
		if b != nil {
			_ = closeWithin(ctx, h.timeout(), "Backend.Close", b.Close)
		}
		t.Fatalf("Harness.Open returned a backend without Storage")
	}
	e.b = b
	return e
}

// backend returns the backend currently open.
func (e *env) backend() *core.Backend {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.b
}

func (e *env) storage() core.Storage { return e.backend().Storage }

// index returns the backend's IndexStorage, skipping the subtest if there is none.
func (e *env) index() core.IndexStorage {
	e.t.Helper()
	ix := e.backend().Index
	if ix == nil {
		e.t.Skipf("backend %q has no IndexStorage (core.Backend.Index is nil)", e.storage().Capabilities().Name)
	}
	return ix
}

func (e *env) caps() core.Capabilities { return e.storage().Capabilities() }

// close closes the current backend (as a test step; its error is the test's business),
// waiting for Close at most until the subtest's context ends.
func (e *env) close() error {
	e.mu.Lock()
	b, closed := e.b, e.closed
	e.closed = true
	e.mu.Unlock()
	if closed {
		return nil
	}
	return e.closeStep("Backend.Close", b.Close)
}

// closeStep calls close (a Close method) as a test step, waiting for it at most until the
// subtest's context ends.
func (e *env) closeStep(what string, close func() error) error {
	return closeWithin(e.ctx, e.h.timeout(), what, close)
}

// errCloseHung reports a Close that had not returned when the suite stopped waiting.
var errCloseHung = errors.New("conformance: Close hung")

// closeWithin calls close on another goroutine and waits for it until ctx ends (timeout is
// the Harness.Timeout that bounds ctx, for the message). A close still running then is
// left running: its goroutine leaks, and the error returned, matching errCloseHung, says so.
func closeWithin(ctx context.Context, timeout time.Duration, what string, close func() error) error {
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done: // finished just as ctx ended
		return err
	default:
	}
	return fmt.Errorf("%w: %s had not returned when its context ended (%v; Harness.Timeout is %v); "+
		"the suite stopped waiting and left a goroutine blocked in it (leaked). "+
		"Close must not block forever", errCloseHung, what, context.Cause(ctx), timeout)
}

// reopen closes the current backend if still open and opens it again with Harness.Reopen.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.close(); err != nil {
		e.t.Fatalf("Close before reopening: %v", err)
	}
	b, err := e.h.reopen(e.ctx)
	if err != nil {
		e.t.Fatalf("reopen: %v", err)
	}
	if b == nil || b.Storage == nil {
		if b != nil { // an Index alone may hold resources
			_ = closeWithin(e.ctx, e.h.timeout(), "Backend.Close", b.Close)
		}
		e.t.Fatalf("reopen returned a backend without Storage")
	}
	e.mu.Lock()
	e.b, e.closed = b, false
	e.mu.Unlock()
}

// name returns a fresh stream name unique to this run and subtest, without creating it.
func (e *env) name(label string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	n := fmt.Sprintf("%s%s-%d", e.prefix, label, e.seq)
	e.streams = append(e.streams, n)
	return n
}

// create creates a fresh stream with the given partition count and returns its name.
func (e *env) create(label string, partitions int) string {
	e.t.Helper()
	n := e.name(label)
	got, err := e.storage().CreateStream(e.ctx, n, partitions)
	if err != nil {
		e.t.Fatalf("CreateStream(%q, %d): %v", n, partitions, err)
	}
	if got != partitions {
		e.t.Fatalf("CreateStream(%q, %d) of a new stream returned %d partitions, want %d", n, partitions, got, partitions)
	}
	return n
}

// cleanup deletes the subtest's streams (when the backend can, reopening it with Open if the
// subtest closed it) and closes the backend. Each of the two steps has a context of its own
// that expires after Harness.Timeout, and it waits for Close only until then.
func (e *env) cleanup() {
	e.mu.Lock()
	b, closed, streams := e.b, e.closed, e.streams
	e.closed = true
	e.mu.Unlock()
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.h.timeout())
	defer cancel()
	if _, ok := b.Storage.(core.StreamDeleter); ok && len(streams) > 0 {
		if closed {
			nb, err := e.h.Open(ctx)
			if err != nil {
				e.t.Logf("cleanup: cannot reopen the backend to delete streams: %v", err)
				return
			}
			if nb == nil || nb.Storage == nil {
				if nb != nil {
					_ = closeWithin(ctx, e.h.timeout(), "Backend.Close in cleanup", nb.Close)
				}
				e.t.Errorf("cleanup: Harness.Open returned a backend without Storage")
				return
			}
			b, closed = nb, false
		}
		if d, ok := b.Storage.(core.StreamDeleter); ok {
			for _, s := range streams {
				if err := d.DeleteStream(ctx, s); err != nil && !errors.Is(err, core.ErrStreamNotFound) {
					e.t.Errorf("cleanup: DeleteStream(%q): %v", s, err)
				}
			}
		}
	}
	if !closed {
		// A context of its own: deletions that used up ctx must not make the Close look hung.
		cctx, ccancel := context.WithTimeout(context.Background(), e.h.timeout())
		defer ccancel()
		if err := closeWithin(cctx, e.h.timeout(), "Backend.Close in cleanup", b.Close); errors.Is(err, errCloseHung) {
			e.t.Errorf("cleanup: %v", err)
		} else if err != nil {
			e.t.Errorf("cleanup: Close: %v", err)
		}
	}
}
