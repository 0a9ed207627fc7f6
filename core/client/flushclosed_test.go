package client_test

import (
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
)

// TestFlushAfterCloseReportsAbandoned: Flush returns nil only when every message published
// before it was confirmed. A message that Close gave up on (its close timeout ran out) was
// not, so a Flush that returns after that Close must say so, with an error matching
// core.ErrClosed, not nil.
func TestFlushAfterCloseReportsAbandoned(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	ctx := t.Context()
	p, err := client.NewPublisher(ctx, c, "flush-closed", client.WithCloseTimeout(0), client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishSync(ctx, []byte("first")); err != nil { // the session is up
		_ = p.Close()
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		_ = p.Close()
		t.Fatal(err)
	}
	px.PauseDirection(faultproxy.Down) // confirms are held
	defer px.Resume()
	a, err := p.Publish(ctx, []byte("unconfirmed"))
	if err != nil {
		_ = p.Close()
		t.Fatal(err)
	}
	if err := p.Close(); err == nil {
		t.Fatal("Close with an unconfirmed message returned nil")
	}
	if _, err := a.Wait(ctx); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Ack of the unconfirmed message = %v, want an error matching core.ErrClosed", err)
	}
	if err := p.Flush(ctx); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Flush after a Close that left a message unconfirmed = %v, want an error matching core.ErrClosed", err)
	}
}
