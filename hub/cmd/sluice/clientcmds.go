package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

func init() {
	register(&command{
		name:    "push",
		summary: "push messages to a stream and print their indexes",
		usage:   "[flags] STREAM [--] [MESSAGE...]",
		help: `
Push messages to a partition of a stream (-partition, default 0) and print the index the
hub assigned to each, one per line, in order. The messages are the arguments after the
stream name or, without any, the lines of standard input (without their "\n" or "\r\n").
Flags go before the stream name; an argument after it that starts with "-" is refused,
unless the messages follow "--" (sluice push logs -- -1 "-x").

For partition 0 a missing stream is created, with one partition. A partition above 0
needs a stream created with more partitions (sluice create -partitions N): push never
creates it, and fails when the stream does not exist or has no such partition.

-key K pushes to the partition of key K instead: the one a Kafka producer would choose for
a record with key K and the stream's partition count (murmur2), so that messages with one
key stay in one partition, in order. The stream must exist; push prints the partition on
standard error, unless -quiet.

push returns once the hub confirmed every message as durably stored; messages are
pipelined, retried and resent after a reconnect, so a message may be stored twice but is
never lost silently. While the hub cannot be reached push says so on stderr, once for each
kind of failure (a lost connection, a refused one, no answer), and retries. -timeout
bounds how long the hub may leave push without a confirm: when messages wait and none is
confirmed for -timeout, push gives up. A long push that keeps being confirmed does not
time out, nor does waiting for standard input ("tail -f app.log | sluice push logs" runs
until its input ends or Ctrl-C). When messages have waited 5 s without a confirm, push
says so on stderr, and again when the hub answers; of an address that has answered nothing
at all it asks whether it is a sluice hub's. A message the hub refuses 3 times (larger
than its -max-message-size, or a backend that keeps failing) stops push, and so does a
-hub address that answers with HTTP (a hub's -metrics-addr): no hub is there.

On a failure or Ctrl-C push stops reading its input, prints the indexes of the messages
confirmed until then and says how many were confirmed, how many may or may not have been
stored (none when nothing was sent), which were not sent, and why; it exits 1, or 130
after Ctrl-C.

A message is at most 65023 bytes (one frame, whatever the backend allows; less when the
hub runs with a lower -max-message-size). Arguments are all checked before any is pushed; a
standard input line over the limit stops push there: the lines before it are pushed and
confirmed, the rest is not.

Examples:
  sluice push orders "first order" "second order"
  printf 'a\nb\nc\n' | sluice push orders
  sluice push -hub 10.0.0.5:4000 -quiet logs < app.log
  sluice push temperatures -- -3.5
  sluice push -partition 2 orders "to partition 2"   # a stream created with -partitions 3+
  sluice push -key device-42 readings "21.5"          # the partition of key device-42
`,
		flags: pushFlags,
	})
	register(&command{
		name:    "pull",
		summary: "print the messages of a stream, from an index or a client id's saved index",
		usage:   "[flags] STREAM",
		help: `
Print the messages of a partition of a stream (-partition, default 0), one per line as
"INDEX<TAB>DATA" (or only DATA with -raw, or with -json one JSON object per line:
{"index":N,"data":"TEXT"} when the data is valid UTF-8, else
{"index":N,"data_base64":"BASE64"}, so that any data round-trips), starting at -from or,
with -client-id, at the index that client id saved. pull stops after -max messages, or
when no new message arrived for -idle and the hub answered that there is none: -idle counts
from when pull starts reading the stream (connecting and getting the saved index do not
count), and a backend slow to read it does not end pull (a hub that does not answer a read
within about 30 s does, with an error). With -client-id it saves the next index after
printing, so the next pull with the same id continues where this one stopped (a client id
saves one index per partition).

pull does not create streams: a stream that does not exist, or a -partition it does not
have, is an error (create it with "sluice create", with -partitions N for more than one).
pull exits 1 when the hub cannot be reached, also when the connection fails midway, or
when it cannot write a message to standard output (it then says how many messages it
printed; with -client-id the saved position stays at the first message it did not print).
A pipe closed by its reader (| head) ends it at once, as it does any program; the saved
position stays before the message being written then too. Ctrl-C stops pull, saying how
many messages it printed, with exit status 130.

Examples:
  sluice pull orders
  sluice pull -from 100 -max 10 orders
  sluice pull -client-id billing orders     # resume, and remember the position
  sluice pull -partition 2 orders           # a stream created with -partitions 3 or more
`,
		flags: func(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
			return consumeFlags(fs, false)
		},
	})
	register(&command{
		name:    "tail",
		summary: "follow a stream, printing messages as they arrive",
		usage:   "[flags] STREAM",
		help: `
Follow a partition of a stream (-partition, default 0): print its messages, starting at
-from (default 0, the oldest) or at the index saved for -client-id, and then every new
message as soon as it is appended, until interrupted (Ctrl-C). Waiting uses long-poll
pulls: the hub answers when a message arrives through it, there is no polling interval (a
message pushed through another hub of the same backend shows when the 5 s wait ends). With
-client-id the position is saved as messages are printed, so a restarted tail continues
where it stopped. Output as for pull.

tail does not create streams: a stream that does not exist, or a -partition it does not
have, is an error (create it with "sluice create", with -partitions N for more than one),
also when the hub comes back without it after an outage. While the hub cannot be reached,
tail retries; it says so on stderr once for each kind of failure in an outage (a lost
connection, a refused one, no answer), and again when it reaches the hub. A hub that has
answered nothing 5 s after tail started is named on stderr (is the address a sluice
hub's?), and so is a hub that stops answering in the middle of a tail: it answers each pull
within 5 s, also when there is no new message, and is named when one has waited 10 s; tail
keeps waiting, says when the hub answers, and reconnects when a pull has had no answer for
35 s. A -hub address that answers with HTTP (a hub's -metrics-addr) stops tail: no hub is
there. Ctrl-C stops tail, saying how many messages it printed, with exit status 130 (as a
shell reports a program that SIGINT ended).

Examples:
  sluice tail orders
  sluice tail -client-id dashboard -raw orders
  sluice tail -partition 1 -client-id dashboard orders
`,
		flags: func(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
			return consumeFlags(fs, true)
		},
	})
}

