package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// TestMain lets the test binary act as device B's process: the demo starts B by running
// its own executable again with -device b (see deviceMain).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == deviceFlag {
		if kind := os.Getenv(tamperEnv); kind != "" {
			os.Exit(tamperedDevice(kind, os.Args[1:]))
		}
		os.Exit(deviceMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestDemo runs the demo's whole story (both handshake patterns, with periodic resets of
// A's link on top of the one in the middle of A's sending) and checks what it reports:
// every message received once and in order, duplicates dropped, no plaintext in the hub's
// file.
func TestDemo(t *testing.T) {
	for _, ik := range []bool{false, true} {
		t.Run(patternName(ik), func(t *testing.T) {
			cfg := defaultConfig()
			cfg.Messages = 12
			cfg.Interval = 5 * time.Millisecond
			cfg.ResetEvery = 40 * time.Millisecond
			cfg.Duplicates = 2
			cfg.IK = ik
			runDemo(t, cfg)
		})
	}
}

// TestDemoEveryCiphertextTwice stores every ciphertext twice, with IK the first one too: it
// travels inside handshake message 1, and B's channel drops the repeated message 1 as a
// duplicate like the others.
func TestDemoEveryCiphertextTwice(t *testing.T) {
	for _, ik := range []bool{false, true} {
		t.Run(patternName(ik), func(t *testing.T) {
			cfg := defaultConfig()
			cfg.Messages = 8
			cfg.Interval = 5 * time.Millisecond
			cfg.Duplicates = cfg.Messages
			cfg.IK = ik
			res, out := runDemo(t, cfg)
			if res.DuplicatesDropped < uint64(cfg.Duplicates) {
				t.Fatalf("B dropped %d duplicate(s), the demo stored %d ciphertexts twice\n%s", res.DuplicatesDropped, cfg.Duplicates, out)
			}
		})
	}
}

// TestDemoDefault runs the demo as `go run ./examples/e2e-messaging` (and `make run`) does,
// only in a directory of the test's, and checks that its flaky link fails where it matters:
// A's connection is reset while some of A's messages are in flight, stored by the hub but not
// confirmed, so A's publisher sends them again, the hub stores them twice, and B still
// receives every message once, in order.
func TestDemoDefault(t *testing.T) {
	for _, ik := range []bool{false, true} {
		t.Run(patternName(ik), func(t *testing.T) {
			cfg := defaultConfig()
			cfg.IK = ik
			res, out := runDemo(t, cfg)
			if res.ProxyResets == 0 || res.InFlightAtReset == 0 || res.Resent == 0 {
				t.Fatalf("A's link was reset %d time(s), with %d of A's messages in flight, and A resent %d: want a reset while messages are in flight, and them resent\n%s",
					res.ProxyResets, res.InFlightAtReset, res.Resent, out)
			}
			if res.Resent < res.InFlightAtReset {
				t.Fatalf("A resent %d message(s), %d were in flight at the reset", res.Resent, res.InFlightAtReset)
			}
			if res.StoredUnconfirmed == 0 || res.DuplicatesDropped < res.StoredUnconfirmed+uint64(cfg.Duplicates) {
				t.Fatalf("%d of A's messages stored and unconfirmed at the reset, %d duplicates dropped by B (%d stored twice by the demo): want the resends stored twice and dropped\n%s",
					res.StoredUnconfirmed, res.DuplicatesDropped, cfg.Duplicates, out)
			}
			if !strings.Contains(out, "of them stored but unconfirmed") {
				t.Fatalf("the account does not tell of the reset with messages in flight:\n%s", out)
			}
		})
	}
}

func patternName(ik bool) string { return map[bool]string{false: "XX", true: "IK"}[ik] }

// runDemo runs the demo with cfg in a temporary directory and checks what every run must
// show. It returns the result and the account the demo printed.
func runDemo(t *testing.T, cfg config) (*result, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	cfg.Dir = t.TempDir()
	cfg.Out = &out
	res, err := run(ctx, cfg)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	if len(res.Received) != cfg.Messages {
		t.Fatalf("B received %d messages, want %d", len(res.Received), cfg.Messages)
	}
	if want := uint64(cfg.Duplicates) + res.StoredUnconfirmed; res.DuplicatesDropped < want {
		t.Fatalf("%d duplicates dropped, want >= %d", res.DuplicatesDropped, want)
	}
	if res.MarkerFound != 0 || res.HubFileBytes == 0 {
		t.Fatalf("hub file scan: %d bytes, marker found %d times", res.HubFileBytes, res.MarkerFound)
	}
	if res.ResumedAt == 0 {
		t.Fatal("B resumed at index 0: its saved index was lost")
	}
	if len(res.BProcesses) != 2 || res.BProcesses[0] == res.BProcesses[1] || res.BProcesses[0] == os.Getpid() || res.BProcesses[1] == os.Getpid() {
		t.Fatalf("B's processes %v (this one %d): want two separate ones", res.BProcesses, os.Getpid())
	}
	if len(res.Receipts) != 1 {
		t.Fatalf("A received %d receipts, want 1", len(res.Receipts))
	}
	for _, want := range []string{"Proved", "exactly once", "occurs 0 times", "B's process started again", "restored its secure channel"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the account lacks %q:\n%s", want, out.String())
		}
	}
	return res, out.String()
}

