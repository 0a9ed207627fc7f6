package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
)

// deviceFlag, as the first argument, makes the binary run as device B's process instead of
// the demo (see deviceMain).
const deviceFlag = "-device"

// Phases of device B's process.
const (
	phaseFirst  = "first"  // first boot: answer the handshake, save the channel, stop
	phaseResume = "resume" // restore the channel, read the inbox, send a receipt, stop
)

// deviceArgs are the flags of device B's process.
type deviceArgs struct {
	Dir     string // the demo's directory: B's files are in Dir/b
	Hub     string // the hub's address
	Phase   string // phaseFirst or phaseResume
	Peer    string // A's public key: B's trust policy
	Expect  int    // resume: application messages to wait for
	End     uint64 // resume: read the inbox up to this index (exclusive)
	Receipt string // resume: what B sends back to A through the channel
	IK      bool   // first: wait for A's early message too
	Verbose bool
}

func (a deviceArgs) args() []string {
	return []string{deviceFlag, "b", "-dir", a.Dir, "-hub", a.Hub, "-phase", a.Phase, "-peer", a.Peer,
		"-expect", strconv.Itoa(a.Expect), "-end", strconv.FormatUint(a.End, 10), "-receipt", a.Receipt,
		"-ik=" + strconv.FormatBool(a.IK), "-v=" + strconv.FormatBool(a.Verbose)}
}

// deviceReport is what device B's process prints (JSON) on standard output when it stops.
type deviceReport struct {
	PID          int      // the process
	Restored     string   // resume: the state the channel was restored in
	ChannelAddr  string   // the channel's application-facing address
	Peer         string   // the channel's authenticated peer ("" before the handshake completed)
	Received     []string // what B's application received, in order
	Pulled       uint64   // stream messages the subscription read
	Duplicates   uint64   // dropped by the channel's replay window
	Rejected     uint64   // failed authentication
	SavedIndex   uint64   // the subscription's position saved on the hub at the stop
	SessionBytes int      // size of the session file written at the stop
}

