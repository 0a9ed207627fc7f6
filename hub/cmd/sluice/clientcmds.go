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
Push messages to partition 0 of a stream (created if missing) and print the index the hub
assigned to each, one per line, in order. The messages are the arguments after the stream
name or, without any, the lines of standard input (without their "\n" or "\r\n"). Flags
go before the stream name; an argument after it that starts with "-" is refused, unless the
messages follow "--" (sluice push logs -- -1 "-x").

push returns once the hub confirmed every message as durably stored; messages are
pipelined, retried and resent after a reconnect, so a message may be stored twice but is
never lost silently. -timeout bounds the whole command: when it passes, or on any other
failure, push prints the indexes of the messages confirmed until then and exits 1 saying
how many were confirmed, that the others may or may not have been stored, and why.

A message is at most 65023 bytes (one frame, whatever the backend allows; less when the
hub runs with a lower -max-message-size). Arguments are all checked before any is pushed; a
standard input line over the limit stops push there: the lines before it are pushed and
confirmed, the rest is not.

Examples:
  sluice push orders "first order" "second order"
  printf 'a\nb\nc\n' | sluice push orders
  sluice push -hub 10.0.0.5:4000 -quiet logs < app.log
  sluice push temperatures -- -3.5
`,
		flags: pushFlags,
	})
	register(&command{
		name:    "pull",
		summary: "print the messages of a stream, from an index or a client id's saved index",
		usage:   "[flags] STREAM",
		help: `
Print the messages of partition 0 of a stream, one per line as "INDEX<TAB>DATA" (or only
DATA with -raw, or with -json one JSON object per line: {"index":N,"data":"TEXT"} when the
data is valid UTF-8, else {"index":N,"data_base64":"BASE64"}, so that any data round-trips),
starting at -from or, with -client-id, at the index that client id saved. pull stops when
no new message arrives for -idle, or after -max messages. With -client-id it saves the next
index after printing, so the next pull with the same id continues where this one stopped.

pull does not create streams: a stream that does not exist is an error (create it with
"sluice create"). pull exits 1 when the hub cannot be reached, also when the connection
fails midway (it then says how many messages it printed).

Examples:
  sluice pull orders
  sluice pull -from 100 -max 10 orders
  sluice pull -client-id billing orders     # resume, and remember the position
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
Follow partition 0 of a stream: print its messages, starting at -from (default 0, the oldest)
or at the index saved for -client-id, and then every new message as soon as it is appended,
until interrupted (Ctrl-C). Waiting uses long-poll pulls: the hub answers when a message
arrives, there is no polling interval. With -client-id the position is saved as messages are
printed, so a restarted tail continues where it stopped. Output as for pull.

tail does not create streams: a stream that does not exist is an error (create it with
"sluice create"). While the hub cannot be reached, tail retries; it says so on stderr once
per outage, and again when it reaches the hub.

Examples:
  sluice tail orders
  sluice tail -client-id dashboard -raw orders
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

func pushFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	hubAddr := hubFlag(fs)
	quiet := fs.Bool("quiet", false, "do not print the indexes")
	window := fs.Int("window", client.DefaultWindow, "messages in flight before push waits for confirms")
	timeout := fs.Duration("timeout", 30*time.Second, "give up when the hub has not confirmed everything after this long (bounds the whole command)")
	verbose := fs.Bool("v", false, "log reconnects and retries to stderr")
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
		if *window < 1 {
			return usageErr("-window %d: want at least 1", *window)
		}
		if *timeout <= 0 {
			return usageErr("-timeout %v: want more than 0", *timeout)
		}
		if err := checkHubAddr(*hubAddr); err != nil {
			return err
		}
		// Check every argument before pushing any.
		for i, m := range msgs {
			if len(m) > client.MaxMessageSize {
				return fmt.Errorf("message %d is %d bytes, the limit is %d; nothing was pushed", i+1, len(m), client.MaxMessageSize)
			}
		}
		log := verboseLogger(sio, *verbose)
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		c, err := client.Dial(*hubAddr, client.WithLogger(log))
		if err != nil {
			return err
		}
		defer c.Close()
		var last lastError // the publisher's latest session failure: why confirms are missing
		// Close timeout 0: the acks are awaited under ctx below, so Close must not wait
		// again beyond -timeout.
		p, err := client.NewPublisher(ctx, c, stream, client.WithWindow(*window),
			client.WithPublisherLogger(log), client.WithPublisherSessionErrors(last.set), client.WithCloseTimeout(0))
		if err != nil {
			return err
		}
		defer p.Close()

		// Acks are printed in publish order by one goroutine while publishing continues.
		acks := make(chan *client.Ack, *window)
		printed := make(chan pushResult, 1)
		go func() { // owned by this function: ends when acks is closed and drained
			var r pushResult
			for a := range acks {
				r.published++
				idx, err := a.Wait(ctx)
				switch {
				case err != nil:
					if r.ackErr == nil {
						r.ackErr = err
					}
				case r.confirmed == r.published-1: // all before it confirmed too
					r.confirmed++
					if !*quiet {
						fmt.Fprintln(sio.out, idx)
					}
				default:
					r.confirmed++
					r.late = append(r.late, lateConfirm{r.published, idx})
				}
			}
			printed <- r
		}()
		publish := func(data []byte) error {
			a, err := p.Publish(ctx, data)
			if err != nil {
				return err
			}
			acks <- a
			return nil
		}
		var perr error
		input := "message"
		if len(msgs) > 0 {
			for _, m := range msgs {
				if perr = publish([]byte(m)); perr != nil {
					break
				}
			}
		} else {
			input = "line"
			lr := newLineReader(sio.in, client.MaxMessageSize)
			for {
				line, lerr := lr.next()
				if lerr == io.EOF {
					break
				}
				if lerr != nil {
					perr = lerr
					break
				}
				if perr = publish(line); perr != nil {
					break
				}
			}
		}
		close(acks)
		r := <-printed
		_ = p.Close() // every ack's outcome is known: Close adds nothing to r
		return r.err(ctx, perr, input, *hubAddr, *timeout, last.get(), len(msgs))
	}
}

// pushResult is what push learned from the acks, in publish order.
type pushResult struct {
	published, confirmed int
	ackErr               error         // the first ack that failed
	late                 []lateConfirm // confirmed after an earlier message failed
}

// lateConfirm is a message (numbered from 1) confirmed after one before it was not.
type lateConfirm struct {
	n     int
	index uint64
}