// verboseLogger returns a logger to stderr when verbose, else a discarding one.
func verboseLogger(sio *stdio, verbose bool) *slog.Logger {
	if !verbose {
		return discard
	}
	return slog.New(slog.NewTextHandler(sio.err, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pushMaxRejections is how many times push lets the hub refuse one message (status ERROR:
// larger than the hub's -max-message-size, or a backend that keeps failing) before it gives
// up on it and stops.
const pushMaxRejections = 3

// maxPushWindow is the largest -window of push: its in-flight messages are buffered.
const maxPushWindow = client.MaxWindow

// defaultPushTimeout is the default -timeout of push.
const defaultPushTimeout = 30 * time.Second

// errStalled ends a push whose messages the hub did not confirm for -timeout.
var errStalled = errors.New("stalled")

func pushFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	hubAddr := hubFlag(fs)
	quiet := fs.Bool("quiet", false, "do not print the indexes")
	window := fs.Int("window", client.DefaultWindow, fmt.Sprintf("messages in flight before push waits for confirms (1 to %d)", maxPushWindow))
	timeout := fs.Duration("timeout", defaultPushTimeout, "give up when messages wait for the hub's confirm and none arrives for this long (a push that keeps being confirmed, or waits for standard input, does not time out)")
	verbose := fs.Bool("v", false, "log reconnects and retries to stderr")
	partition := partitionFlag(fs)
	key := fs.String("key", "", "push to the partition of this key (Kafka's default partitioner) instead of -partition; the stream must exist")
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) == 0 {
			return usageErr("missing stream name")
		}
		stream, msgs := args[0], args[1:]
		if err := core.ValidateStreamName(stream); err != nil {
			return usageErr("%v", err)
		}
		if len(msgs) > 0 && msgs[0] == "--" {
			msgs = msgs[1:]
		} else {
			for _, m := range msgs {
				if strings.HasPrefix(m, "-") {
					return usageErr("%q after the stream name looks like a flag: flags go before the stream name; to push a message starting with \"-\", put -- before the messages (sluice push %s -- %s)", m, stream, m)
				}
			}
		}
		if *window < 1 || *window > maxPushWindow {
			return usageErr("-window %d: want 1 to %d", *window, maxPushWindow)
		}
		if *timeout <= 0 {
			return usageErr("-timeout %v: want more than 0", *timeout)
		}
		if err := checkPartition(*partition); err != nil {
			return err
		}
		keyed := flagSet(fs, "key")
		if keyed && flagSet(fs, "partition") {
			return usageErr("-key and -partition exclude each other: -key chooses the partition")
		}
		if err := checkHubAddr(*hubAddr); err != nil {
			return fromEnv(err, fs, "hub", "SLUICE_HUB")
		}
		// Check every argument before pushing any.
		for i, m := range msgs {
			if len(m) > client.MaxMessageSize {
				return fmt.Errorf("message %d is %d bytes, the limit is %d; nothing was pushed", i+1, len(m), client.MaxMessageSize)
			}
		}
		cfg := pushConfig{hubAddr: *hubAddr, stream: stream, partition: *partition, window: *window, timeout: *timeout, quiet: *quiet, verbose: *verbose}
		if keyed {
			p, err := keyPartition(ctx, sio, cfg, *key)
			if err != nil {
				return err
			}
			cfg.partition = p
		}
		return push(ctx, sio, cfg, msgs)
	}
}

// keyPartition returns the partition of key in the stream of cfg, which must exist, and
// says which on standard error unless cfg.quiet.
func keyPartition(ctx context.Context, sio *stdio, cfg pushConfig, key string) (int, error) {
	c, err := client.Dial(cfg.hubAddr, client.WithLogger(verboseLogger(sio, cfg.verbose)))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	n, exists, err := streamPartitions(ctx, c, cfg.stream)
	switch {
	case err != nil && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return 0, interrupted("; nothing was pushed")
	case err != nil:
		return 0, &hubError{cfg.hubAddr, err}
	case !exists:
		return 0, fmt.Errorf("stream %q does not exist on hub %s; -key needs the stream and its partition count (create it with: sluice create -partitions N %s)", cfg.stream, cfg.hubAddr, cfg.stream)
	}
	p := client.KeyPartition([]byte(key), n)
	if !cfg.quiet {
		fmt.Fprintf(sio.err, "sluice push: key %q is partition %d of %d\n", key, p, n)
	}
	return p, nil
}

// refusal reports whether err is the hub refusing a push it took (status ERROR), not a
// failure to reach it, a request it did not take (a hub shutting down) or a session it
// failed (a stream it would not create).
func refusal(err error) bool { return errors.Is(err, client.ErrRefused) }

// pushConfig is the parsed command line of "sluice push".
type pushConfig struct {
	hubAddr, stream string
	partition       int
	window          int
	timeout         time.Duration
	quiet, verbose  bool
}

// pending is a published message whose outcome the printer awaits.
type pending struct {
	ack  *client.Ack
	at   time.Time // when Publish returned
	size int
}

// push publishes msgs, or the lines of standard input when there are none, prints their
// indexes in order and returns what went wrong, if anything. It stops publishing when ctx
// ends (Ctrl-C), when the hub confirmed nothing for cfg.timeout while messages waited
// (errStalled), or at the first message that failed; what it read after that is not
// published.
func push(parent context.Context, sio *stdio, cfg pushConfig, msgs []string) error {
	log := verboseLogger(sio, cfg.verbose)
	ctx, stop := context.WithCancelCause(parent)
	defer stop(nil)
	c, err := client.Dial(cfg.hubAddr, client.WithLogger(log))
	if err != nil {
		return err
	}
	defer c.Close()
	var last lastError // the publisher's latest session failure: why confirms are missing
	watch := &hubWatch{cmd: "push", addr: cfg.hubAddr, w: sio.err, retrying: fmt.Sprintf("retrying for up to -timeout %v", cfg.timeout)}
	onFail := func(err error) {
		last.set(err)
		switch {
		case notHub(err):
			stop(err) // retrying cannot help
		case !refusal(err): // a refused message is retried a few times, then reported
			watch.fail(err)
		}
	}
	// Close timeout 0: the acks are awaited below, so Close must not wait again.
	p, err := client.NewPublisher(ctx, c, cfg.stream, client.WithWindow(cfg.window),
		client.WithPublisherLogger(log), client.WithPublisherSessionErrors(onFail), client.WithCloseTimeout(0),
		client.WithMaxRejections(pushMaxRejections), client.WithPartition(cfg.partition))
	if err != nil {
		if parent.Err() != nil {
			return interrupted("; nothing was pushed")
		}
		return err
	}
	defer p.Close()

	r := pushResult{hubAddr: cfg.hubAddr, timeout: cfg.timeout, quiet: cfg.quiet, args: len(msgs), input: "message"}
	if len(msgs) == 0 {
		r.input = "line"
	}
	// silence is what push says when a message has waited silenceNotice for its confirm.
	silence := func() string {
		if p.Stats().Sent == 0 { // not even the stream's creation was answered
			return fmt.Sprintf("hub %s has answered nothing for %v: is it a sluice hub? (push waits for up to -timeout %v)", cfg.hubAddr, silenceNotice, cfg.timeout)
		}
		return fmt.Sprintf("hub %s has confirmed nothing for %v (push waits for up to -timeout %v)", cfg.hubAddr, silenceNotice, cfg.timeout)
	}
	// Acks are printed in publish order by one goroutine while publishing continues.
	acks := make(chan pending, cfg.window)
	failed := make(chan struct{}) // closed by the printer at the first message that failed
	printed := make(chan pushResult, 1)
	go func() { // owned by push: ends when acks is closed and drained
		r := r
		var settled time.Time // when the previous message's outcome arrived
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for m := range acks {
			r.published++
			// The hub has -timeout to confirm a message, counted from when it was
			// published or the previous one was settled, whichever is later.
			start := m.at
			if settled.After(start) {
				start = settled
			}
			timer.Reset(time.Until(start.Add(cfg.timeout)))
			cancelNotice := func() {}
			if silenceNotice < cfg.timeout {
				select {
				case <-m.ack.Done(): // nothing to wait for
				default:
					cancelNotice = watch.noticeSilence(start, silence)
				}
			}
			select {
			case <-m.ack.Done():
			case <-ctx.Done():
			case <-timer.C:
				stop(errStalled)
			}
			cancelNotice()
			idx, err := m.ack.Wait(ctx) // the outcome if it is known, else ctx's error
			settled = time.Now()
			switch {
			case err != nil:
				if r.ackErr == nil {
					r.ackErr, r.failedN, r.failedSize = err, r.published, m.size
					close(failed)
				}
				if errors.Is(err, client.ErrGaveUp) {
					r.refused++
				}
			case r.confirmed == r.published-1: // all before it confirmed too
				r.confirmed++
				watch.ok()
				if !cfg.quiet {
					fmt.Fprintln(sio.out, idx)
				}
			default:
				r.confirmed++
				r.late = append(r.late, lateConfirm{r.published, idx})
			}
		}
		printed <- r
	}()
	// publish publishes data unless push is stopping; it reports whether it did.
	publish := func(data []byte) (bool, error) {
		select {
		case <-ctx.Done():
			return false, nil
		case <-failed:
			return false, nil
		default:
		}
		a, err := p.Publish(ctx, data)
		if err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			return false, err
		}
		acks <- pending{a, time.Now(), len(data)}
		return true, nil
	}
	var perr error // what stopped publishing, other than ctx or a failed message
	complete := false
	if len(msgs) > 0 {
		complete = true
		for _, m := range msgs {
			ok, err := publish([]byte(m))
			if !ok {
				perr, complete = err, false
				break
			}
		}
	} else {
		complete, perr = pushLines(ctx, sio.in, failed, publish)
	}
	close(acks)
	r = <-printed
	_ = p.Close() // every ack's outcome is known: Close adds nothing to r
	r.sent = p.Stats().Sent
	return r.err(ctx, perr, complete, last.get())
}

