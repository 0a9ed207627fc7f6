package hub_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

// A hub on the in-memory backend, listening on a free loopback port, and a publisher that
// pushes one message through it.
func ExampleNew() {
	ctx := context.Background()
	store, err := memory.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	backend := &core.Backend{Storage: store, Index: store}
	defer backend.Close() // the hub does not close its backend

	h, err := hub.New(backend)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Shutdown(ctx)
	addr, err := h.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}

	c, err := client.Dial(addr.String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p, err := client.NewPublisher(ctx, c, "greetings")
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	index, err := p.PublishSync(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hello stored at index", index)
	fmt.Println("pushes confirmed:", h.Metrics().Pushes)
	// Output:
	// hello stored at index 0
	// pushes confirmed: 1
}
