package remote

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

// gatedAppend is a backend whose Append waits until gate is closed.
type gatedAppend struct {
	core.Storage
	gate    chan struct{}
	entered chan struct{} // receives once per Append that waits
}

func (g *gatedAppend) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Storage.Append(ctx, stream, partition, msgs)
}

// A second Close must not return while the first still closes the client: its caller may
// free what the client's goroutines use. The first Close is held up by a publisher of the
// Store's client waiting for a confirm that the hub's backend delays.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	g := &gatedAppend{Storage: mem, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	h, err := hub.New(&core.Backend{Storage: g, Index: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(t.Context(), a.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := client.NewPublisher(t.Context(), s.c, "close-twice", client.WithCloseTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(t.Context(), []byte("m")); err != nil {
		t.Fatal(err)
	}
	<-g.entered // the push waits in the backend: the publisher's Close waits for its confirm

	first := make(chan error, 1)
	go func() { first <- s.Close() }()
	for { // the first Close has begun: the next one is a later call
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var released atomic.Bool
	go func() {
		time.Sleep(200 * time.Millisecond)
		released.Store(true)
		close(g.gate)
	}()
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !released.Load() {
		t.Fatal("second Close returned while the first still closes the client")
	}
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("first Close: %v", err)
		}
	case <-time.After(20 * time.Second): // a guard, not a timing assertion
		t.Fatal("first Close has not returned")
	}
}

func TestNewDefaultTimeout(t *testing.T) {
	s, err := New(t.Context(), "127.0.0.1:1", nil) // connects lazily: nothing listens
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.opts.Timeout != DefaultTimeout {
		t.Fatalf("default Timeout = %v, want %v", s.opts.Timeout, DefaultTimeout)
	}
}
