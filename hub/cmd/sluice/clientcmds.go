package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

func init() {
	register(&command{
		name:    "push",
		summary: "push messages to a stream and print their indexes",
		usage:   "[flags] STREAM [MESSAGE...]",
		help: `
Push messages to partition 0 of a stream (created if missing) and print the index the hub
assigned to each, one per line, in order. The messages are the arguments after the stream
name or, without any, the lines of standard input (without their newline). push returns once
the hub confirmed every message as durably stored; messages are pipelined, retried and
resent after a reconnect, so a message may be stored twice but is never lost silently.

Examples:
  sluice push orders "first order" "second order"
  printf 'a\nb\nc\n' | sluice push orders
  sluice push -hub 10.0.0.5:4000 -quiet logs < app.log
`,
		flags: pushFlags,
	})
	register(&command{
		name:    "pull",
		summary: "print the messages of a stream, from an index or a client id's saved index",
		usage:   "[flags] STREAM",
		help: `
Print the messages of partition 0 of a stream, one per line as "INDEX<TAB>DATA" (or only
DATA with -raw, or JSON objects with -json), starting at -from or, with -client-id, at the
index that client id saved. pull stops when no new message arrives for -idle, or after -max
messages. With -client-id it saves the next index after printing, so the next pull with the
same id continues where this one stopped.

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
	timeout := fs.Duration("timeout", 30*time.Second, "give up when the hub has not confirmed everything after this long")
	verbose := fs.Bool("v", false, "log reconnects and retries to stderr")
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) == 0 {
			return usageErr("missing stream name")
		}
		stream, msgs := args[0], args[1:]
		if err := core.ValidateStreamName(stream); err != nil {
			return usageErr("%v", err)
		}
		log := verboseLogger(sio, *verbose)
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		c, err := client.Dial(*hubAddr, client.WithLogger(log))
		if err != nil {
			return err
		}
		defer c.Close()
		p, err := client.NewPublisher(ctx, c, stream, client.WithWindow(*window), client.WithPublisherLogger(log))
		if err != nil {
			return err
		}
		defer p.Close()

		// Acks are printed in publish order by one goroutine while publishing continues.
		acks := make(chan *client.Ack, *window)
		printed := make(chan error, 1)
		go func() { // owned by this function: ends when acks is closed and drained
			var first error
			for a := range acks {
				idx, err := a.Wait(ctx)
				if err != nil {
					if first == nil {
						first = err
					}
					continue
				}
				if !*quiet && first == nil {
					fmt.Fprintln(sio.out, idx)
				}
			}
			printed <- first
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
		if len(msgs) > 0 {
			for _, m := range msgs {
				if perr = publish([]byte(m)); perr != nil {
					break
				}
			}
		} else {
			sc := bufio.NewScanner(sio.in)
			sc.Buffer(make([]byte, 0, 64*1024), client.MaxMessageSize+1)
			for sc.Scan() {
				if perr = publish(sc.Bytes()); perr != nil {
					break
				}
			}
			if perr == nil {
				perr = sc.Err()
			}
		}
		close(acks)
		werr := <-printed
		if err := p.Close(); err != nil && perr == nil && werr == nil {
			return err
		}
		return errors.Join(perr, werr)
	}
}

// consumeFlags declares the flags of pull (follow false) and tail (follow true).
func consumeFlags(fs *flag.FlagSet, follow bool) func(context.Context, *stdio, []string) error {
	hubAddr := hubFlag(fs)
	from := fs.Uint64("from", 0, "index to start at when the client id has no saved index (or without -client-id)")
	clientID := fs.String("client-id", "", "consumer identity: start at its saved index and save the position")
	raw := fs.Bool("raw", false, "print only the message data")
	asJSON := fs.Bool("json", false, `print one JSON object per message: {"index":N,"data":"..."}`)
	verbose := fs.Bool("v", false, "log reconnects and retries to stderr")
	var maxMsgs uint64
	var idle time.Duration
	if !follow {
		fs.Uint64Var(&maxMsgs, "max", 0, "stop after this many messages (0: no limit)")
		fs.DurationVar(&idle, "idle", time.Second, "stop when no message arrives for this long")
	}
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) != 1 {
			return usageErr("want exactly one stream name, got %d arguments", len(args))
		}
		stream := args[0]
		if err := core.ValidateStreamName(stream); err != nil {
			return usageErr("%v", err)
		}
		log := verboseLogger(sio, *verbose)
		c, err := client.Dial(*hubAddr, client.WithLogger(log))
		if err != nil {
			return err
		}
		defer c.Close()

		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var (
			mu    sync.Mutex
			count uint64
			last  = time.Now()
		)
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
				_ = enc.Encode(struct {
					Index uint64 `json:"index"`
					Data  string `json:"data"`
				}{m.Index, string(m.Data)})
			case *raw:
				fmt.Fprintf(sio.out, "%s\n", m.Data)
			default:
				fmt.Fprintf(sio.out, "%d\t%s\n", m.Index, m.Data)
			}
			count++
			last = time.Now()
			return nil
		}
		opts := []client.ConsumerOption{
			client.WithStartIndex(*from),
			client.WithConsumerLogger(log),
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
		if err == nil || errors.Is(err, errDone) || ctx.Err() != nil {
			return nil // idle, -max reached, or interrupted (Ctrl-C)
		}
		return err
	}
}

// errDone ends a pull that printed -max messages.
var errDone = errors.New("done")
