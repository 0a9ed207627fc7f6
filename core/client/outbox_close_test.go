package client_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// TestPublishRacingCloseWithOutbox publishes while the publisher closes, with an outbox:
// a Publish that fails because the publisher closed meanwhile must say so with an error
// matching core.ErrClosed (bistream's stream senders publish again on the stream's next
// publisher only then), never with the outbox's "database not open".
func TestPublishRacingCloseWithOutbox(t *testing.T) {
	h := startBboltHub(t)
	c := dial(t, h.Addr)
	dir := t.TempDir()
	ctx := context.Background()
	for i := range 200 {
		p, err := client.NewPublisher(ctx, c, "race", client.WithOutbox(filepath.Join(dir, fmt.Sprintf("%d.outbox", i))), client.WithCloseTimeout(0))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if _, err := p.Publish(ctx, []byte("m")); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		_ = p.Close()
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, core.ErrClosed) {
				t.Fatalf("run %d: Publish racing Close: %v, want an error matching core.ErrClosed", i, err)
			}
		}
	}
}
