package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// config is the demo's configuration (the command's flags).
type config struct {
	Listen     string        // the hub's listen address
	Dir        string        // where the hub's file and the identities go; "" = a temporary directory
	Messages   int           // messages A sends
	Interval   time.Duration // pause between two of A's messages
	Duplicates int           // ciphertexts stored twice on purpose
	// ResetInFlight is how many of A's messages the flaky link holds, halfway through A's
	// sending, before it resets A's connection with them in flight (0: no such reset).
	ResetInFlight int
	ResetEvery    time.Duration // the flaky link also resets every connection this often (0: never)
	IK            bool          // Noise IK with early data instead of XX
	Verbose       bool          // log to standard error
	Out           io.Writer     // the account of the demo; nil = discard
}

func defaultConfig() config {
	return config{Listen: "127.0.0.1:0", Messages: 25, Interval: 20 * time.Millisecond, Duplicates: 3, ResetInFlight: 3}
}

// result is what the demo measured and checked.
type result struct {
	Received           []string // what B's application received, in order
	Receipts           []string // what A's application received
	DuplicatesDropped  uint64   // by B's secure channel
	PossibleDuplicates uint64   // A's resends that may have stored a message twice
	ProxyResets        uint64   // connections the flaky link reset
	InFlightAtReset    uint64   // A's messages sent and not confirmed when the link reset mid-send
	StoredUnconfirmed  uint64   // of those, stored by the hub (their confirms were lost)
	Resent             uint64   // messages A's publisher sent again after a reset
	ResumedAt          uint64   // B's saved index when it came back
	BProcesses         []int    // the process ids of B's two lives
	Stored             int      // messages in B's inbox on the hub
	HubFile            string   // the hub's storage file
	HubFileBytes       int
	MarkerFound        int // occurrences of the plaintext marker in the hub's file
}

// printer writes the numbered account of the demo.
type printer struct {
	w     io.Writer
	start time.Time
	n     int
}

