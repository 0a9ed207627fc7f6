package client_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// TestClientCloseRacingNewPublisher: Client.Close closes the publishers made from the
// client, also one that NewPublisher is still setting up in another goroutine. Closing such
// a publisher must neither panic nor race with its setup; NewPublisher either returns it
// (closed, so Publish fails with core.ErrClosed) or fails with core.ErrClosed.
func TestClientCloseRacingNewPublisher(t *testing.T) {
	h := startHub(t)
	ctx := context.Background()
	for i := range 300 {
		c, err := client.Dial(h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var p *client.Publisher
		var perr error
		wg.Go(func() { p, perr = client.NewPublisher(ctx, c, "close-race") })
		for range i % 30 { // Close at varying points of NewPublisher
			runtime.Gosched()
		}
		if err := c.Close(); err != nil {
			t.Fatalf("run %d: Close: %v", i, err)
		}
		wg.Wait()
		if perr != nil {
			if !errors.Is(perr, core.ErrClosed) {
				t.Fatalf("run %d: NewPublisher racing Close: %v, want nil or an error matching core.ErrClosed", i, perr)
			}
			continue
		}
		_ = p.Close()
	}
}