// pushLines publishes the lines of in until its end (complete), a line that cannot be
// pushed (err), ctx ends or failed is closed. A line that arrives after ctx ended is not
// published: in is read in a goroutine, so that a quiet input (a terminal, a pipe from a
// program that waits) does not keep push from stopping.
func pushLines(ctx context.Context, in io.Reader, failed <-chan struct{}, publish func([]byte) (bool, error)) (complete bool, err error) {
	lines, next, stop := readLines(in, client.MaxMessageSize)
	defer close(stop)
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-failed:
			return false, nil
		case l := <-lines:
			if l.err == io.EOF {
				return true, nil
			}
			if l.err != nil {
				return false, l.err
			}
			if ok, err := publish(l.data); !ok {
				return false, err
			}
			next <- struct{}{}
		}
	}
}

// lineResult is a line of input, or the error that ended the input (io.EOF at its end).
type lineResult struct {
	data []byte
	err  error
}

// readLines reads the lines of r (see lineReader) in a goroutine and sends them on lines,
// the last one with an error (io.EOF at the end). A line's data is valid until the receiver
// sends on next, which it must do before it receives again. Closing stop ends the
// goroutine; one blocked in r.Read ends when that Read returns (for standard input, at the
// latest when the process exits), without reading further.
func readLines(r io.Reader, max int) (lines <-chan lineResult, next, stop chan<- struct{}) {
	out := make(chan lineResult)
	nextc := make(chan struct{}, 1)
	stopc := make(chan struct{})
	lr := newLineReader(r, max)
	go func() { // owned by the caller: ends at the input's end or error, or when stop is closed
		for {
			data, err := lr.next()
			select {
			case out <- lineResult{data, err}:
			case <-stopc:
				return
			}
			if err != nil {
				return
			}
			select {
			case <-nextc:
			case <-stopc:
				return
			}
		}
	}()
	return out, nextc, stopc
}

