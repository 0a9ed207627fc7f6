package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// startHubWith starts an in-process hub with opts on a memory backend and returns its
// address.
func startHubWith(t *testing.T, opts ...hub.Option) string {
	t.Helper()
	b, err := core.Open(t.Context(), "memory://")
	if err != nil {
		t.Fatal(err)
	}
	return startHubOn(t, b, opts...)
}

// startHubOn starts an in-process hub with opts on b, which it closes at the end of the
// test, and returns its address.
func startHubOn(t *testing.T, b *core.Backend, opts ...hub.Option) string {
	t.Helper()
	h, err := hub.New(b, append([]hub.Option{hub.WithLogger(discard)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		_ = b.Close()
	})
	return a.String()
}

// quietStdin is standard input that yields first, then stays quiet, like a terminal or a
// pipe from a program that waits, until the test writes more or ends.
func quietStdin(t *testing.T, first string) (io.Reader, *io.PipeWriter) {
	pr, pw := io.Pipe()
	go func() { _, _ = pw.Write([]byte(first)) }()
	t.Cleanup(func() { pw.Close() })
	return pr, pw
}

// cmdResult is the outcome of a command run by runAsync.
type cmdResult struct {
	code     int
	out, err string
}

// runAsync runs "sluice args..." in-process with stdin in and returns its result once it
// exits.
func runAsync(ctx context.Context, in io.Reader, args ...string) <-chan cmdResult {
	done := make(chan cmdResult, 1)
	go func() { // ends when the command returns
		var out, errb bytes.Buffer
		code := run(ctx, args, &stdio{in: in, out: &out, err: &errb})
		done <- cmdResult{code, out.String(), errb.String()}
	}()
	return done
}

// Ctrl-C (ctx cancelled) stops push at once while standard input is quiet, and a line that
// arrives afterwards is not pushed.
func TestPushInterruptWhileStdinQuiet(t *testing.T) {
	addr := startHubWith(t)
	in, w := quietStdin(t, "a\n")
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, in, "push", "-hub", addr, "s")
	// Wait until "a" is stored, then interrupt.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if code, out, _ := runIO(t.Context(), "", "pull", "-hub", addr, "-raw", "-idle", "50ms", "s"); code == 0 && out == "a\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(`"a" was not stored within 30s`)
		}
	}
	cancel()
	var r cmdResult
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("push still running 10s after the interrupt: it waits for the next line of standard input")
	}
	if r.code != exitInterrupted || r.out != "0\n" || !strings.HasPrefix(r.err, "sluice push: interrupted\n") || !strings.Contains(r.err, "1 of 1 line(s) confirmed") ||
		!strings.Contains(r.err, "line 2 and the rest of standard input were not pushed") {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 130, index 0, interrupted, 1 of 1 confirmed, line 2 not pushed", r.code, r.out, r.err)
	}
	go func() { _, _ = w.Write([]byte("late\n")) }() // a reader left must drop it; ends at cleanup
	time.Sleep(200 * time.Millisecond)
	if out := mustRun(t, "", "pull", "-hub", addr, "-raw", "-idle", "200ms", "s"); out != "a\n" {
		t.Errorf("stream holds %q, want only \"a\"", out)
	}
}

