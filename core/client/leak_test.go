package client_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// TestCloseLeavesNoGoroutine checks that closing a client stops every goroutine its
// publishers, consumers and connections started (the hub's side included, once its
// connections see the close).
func TestCloseLeavesNoGoroutine(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	// The hub starts goroutines per stream partition: create the stream before measuring.
	first := dial(t, h.Addr)
	publishN(t, first, "leak", 1)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the hub see that connection close
	baseline := runtime.NumGoroutine()
	c, err := client.Dial(px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p, err := client.NewPublisher(t.Context(), c, "leak", client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		if _, err := p.Publish(t.Context(), msg(0, uint32(i), 8)); err != nil {
			t.Fatal(err)
		}
		if i == 25 {
			px.ResetAll() // a reconnect on the way
		}
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	oc := newOrderChecker()
	cons, err := client.NewConsumer(c, "leak", func(_ context.Context, m core.Message) error { oc.add(m.Data); return nil },
		client.WithClientID("leak"), client.WithPullWait(50*time.Millisecond), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(context.Background()) }()
	waitFor(t, "51 messages", func() bool { return oc.count(0) == 51 })
	conn, err := c.Open(t.Context(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn // left open: Client.Close must stop it too
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			var ours []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "sluice/core/client") || strings.Contains(g, "transport/tcp") || strings.Contains(g, "core/routing") {
					ours = append(ours, g)
				}
			}
			t.Fatalf("%d goroutines after Close, %d before; client goroutines left:\n%s", runtime.NumGoroutine(), baseline, strings.Join(ours, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