func (p *printer) step(format string, args ...any) {
	p.n++
	fmt.Fprintf(p.w, "\n%2d. [%5.2fs] %s\n", p.n, time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *printer) info(format string, args ...any) {
	fmt.Fprintf(p.w, "               %s\n", fmt.Sprintf(format, args...))
}

// minResetEvery is the shortest -reset-every. The link resets all of A's connections at
// once each period, so a connection lives less than one and must carry a request and its
// reply in that time: with periods well under A's first reconnect delay (backoff.Min) that
// rarely happens on a busy machine (with -reset-every 1ms A never read B's receipt, and the
// demo ran into its time limit).
const minResetEvery = 10 * time.Millisecond

// validate returns an error matching core.ErrInvalidOption, naming the flag, when a
// setting is out of range.
func (cfg config) validate() error {
	var bad string
	switch {
	case cfg.Messages < 1:
		bad = fmt.Sprintf("-messages %d: want at least 1", cfg.Messages)
	case cfg.Duplicates < 0 || cfg.Duplicates > cfg.Messages:
		bad = fmt.Sprintf("-duplicates %d: want 0 to -messages (%d)", cfg.Duplicates, cfg.Messages)
	case cfg.ResetInFlight < 0:
		bad = fmt.Sprintf("-reset-inflight %d: want 0 or more", cfg.ResetInFlight)
	case cfg.ResetEvery < 0 || cfg.ResetEvery > 0 && cfg.ResetEvery < minResetEvery:
		bad = fmt.Sprintf("-reset-every %v: want 0 (never) or at least %v", cfg.ResetEvery, minResetEvery)
	case cfg.Interval < 0:
		bad = fmt.Sprintf("-interval %v: want 0 or more", cfg.Interval)
	case hub.CheckListenAddr(cfg.Listen) != nil:
		bad = fmt.Sprintf("-listen %q: want [HOST]:PORT, e.g. 127.0.0.1:4000, or port 0 for any free one", cfg.Listen)
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", core.ErrInvalidOption, bad)
}

// run runs the demo; see the package documentation. It returns an error if a check failed,
// and one matching core.ErrInvalidOption for a bad configuration (a setting out of range, a
// -dir that is not empty).
func run(ctx context.Context, cfg config) (res *result, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.Verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sluice-e2e-"); err != nil {
			return nil, fmt.Errorf("temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("-dir %s: %w", dir, err)
		}
		if entries, err := os.ReadDir(dir); err != nil {
			return nil, fmt.Errorf("-dir %s: %w", dir, err)
		} else if len(entries) > 0 {
			return nil, fmt.Errorf("%w: -dir %s is not empty: remove it or choose a new one", core.ErrInvalidOption, dir)
		}
	}
	marker := "secret-" + randomHex(6)
	text := func(i int) string { return fmt.Sprintf("%s: message %d from A", marker, i) }
	res = &result{}
	p := &printer{w: out, start: time.Now()}
	fmt.Fprintf(out, "Sluice end-to-end encrypted messaging through streams, devices never online together.\n")
	fmt.Fprintf(out, "Every plaintext contains the marker %q; the hub must never see it.\n", marker)

	// The hub, on bbolt, and the flaky link in front of it.
	res.HubFile = filepath.Join(dir, "hub", "hub.db")
	store, err := bbolt.New(ctx, res.HubFile, nil)
	if err != nil {
		return nil, err
	}
	h, err := hub.New(&core.Backend{Storage: store, Index: store}, hub.WithLogger(logger))
	if err != nil {
		store.Close()
		return nil, err
	}
	hubRunning := true
	stopHub := func() error {
		if !hubRunning {
			return nil
		}
		hubRunning = false
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return errors.Join(h.Shutdown(sctx), store.Close())
	}
	defer func() { err = errors.Join(err, stopHub()) }()
	hubAddr, err := h.Listen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	link, err := newFlakyLink(hubAddr.String(), cfg.ResetEvery)
	if err != nil {
		return nil, err
	}
	defer link.close()
	from := 1
	if cfg.IK {
		from = 2 // message 1 travels in the handshake
	}
	stallFirst, stallLast, stall := stallRange(from, cfg.Messages, cfg.ResetInFlight)
	p.step("Hub listening on %s, storing streams in %s (bbolt).", hubAddr, res.HubFile)
	switch {
	case stall:
		p.info("A reaches it through a flaky link, %s (a fault-injecting proxy): while A sends its messages", link.addr())
		p.info("%d..%d in a burst it holds the hub's answers (the hub stores them, A gets no confirm), then resets", stallFirst, stallLast)
		p.info("A's connection.")
	case cfg.ResetEvery > 0:
		p.info("A reaches it through a flaky link, %s (a fault-injecting proxy).", link.addr())
	default:
		p.info("A reaches it through %s (no faults injected).", link.addr())
	}
	switch {
	case cfg.ResetEvery > 0 && stall:
		p.info("It also resets every connection every %v, except while it stalls.", cfg.ResetEvery)
	case cfg.ResetEvery > 0:
		p.info("It resets every connection every %v.", cfg.ResetEvery)
	}

	// The devices and their identities. A runs in this process; B is a separate process
	// each time it is online (this binary again, with -device b).
	if _, err := provision(dir, "a"); err != nil {
		return nil, err
	}
	idB, err := provision(dir, "b")
	if err != nil {
		return nil, err
	}
	a, err := newDevice("a", dir, logger)
	if err != nil {
		return nil, err
	}
	defer a.close()
	const inboxB, clientB = "inbox-b", "device-b"
	bArgs := deviceArgs{Dir: dir, Hub: hubAddr.String(), Peer: a.id.PublicKey().String(), IK: cfg.IK, Verbose: cfg.Verbose}
	p.step("Identities created (key files, mode 0600); each device trusts exactly the other.")
	p.info("A %s  %s", a.id.PublicKey(), a.keyFile)
	p.info("B %s  %s", idB.PublicKey(), keyFile(dir, "b"))
	p.info("A runs in this process (pid %d). B runs as a separate OS process each time it is online.", os.Getpid())

	// 1. A starts the handshake and goes offline.
	if err := a.online(link.addr()); err != nil {
		return nil, err
	}
	routeToB, err := a.route(inboxB, listenerAddress)
	if err != nil {
		return nil, err
	}
	type dialResult struct {
		ch  *securechannel.SecureChannel
		err error
	}
	dialed := make(chan dialResult, 1)
	dctx, stopDial := context.WithCancel(ctx)
	defer stopDial()
	go func() { // ends when the handshake completes or fails, or run returns (stopDial)
		var ch *securechannel.SecureChannel
		var err error
		if cfg.IK {
			first := &wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(appAddress)}, ReturnRoute: wire.Route{wire.Local(appAddress)}, Payload: []byte(text(1))}
			ch, err = securechannel.DialIK(dctx, a.node, routeToB, a.channelConfig(idB.PublicKey()), idB.PublicKey(), first)
		} else {
			ch, err = securechannel.Dial(dctx, a.node, routeToB, a.channelConfig(idB.PublicKey()))
		}
		dialed <- dialResult{ch, err}
	}()
	if err := waitUntil(ctx, "handshake message 1 to be published", func() bool { return a.tr.Stats().Sent >= 1 }); err != nil {
		return nil, err
	}
	if err := a.tr.Flush(ctx); err != nil {
		return nil, err
	}
	if _, err := a.offline(); err != nil {
		return nil, err
	}
	if cfg.IK {
		p.step("A online: Noise IK message 1 (with A's message 1 as early data, encrypted to B's known key) -> stream %s. A offline.", inboxB)
	} else {
		p.step("A online: Noise XX handshake message 1 -> stream %s (B was never online). A offline.", inboxB)
	}

	// 2. B's process starts for the first time, answers, saves its channel and exits.
	bArgs.Phase = phaseFirst
	first, err := runB(ctx, bArgs)
	if err != nil {
		return nil, err
	}
	saved := first.SavedIndex
	res.BProcesses = append(res.BProcesses, first.PID)
	p.step("B's process (pid %d) started for the first time (client_id %s): read message 1, answered message 2 -> stream %s.", first.PID, clientB, a.inbox)
	if cfg.IK {
		if len(first.Received) != 1 || first.Peer != a.id.PublicKey().String() {
			return nil, fmt.Errorf("check failed: B's first process received %q on a channel with %q, want A's early message from A", first.Received, first.Peer)
		}
		p.info("B's channel is open (IK needs 2 messages); B read A's early message: %q", first.Received[0])
	}
	p.info("B's process exited: its connection, consumer, publisher, node and secure channel were closed and dropped.")
	p.info("What B kept: its identity file; its session file (%d bytes, sealed with a key derived from B's identity, mode 0600)", first.SessionBytes)
	if cfg.IK {
		p.info("holding its open channel (keys, replay windows, addresses); and index %d saved for %s on the hub.", saved, clientB)
	} else {
		p.info("holding its half-open handshake (waiting for message 3) and its addresses; and index %d saved for %s on the hub.", saved, clientB)
	}

	// 3. A comes back through the flaky link, completes the handshake, sends, goes offline.
	if err := a.online(link.addr()); err != nil {
		return nil, err
	}
	var chA *securechannel.SecureChannel
	select {
	case r := <-dialed:
		if r.err != nil {
			return nil, fmt.Errorf("handshake through streams: %w", r.err)
		}
		chA = r.ch
	case <-ctx.Done():
		return nil, fmt.Errorf("handshake through streams: %w", ctx.Err())
	}
	defer chA.Close()
	if chA.PeerIdentity() != idB.PublicKey() {
		return nil, errors.New("check failed: A's channel is not with B's identity")
	}
	var beforeStall client.PublisherStats
	var storedBefore uint64
	sentBefore := a.tr.Stats().Sent
	for i := from; i <= cfg.Messages; i++ {
		if stall && i == stallFirst-1 {
			// The message before the stall travels over a link that is not reset meanwhile:
			// A's publisher has a working connection when the stall begins.
			link.holdResets()
		}
		if stall && i == stallFirst {
			// Everything A sent so far reached the hub and is confirmed; then the link
			// stalls, and A's next messages reach the hub but stay unconfirmed.
			if err := waitUntil(ctx, "A's channel to hand its messages to the transport", func() bool {
				return a.tr.Stats().Sent >= sentBefore+uint64(i-from)
			}); err != nil {
				return nil, err
			}
			if err := a.tr.Flush(ctx); err != nil {
				return nil, err
			}
			if storedBefore, err = storedCount(ctx, store, inboxB); err != nil {
				return nil, err
			}
			link.stall()
			beforeStall, _ = a.tr.PublisherStats(inboxB)
		}
		err := a.node.Send(ctx, wire.TransportMessage{
			OnwardRoute: wire.Route{chA.Address(), wire.Local(appAddress)},
			ReturnRoute: wire.Route{wire.Local(appAddress)},
			Payload:     []byte(text(i)),
		})
		if err != nil {
			return nil, fmt.Errorf("A sends message %d: %w", i, err)
		}
		if stall && i == stallLast {
			storedSince := func() (uint64, error) {
				n, err := storedCount(ctx, store, inboxB)
				return n - storedBefore, err
			}
			res.InFlightAtReset, res.StoredUnconfirmed, err = resetInFlight(ctx, a.tr, inboxB, link, beforeStall, stallLast-stallFirst+1, storedSince)
			if err != nil {
				return nil, err
			}
		}
		if stall && i >= stallFirst && i < stallLast {
			// The stalled messages go in a burst: a stall longer than A's request timeout
			// would end A's session before the link resets it.
			continue
		}
		select { // a device producing a message now and then
		case <-time.After(cfg.Interval):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := a.tr.Flush(ctx); err != nil {
		return nil, err
	}
	pst, _ := a.tr.PublisherStats(inboxB)
	res.PossibleDuplicates = pst.DuplicatesPossible
	res.ProxyResets = link.resets()
	res.Resent = pst.Resent
	if res.Resent < res.InFlightAtReset {
		return nil, fmt.Errorf("check failed: A's publisher resent %d message(s), but %d were in flight when the link reset", res.Resent, res.InFlightAtReset)
	}
	if _, err := a.offline(); err != nil {
		return nil, err
	}
	if cfg.IK {
		p.step("A online again: read message 2, its channel is open (peer key = B's, checked by its trust policy).")
	} else {
		p.step("A online again: read message 2, verified B's key, sent message 3 -> %s: A's channel is open.", inboxB)
	}
	p.info("A encrypted and sent messages %d..%d to B, whose process is not running; every one confirmed by the hub.", from, cfg.Messages)
	if stall {
		p.info("While A sent messages %d..%d the link held the hub's answers: %d message(s) were stored by the hub but not", stallFirst, stallLast, res.StoredUnconfirmed)
		p.info("confirmed to A when the link reset A's connection. A's publisher reconnected and sent them again, in order,")
		p.info("and the hub stored them a second time: at-least-once delivery's duplicates, for B's channel to drop.")
	}
	p.info("The flaky link reset %d connection(s); A's publisher retried %d time(s), resent %d message(s).", res.ProxyResets, pst.Retried, pst.Resent)
	p.info("A offline.")

	// An at-least-once retry stores some ciphertexts twice.
	end, savedOnHub, err := duplicateLast(ctx, hubAddr.String(), inboxB, cfg.Duplicates, clientB)
	if err != nil {
		return nil, err
	}
	if savedOnHub != saved {
		return nil, fmt.Errorf("check failed: the hub holds index %d for %s, B saved %d", savedOnHub, clientB, saved)
	}
	if cfg.Duplicates > 0 {
		p.step("At-least-once delivery: %d of A's ciphertexts stored a second time in %s, byte for byte (as a retry after a lost confirm does).", cfg.Duplicates, inboxB)
	} else {
		p.step("At-least-once delivery: none of A's ciphertexts stored a second time in %s by the demo (-duplicates 0).", inboxB)
	}
	p.info("Possible duplicates from A's own resends: %d. Stream %s now holds %d messages.", res.PossibleDuplicates, inboxB, end)
	p.info("The hub's index service holds index %d for client_id %s: where B will resume.", savedOnHub, clientB)

	// 4. B's process starts again from its files, reads everything exactly once, answers,
	// saves its channel and exits.
	res.ResumedAt = savedOnHub
	receipt := fmt.Sprintf("%s: B read messages 1..%d", marker, cfg.Messages)
	bArgs.Phase, bArgs.Expect, bArgs.End, bArgs.Receipt = phaseResume, cfg.Messages-len(first.Received), end, receipt
	second, err := runB(ctx, bArgs)
	if err != nil {
		return nil, err
	}
	res.BProcesses = append(res.BProcesses, second.PID)
	res.Received = append(first.Received, second.Received...)
	res.DuplicatesDropped = second.Duplicates
	if second.PID == first.PID {
		return nil, errors.New("check failed: B's second process is its first")
	}
	if got, want := second.Pulled, end-res.ResumedAt; got != want {
		return nil, fmt.Errorf("check failed: B pulled %d messages, want %d (from its saved index %d to %d)", got, want, res.ResumedAt, end)
	}
	if second.Peer != a.id.PublicKey().String() {
		return nil, fmt.Errorf("check failed: B's channel is with %q, not with A's identity", second.Peer)
	}
	if err := checkReceived(res.Received, cfg.Messages, text); err != nil {
		return nil, err
	}
	// B read its inbox to the end and saved that position on the hub as it stopped.
	onHub, err := savedIndex(ctx, hubAddr.String(), inboxB, clientB)
	if err != nil {
		return nil, err
	}
	if onHub != second.SavedIndex || onHub != end {
		return nil, fmt.Errorf("check failed: after B's second process the hub holds index %d for %s, B saved %d, its inbox ends at %d", onHub, clientB, second.SavedIndex, end)
	}
	if want := uint64(cfg.Duplicates) + res.StoredUnconfirmed; res.DuplicatesDropped < want {
		return nil, fmt.Errorf("check failed: B's channel dropped %d duplicates, at least %d were stored (%d by the demo, %d by A's resends)",
			res.DuplicatesDropped, want, cfg.Duplicates, res.StoredUnconfirmed)
	}
	p.step("B's process started again (pid %d; the first was %d), from its files alone: identity, session file, saved index.", second.PID, first.PID)
	p.info("It restored its secure channel (%s) on a new node, at the addresses A's route names.", second.Restored)
	p.info("It resumed from its saved index %d and read %s up to index %d (%d messages pulled).", res.ResumedAt, inboxB, end-1, second.Pulled)
	p.info("B's channel is open with A's key; B decrypted %d messages, exactly once and in order:", len(res.Received))
	p.info("  %q ... %q", res.Received[0], res.Received[len(res.Received)-1])
	p.info("B's replay window dropped %d duplicate(s); %d message(s) failed authentication.", second.Duplicates, second.Rejected)
	p.info("B sent an encrypted read receipt -> %s, saved its channel (index %d on the hub) and exited.", a.inbox, second.SavedIndex)

	// 5. A comes back and reads the receipt.
	if err := a.online(link.addr()); err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, "A to read B's receipt", func() bool { return a.app.len() >= 1 }); err != nil {
		return nil, err
	}
	res.Receipts = a.app.get()
	if _, err := a.offline(); err != nil {
		return nil, err
	}
	if len(res.Receipts) != 1 || res.Receipts[0] != receipt {
		return nil, fmt.Errorf("check failed: A received %q, want the receipt %q", res.Receipts, receipt)
	}
	p.step("A online again: read B's receipt through the channel: %q. A offline.", res.Receipts[0])

	// The hub's storage holds ciphertext only.
	stored, err := store.Fetch(ctx, inboxB, 0, 0, 100000)
	if err != nil {
		return nil, err
	}
	res.Stored = len(stored)
	if err := stopHub(); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(res.HubFile)
	if err != nil {
		return nil, err
	}
	res.HubFileBytes = len(raw)
	res.MarkerFound = bytes.Count(raw, []byte(marker))
	if !bytes.Contains(raw, []byte(inboxB)) {
		return nil, fmt.Errorf("check failed: %s does not hold stream %s; the plaintext scan would prove nothing", res.HubFile, inboxB)
	}
	// The scan reads what the hub stored: every stored ciphertext is in the file as it is.
	for _, m := range stored {
		if !bytes.Contains(raw, m.Data) {
			return nil, fmt.Errorf("check failed: message %d of %s is not in %s as stored; the plaintext scan would prove nothing", m.Index, inboxB, res.HubFile)
		}
	}
	if res.MarkerFound != 0 {
		return nil, fmt.Errorf("check failed: the hub's storage file contains the plaintext marker %d time(s)", res.MarkerFound)
	}
	fi, err := os.Stat(sessionFile(dir, "b"))
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		return nil, fmt.Errorf("check failed: B's session file has mode %v, want 0600", perm)
	}
	p.step("Hub stopped. Scanned its storage file %s (%d bytes, holding all %d messages of %s as stored): the marker %q occurs 0 times.", res.HubFile, res.HubFileBytes, res.Stored, inboxB, marker)

	fmt.Fprintf(out, "\nProved (%.2fs):\n", time.Since(p.start).Seconds())
	fmt.Fprintf(out, "  - a Noise %s handshake and the messages after it travelled entirely through streams on the hub,\n", map[bool]string{false: "XX", true: "IK"}[cfg.IK])
	fmt.Fprintf(out, "    between two devices that were never online at the same time;\n")
	fmt.Fprintf(out, "  - both ends authenticated the other's identity against their trust policy;\n")
	fmt.Fprintf(out, "  - B's process really stopped: a second OS process (pid %d, the first was %d) restored the secure channel\n", res.BProcesses[1], res.BProcesses[0])
	fmt.Fprintf(out, "    from B's session file, at the same addresses, so the messages A sealed meanwhile were readable;\n")
	fmt.Fprintf(out, "  - B resumed from its saved index and received all %d messages exactly once, in order, decrypted,\n", cfg.Messages)
	provedDuplicates(out, res, cfg.Duplicates, stall)
	fmt.Fprintf(out, "  - the hub stored only ciphertext: no plaintext in its storage file.\n")
	return res, nil
}

