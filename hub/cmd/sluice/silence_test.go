package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// shortSilence sets silenceNotice to d for the test.
func shortSilence(t *testing.T, d time.Duration) {
	prev := silenceNotice
	silenceNotice = d
	t.Cleanup(func() { silenceNotice = prev })
}

// push and tail at a port that accepts the connection and never answers say so once, after
// silenceNotice, instead of staying silent until push's -timeout (30 s by default) or the
// request timeout that makes tail retry.
func TestCLISilentHubNotice(t *testing.T) {
	shortSilence(t, 100*time.Millisecond)
	addr := hubtest.SilentServer(t)
	notice := "hub " + addr + " has answered nothing for 100ms: is it a sluice hub?"

	_, _, errs := runIO(t.Context(), "", "push", "-hub", addr, "-timeout", "2s", "s", "x")
	if want := "sluice push: " + notice + " (push waits for up to -timeout 2s)\n"; strings.Count(errs, want) != 1 {
		t.Errorf("push at a silent port: stderr has %q %d times, want once:\n%s", want, strings.Count(errs, want), errs)
	}
	if !strings.Contains(errs, "the hub confirmed nothing for -timeout 2s") {
		t.Errorf("push at a silent port: stderr lacks the final error:\n%s", errs)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	code, _, errs := runIO(ctx, "", "tail", "-hub", addr, "s")
	if code != 130 {
		t.Errorf("tail at a silent port, interrupted: exit %d, want 130\n%s", code, errs)
	}
	if want := "sluice tail: " + notice + " (tail keeps waiting)\n"; strings.Count(errs, want) != 1 {
		t.Errorf("tail at a silent port: stderr has %q %d times, want once:\n%s", want, strings.Count(errs, want), errs)
	}
}

// A hub that answers says nothing of the kind: not while push waits for standard input,
// however long, nor while tail waits for the next message. (Each command's first answer may
// itself be late on a loaded machine, which the notice would rightly report: only what
// follows the first printed message counts.)
func TestCLINoSilenceNoticeFromAnsweringHub(t *testing.T) {
	shortSilence(t, 100*time.Millisecond)
	addr := startHubWith(t)

	in, w := io.Pipe()
	defer w.Close()
	push := runBuffered(t.Context(), in, "push", "-hub", addr, "s")
	if _, err := fmt.Fprintln(w, "a"); err != nil {
		t.Fatal(err)
	}
	from := push.printed(t, "0\n")
	time.Sleep(500 * time.Millisecond) // standard input quiet for five notices' worth
	_ = w.Close()
	if code := <-push.done; code != 0 {
		t.Fatalf("push: exit %d, want 0\n%s", code, push.err.String())
	}
	if errs := push.err.String()[from:]; errs != "" {
		t.Errorf("push waiting for standard input wrote to stderr:\n%s", errs)
	}

	if errs := tailIdle(t, addr, 500*time.Millisecond); strings.Contains(errs, "answered nothing") {
		t.Errorf("tail waiting for the next message says that the hub does not answer:\n%s", errs)
	}
}

// tailIdle runs tail on stream "s" of the hub at addr, which holds one message, "a", waits
// for d once tail printed it, interrupts tail and returns what it wrote to standard error
// after printing the message.
func tailIdle(t *testing.T, addr string, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	tail := runBuffered(ctx, strings.NewReader(""), "tail", "-hub", addr, "s")
	from := tail.printed(t, "0\ta\n")
	time.Sleep(d) // waiting for the next message
	cancel()
	if code := <-tail.done; code != 130 {
		t.Errorf("tail, interrupted: exit %d, want 130\n%s", code, tail.err.String())
	}
	return tail.err.String()[from:]
}

// A hub slow to answer (here its backend takes 2 s to create the stream) gets the notice,
// and then a line saying that it answered, before push prints the index.
func TestCLISlowHubNoticeThenAnswer(t *testing.T) {
	shortSilence(t, 100*time.Millisecond)
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := startHubOn(t, &core.Backend{Storage: &slowCreateStore{Store: mem, delay: 2 * time.Second}, Index: mem})

	code, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "-timeout", "10s", "s", "m")
	if code != 0 || out != "0\n" {
		t.Fatalf("push: exit %d, stdout %q, want 0 and \"0\\n\"\n%s", code, out, errs)
	}
	notice := "sluice push: hub " + addr + " has answered nothing for 100ms"
	answered := "sluice push: hub " + addr + " answered after "
	if i, j := strings.Index(errs, notice), strings.Index(errs, answered); i < 0 || j < i {
		t.Errorf("push to a slow hub: want %q and then %q on stderr:\n%s", notice, answered, errs)
	}
}

// slowCreateStore is a memory store whose CreateStream takes delay.
type slowCreateStore struct {
	*memory.Store
	delay time.Duration
}

func (s *slowCreateStore) CreateStream(ctx context.Context, name string, partitions int) (int, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Store.CreateStream(ctx, name, partitions)
}

