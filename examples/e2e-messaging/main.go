// Command e2e-messaging shows end-to-end encrypted messaging through streams between two
// devices that are never online at the same time, one of which is a process that really
// stops and starts again.
//
// It starts an embedded hub that stores streams in a bbolt file in a temporary directory,
// and two devices, A and B, each with its own identity (a key file, mode 0600) and a trust
// policy that names the other. Each device reads its own inbox stream on the hub and writes
// into the other's (the bi-directional stream transport, package core/client/bistream), and
// the devices take turns being online. A lives in the demo's process. B is a separate OS
// process each time it is online: the demo runs its own binary again with -device b, and
// that process exits when B goes offline. The numbered account it prints:
//
//  1. The hub listens on 127.0.0.1; A reaches it through a flaky link: a fault-injecting
//     proxy that the demo makes fail in the middle of A's sending (step 5) and that, with
//     -reset-every, also resets A's connections periodically.
//  2. The identities are created; each device trusts exactly the other's key.
//  3. A connects, sends Noise XX handshake message 1 into B's inbox, and disconnects.
//  4. B's process starts for the first time, answers with message 2 into A's inbox, and
//     exits: its subscription saves its position (the index) on the hub, and its half-open
//     channel is saved to its session file.
//  5. A connects, reads message 2, checks B's key, sends message 3 and then its encrypted
//     messages while B's process is not running, and disconnects. Halfway through, the
//     link holds the hub's answers while A sends 3 messages in a burst (-reset-inflight):
//     the hub stores them but A gets no confirm. Then the link resets A's connection with
//     them in flight; A's publisher reconnects and sends them again, in order, and the hub
//     stores them a second time (the demo checks both).
//  6. Some ciphertexts are stored twice, byte for byte, as an at-least-once retry does.
//  7. B's process starts again from its files alone (identity key file, session file) and
//     the index saved on the hub: it restores its channel on a new node at the same
//     addresses, resumes from its saved index, completes the handshake, and receives every
//     message exactly once, decrypted and in order: its channel's replay window drops the
//     duplicates (counted and printed). B sends an encrypted read receipt, saves its channel
//     and exits.
//  8. A connects and reads the receipt.
//  9. The hub stops; its storage file is scanned for a marker that every plaintext
//     contains: it must occur 0 times.
//
// It ends with what was proved, and exits with status 1 if any check fails, 2 on a bad
// command line, and 130 (as a shell reports SIGINT) when interrupted before it finished:
// then it says it was interrupted, not that a check failed. With -ik, A already knows B's
// key and uses Noise IK: its first message travels, encrypted, inside handshake message 1,
// before B was ever online, and B's first process saves an open channel.
//
// What survives B's process: its identity file; its session file, written by
// securechannel's SaveSession (mode 0600, sealed with ChaCha20-Poly1305 under a key derived
// from B's static private key: the channel's keys, replay windows, send position with
// reserved nonces, and addresses, or a half-open handshake); and the index saved for its
// client_id on the hub. A, an offline device in the same process, keeps its routing node in
// memory (its connection, consumer and publisher are stopped).
//
// It needs nothing but this repository: everything runs on 127.0.0.1 (the demo's process and
// B's two processes) and finishes in about a second. `e2e-messaging -device b ...` is how
// the demo starts B's process; it is not meant to be run by hand.
//
//	go run ./examples/e2e-messaging
//	go run ./examples/e2e-messaging -messages 100 -reset-every 100ms -dir ./demo-data  # more resets
//	go run ./examples/e2e-messaging -ik    # A's first message travels in the handshake
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/core"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == deviceFlag {
		os.Exit(deviceMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := demoMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitInterrupted is the exit status of a demo interrupted (Ctrl-C) before it finished:
// 128 plus SIGINT's number, as a shell reports a program that SIGINT ended.
const exitInterrupted = 130

// demoMain runs the demo with the command line args (without the program name) and returns
// its exit status: 0 when every check passed, 1 when one failed, 2 on a bad command line,
// exitInterrupted when ctx ended (Ctrl-C) before the demo finished.
func demoMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errBadFlag):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "e2e-messaging: %s (see e2e-messaging -help)\n", strings.TrimPrefix(err.Error(), core.ErrInvalidOption.Error()+": "))
		return 2
	}
	limit := demoTimeout(cfg)
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cfg.Out = stdout
	if _, err := run(rctx, cfg); err != nil {
		if errors.Is(err, core.ErrInvalidOption) { // a bad command line, found only when run prepares -dir
			fmt.Fprintf(stderr, "e2e-messaging: %s (see e2e-messaging -help)\n", strings.TrimPrefix(err.Error(), core.ErrInvalidOption.Error()+": "))
			return 2
		}
		if interrupted(ctx, err) {
			fmt.Fprintln(stderr, "e2e-messaging: interrupted before the demo finished")
			return exitInterrupted
		}
		if errors.Is(rctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (the demo did not finish within its limit of %v: 2 minutes beyond -messages times -interval)", err, limit)
		}
		fmt.Fprintf(stderr, "e2e-messaging: FAILED: %v\n", err)
		return 1
	}
	return 0
}