// provedDuplicates writes the part of the demo's conclusion about the duplicates. It
// claims no more than run checked: the demo stored duplicates of its own, the hub stored
// res.StoredUnconfirmed of A's messages before their resend, and B's channel dropped at
// least both; A's other resends (after periodic resets) may store more, so the count of
// ciphertexts stored twice is a lower bound.
// Zero of something (no reset, no duplicate of the demo's) is said in words, not counted.
func provedDuplicates(out io.Writer, res *result, duplicates int, stall bool) {
	if stall {
		twice := fmt.Sprintf("%d+%d", res.StoredUnconfirmed, duplicates)
		if duplicates == 0 {
			twice = fmt.Sprint(res.StoredUnconfirmed)
		}
		fmt.Fprintf(out, "    although A's link was reset with %d of them stored but unconfirmed (A's publisher resent %d message(s);\n", res.StoredUnconfirmed, res.Resent)
		fmt.Fprintf(out, "    %d reset(s) in all), so that at least %s ciphertexts were stored twice (%d dropped by the replay window);\n",
			res.ProxyResets, twice, res.DuplicatesDropped)
		return
	}
	dropped := "its replay window had no duplicate to drop"
	if res.DuplicatesDropped > 0 {
		dropped = fmt.Sprintf("its replay window dropped %d duplicate(s)", res.DuplicatesDropped)
	}
	switch {
	case res.ProxyResets > 0 && duplicates > 0:
		fmt.Fprintf(out, "    although A's link was reset %d time(s) (A resent %d message(s) after a reset) and at least %d ciphertexts were stored\n", res.ProxyResets, res.Resent, duplicates)
		fmt.Fprintf(out, "    twice (%d dropped by the replay window);\n", res.DuplicatesDropped)
	case duplicates > 0:
		fmt.Fprintf(out, "    although at least %d ciphertexts were stored twice (%d dropped by the replay window);\n", duplicates, res.DuplicatesDropped)
	case res.ProxyResets > 0:
		fmt.Fprintf(out, "    although A's link was reset %d time(s) (A resent %d message(s) after a reset); %s;\n", res.ProxyResets, res.Resent, dropped)
	default:
		fmt.Fprintf(out, "    over a link that was never reset; %s;\n", dropped)
	}
}