// A hub that stops confirming in the middle of a push (here its backend takes 1 s to
// append the second line) is named too, once the line has waited silenceNotice, and then
// that it answered; it is not asked whether it is a sluice hub: it has confirmed a line.
func TestCLIPushNoticeMidway(t *testing.T) {
	shortSilence(t, 100*time.Millisecond)
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := startHubOn(t, &core.Backend{Storage: &slowAppendStore{Store: mem, slow: "slow", delay: time.Second}, Index: mem})

	in, w := io.Pipe()
	defer w.Close()
	push := runBuffered(t.Context(), in, "push", "-hub", addr, "-timeout", "10s", "s")
	if _, err := fmt.Fprintln(w, "a"); err != nil {
		t.Fatal(err)
	}
	from := push.printed(t, "0\n")
	if _, err := fmt.Fprintln(w, "slow"); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	if code := <-push.done; code != 0 || push.out.String() != "0\n1\n" {
		t.Fatalf("push: exit %d, stdout %q, want 0 and \"0\\n1\\n\"\n%s", code, push.out.String(), push.err.String())
	}
	errs := push.err.String()[from:]
	notice := "sluice push: hub " + addr + " has confirmed nothing for 100ms (push waits for up to -timeout 10s)\n"
	answered := "sluice push: hub " + addr + " answered after "
	if i, j := strings.Index(errs, notice), strings.Index(errs, answered); i != 0 || j < i || strings.Count(errs, "sluice push:") != 2 {
		t.Errorf("push to a hub slow to store a line: want %q and then %q on stderr, nothing else:\n%s", notice, answered, errs)
	}
}

// buffered is a command run by runBuffered.
type buffered struct {
	out, err *hubtest.LogBuffer
	done     <-chan int // its exit status
}

// runBuffered runs "sluice args..." in-process with stdin in, its output readable while it
// runs.
func runBuffered(ctx context.Context, in io.Reader, args ...string) *buffered {
	done := make(chan int, 1)
	b := &buffered{out: &hubtest.LogBuffer{}, err: &hubtest.LogBuffer{}, done: done}
	go func() { // ends when the command returns
		done <- run(ctx, args, &stdio{in: in, out: b.out, err: b.err})
	}()
	return b
}

// printed waits until the command's standard output is want and returns how much it had
// written to standard error by then.
func (b *buffered) printed(t *testing.T, want string) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); b.out.String() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stdout is %q after 30s, want %q\nstderr: %s", b.out.String(), want, b.err.String())
		}
	}
	return len(b.err.String())
}

// slowAppendStore is a memory store whose Append takes delay when a message is slow.
type slowAppendStore struct {
	*memory.Store
	slow  string
	delay time.Duration
}

func (s *slowAppendStore) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	for _, m := range msgs {
		if string(m) == s.slow {
			select {
			case <-time.After(s.delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			break
		}
	}
	return s.Store.Append(ctx, stream, partition, msgs)
}

// hubWatch warns once per kind of failure within a streak: a hub that was refusing
// connections and now accepts them but never answers is named again, instead of the
// standing "connection refused" warning hiding it; repeats of a kind already reported stay
// quiet, and reaching the hub ends the streak.
func TestHubWatchWarnsOncePerKind(t *testing.T) {
	var b strings.Builder
	h := &hubWatch{cmd: "tail", addr: "127.0.0.1:4000", w: &b}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	silent := fmt.Errorf("open stream: %w", client.ErrTimeout)
	closedEarly := fmt.Errorf("%w: %w", client.ErrClosedBeforeAnswer, core.ErrUnavailable)
	// What client.Dial returns for a dial reset by its peer.
	resetDial := fmt.Errorf("client: connect to the hub: %w: %w", client.ErrClosedBeforeAnswer,
		&net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNRESET}})
	for _, step := range []struct {
		do   func()
		want string // what the step prints; "" for nothing
	}{
		{func() { h.fail(refused) }, "sluice tail: cannot reach hub 127.0.0.1:4000: connection refused"},
		{func() { h.fail(refused) }, ""},
		{func() { h.fail(silent) }, "sluice tail: hub 127.0.0.1:4000 does not answer"},
		{func() { h.fail(refused) }, ""},
		{func() { h.fail(silent) }, ""},
		{h.ok, "sluice tail: connected to hub 127.0.0.1:4000\n"},
		{h.ok, ""},
		{func() { h.fail(refused) }, "sluice tail: cannot reach hub 127.0.0.1:4000: connection refused"},
		{h.ok, "sluice tail: connected to hub 127.0.0.1:4000\n"},
		// A peer that accepts and resets at once: whether the reset ends the dial or the
		// open connection is a matter of timing, and it is one kind of failure.
		{func() { h.fail(closedEarly) }, "sluice tail: hub 127.0.0.1:4000 closed the connection before answering"},
		{func() { h.fail(resetDial) }, ""},
	} {
		b.Reset()
		step.do()
		if got := b.String(); (step.want == "") != (got == "") || !strings.HasPrefix(got, step.want) {
			t.Errorf("printed %q, want %q", got, step.want)
		}
	}
}

// shortTailPullWait sets tailPullWait to d for the test.
func shortTailPullWait(t *testing.T, d time.Duration) {
	prev := tailPullWait
	tailPullWait = d
	t.Cleanup(func() { tailPullWait = prev })
}