// pushResult is what push learned from the acks, in publish order, and what it needs to
// word its error.
type pushResult struct {
	hubAddr string
	timeout time.Duration
	quiet   bool
	args    int    // messages given as arguments (0: standard input)
	input   string // "message" or "line"

	published, confirmed int
	ackErr               error // the first message that failed ...
	failedN, failedSize  int   // ... its number (from 1) and size
	refused              int   // messages the hub refused until push gave up on them
	late                 []lateConfirm
	sent                 uint64 // transmissions: 0 when nothing was sent
}

// lateConfirm is a message (numbered from 1) confirmed after one before it was not.
type lateConfirm struct {
	n     int
	index uint64
}

// err returns push's error: nil when every message (complete: all of standard input, or
// every argument) was published and confirmed, else what was wrong, which messages were
// confirmed, which may or may not have been stored and which were not sent. perr is the
// error that stopped publishing, if any, and cause the publisher's latest session failure.
func (r pushResult) err(ctx context.Context, perr error, complete bool, cause error) error {
	if complete && perr == nil && r.ackErr == nil && r.confirmed == r.published {
		return nil
	}
	refusedMsg := ""
	if errors.Is(r.ackErr, client.ErrGaveUp) {
		refusedMsg = fmt.Sprintf("the hub refused %s %d (%d bytes) every time (%d attempts): is it larger than the hub's -max-message-size? (if not, the hub's log says why)",
			r.input, r.failedN, r.failedSize, pushMaxRejections)
	}
	var b strings.Builder
	stalled := errors.Is(context.Cause(ctx), errStalled)
	noHub := notHub(context.Cause(ctx))
	interrupt := false // the words come from errInterrupted
	switch {
	case stalled:
		fmt.Fprintf(&b, "the hub confirmed nothing for -timeout %v, so push gave up", r.timeout)
	case noHub:
		b.WriteString((&hubError{r.hubAddr, context.Cause(ctx)}).Error())
	case ctx.Err() != nil:
		interrupt = true
	case perr != nil:
		b.WriteString(perr.Error())
	case refusedMsg != "":
		b.WriteString(refusedMsg)
		refusedMsg = ""
	case r.ackErr != nil:
		b.WriteString(r.ackErr.Error())
	}
	if refusedMsg != "" {
		b.WriteString("; " + refusedMsg)
	}
	unknown := r.published - r.confirmed - r.refused // may or may not have been stored
	switch {
	case unknown > 0 && stalled && r.sent == 0 && (cause == nil || errors.Is(cause, client.ErrTimeout)):
		// Connected (a failed connect would be the cause), yet not even the stream's
		// creation was answered (its request may have timed out too: with the default
		// -timeout, at about the same time): a port that is not a hub's, most likely.
		fmt.Fprintf(&b, "; %s accepted the connection but answered nothing: is it a sluice hub? (if it is, its log may say why)", r.hubAddr)
	case unknown > 0 && cause != nil && !refusal(cause) && !noHub:
		fmt.Fprintf(&b, "; last error: %v", &hubError{r.hubAddr, cause})
	}
	fmt.Fprintf(&b, "\n  %d of %d %s(s) confirmed", r.confirmed, r.published, r.input)
	if n := r.confirmed - len(r.late); n > 0 {
		span := fmt.Sprintf("%ss 1-%d", r.input, n)
		if n == 1 {
			span = r.input + " 1"
		}
		switch {
		case r.quiet:
			fmt.Fprintf(&b, " (%s)", span)
		case n == 1:
			fmt.Fprintf(&b, " (%s: its index is printed)", span)
		default:
			fmt.Fprintf(&b, " (%s: their indexes are printed)", span)
		}
	}
	if len(r.late) > 0 {
		b.WriteString("; confirmed after an earlier one failed:")
		for i, l := range r.late {
			if i == 20 {
				fmt.Fprintf(&b, " and %d more", len(r.late)-i)
				break
			}
			fmt.Fprintf(&b, " %s %d (index %d)", r.input, l.n, l.index)
		}
	}
	if r.refused > 0 {
		fmt.Fprintf(&b, "; %d refused (not stored)", r.refused)
	}
	if unknown > 0 {
		if r.sent == 0 {
			b.WriteString("; nothing was sent")
		} else {
			fmt.Fprintf(&b, "; the other %d may or may not have been stored", unknown)
		}
	}
	switch {
	case r.args > r.published+1:
		fmt.Fprintf(&b, "; messages %d-%d were not sent", r.published+1, r.args)
	case r.args == r.published+1:
		fmt.Fprintf(&b, "; message %d was not sent", r.args)
	case r.args == 0 && !complete:
		fmt.Fprintf(&b, "; line %d and the rest of standard input were not pushed", r.published+1)
	}
	if stalled {
		fmt.Fprintf(&b, "\n  a hub that is slow or restarting needs a longer -timeout (the default is %v)", defaultPushTimeout)
	}
	if interrupt {
		return interrupted(b.String())
	}
	return errors.New(b.String())
}

