package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub/hubtest"
)

// Ctrl-C stops every command that talks to a hub with exit status 130 and a message that
// starts with "sluice COMMAND: interrupted", whatever it was waiting for: a server that
// never answers, or (pull, tail) the next message of a stream.
func TestCLIInterruptedExits130(t *testing.T) {
	silent := hubtest.SilentServer(t)
	addr, _ := startMemHub(t, "127.0.0.1:0")
	mustRun(t, "", "push", "-hub", addr, "s", "a")
	printedA := func(out string) bool { return out == "0\ta\n" }
	for _, tc := range []struct {
		name string
		args []string
		// ready is true of the command's output once it waits; nil: interrupt it at once.
		ready func(stdout string) bool
		want  string // the start of stderr
	}{
		{"create from a server that never answers", []string{"create", "-hub", silent, "s"}, nil, "sluice create: interrupted"},
		{"push to a server that never answers", []string{"push", "-hub", silent, "s", "x"}, nil, "sluice push: interrupted"},
		{"push -key to a server that never answers", []string{"push", "-hub", silent, "-key", "k", "s", "x"}, nil, "sluice push: interrupted"},
		{"pull from a server that never answers", []string{"pull", "-hub", silent, "s"}, nil, "sluice pull: interrupted"},
		{"pull waiting for a message", []string{"pull", "-hub", addr, "-idle", "1h", "s"}, printedA, "sluice pull: interrupted after 1 message(s)"},
		{"tail waiting for a message", []string{"tail", "-hub", addr, "s"}, printedA, "sluice tail: interrupted after 1 message(s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var out, errb bytes.Buffer
			outw, errw := &lockedWriter{w: &out}, &lockedWriter{w: &errb}
			read := func(l *lockedWriter, b *bytes.Buffer) string {
				l.mu.Lock()
				defer l.mu.Unlock()
				return b.String()
			}
			done := make(chan int, 1)
			go func() { // ends when the command returns
				done <- run(ctx, tc.args, &stdio{in: strings.NewReader(""), out: outw, err: errw})
			}()
			if tc.ready != nil {
				for deadline := time.Now().Add(30 * time.Second); !tc.ready(read(outw, &out)); {
					if time.Now().After(deadline) {
						t.Fatalf("sluice %q printed %q within 30s; stderr:\n%s", tc.args, read(outw, &out), read(errw, &errb))
					}
					select {
					case code := <-done:
						t.Fatalf("sluice %q exited %d before the interrupt; stderr:\n%s", tc.args, code, read(errw, &errb))
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			cancel()
			select {
			case code := <-done:
				if errs := read(errw, &errb); code != exitInterrupted || !strings.HasPrefix(errs, tc.want) {
					t.Errorf("sluice %q interrupted: exit %d, stderr %q; want 130 and %q", tc.args, code, errs, tc.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("sluice %q still running 30s after the interrupt", tc.args)
			}
		})
	}
}