// err returns push's error: nil when every message was published and confirmed, else what
// was wrong, which messages were confirmed and which may or may not have been stored.
// perr is the error that stopped publishing, input "message" or "line", cause the
// publisher's latest session failure and args the count of messages given as arguments.
func (r pushResult) err(ctx context.Context, perr error, input, hubAddr string, timeout time.Duration, cause error, args int) error {
	if r.confirmed == r.published && perr == nil {
		return nil
	}
	var b strings.Builder
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		fmt.Fprintf(&b, "not confirmed within -timeout %v", timeout)
	case ctx.Err() != nil:
		b.WriteString("interrupted")
	case perr != nil:
		b.WriteString(perr.Error())
	default:
		fmt.Fprintf(&b, "%v", r.ackErr)
	}
	if r.confirmed < r.published {
		if cause != nil {
			fmt.Fprintf(&b, "; last error: %v", &hubError{hubAddr, cause})
		} else if r.ackErr != nil && ctx.Err() == nil && perr != nil {
			fmt.Fprintf(&b, "; %v", r.ackErr)
		}
	}
	fmt.Fprintf(&b, "\n  %d of %d %s(s) confirmed", r.confirmed, r.published, input)
	if r.confirmed > len(r.late) {
		fmt.Fprintf(&b, " (%ss 1-%d: their indexes are printed)", input, r.confirmed-len(r.late))
	}
	if len(r.late) > 0 {
		b.WriteString("; confirmed after an earlier one failed:")
		for i, l := range r.late {
			if i == 20 {
				fmt.Fprintf(&b, " and %d more", len(r.late)-i)
				break
			}
			fmt.Fprintf(&b, " %s %d (index %d)", input, l.n, l.index)
		}
	}
	if r.confirmed < r.published {
		fmt.Fprintf(&b, "; the other %d may or may not have been stored", r.published-r.confirmed)
	}
	switch {
	case args > r.published:
		fmt.Fprintf(&b, "; messages %d-%d were not sent", r.published+1, args)
	case args == 0 && perr != nil:
		fmt.Fprintf(&b, "; line %d and the rest of standard input were not pushed", r.published+1)
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
	var maxMsgs uint64
	var idle time.Duration
	if !follow {
		fs.Uint64Var(&maxMsgs, "max", 0, "stop after this many messages (0: no limit)")
		fs.DurationVar(&idle, "idle", time.Second, "stop when no message arrives for this long")
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
		if !follow && idle <= 0 {
			return usageErr("-idle %v: want more than 0", idle)
		}
		if err := checkHubAddr(*hubAddr); err != nil {
			return err
		}
		log := verboseLogger(sio, *verbose)
		c, err := client.Dial(*hubAddr, client.WithLogger(log))
		if err != nil {
			return err
		}
		defer c.Close()

		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// The consumer would create a missing stream: check first that it exists. pull fails
		// at once when the hub cannot be reached; tail says so and waits for it.
		watch := &hubWatch{cmd: "tail", addr: *hubAddr, w: sio.err, probe: func(ctx context.Context) error {
			_, err := streamExists(ctx, c, stream)
			return err
		}}
		defer watch.wait()
		defer cancel() // ends the probes before wait
		for n := 1; ; n++ {
			exists, err := streamExists(ctx, c, stream)
			if ctx.Err() != nil {
				return nil // interrupted (Ctrl-C)
			}
			if err == nil && !exists {
				return errNoStream(stream, *hubAddr)
			}
			if err == nil {
				break
			}
			if !follow {
				return &hubError{*hubAddr, err}
			}
			watch.fail(err)
			if core.Sleep(ctx, client.DefaultBackoff.Delay(n)) != nil {
				return nil
			}
		}
		watch.ok()

		var (
			mu      sync.Mutex
			count   uint64
			last    = time.Now()
			lastErr error // a session failure after the last message
		)
		onFail := func(err error) {
			mu.Lock()
			lastErr = err
			mu.Unlock()
			if follow {
				watch.failed(ctx, err)
			}
		}
		enc := json.NewEncoder(sio.out)
		handler := func(_ context.Context, m core.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if maxMsgs > 0 && count >= maxMsgs {
				// Past -max: fail the handler, which stops Run without marking this
				// message handled, so a later pull with the same client id gets it.
				return errDone
			}
			switch {
			case *asJSON:
				_ = enc.Encode(jsonMessage(m))
			case *raw:
				fmt.Fprintf(sio.out, "%s\n", m.Data)
			default:
				fmt.Fprintf(sio.out, "%d\t%s\n", m.Index, m.Data)
			}
			count++
			last = time.Now()
			lastErr = nil
			return nil
		}
		opts := []client.ConsumerOption{
			client.WithStartIndex(*from),
			client.WithConsumerLogger(log),
			client.WithConsumerSessionErrors(onFail),
			client.WithErrorPolicy(client.Stop),
			client.WithHandlerRetries(0, client.DefaultBackoff),
		}
		if *clientID != "" {
			opts = append(opts, client.WithClientID(*clientID))
		}
		if !follow {
			// A short long-poll, so that pull notices within about -idle that it is
			// caught up.
			opts = append(opts, client.WithPullWait(min(idle, client.DefaultPullWait)))
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
					done := (maxMsgs > 0 && count >= maxMsgs) || time.Since(last) >= idle
					mu.Unlock()
					if done {
						_ = cons.Close()
						return
					}
				}
			}()
		}
		err = cons.Run(ctx)
		if ctx.Err() != nil && !errors.Is(err, errDone) {
			return nil // interrupted (Ctrl-C)
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