// lineReader reads lines like bufio.ScanLines (without "\n" or "\r\n"), and measures a
// line longer than max without holding it.
type lineReader struct {
	r   *bufio.Reader
	max int
	n   int // lines read
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, max+2), max: max} // +2: "\r\n"
}

// next returns the next line, valid until the next call; io.EOF after the last one. A
// line longer than max is an error naming its number and size.
func (l *lineReader) next() ([]byte, error) {
	line, err := l.r.ReadSlice('\n')
	if err == nil || (err == io.EOF && len(line) > 0) {
		l.n++
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > l.max {
			return nil, l.tooLong(len(line))
		}
		return line, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err // io.EOF after the last line, or a read error
	}
	// Longer than the buffer: measure the rest of the line without holding it.
	l.n++
	size := len(line)
	prev := line[len(line)-1] // the byte before the chunk read next
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = l.r.ReadSlice('\n')
		size += len(line)
		if len(line) > 0 && errors.Is(err, bufio.ErrBufferFull) {
			prev = line[len(line)-1]
		}
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if err == nil { // without the "\n" or "\r\n"
		size--
		if (len(line) >= 2 && line[len(line)-2] == '\r') || (len(line) == 1 && prev == '\r') {
			size--
		}
	}
	return nil, l.tooLong(size)
}

