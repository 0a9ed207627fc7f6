package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestQuickstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, "127.0.0.1:0", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var reads []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "billing read index ") {
			reads = append(reads, strings.Fields(l)[3])
		}
	}
	// Two consumers with the same client_id: each message is read once, in order.
	if got := strings.Join(reads, ","); got != "0:,1:,2:,3:" {
		t.Fatalf("indexes read %q, want 0..3 once each\n%s", got, out.String())
	}
}

// A bad command line is a usage error (exit status 2), not ignored: an argument that is no
// flag, a flag that does not exist, or a -listen that is no [HOST]:PORT (it was a failure,
// exit status 1, once the hub tried to listen on it).
func TestQuickstartBadCommandLine(t *testing.T) {
	for _, args := range [][]string{
		{"extra"}, {"-listen", "127.0.0.1:0", "extra"}, {"-nope"},
		{"-listen", "nonsense"}, {"-listen", "127.0.0.1"}, {"-listen", "127.0.0.1:99999"}, {"-listen", "127.0.0.1:"},
	} {
		var out, errb bytes.Buffer
		if code := quickstartMain(t.Context(), args, &out, &errb); code != 2 || out.Len() != 0 || errb.Len() == 0 {
			t.Errorf("quickstart %q: exit %d, stdout %q, stderr %q; want 2, nothing run, and why on stderr", args, code, out.String(), errb.String())
		}
	}
}

// Ctrl-C (here before it started) says it interrupted the program, with exit status 130.
func TestQuickstartInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errb bytes.Buffer
	if code := quickstartMain(ctx, nil, &out, &errb); code != exitInterrupted || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("quickstart interrupted: exit %d, stderr %q; want 130 saying interrupted", code, errb.String())
	}
}