func TestStallRange(t *testing.T) {
	for _, c := range []struct {
		from, last, n int
		first, end    int
		ok            bool
	}{
		{1, 25, 3, 12, 14, true}, // the default: halfway through
		{2, 25, 3, 13, 15, true}, // -ik: message 1 travels in the handshake
		{1, 12, 3, 6, 8, true},
		{1, 3, 3, 2, 3, true}, // fewer messages: fewer in flight, after one that is not
		{1, 2, 3, 2, 2, true},
		{1, 1, 3, 0, 0, false}, // one message: nothing sent before the stall
		{2, 1, 3, 0, 0, false}, // -ik -messages 1: A sends nothing after the handshake
		{1, 25, 0, 0, 0, false},
	} {
		first, end, ok := stallRange(c.from, c.last, c.n)
		if first != c.first || end != c.end || ok != c.ok {
			t.Errorf("stallRange(%d, %d, %d) = %d, %d, %v; want %d, %d, %v", c.from, c.last, c.n, first, end, ok, c.first, c.end, c.ok)
		}
	}
}

func TestDemoRejectsBadConfig(t *testing.T) {
	cfg := defaultConfig()
	cfg.Duplicates = cfg.Messages + 1
	if _, err := run(context.Background(), cfg); err == nil {
		t.Fatal("run accepted more duplicates than messages")
	}
	cfg = defaultConfig()
	cfg.ResetInFlight = -1
	if _, err := run(context.Background(), cfg); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("run with -reset-inflight -1: %v, want ErrInvalidOption", err)
	}
}

// tamperEnv names the environment variable that makes device B's process (this test
// binary, see TestMain) misbehave in one way, "phase:what", so that a test can check that
// the demo's own checks catch it.
const tamperEnv = "SLUICE_E2E_TAMPER"

// argValue returns the value of flag name in args ("" if absent).
func argValue(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// tamperedDevice runs device B's process as deviceMain does, then breaks what kind says
// (when kind's phase is this process's phase, or "any") in its report or its files.
func tamperedDevice(kind string, args []string) int {
	phase, what, _ := strings.Cut(kind, ":")
	if phase != "any" && phase != argValue(args, "-phase") {
		return deviceMain(args, os.Stdout, os.Stderr)
	}
	if what == "receipt" {
		args = slices.Clone(args)
		i := slices.Index(args, "-receipt")
		args[i+1] += " (forged)"
		return deviceMain(args, os.Stdout, os.Stderr)
	}
	var out bytes.Buffer
	if code := deviceMain(args, &out, os.Stderr); code != 0 {
		return code
	}
	var rep deviceReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		fmt.Fprintln(os.Stderr, "tamper:", err)
		return 1
	}
	switch what {
	case "reorder":
		rep.Received[0], rep.Received[1] = rep.Received[1], rep.Received[0]
	case "duplicate":
		rep.Received = append(rep.Received, rep.Received[len(rep.Received)-1])
	case "drop":
		rep.Received = rep.Received[:len(rep.Received)-1]
	case "received-none":
		rep.Received = nil
	case "duplicates":
		rep.Duplicates = 0
	case "pulled":
		rep.Pulled++
	case "peer":
		rep.Peer = ""
	case "pid-parent":
		rep.PID = os.Getppid()
	case "pid-same":
		rep.PID = 1
	case "saved-index":
		rep.SavedIndex++
	case "session-mode":
		if err := os.Chmod(sessionFile(argValue(args, "-dir"), "b"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "tamper:", err)
			return 1
		}
	case "plaintext":
		// Store the receipt, plaintext and so with the marker, on the hub.
		if err := pushPlaintext(argValue(args, "-hub"), "leak", argValue(args, "-receipt")); err != nil {
			fmt.Fprintln(os.Stderr, "tamper:", err)
			return 1
		}
	default:
		fmt.Fprintf(os.Stderr, "tamper: unknown %q\n", kind)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 1
	}
	return 0
}

