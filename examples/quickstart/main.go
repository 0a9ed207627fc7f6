// Command quickstart is the smallest Sluice program: it starts an embedded hub on a bbolt
// file, publishes a few messages to a stream, and reads them back with a consumer that saves
// its position under a client_id, so that a second consumer with the same id resumes where
// the first stopped.
//
// It needs nothing but this repository (everything runs in one process on 127.0.0.1):
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address the embedded hub listens on")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *listen, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
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