// stallRange returns the first and the last of A's messages from..last during which the flaky
// link stalls before it resets A's connection: n of them, halfway through, and at least one
// message after from, so that A's publisher works before the stall. There are fewer than n
// when A sends n messages or fewer; ok is false when there is no stall.
func stallRange(from, last, n int) (first, end int, ok bool) {
	count := last - from + 1
	n = min(n, count-1)
	if n <= 0 {
		return 0, 0, false
	}
	first = from + 1 + (count-1-n)/2
	return first, first + n - 1, true
}

// resetInFlight waits until A's publisher to stream has sent the n messages A sent into the
// stalled link and the hub stored them (storedSince counts what it stored since the stall),
// then ends the stall: the link resets A's connection with them in flight, their confirms
// lost. before are the publisher's counters when the link stalled, with everything
// confirmed. It returns how many messages were in flight (sent, not confirmed) at the reset
// and how many the hub had stored meanwhile; fewer than n of either is a failed check.
func resetInFlight(ctx context.Context, tr *bistream.Transport, stream string, link *flakyLink, before client.PublisherStats, n int, storedSince func() (uint64, error)) (inFlight, stored uint64, err error) {
	sentOnce := func(st client.PublisherStats) uint64 { return st.Sent - st.Resent } // messages sent at least once
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var storedErr error
	err = waitUntil(wctx, fmt.Sprintf("A's publisher to send %d message(s) into the stalled link, and the hub to store them", n), func() bool {
		st, ok := tr.PublisherStats(stream)
		if !ok || st.Published < before.Published+uint64(n) || sentOnce(st) < st.Published {
			return false
		}
		stored, storedErr = storedSince()
		return storedErr == nil && stored >= uint64(n)
	})
	st, _ := tr.PublisherStats(stream)
	link.endStall()
	if err != nil {
		return 0, 0, fmt.Errorf("check failed: %w", errors.Join(err, storedErr))
	}
	inFlight = sentOnce(st) - sentOnce(before)
	if inFlight < uint64(n) || st.Confirmed != before.Confirmed {
		return 0, 0, fmt.Errorf("check failed: %d of A's messages in flight when the link reset (%d confirmed during the stall), want %d", inFlight, st.Confirmed-before.Confirmed, n)
	}
	return inFlight, stored, nil
}