// pushPlaintext stores text on the hub at hubAddr, in stream, as it is.
func pushPlaintext(hubAddr, stream, text string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := client.Dial(hubAddr, clientOptions...)
	if err != nil {
		return err
	}
	defer cli.Close()
	conn, err := cli.Open(ctx, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.CreateStream(ctx, stream, 1); err != nil {
		return err
	}
	_, err = conn.Push(ctx, stream, 0, [][]byte{[]byte(text)})
	return err
}

// TestDemoChecksFail makes device B's process misbehave in one way at a time and checks
// that the demo's own checks catch it: a demo that cannot fail proves nothing.
func TestDemoChecksFail(t *testing.T) {
	for _, c := range []struct {
		tamper string
		ik     bool
		want   string
	}{
		{"resume:reorder", false, "B's message 1 is"},
		{"resume:duplicate", false, "B received 5 messages, want 4"},
		{"resume:drop", false, "B received 3 messages, want 4"},
		{"first:received-none", true, "B's first process received"},
		{"resume:duplicates", false, "B's channel dropped 0 duplicates"},
		{"resume:pulled", false, "B pulled"},
		{"resume:peer", false, "B's channel is with"},
		{"resume:pid-parent", false, "did not run as a separate process"},
		{"any:pid-same", false, "B's second process is its first"},
		{"first:saved-index", false, "the hub holds index"},
		{"resume:saved-index", false, "after B's second process the hub holds index"},
		{"resume:receipt", false, "want the receipt"},
		{"resume:session-mode", false, "session file has mode"},
		{"resume:plaintext", false, "contains the plaintext marker"},
	} {
		t.Run(strings.ReplaceAll(c.tamper, ":", "_"), func(t *testing.T) {
			t.Setenv(tamperEnv, c.tamper)
			cfg := defaultConfig()
			cfg.Messages = 4
			cfg.Duplicates = 1
			cfg.ResetInFlight = 0
			cfg.Interval = time.Millisecond
			cfg.IK = c.ik
			cfg.Dir = t.TempDir()
			var out bytes.Buffer
			cfg.Out = &out
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := run(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("demo with B's process tampered (%s): error %v, want one containing %q\n%s", c.tamper, err, c.want, out.String())
			}
		})
	}
}

func TestDemoRejectsBadConfigs(t *testing.T) {
	for name, mod := range map[string]func(*config){
		"no messages":        func(c *config) { c.Messages, c.Duplicates = 0, 0 },
		"negative dups":      func(c *config) { c.Duplicates = -1 },
		"negative interval":  func(c *config) { c.Interval = -time.Millisecond },
		"negative reset":     func(c *config) { c.ResetEvery = -time.Millisecond },
		"reset too often":    func(c *config) { c.ResetEvery = minResetEvery - 1 },
		"negative in flight": func(c *config) { c.ResetInFlight = -1 },
		"listen no port":     func(c *config) { c.Listen = "127.0.0.1" },
		"listen bad port":    func(c *config) { c.Listen = "127.0.0.1:99999" },
	} {
		cfg := defaultConfig()
		mod(&cfg)
		if _, err := run(context.Background(), cfg); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("%s: run = %v, want ErrInvalidOption", name, err)
		}
	}
	cfg := defaultConfig()
	cfg.Dir = t.TempDir()
	if err := os.WriteFile(cfg.Dir+string(os.PathSeparator)+"keep", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(context.Background(), cfg); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("run in a directory that is not empty = %v, want ErrInvalidOption", err)
	}
	if _, err := os.Stat(cfg.Dir + string(os.PathSeparator) + "keep"); err != nil {
		t.Errorf("run touched the directory it refused: %v", err)
	}
}

func TestWaitUntilEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitUntil(ctx, "nothing", func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Fatalf("waitUntil after cancel = %v, want context.Canceled", err)
	}
}

// TestFlakyLink checks the link's faults outside the demo: periodic resets happen while it
// does not stall, endStall resets only after a stall, and a stall holds the answers.
func TestFlakyLink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	echo := func(t *testing.T, c net.Conn, msg string) error {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		defer func() { _ = c.SetDeadline(time.Time{}) }()
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if string(got) != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
		return nil
	}

	// open starts a link (closed when t ends) and a connection through it that echoed once.
	open := func(t *testing.T) (*flakyLink, net.Conn) {
		t.Helper()
		l, err := newFlakyLink(ln.Addr().String(), 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.close() })
		c, err := net.Dial("tcp", l.addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := echo(t, c, "a"); err != nil {
			t.Fatal(err)
		}
		return l, c
	}

	t.Run("no stall", func(t *testing.T) {
		l, c := open(t)
		if n := l.endStall(); n != 0 {
			t.Fatalf("endStall without a stall reset %d connection(s)", n)
		}
		if err := echo(t, c, "b"); err != nil {
			t.Fatalf("the connection failed after endStall without a stall: %v", err)
		}
	})
	t.Run("stall", func(t *testing.T) {
		l, c := open(t)
		l.stall()
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.Read(make([]byte, 4)); err == nil {
			t.Fatalf("read %d bytes through a stalled link", n)
		}
		if n := l.endStall(); n != 1 {
			t.Fatalf("endStall reset %d connection(s), want 1", n)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 4)); err == nil {
			t.Fatal("read after endStall succeeded: the held answer was not dropped")
		}
		if l.resets() != 1 {
			t.Fatalf("resets = %d, want 1", l.resets())
		}
	})
	t.Run("periodic", func(t *testing.T) {
		l, err := newFlakyLink(ln.Addr().String(), 5*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer l.close()
		c, err := net.Dial("tcp", l.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The connection dies of a periodic reset.
		for deadline := time.Now().Add(10 * time.Second); ; {
			if time.Now().After(deadline) {
				t.Fatal("no periodic reset within 10s")
			}
			if err := echo(t, c, "x"); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("no periodic reset within 10s: %v", err)
				}
				break
			}
		}
		if l.resets() == 0 {
			t.Fatal("resets = 0 after a periodic reset")
		}
	})
}

// A smaller -messages than the default -duplicates is a valid command line: -duplicates
// then defaults to -messages. A -duplicates given above -messages is still refused.
func TestParseFlagsFewMessages(t *testing.T) {
	for _, n := range []int{1, 2} {
		cfg, err := parseFlags([]string{"-messages", strconv.Itoa(n)}, io.Discard)
		if err != nil {
			t.Fatalf("-messages %d: %v", n, err)
		}
		if cfg.Messages != n || cfg.Duplicates != n {
			t.Errorf("-messages %d: messages %d, duplicates %d; want %d, %d", n, cfg.Messages, cfg.Duplicates, n, n)
		}
	}
	if _, err := parseFlags([]string{"-messages", "2", "-duplicates", "3"}, io.Discard); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("-messages 2 -duplicates 3: %v, want ErrInvalidOption", err)
	}
	if cfg, err := parseFlags(nil, io.Discard); err != nil || cfg != defaultConfig() {
		t.Errorf("no flags: %+v, %v; want the defaults %+v", cfg, err, defaultConfig())
	}
}

