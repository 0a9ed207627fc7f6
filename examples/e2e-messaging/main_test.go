package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// TestMain lets the test binary act as device B's process: the demo starts B by running
// its own executable again with -device b (see deviceMain).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == deviceFlag {
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