// interrupted reports whether err, the demo's failure, comes from an interrupt: ctx, the
// context that Ctrl-C cancels, ended, or device B's process died of SIGINT (Ctrl-C in a
// terminal reaches every process of the foreground group, B's too, perhaps before the
// demo's own process has noticed).
func interrupted(ctx context.Context, err error) bool {
	if errors.Is(ctx.Err(), context.Canceled) {
		return true
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == syscall.SIGINT
	}
	return false
}

// demoTimeout is how long a run of the demo with cfg may take: 2 minutes beyond the pauses
// between A's messages (-messages times -interval).
func demoTimeout(cfg config) time.Duration {
	const base = 2 * time.Minute
	if cfg.Interval > 0 && time.Duration(cfg.Messages) > (math.MaxInt64-base)/cfg.Interval {
		return math.MaxInt64 // no limit but Ctrl-C
	}
	return base + time.Duration(cfg.Messages)*cfg.Interval
}

// errBadFlag is parseFlags' error for a flag that package flag refused; flag printed why.
var errBadFlag = errors.New("bad flag")

// parseFlags returns the demo's configuration from its command line (without the program
// name). A bad setting is an error matching core.ErrInvalidOption; a flag that package flag
// refused returns errBadFlag, once flag printed why; -help returns flag.ErrHelp.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("e2e-messaging", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address the embedded hub listens on")
	fs.StringVar(&cfg.Dir, "dir", "", "new or empty directory for the hub's data and the identities (default: a temporary directory, removed at the end)")
	fs.IntVar(&cfg.Messages, "messages", cfg.Messages, "messages A sends while B is offline")
	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "pause between two of A's messages")
	fs.IntVar(&cfg.Duplicates, "duplicates", cfg.Duplicates, "ciphertexts stored twice, as an at-least-once retry would (at most -messages; if this flag is not given and -messages is fewer, -messages)")
	fs.IntVar(&cfg.ResetInFlight, "reset-inflight", cfg.ResetInFlight, "halfway through A's messages, the flaky link holds the hub's answers while A sends this many in a burst, then resets A's connection with them stored but unconfirmed (0: no such reset; A's first message through the link goes before the stall, so at most -messages minus 1 are held, minus 2 with -ik)")
	fs.DurationVar(&cfg.ResetEvery, "reset-every", cfg.ResetEvery, "the flaky link also resets A's connections this often, except while it stalls (0: never; else at least "+minResetEvery.String()+")")
	fs.BoolVar(&cfg.IK, "ik", false, "use the Noise IK pattern: A knows B's key and its first message travels in the handshake, before B was ever online")
	fs.BoolVar(&cfg.Verbose, "v", false, "log reconnects and retries to standard error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, errBadFlag
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected arguments %q", core.ErrInvalidOption, fs.Args())
	}
	duplicatesSet := false
	fs.Visit(func(f *flag.Flag) { duplicatesSet = duplicatesSet || f.Name == "duplicates" })
	if !duplicatesSet {
		cfg.Duplicates = min(cfg.Duplicates, cfg.Messages) // -messages 1 needs no -duplicates 1
	}
	return cfg, cfg.validate()
}