// The demo's time limit leaves room for the pauses its flags ask for: -messages 700
// -interval 200ms pauses 140s, beyond a fixed 2 minutes.
func TestDemoTimeoutCoversThePauses(t *testing.T) {
	cfg := defaultConfig()
	if d := demoTimeout(cfg); d < time.Minute {
		t.Errorf("default flags: limit %v, want at least a minute", d)
	}
	cfg.Messages, cfg.Interval = 700, 200*time.Millisecond
	if d, pauses := demoTimeout(cfg), 700*200*time.Millisecond; d < pauses+time.Minute {
		t.Errorf("-messages 700 -interval 200ms: limit %v, want at least a minute beyond the %v of pauses", d, pauses)
	}
	cfg.Messages, cfg.Interval = math.MaxInt, time.Hour // no overflow into a negative limit
	if d := demoTimeout(cfg); d < time.Hour {
		t.Errorf("-messages %d -interval 1h: limit %v", cfg.Messages, d)
	}
}

// A -reset-every too short for A's connections to carry a request and its reply (1ms: A
// never read the receipt, and the demo ran into its time limit) is a bad command line
// naming the flag and its minimum; the minimum itself is accepted.
func TestResetEveryMinimum(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // were it accepted, the run would take minutes
	defer cancel()
	var stderr bytes.Buffer
	if code := demoMain(ctx, []string{"-reset-every", "1ms", "-dir", t.TempDir()}, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "-reset-every 1ms: want 0 (never) or at least "+minResetEvery.String()) {
		t.Errorf("-reset-every 1ms: exit %d, want 2 naming the flag and its minimum\n%s", code, stderr.String())
	}
	if cfg, err := parseFlags([]string{"-reset-every", minResetEvery.String()}, io.Discard); err != nil || cfg.ResetEvery != minResetEvery {
		t.Errorf("-reset-every %v: %+v, %v", minResetEvery, cfg, err)
	}
}

// A -listen that is no [HOST]:PORT is a bad command line (exit 2, naming the flag), not a
// failed check of the demo (it was "FAILED: hub: tcp: listen nonsense: ...", exit 1).
func TestBadListenExit2(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1:99999"} {
		var stderr bytes.Buffer
		code := demoMain(t.Context(), []string{"-listen", addr}, io.Discard, &stderr)
		if code != 2 || strings.Contains(stderr.String(), "FAILED") || !strings.Contains(stderr.String(), fmt.Sprintf("-listen %q: want [HOST]:PORT", addr)) {
			t.Errorf("-listen %s: exit %d, want 2 naming -listen, not FAILED\n%s", addr, code, stderr.String())
		}
	}
}

// TestDirNotEmpty: a -dir that is not empty is a bad command line (exit 2, naming the flag
// and what to do), not a failed check of the demo (it was "FAILED: ... invalid option", exit
// 1); the files in it are left alone.
func TestDirNotEmpty(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := demoMain(t.Context(), []string{"-dir", dir}, io.Discard, &stderr)
	if code != 2 || strings.Contains(stderr.String(), "FAILED") || !strings.Contains(stderr.String(), "-dir "+dir+" is not empty: remove it or choose a new one") {
		t.Errorf("-dir with a file in it: exit %d, want 2 naming -dir and what to do, not FAILED\n%s", code, stderr.String())
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the file in -dir: %v", err)
	}
}

// TestProvedDuplicatesIsALowerBound: the demo checks that B's channel dropped at least the
// duplicates it knows of (its own and A's resends of the messages stored during the stall);
// periodic resets (-reset-every) can store more. The conclusion then must not say that
// exactly that many were stored twice (it said "3+3 ciphertexts were stored twice (8
// dropped ...)").
func TestProvedDuplicatesIsALowerBound(t *testing.T) {
	res := &result{StoredUnconfirmed: 3, Resent: 6, ProxyResets: 21, DuplicatesDropped: 8}
	for _, stall := range []bool{true, false} {
		var b bytes.Buffer
		provedDuplicates(&b, res, 3, stall)
		if !strings.Contains(b.String(), "at least ") || !strings.Contains(b.String(), "(8 dropped by the replay window)") {
			t.Errorf("stall %v: the conclusion claims an exact count of ciphertexts stored twice:\n%s", stall, b.String())
		}
	}
}

