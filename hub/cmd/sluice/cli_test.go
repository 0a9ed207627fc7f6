package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cliBinary builds the sluice binary into a temporary directory of t.
func cliBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// cliHub is a running "sluice hub" process.
type cliHub struct {
	bin    string
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
	done   chan error
}

// cliStartHub starts "sluice hub" on a free port with its data in dir and waits until it
// prints its address.
func cliStartHub(t *testing.T, bin, dir string, extra ...string) *cliHub {
	t.Helper()
	args := append([]string{"hub", "-listen", "127.0.0.1:0", "-backend", "bbolt:" + filepath.Join(dir, "data")}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &cliHub{bin: bin, cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: h.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-h.done
		}
	})
	lines := make(chan string, 1)
	go func() { // ends when the hub's stdout closes (the process exits)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		h.done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		const prefix = "sluice hub listening on "
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("hub printed %q, want %q...", line, prefix)
		}
		h.addr = strings.Fields(strings.TrimPrefix(line, prefix))[0]
	case err := <-h.done:
		t.Fatalf("hub exited before listening: %v\n%s", err, h.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("hub did not start within 30s\n%s", h.stderr)
	}
	return h
}

// stop sends sig and returns the process's exit error.
func (h *cliHub) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := h.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("hub did not exit within 30s of %v\n%s", sig, h.stderr)
		return nil
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// cliRun runs a client command against the hub and returns its stdout.
func cliRun(t *testing.T, h *cliHub, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = append(os.Environ(), "SLUICE_HUB="+h.addr)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sluice %s: %v\nstderr: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func TestCLIPushPull(t *testing.T) {
	bin := cliBinary(t)
	dir := t.TempDir()
	h := cliStartHub(t, bin, dir)

	if got := cliRun(t, h, "", "create", "-partitions", "2", "parts"); got != "stream parts: 2 partition(s)\n" {
		t.Errorf("create printed %q", got)
	}
	// As in the README: messages as arguments, then as stdin lines.
	if got := cliRun(t, h, "", "push", "orders", "first order", "second order"); got != "0\n1\n" {
		t.Fatalf("push printed %q, want indexes 0 and 1", got)
	}
	if got := cliRun(t, h, "third\nfourth\n", "push", "orders"); got != "2\n3\n" {
		t.Fatalf("push from stdin printed %q, want indexes 2 and 3", got)
	}
	want := "0\tfirst order\n1\tsecond order\n2\tthird\n3\tfourth\n"
	if got := cliRun(t, h, "", "pull", "orders"); got != want {
		t.Fatalf("pull printed %q, want %q", got, want)
	}
	if got := cliRun(t, h, "", "pull", "-from", "2", "-raw", "orders"); got != "third\nfourth\n" {
		t.Fatalf("pull -from 2 -raw printed %q", got)
	}
	// A client id resumes where it stopped.
	if got := cliRun(t, h, "", "pull", "-client-id", "billing", "-max", "3", "-raw", "orders"); got != "first order\nsecond order\nthird\n" {
		t.Fatalf("first pull with a client id printed %q", got)
	}
	if got := cliRun(t, h, "", "pull", "-client-id", "billing", "-json", "orders"); got != `{"index":3,"data":"fourth"}`+"\n" {
		t.Fatalf("second pull with a client id printed %q", got)
	}

	// tail follows: a message pushed after it started is printed, and Ctrl-C ends it,
	// saying so, with exit status 130.
	cliTail(t, h)

	// SIGTERM: a clean, graceful exit.
	if err := h.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("hub exit after SIGTERM: %v\n%s", err, h.stderr)
	}
	if !strings.Contains(h.stderr.String(), "hub stopped") {
		t.Errorf("hub log has no \"hub stopped\" line:\n%s", h.stderr)
	}

	// The data survives a restart on the same directory.
	h2 := cliStartHub(t, bin, dir)
	if got := cliRun(t, h2, "", "pull", "-from", "3", "-raw", "orders"); got != "fourth\n" {
		t.Fatalf("pull after restart printed %q", got)
	}
	if err := h2.stop(t, os.Interrupt); err != nil {
		t.Fatalf("hub exit after SIGINT: %v\n%s", err, h2.stderr)
	}
}

func TestCLIUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // expected in stdout+stderr
	}{
		{nil, 2, "commands:"},
		{[]string{"help"}, 0, "tail"},
		{[]string{"help", "push"}, 0, "Examples:"},
		{[]string{"push", "-help"}, 0, "Examples:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"help", "help"}, 0, "commands:"},
		{[]string{"help", "-version"}, 0, "usage: sluice version"},
		{[]string{"push"}, 2, "missing stream name"},
		{[]string{"pull", "bad name"}, 2, "stream name"},
		{[]string{"hub", "-log-level", "loud"}, 2, "-log-level"},
		{[]string{"hub", "extra"}, 2, "unexpected arguments"},
		{[]string{"hub", "-backend", "nosuch://x"}, 2, "unknown backend"},
		{[]string{"create", "-partitions", "0", "x"}, 2, "partition count"},
	} {
		var out bytes.Buffer
		code := run(context.Background(), tc.args, &stdio{in: strings.NewReader(""), out: &out, err: &out})
		if code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("sluice %q: exit %d, output %q; want exit %d and %q", tc.args, code, out.String(), tc.code, tc.out)
		}
	}
}

// cliTail creates a stream, starts "sluice tail" on it, pushes a message and waits for tail
// to print it (a long-poll wake-up, not a poll), then interrupts tail.
func cliTail(t *testing.T, h *cliHub) {
	t.Helper()
	cliRun(t, h, "", "create", "events") // tail does not create streams
	cmd := exec.Command(h.bin, "tail", "-client-id", "watcher", "-raw", "events")
	cmd.Env = append(os.Environ(), "SLUICE_HUB="+h.addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &lockedWriter{w: &errb}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 10)
	exited := make(chan error, 1)
	go func() { // ends when tail's stdout closes
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	for i, msg := range []string{"one", "two"} {
		cliRun(t, h, "", "push", "events", msg)
		select {
		case got := <-lines:
			if got != msg {
				t.Fatalf("tail line %d = %q, want %q", i, got, msg)
			}
		case err := <-exited:
			t.Fatalf("tail exited: %v\n%s", err, errb.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("tail did not print %q within 30s\n%s", msg, errb.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted || !strings.Contains(errb.String(), "sluice tail: interrupted after 2 message(s)") {
			t.Fatalf("tail exit after SIGINT: %v; want exit status 130, saying it was interrupted after 2 messages\n%s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail did not exit within 30s of SIGINT")
	}
	// Its position was saved: a pull with the same client id has nothing left.
	if got := cliRun(t, h, "", "pull", "-client-id", "watcher", "-idle", "200ms", "events"); got != "" {
		t.Fatalf("pull after tail with the same client id printed %q, want nothing", got)
	}
}