func (l *lineReader) tooLong(size int) error {
	return fmt.Errorf("line %d is %d bytes, the limit is %d", l.n, size, l.max)
}

// consumeFlags declares the flags of pull (follow false) and tail (follow true).
func consumeFlags(fs *flag.FlagSet, follow bool) func(context.Context, *stdio, []string) error {
	hubAddr := hubFlag(fs)
	from := fs.Uint64("from", 0, "index to start at when the client id has no saved index (or without -client-id)")
	clientID := fs.String("client-id", "", "consumer identity: start at its saved index and save the position")
	raw := fs.Bool("raw", false, "print only the message data")
	asJSON := fs.Bool("json", false, `print one JSON object per message: {"index":N,"data":"..."}, or "data_base64" for data that is not UTF-8`)
	verbose := fs.Bool("v", false, "log reconnects and retries to stderr")
	partition := partitionFlag(fs)
	var maxMsgs uint64
	var idle time.Duration
	if !follow {
		fs.Uint64Var(&maxMsgs, "max", 0, "stop after this many messages (0: no limit)")
		fs.DurationVar(&idle, "idle", time.Second, "stop when no message arrived for this long (counted from when pull starts reading the stream) and the hub answered that there is none")
	}
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) != 1 {
			for _, a := range args[min(1, len(args)):] {
				if strings.HasPrefix(a, "-") {
					return usageErr("%q after the stream name looks like a flag: flags go before the stream name", a)
				}
			}
			return usageErr("want exactly one stream name, got %d arguments", len(args))
		}
		stream := args[0]
		if err := core.ValidateStreamName(stream); err != nil {
			return usageErr("%v", err)
		}
		if *raw && *asJSON {
			return usageErr("-raw and -json exclude each other: choose one")
		}
		if !follow && idle <= 0 {
			return usageErr("-idle %v: want more than 0", idle)
		}
		if err := checkPartition(*partition); err != nil {
			return err
		}
		// A client id given, also an empty one ("-client-id $ID" with ID unset), must be
		// valid: checked here, not after reaching the hub, and never silently ignored.
		if flagSet(fs, "client-id") {
			if err := core.ValidateClientID(*clientID); err != nil {
				return usageErr("-client-id: %v", err)
			}
		}
		if err := checkHubAddr(*hubAddr); err != nil {
			return fromEnv(err, fs, "hub", "SLUICE_HUB")
		}
		log := verboseLogger(sio, *verbose)
		c, err := client.Dial(*hubAddr, client.WithLogger(log))
		if err != nil {
			return err
		}
		defer c.Close()

		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		// The consumer never creates the stream (WithoutCreate): Run ends with
		// core.ErrStreamNotFound when it does not exist, at the start or after a reconnect
		// (a hub restarted on another backend, a deleted stream). pull checks first, so
		// that it fails at once when the hub cannot be reached; tail says so and retries.
		if !follow {
			n, exists, err := streamPartitions(ctx, c, stream)
			if ctx.Err() != nil {
				return interrupted("; nothing was printed")
			}
			if err != nil {
				return &hubError{*hubAddr, err}
			}
			if !exists {
				return errNoStream(stream, *hubAddr, *partition)
			}
			if *partition >= n {
				return errNoPartition(stream, *hubAddr, *partition, n)
			}
		}
		watch := &hubWatch{cmd: "tail", addr: *hubAddr, w: sio.err}
		cancelNotice := func() {}
		if follow {
			cancelNotice = watch.noticeSilence(time.Now(), func() string {
				return fmt.Sprintf("hub %s has answered nothing for %v: is it a sluice hub? (tail keeps waiting)", *hubAddr, silenceNotice)
			})
		}
		defer cancelNotice()
		// answers names a hub that stops answering in the middle of a tail (follow only; set
		// when the first session starts, in Run's goroutine, which runs all the callbacks).
		var answers *answerWatch
		defer func() {
			if answers != nil {
				answers.stop()
			}
		}()

		var (
			mu       sync.Mutex
			count    uint64
			last     = time.Now() // the last message, or the start of the session after it
			lastErr  error        // a session failure after the last message
			caughtUp bool         // the hub answered a pull with no message since last
			outErr   error        // writing a message to standard output failed
		)
		// onFail runs in Run's goroutine after a session failed, before the consumer
		// retries; tail warns once per outage, and says when it reaches the hub again
		// (onStart).
		onFail := func(err error) {
			mu.Lock()
			lastErr = err
			mu.Unlock()
			switch {
			case notHub(err):
				cancel(err) // retrying cannot help
			case follow:
				watch.fail(err)
			}
		}
		onStart := func() {
			if follow {
				cancelNotice() // the hub answered
				if answers == nil {
					limit := tailPullWait + silenceNotice
					answers = watch.watchAnswers(limit, func() string {
						return fmt.Sprintf("hub %s has not answered for %v, though it answers a pull within %v also when there is no new message (tail keeps waiting)", *hubAddr, limit, tailPullWait)
					})
				}
				answers.answered()
				return
			}
			// -idle counts from when pull can read: connecting, opening the stream and
			// getting the client id's saved index may take longer on a busy hub or broker.
			mu.Lock()
			last, caughtUp = time.Now(), false
			mu.Unlock()
		}
		// onPull runs in Run's goroutine when the hub answered a pull. pull stops for -idle
		// only once the hub said that there is no new message: a backend slow to read the
		// stream (a broker's first fetch of a partition) is no idle stream.
		onPull := func(n int) {
			if n == 0 {
				mu.Lock()
				caughtUp = true
				mu.Unlock()
			}
		}
		enc := json.NewEncoder(sio.out)
		handler := func(_ context.Context, m core.Message) error {
			if answers != nil { // writing to standard output is no silence of the hub
				answers.begin()
				defer answers.end()
			}
			mu.Lock()
			defer mu.Unlock()
			if maxMsgs > 0 && count >= maxMsgs {
				// Past -max: fail the handler, which stops Run without marking this
				// message handled, so a later pull with the same client id gets it.
				return errDone
			}
			var err error
			switch {
			case *asJSON:
				err = enc.Encode(jsonMessage(m))
			case *raw:
				_, err = fmt.Fprintf(sio.out, "%s\n", m.Data)
			default:
				_, err = fmt.Fprintf(sio.out, "%d\t%s\n", m.Index, m.Data)
			}
			if err != nil {
				// Not printed: fail the handler, which stops Run without marking this
				// message handled, so the saved position stays before it.
				outErr = fmt.Errorf("write message %d to standard output: %w", m.Index, err)
				return outErr
			}
			count++
			last, caughtUp = time.Now(), false
			lastErr = nil
			return nil
		}
		opts := []client.ConsumerOption{
			client.WithoutCreate(),
			client.WithStartIndex(*from),
			client.WithConsumerLogger(log),
			client.WithConsumerSessionErrors(onFail),
			client.WithConsumerSessionStart(onStart),
			client.WithErrorPolicy(client.Stop),
			client.WithHandlerRetries(0, client.DefaultBackoff),
			client.WithConsumerPartition(*partition),
		}
		if *clientID != "" {
			opts = append(opts, client.WithClientID(*clientID))
		}
		if follow {
			// Each pull is answered within tailPullWait, with or without messages.
			opts = append(opts, client.WithPullWait(tailPullWait), client.WithConsumerPullAnswered(func(int) { answers.answered() }))
		} else {
			// A short long-poll, so that pull learns within about -idle that it is
			// caught up: the hub's answer without a message (onPull).
			opts = append(opts, client.WithPullWait(min(idle, client.DefaultPullWait)), client.WithConsumerPullAnswered(onPull))
		}
		cons, err := client.NewConsumer(c, stream, handler, opts...)
		if err != nil {
			return err
		}
		if !follow {
			// Stop after -max messages or -idle without one.
			go func() { // owned by this function: ends with ctx
				t := time.NewTicker(min(idle/4+time.Millisecond, 100*time.Millisecond))
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					mu.Lock()
					// Idle once the hub said it has no new message, or after a failed
					// session (the error is reported).
					done := (maxMsgs > 0 && count >= maxMsgs) || (time.Since(last) >= idle && (caughtUp || lastErr != nil))
					mu.Unlock()
					if done {
						_ = cons.Close()
						return
					}
				}
			}()
		}
		err = cons.Run(ctx)
		mu.Lock()
		printErr, printed := outErr, count
		mu.Unlock()
		if printErr != nil {
			return fmt.Errorf("stopped after %d message(s): %w", printed, printErr)
		}
		if errors.Is(err, core.ErrStreamNotFound) {
			return errNoStream(stream, *hubAddr, *partition)
		}
		if cause := context.Cause(ctx); notHub(cause) {
			return fmt.Errorf("stopped after %d message(s): %w", printed, &hubError{*hubAddr, cause})
		}
		if ctx.Err() != nil && !errors.Is(err, errDone) {
			return interrupted(fmt.Sprintf(" after %d message(s)", printed))
		}
		if err != nil && !errors.Is(err, errDone) {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if lastErr != nil && (maxMsgs == 0 || count < maxMsgs) {
			// Idle because the hub failed, not because the stream has no more messages.
			return fmt.Errorf("stopped after %d message(s): %w", count, &hubError{*hubAddr, lastErr})
		}
		return nil // idle or -max reached
	}
}

// jsonMessage is a message as pull -json prints it: data that is valid UTF-8 as "data",
// other data base64-encoded as "data_base64" (exactly one of the two is present).
func jsonMessage(m core.Message) any {
	if utf8.Valid(m.Data) {
		return struct {
			Index uint64 `json:"index"`
			Data  string `json:"data"`
		}{m.Index, string(m.Data)}
	}
	return struct {
		Index uint64 `json:"index"`
		Data  []byte `json:"data_base64"`
	}{m.Index, m.Data}
}

// errDone ends a pull that printed -max messages.
var errDone = errors.New("done")
