// Command quickstart is the smallest Sluice program: it starts an embedded hub on a bbolt
// file, publishes a few messages to a stream, and reads them back with a consumer that saves
// its position under a client_id, so that a second consumer with the same id resumes where
// the first stopped.
//
// It needs nothing but this repository (everything runs in one process on 127.0.0.1):
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -listen 127.0.0.1:4000   # the hub on a fixed port
//
// It exits with status 1 on a failure, 2 on a bad command line (it takes no arguments
// besides -listen, whose value must be [HOST]:PORT), and 130 when interrupted (Ctrl-C)
// before it finished.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := quickstartMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitInterrupted is the exit status when Ctrl-C stopped the program before it finished:
// 128 plus SIGINT's number, as a shell reports a program that SIGINT ended.
const exitInterrupted = 130

// quickstartMain runs the program with the command line args (without the program name)
// and returns its exit status: 0 when it finished, 1 on a failure, 2 on a bad command line,
// exitInterrupted when ctx ended (Ctrl-C) first.
func quickstartMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address the embedded hub listens on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "quickstart: unexpected argument %q: it takes only -listen ADDR (see quickstart -help)\n", fs.Arg(0))
		return 2
	}
	if hub.CheckListenAddr(*listen) != nil {
		fmt.Fprintf(stderr, "quickstart: -listen %q: want [HOST]:PORT, e.g. 127.0.0.1:4000, or port 0 for any free one (see quickstart -help)\n", *listen)
		return 2
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := run(rctx, *listen, stdout); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "quickstart: interrupted before it finished")
			return exitInterrupted
		}
		fmt.Fprintln(stderr, "quickstart:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, listen string, out io.Writer) error {
	dir, err := os.MkdirTemp("", "sluice-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// A hub storing its streams in a bbolt file.
	store, err := bbolt.New(ctx, filepath.Join(dir, "hub.db"), nil)
	if err != nil {
		return err
	}
	defer store.Close()
	h, err := hub.New(&core.Backend{Storage: store, Index: store})
	if err != nil {
		return err
	}
	defer h.Close()
	addr, err := h.Listen(listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "hub listening on %s\n", addr)

	// A device publishes; each PublishSync returns once the message is durable on the hub.
	c, err := client.Dial(addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	pub, err := client.NewPublisher(ctx, c, "orders")
	if err != nil {
		return err
	}
	for _, order := range []string{"1 coffee", "2 teas", "3 croissants", "4 muffins"} {
		i, err := pub.PublishSync(ctx, []byte(order))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "published %q at index %d\n", order, i)
	}
	if err := pub.Close(); err != nil {
		return err
	}

	// A consumer reads two messages and stops; its position is saved on the hub.
	if err := consume(ctx, c, 2, out); err != nil {
		return err
	}
	// A consumer with the same client_id resumes after them.
	return consume(ctx, c, 2, out)
}

// consume reads n messages of "orders" as client_id "billing", then closes the consumer,
// which saves its position (the next index) on the hub.
func consume(ctx context.Context, c *client.Client, n int, out io.Writer) error {
	handled := 0
	enough := make(chan struct{})
	cons, err := client.NewConsumer(c, "orders", func(ctx context.Context, m core.Message) error {
		if handled == n {
			// One too many: wait for Close, which cancels ctx; the message stays unread.
			<-ctx.Done()
			return ctx.Err()
		}
		handled++
		fmt.Fprintf(out, "billing read index %d: %q\n", m.Index, m.Data)
		if handled == n {
			close(enough)
		}
		return nil
	}, client.WithClientID("billing"))
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }() // ends when Close is called or ctx ends
	select {
	case <-enough:
	case err := <-done:
		return fmt.Errorf("consumer stopped after %d messages: %w", handled, err)
	}
	if err := cons.Close(); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	fmt.Fprintf(out, "billing stopped; its position is saved on the hub\n")
	return nil
}