// cancelOn is a writer that cancels a context once what was written contains a string.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	when   string
	cancel context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.when) {
		w.cancel()
	}
	return len(p), nil
}

// A demo interrupted (Ctrl-C) says so and exits with status 130, not that it failed: here
// before anything happened, and once B's first process has come and gone (step 4).
func TestDemoInterrupted(t *testing.T) {
	for _, when := range []string{"", " 4. ["} {
		ctx, cancel := context.WithCancel(t.Context())
		stdout := &cancelOn{when: when, cancel: cancel}
		var stderr bytes.Buffer
		code := demoMain(ctx, []string{"-dir", t.TempDir()}, stdout, &stderr)
		cancel()
		if code != exitInterrupted || !strings.Contains(stderr.String(), "interrupted") || strings.Contains(stderr.String(), "FAILED") {
			t.Errorf("demo interrupted at %q: exit %d, want %d saying it was interrupted\nstderr: %s", when, code, exitInterrupted, stderr.String())
		}
	}
}

// Ctrl-C in a terminal interrupts device B's process too, perhaps before the demo's own
// process noticed: its death by SIGINT is an interrupt as well, its other failures are not.
func TestInterruptedByDeviceB(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT between processes on Windows")
	}
	err := exec.Command("sh", "-c", "kill -INT $$").Run()
	if !interrupted(context.Background(), fmt.Errorf("device B's process: %w", err)) {
		t.Errorf("a process that SIGINT ended (%v) is not an interrupt", err)
	}
	err = exec.Command("sh", "-c", "exit 1").Run()
	if err == nil || interrupted(context.Background(), fmt.Errorf("device B's process: %w", err)) {
		t.Errorf("a process that exited with status 1 (%v) is an interrupt", err)
	}
}

// -help states each flag's default once: package flag adds "(default N)" to a usage that
// must not say it again.
func TestHelpStatesEachDefaultOnce(t *testing.T) {
	var stderr bytes.Buffer
	if code := demoMain(t.Context(), []string{"-help"}, io.Discard, &stderr); code != 0 {
		t.Fatalf("-help: exit %d\n%s", code, stderr.String())
	}
	flags := strings.Split(stderr.String(), "\n  -")[1:]
	if len(flags) == 0 {
		t.Fatalf("-help lists no flag:\n%s", stderr.String())
	}
	for _, f := range flags {
		if n := strings.Count(f, "default"); n > 1 {
			t.Errorf("-help says default %d times for one flag:\n  -%s", n, f)
		}
	}
}

// TestProvedDuplicatesSaysZeroInWords: with no reset and no duplicate (-reset-inflight 0
// -duplicates 0, no -reset-every) the conclusion says so in words; it said "A's link was
// reset 0 time(s) ... at least 0 ciphertexts were stored twice". A stall without the
// demo's duplicates says "at least 3", not "3+0".
func TestProvedDuplicatesSaysZeroInWords(t *testing.T) {
	zero := regexp.MustCompile(`\b0\b`)
	for _, c := range []struct {
		res        result
		duplicates int
		stall      bool
		want       string
	}{
		{result{}, 0, false, "over a link that was never reset; its replay window had no duplicate to drop;"},
		{result{ProxyResets: 5, Resent: 1, DuplicatesDropped: 1}, 0, false, "reset 5 time(s) (A resent 1 message(s) after a reset); its replay window dropped 1 duplicate(s);"},
		{result{DuplicatesDropped: 3}, 3, false, "although at least 3 ciphertexts were stored twice (3 dropped by the replay window);"},
		{result{StoredUnconfirmed: 3, Resent: 3, ProxyResets: 1, DuplicatesDropped: 3}, 0, true, "at least 3 ciphertexts were stored twice (3 dropped by the replay window);"},
	} {
		var b bytes.Buffer
		provedDuplicates(&b, &c.res, c.duplicates, c.stall)
		if got := b.String(); zero.MatchString(got) || !strings.Contains(got, c.want) {
			t.Errorf("%d reset(s), -duplicates %d, stall %v: the conclusion counts a zero or misses %q:\n%s", c.res.ProxyResets, c.duplicates, c.stall, c.want, got)
		}
	}
}