// A hub that stops answering in the middle of a tail (here its backend's reads hang after
// the first message was printed) is named once no pull has been answered for the pull wait
// and silenceNotice, instead of when the pull times out (35 s); then tail says that it
// answered, and goes on.
func TestCLITailNoticeMidway(t *testing.T) {
	// A hub that answers in 200 ms is well within the 1.2 s, also on a loaded machine, so
	// the silence is named once.
	shortSilence(t, time.Second)
	shortTailPullWait(t, 200*time.Millisecond)
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &stallFetchStore{Store: mem}
	addr := startHubOn(t, &core.Backend{Storage: store, Index: mem})
	if code, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "s", "a"); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	tail := runBuffered(ctx, strings.NewReader(""), "tail", "-hub", addr, "s")
	from := tail.printed(t, "0\ta\n")
	release := store.stall()
	defer release()
	notice := "sluice tail: hub " + addr + " has not answered for 1.2s, though it answers a pull within 200ms also when there is no new message (tail keeps waiting)\n"
	tail.wrote(t, from, notice)
	release()
	answered := "sluice tail: hub " + addr + " answered after "
	tail.wrote(t, from, answered)
	if code, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "s", "b"); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	tail.printed(t, "0\ta\n1\tb\n")
	cancel()
	if code := <-tail.done; code != 130 {
		t.Errorf("tail, interrupted: exit %d, want 130\n%s", code, tail.err.String())
	}
	errs := tail.err.String()[from:]
	if n := strings.Count(errs, notice); n != 1 {
		t.Errorf("tail named the silent hub %d times, want once:\n%s", n, errs)
	}
	if i, j := strings.Index(errs, notice), strings.Index(errs, answered); j < i {
		t.Errorf("tail said that the hub answered before naming its silence:\n%s", errs)
	}
}

// A hub that answers every pull, also with no new message, is never named, however long
// tail waits for the next message: each answer starts the count again.
func TestCLITailNoNoticeWhileHubAnswers(t *testing.T) {
	shortSilence(t, time.Second)
	shortTailPullWait(t, 100*time.Millisecond)
	addr := startHubWith(t)
	if code, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "s", "a"); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	// 3 s: more than twice the pull wait and silenceNotice, 1.1 s.
	if errs := tailIdle(t, addr, 3*time.Second); strings.Contains(errs, "has not answered") {
		t.Errorf("tail of an idle stream on a hub that answers its pulls names the hub:\n%s", errs)
	}
}

// The time tail spends on its own work (writing to a slow standard output) is no silence of
// the hub: the count starts again when the work ends, and the silence is named once.
func TestAnswerWatchNotWhileBusy(t *testing.T) {
	var out hubtest.LogBuffer
	h := &hubWatch{cmd: "tail", addr: "127.0.0.1:4000", w: &out}
	const limit = 200 * time.Millisecond
	a := h.watchAnswers(limit, func() string { return "silent" })
	defer a.stop()
	a.begin()
	time.Sleep(3 * limit)
	if got := out.String(); got != "" {
		t.Fatalf("printed %q while the command was busy", got)
	}
	ended := time.Now()
	a.end()
	waitFor(t, &out, "sluice tail: silent\n")
	if d := time.Since(ended); d < limit {
		t.Errorf("named the silence %v after the work ended, want at least %v", d, limit)
	}
	time.Sleep(3 * limit)
	if got := out.String(); got != "sluice tail: silent\n" {
		t.Errorf("printed %q, want the silence named once", got)
	}
	a.answered()
	if got := out.String(); !strings.HasPrefix(got, "sluice tail: silent\nsluice tail: hub 127.0.0.1:4000 answered after ") {
		t.Errorf("printed %q, want the answer after the silence", got)
	}
	a.stop()
	a.answered() // after stop: says that it answered, never that it is silent
	before := out.String()
	time.Sleep(3 * limit)
	if got := out.String(); got != before {
		t.Errorf("printed %q after stop", got[len(before):])
	}
}

// wrote waits until the command has written want to standard error after its first from
// bytes.
func (b *buffered) wrote(t *testing.T, from int, want string) {
	t.Helper()
	waitFor(t, b.err, want, from)
}

// waitFor waits until w's text, after its first from bytes (0 if omitted), contains want.
func waitFor(t *testing.T, w *hubtest.LogBuffer, want string, from ...int) {
	t.Helper()
	skip := 0
	if len(from) > 0 {
		skip = from[0]
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(w.String()[skip:], want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%q not written after 30s:\n%s", want, w.String())
		}
	}
}

// stallFetchStore is a memory store whose Fetch hangs, once stall was called, until the
// release that stall returned is called.
type stallFetchStore struct {
	*memory.Store
	mu      sync.Mutex
	stalled chan struct{} // closed by release; nil: not stalled
}

func (s *stallFetchStore) stall() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.stalled = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.stalled = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

func (s *stallFetchStore) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	s.mu.Lock()
	ch := s.stalled
	s.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Fetch(ctx, stream, partition, from, limit)
}
