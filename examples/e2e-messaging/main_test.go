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

// TestDemo runs the demo's whole story (both handshake patterns) and checks what it
// reports: every message received once and in order, duplicates dropped, no plaintext in
// the hub's file.
func TestDemo(t *testing.T) {
	for _, ik := range []bool{false, true} {
		name := map[bool]string{false: "XX", true: "IK"}[ik]
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			cfg := defaultConfig()
			cfg.Dir = t.TempDir()
			cfg.Messages = 12
			cfg.Interval = 5 * time.Millisecond
			cfg.ResetEvery = 40 * time.Millisecond
			cfg.Duplicates = 2
			cfg.IK = ik
			cfg.Out = &out
			res, err := run(ctx, cfg)
			if err != nil {
				t.Fatalf("demo failed: %v\n%s", err, out.String())
			}
			if len(res.Received) != cfg.Messages {
				t.Fatalf("B received %d messages, want %d", len(res.Received), cfg.Messages)
			}
			if res.DuplicatesDropped < uint64(cfg.Duplicates) {
				t.Fatalf("%d duplicates dropped, want >= %d", res.DuplicatesDropped, cfg.Duplicates)
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
		})
	}
}

func TestDemoRejectsBadConfig(t *testing.T) {
	cfg := defaultConfig()
	cfg.Duplicates = cfg.Messages + 1
	if _, err := run(context.Background(), cfg); err == nil {
		t.Fatal("run accepted more duplicates than messages")
	}
	cfg = defaultConfig()
	cfg.IK, cfg.Duplicates = true, cfg.Messages
	if _, err := run(context.Background(), cfg); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("run with -ik and as many duplicates as messages: %v, want ErrInvalidOption", err)
	}
}