// deviceMain runs device B's process: `e2e-messaging -device b -dir DIR -hub ADDR -phase
// first|resume ...`. The demo starts it; it is not meant to be run by hand. It prints a
// deviceReport on stdout and returns the exit status.
func deviceMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("e2e-messaging "+deviceFlag, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a deviceArgs
	name := fs.String("device", "", "the device: b")
	fs.StringVar(&a.Dir, "dir", "", "the demo's directory")
	fs.StringVar(&a.Hub, "hub", "", "the hub's address")
	fs.StringVar(&a.Phase, "phase", "", "first or resume")
	fs.StringVar(&a.Peer, "peer", "", "the peer's public key")
	fs.IntVar(&a.Expect, "expect", 0, "application messages to wait for (resume)")
	fs.Uint64Var(&a.End, "end", 0, "read the inbox up to this index (resume)")
	fs.StringVar(&a.Receipt, "receipt", "", "the receipt to send (resume)")
	fs.BoolVar(&a.IK, "ik", false, "wait for the IK early message (first)")
	fs.BoolVar(&a.Verbose, "v", false, "log to standard error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *name != "b" || a.Dir == "" || a.Hub == "" || (a.Phase != phaseFirst && a.Phase != phaseResume) {
		fmt.Fprintln(stderr, "e2e-messaging -device: want -device b -dir DIR -hub ADDR -phase first|resume")
		return 2
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if a.Verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := runDeviceB(ctx, a, log)
	if err != nil {
		fmt.Fprintf(stderr, "device b (%s): %v\n", a.Phase, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(rep); err != nil {
		fmt.Fprintf(stderr, "device b: %v\n", err)
		return 1
	}
	return 0
}

// runDeviceB is one life of device B's process. It boots from its files (identity key,
// session file if any) and the index saved on the hub, does its phase's work, and stops:
// the subscription saves its index, the channel is saved to the session file, everything
// is closed.
func runDeviceB(ctx context.Context, a deviceArgs, log *slog.Logger) (*deviceReport, error) {
	peer, err := securechannel.ParsePublicKey(a.Peer)
	if err != nil {
		return nil, err
	}
	d, err := newDevice("b", a.Dir, log)
	if err != nil {
		return nil, err
	}
	defer d.close()
	rep := &deviceReport{PID: os.Getpid()}
	l, err := securechannel.Listen(d.node, listenerAddress, d.channelConfig(peer), &securechannel.ListenOptions{
		// B stops between handshake messages 2 and 3: a half-open handshake must wait.
		HandshakeTimeout: time.Hour,
	})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	session := sessionFile(a.Dir, "b")

	var sc *securechannel.SecureChannel
	if a.Phase == phaseResume {
		if sc, err = l.RestoreSession(session); err != nil {
			return nil, err
		}
		rep.Restored = "open"
		if sc.PeerIdentity() == (securechannel.PublicKey{}) {
			rep.Restored = "waiting for handshake message 3"
		}
	}
	if err := d.online(a.Hub); err != nil {
		return nil, err
	}
	if sc != nil {
		// The channel's route to A starts at the stream sender for A's inbox: register it
		// now, so that the channel could send before anything arrived.
		if err := d.tr.RegisterRoute(sc.PeerRoute()); err != nil {
			return nil, err
		}
	}

	switch a.Phase {
	case phaseFirst:
		if err := waitUntil(ctx, "B to answer the handshake", func() bool {
			st, ok := d.tr.PublisherStats("inbox-a")
			return ok && st.Confirmed >= 1
		}); err != nil {
			return nil, err
		}
		if a.IK {
			if err := waitUntil(ctx, "B to read A's early message", func() bool { return d.app.len() >= 1 }); err != nil {
				return nil, err
			}
		}
		chs := l.Channels()
		if len(chs) != 1 {
			return nil, fmt.Errorf("B's listener has %d channels, want 1", len(chs))
		}
		sc = chs[0]
	case phaseResume:
		if err := sc.Wait(ctx); err != nil {
			return nil, fmt.Errorf("B's restored channel: %w", err)
		}
		if err := waitUntil(ctx, "B to read its whole inbox", func() bool {
			n, _ := d.sub.Position()
			return n >= a.End && d.app.len() >= a.Expect
		}); err != nil {
			return nil, fmt.Errorf("%w (B received %d of %d messages)", err, d.app.len(), a.Expect)
		}
		if err := d.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{sc.Address(), wire.Local(appAddress)},
			ReturnRoute: wire.Route{wire.Local(appAddress)},
			Payload:     []byte(a.Receipt),
		}); err != nil {
			return nil, fmt.Errorf("B sends its receipt: %w", err)
		}
		if err := d.tr.Flush(ctx); err != nil {
			return nil, err
		}
		rep.Pulled = d.sub.Stats().Consumer.Received
	}
	rep.Received = d.app.get()
	rep.ChannelAddr = sc.Address().String()
	if p := sc.PeerIdentity(); p != (securechannel.PublicKey{}) {
		rep.Peer = p.String()
	}
	st := sc.Stats()
	rep.Duplicates, rep.Rejected = st.Duplicates, st.Rejected

	// Stop: the subscription saves its index, the application handles what it was
	// delivered, then the channel's state goes to the session file, then the node closes
	// (deferred).
	if rep.SavedIndex, err = d.offline(); err != nil {
		return nil, err
	}
	if err := d.node.Drain(ctx); err != nil {
		return nil, fmt.Errorf("B's application did not handle what it was delivered: %w", err)
	}
	if err := sc.SaveSession(session); err != nil {
		return nil, err
	}
	fi, err := os.Stat(session)
	if err != nil {
		return nil, err
	}
	rep.SessionBytes = int(fi.Size())
	return rep, nil
}

// runB runs device B's process (this binary again, with -device b) and returns its report.
func runB(ctx context.Context, a deviceArgs) (*deviceReport, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start device B's process: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, a.args()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if a.Verbose {
		cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("device B's process (%s): %w: %s", a.Phase, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var rep deviceReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("%w: device B's process printed %q: %w", core.ErrInvalidArgument, stdout.String(), err)
	}
	if rep.PID == 0 || rep.PID == os.Getpid() {
		return nil, errors.New("check failed: device B did not run as a separate process")
	}
	return &rep, nil
}