// -timeout stops a push whose hub stopped confirming while standard input is quiet: the
// lines read are waiting for a confirm, not for input.
func TestPushTimeoutWhileStdinQuiet(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens
	in, _ := quietStdin(t, "a\n")
	done := runAsync(t.Context(), in, "push", "-hub", addr, "-timeout", "1s", "s")
	select {
	case r := <-done:
		if r.code != 1 || !strings.Contains(r.err, "the hub confirmed nothing for -timeout 1s") {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and the timeout", r.code, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("push -timeout 1s still running after 20s: it waits for the next line of standard input")
	}
}

// -timeout bounds the time without a confirm, not the whole push: a push that keeps being
// confirmed, or that waits for its input, runs as long as its input (sluice push logs <
// app.log, or tail -f app.log | sluice push logs).
func TestPushTimeoutIsWithoutProgress(t *testing.T) {
	addr := startHubWith(t)
	pr, pw := io.Pipe()
	defer pr.Close() // ends the feeder if push stops reading
	done := runAsync(t.Context(), pr, "push", "-hub", addr, "-timeout", "1s", "s")
	var want strings.Builder
	fed := make(chan error, 1)
	go func() { // ends after 20 lines, or when pr is closed
		for i := range 20 { // about 3s of lines, each confirmed at once
			if _, err := fmt.Fprintf(pw, "line %d\n", i); err != nil {
				fed <- err
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
		fed <- nil
	}()
	for i := range 20 {
		fmt.Fprintf(&want, "%d\n", i)
	}
	select {
	case r := <-done:
		t.Fatalf("push exited %d while its input kept coming:\n%s", r.code, r.err)
	case err := <-fed:
		if err != nil {
			t.Fatal(err)
		}
	}
	select { // quiet input, nothing waiting for a confirm: no timeout
	case r := <-done:
		t.Fatalf("push exited %d while its input was quiet:\n%s", r.code, r.err)
	case <-time.After(2500 * time.Millisecond):
	}
	pw.Close()
	select {
	case r := <-done:
		if r.code != 0 || r.out != want.String() {
			t.Errorf("exit %d, stdout %q; want 0 and the 20 indexes\nstderr: %s", r.code, r.out, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("push did not exit within 30s of the end of its input")
	}
}

// A message the hub refuses (over its -max-message-size) fails push after a few attempts,
// saying so, instead of being retried until -timeout while its neighbours are stored again
// and again.
func TestPushRefusedMessageFailsFast(t *testing.T) {
	addr := startHubWith(t, hub.WithMaxMessageSize(100))
	mustRun(t, "", "create", "-hub", addr, "s")
	// A push that retried the refused message until its -timeout of an hour would be
	// interrupted by this guard instead (exit 130, "interrupted"), and fail the checks below.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	code, out, errs := runIO(ctx, "", "push", "-hub", addr, "-timeout", "1h", "s", "ok", strings.Repeat("q", 200), "after")
	if code != 1 || strings.Count(out, "\n") != 1 {
		t.Errorf("exit %d, stdout %q; want 1 and the index of message 1", code, out)
	}
	// Message 3 was in flight with message 2: it is confirmed late.
	for _, want := range []string{"the hub refused message 2 (200 bytes) every time", "-max-message-size", "(message 1: its index is printed)", "1 refused (not stored)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "-timeout") || strings.Contains(errs, "retrying") {
		t.Errorf("stderr blames the timeout or warns of retries:\n%s", errs)
	}
	// A refusal ends no session: only the refused message is sent again, so its neighbours
	// are each stored once ("after" may be stored or not, as push gives up).
	got := mustRun(t, "", "pull", "-hub", addr, "-raw", "-idle", "200ms", "s")
	if n, m := strings.Count(got, "ok\n"), strings.Count(got, "after\n"); n != 1 || m > 1 || strings.Contains(got, "q") {
		t.Errorf("stream holds %q: \"ok\" %d times, \"after\" %d times; want \"ok\" once, \"after\" at most once, and no refused message", got, n, m)
	}
}

// With -quiet nothing is printed, so the summary does not say that indexes are; one
// message is "message 1", not "messages 1-1".
func TestPushQuietSummary(t *testing.T) {
	addr := startHubWith(t, hub.WithMaxMessageSize(100))
	_, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "-quiet", "s", "ok", strings.Repeat("q", 200))
	if out != "" || strings.Contains(errs, "printed") || !strings.Contains(errs, "1 of 2 message(s) confirmed (message 1)") {
		t.Errorf("push -quiet printed %q and says:\n%s", out, errs)
	}
	_, out, errs = runIO(t.Context(), "", "push", "-hub", addr, "t", "a", "b", strings.Repeat("q", 200))
	if strings.Count(out, "\n") != 2 || !strings.Contains(errs, "2 of 3 message(s) confirmed (messages 1-2: their indexes are printed)") {
		t.Errorf("push printed %q and says:\n%s", out, errs)
	}
}

// A hub at its connection limit closes new connections before answering: the commands say
// so, and name the flag that raises the limit, instead of "lost the connection".
func TestCommandsAtHubConnectionLimit(t *testing.T) {
	addr := startHubWith(t, hub.WithMaxConnections(1))
	// The first connection (no other came before it, so none can still hold the slot while
	// the hub notices it closed) creates the stream and holds the only slot.
	holder := hubtest.Dial(t, addr)
	holder.Create("s")
	for _, args := range [][]string{
		{"create", "-hub", addr, "t"},
		{"push", "-hub", addr, "-timeout", "5s", "s", "m"},
		{"pull", "-hub", addr, "-idle", "200ms", "s"},
	} {
		code, _, errs := runIO(t.Context(), "", args...)
		if code == 0 || !strings.Contains(errs, "connection limit") || !strings.Contains(errs, "-max-connections") {
			t.Errorf("sluice %s at the hub's connection limit: exit %d, stderr:\n%s\nwant a failure that names the connection limit and -max-connections", args[0], code, errs)
		}
	}
}

// push's summary says exactly which messages were confirmed, which may or may not have been
// stored and which were not sent.
func TestPushResultErr(t *testing.T) {
	failed := errors.New("boom")
	interrupted, cancel := context.WithCancel(t.Context())
	cancel()
	stalled, stall := context.WithCancelCause(t.Context())
	stall(errStalled)
	timedOut := fmt.Errorf("client: create stream \"s\": %w after 30s", client.ErrTimeout)
	late := make([]lateConfirm, 25)
	for i := range late {
		late[i] = lateConfirm{n: i + 3, index: uint64(i + 10)}
	}
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		r        pushResult
		complete bool
		cause    error
		want     []string
		not      []string
	}{{
		name: "arguments not sent",
		ctx:  t.Context(),
		r:    pushResult{args: 4, input: "message", published: 2, confirmed: 1, ackErr: failed, failedN: 2, sent: 2},
		want: []string{"boom", "1 of 2 message(s) confirmed (message 1: its index is printed)", "the other 1 may or may not have been stored", "messages 3-4 were not sent"},
		not:  []string{"nothing was sent"},
	}, {
		name: "last argument not sent",
		ctx:  t.Context(),
		r:    pushResult{args: 3, input: "message", published: 2, confirmed: 1, ackErr: failed, failedN: 2, sent: 1},
		want: []string{"the other 1 may or may not have been stored", "; message 3 was not sent"},
		not:  []string{"nothing was sent"},
	}, {
		name:     "all of standard input read, the last line failed",
		ctx:      t.Context(),
		r:        pushResult{input: "line", published: 2, confirmed: 1, ackErr: failed, failedN: 2, sent: 2},
		complete: true,
		want:     []string{"1 of 2 line(s) confirmed"},
		not:      []string{"not pushed", "not sent"},
	}, {
		name:  "interrupted with every line confirmed",
		ctx:   interrupted,
		r:     pushResult{hubAddr: "127.0.0.1:1", input: "line", published: 1, confirmed: 1, sent: 1},
		cause: core.ErrUnavailable,
		want:  []string{"interrupted", "1 of 1 line(s) confirmed", "line 2 and the rest of standard input were not pushed"},
		not:   []string{"last error", "may or may not"},
	}, {
		// The stall and the stream creation's request timeout end at about the same time
		// with the default -timeout: whichever comes first, nothing was answered.
		name:  "stalled without an answer, the creation timed out",
		ctx:   stalled,
		r:     pushResult{hubAddr: "127.0.0.1:1", timeout: 30 * time.Second, args: 1, input: "message", published: 1},
		cause: timedOut,
		want:  []string{"the hub confirmed nothing for -timeout 30s", "127.0.0.1:1 accepted the connection but answered nothing: is it a sluice hub?", "nothing was sent"},
		not:   []string{"last error"},
	}, {
		name: "stalled without an answer, no session failed",
		ctx:  stalled,
		r:    pushResult{hubAddr: "127.0.0.1:1", timeout: 30 * time.Second, args: 1, input: "message", published: 1},
		want: []string{"127.0.0.1:1 accepted the connection but answered nothing: is it a sluice hub?"},
		not:  []string{"last error"},
	}, {
		name:  "stalled after messages were sent",
		ctx:   stalled,
		r:     pushResult{hubAddr: "127.0.0.1:1", timeout: 30 * time.Second, args: 1, input: "message", published: 1, sent: 1},
		cause: timedOut,
		want:  []string{"last error: hub 127.0.0.1:1 does not answer", "may or may not have been stored"},
		not:   []string{"answered nothing"},
	}, {
		name: "confirmed after an earlier one failed",
		ctx:  t.Context(),
		r:    pushResult{args: 27, input: "message", published: 27, confirmed: 26, ackErr: failed, failedN: 2, late: late, sent: 27},
		want: []string{"26 of 27 message(s) confirmed (message 1: its index is printed); confirmed after an earlier one failed: message 3 (index 10)",
			"message 22 (index 29) and 5 more"},
		not: []string{"message 23 (index 30)", "not sent"},
	}} {
		err := tc.r.err(tc.ctx, nil, tc.complete, tc.cause)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q:\n%v", tc.name, w, err)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(err.Error(), w) {
				t.Errorf("%s: error says %q:\n%v", tc.name, w, err)
			}
		}
	}
}

// lineReader measures a line over the limit exactly, wherever its "\r\n" falls among the
// chunks it reads (its buffer holds 16 bytes for a limit of 14).
func TestLineReaderTooLong(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{strings.Repeat("x", 15) + "\r\n", "line 1 is 15 bytes"},
		{strings.Repeat("x", 31) + "\r\n", "line 1 is 31 bytes"}, // "\r" ends the second chunk
		{strings.Repeat("x", 40) + "\r\n", "line 1 is 40 bytes"},
		{strings.Repeat("x", 40) + "\n", "line 1 is 40 bytes"},
		{strings.Repeat("x", 40), "line 1 is 40 bytes"},
		{"ab\r\n" + strings.Repeat("y", 14) + "\n" + strings.Repeat("z", 15) + "\n", "line 3 is 15 bytes"},
	} {
		lr := newLineReader(strings.NewReader(tc.in), 14)
		var err error
		for err == nil {
			var line []byte
			line, err = lr.next()
			if err == nil && len(line) > 14 {
				t.Errorf("%q: a line of %d bytes passed the limit of 14", tc.in, len(line))
			}
		}
		if err == io.EOF || !strings.Contains(err.Error(), tc.want+", the limit is 14") {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

// A line the hub refuses stops push at once, also while standard input stays open: push
// stops reading its input at the first failure ("sluice push -help").
func TestPushRefusedLineStopsReading(t *testing.T) {
	addr := startHubWith(t, hub.WithMaxMessageSize(100))
	in, _ := quietStdin(t, "ok\n"+strings.Repeat("q", 200)+"\n")
	done := runAsync(t.Context(), in, "push", "-hub", addr, "s")
	select {
	case r := <-done:
		if r.code != 1 || r.out != "0\n" || !strings.Contains(r.err, "the hub refused line 2 (200 bytes)") ||
			!strings.Contains(r.err, "line 3 and the rest of standard input were not pushed") {
			t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, index 0, line 2 refused, line 3 not pushed", r.code, r.out, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("push still running 30s after the hub refused a line: it waits for more input")
	}
}

// noCreate is a backend whose broker refuses to create streams.
type noCreate struct{ core.Storage }

func (noCreate) CreateStream(context.Context, string, int) (int, error) {
	return 0, fmt.Errorf("%w: the broker refused to create the topic", core.ErrUnavailable)
}

// A hub that is reached but will not create the stream is no refused message: push warns on
// stderr while it retries and ends saying why, not that it never reached the hub.
func TestPushStreamNotCreated(t *testing.T) {
	b, err := core.Open(t.Context(), "memory://")
	if err != nil {
		t.Fatal(err)
	}
	addr := startHubOn(t, &core.Backend{Storage: noCreate{b.Storage}, Index: b.Index})
	code, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "-timeout", "2s", "s", "m")
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing printed", code, out)
	}
	const why = "the broker refused to create the topic"
	if strings.Count(errs, why) < 2 { // the warning while retrying, and the final error
		t.Errorf("stderr says %d times why (%q), want the warning and the error:\n%s", strings.Count(errs, why), why, errs)
	}
	if strings.Contains(errs, "never reached the hub") {
		t.Errorf("stderr says push never reached the hub, which answered:\n%s", errs)
	}
}

// A -window push cannot hold in memory is a usage error, not a crash ("makechan: size out
// of range") or a run out of memory.
func TestPushWindowTooLarge(t *testing.T) {
	addr := startHubWith(t)
	for _, w := range []string{strconv.Itoa(math.MaxInt), strconv.Itoa(maxPushWindow + 1)} {
		wantRun(t, 2, []string{"-window " + w + ": want 1 to " + strconv.Itoa(maxPushWindow)}, "", "push", "-hub", addr, "-window", w, "s", "x")
	}
	if out := mustRun(t, "", "push", "-hub", addr, "-window", strconv.Itoa(maxPushWindow), "s", "x"); out != "0\n" {
		t.Errorf("push -window %d printed %q, want index 0", maxPushWindow, out)
	}
}