// storedCount returns how many messages partition 0 of stream holds in s.
func storedCount(ctx context.Context, s core.Storage, stream string) (uint64, error) {
	var n uint64
	for from := uint64(0); ; {
		msgs, err := s.Fetch(ctx, stream, 0, from, 1000)
		if err != nil {
			return 0, fmt.Errorf("count the messages of %s: %w", stream, err)
		}
		if len(msgs) == 0 {
			return n, nil
		}
		n += uint64(len(msgs))
		from = msgs[len(msgs)-1].Index + 1
	}
}

// checkReceived checks that got is exactly text(1..n), in order.
func checkReceived(got []string, n int, text func(int) string) error {
	if len(got) != n {
		return fmt.Errorf("check failed: B received %d messages, want %d exactly once: %q", len(got), n, got)
	}
	for i, m := range got {
		if want := text(i + 1); m != want {
			return fmt.Errorf("check failed: B's message %d is %q, want %q", i+1, m, want)
		}
	}
	return nil
}

// duplicateLast appends the last n messages of stream again, byte for byte, through the
// hub, as a publisher's retry after a lost confirm would. It returns the stream's new end
// (its last index + 1) and the index saved on the hub for clientID (where that consumer
// will resume).
func duplicateLast(ctx context.Context, hubAddr, stream string, n int, clientID string) (end, saved uint64, err error) {
	cli, err := client.Dial(hubAddr, clientOptions...)
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	conn, err := cli.Open(ctx, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	if _, err := conn.CreateStream(ctx, stream, 1); err != nil {
		return 0, 0, err
	}
	var all []core.Message
	for from := uint64(0); ; {
		msgs, err := conn.Pull(ctx, stream, 0, from, 1000, 0)
		if err != nil {
			return 0, 0, err
		}
		if len(msgs) == 0 {
			break
		}
		all = append(all, msgs...)
		from = msgs[len(msgs)-1].Index + 1
	}
	if len(all) < n || len(all) == 0 {
		return 0, 0, fmt.Errorf("stream %s holds %d messages, cannot duplicate %d", stream, len(all), n)
	}
	end = all[len(all)-1].Index + 1
	if n > 0 {
		dups := make([][]byte, 0, n)
		for _, m := range all[len(all)-n:] {
			dups = append(dups, m.Data)
		}
		idx, err := conn.Push(ctx, stream, 0, dups)
		if err != nil {
			return 0, 0, err
		}
		end = idx[len(idx)-1] + 1
	}
	saved, err = conn.GetIndex(ctx, clientID, stream, 0)
	if err != nil {
		return 0, 0, err
	}
	return end, saved, nil
}

// savedIndex returns the index saved on the hub for clientID's reading of stream.
func savedIndex(ctx context.Context, hubAddr, stream, clientID string) (uint64, error) {
	cli, err := client.Dial(hubAddr, clientOptions...)
	if err != nil {
		return 0, fmt.Errorf("read the index of %s: %w", clientID, err)
	}
	defer cli.Close()
	conn, err := cli.Open(ctx, 5*time.Second)
	if err != nil {
		return 0, fmt.Errorf("read the index of %s: %w", clientID, err)
	}
	defer conn.Close()
	idx, err := conn.GetIndex(ctx, clientID, stream, 0)
	if err != nil {
		return 0, fmt.Errorf("read the index of %s on %s: %w", clientID, stream, err)
	}
	return idx, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}
