package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

func Example() {
	// An in-process hub on a memory backend, listening on a free loopback port.
	store, _ := memory.New(nil)
	defer store.Close()
	h, err := hub.New(&core.Backend{Storage: store, Index: store})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	addr, err := h.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}

	// The device side.
	c, err := client.Dial(addr.String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	pub, err := client.NewPublisher(ctx, c, "telemetry")
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []string{"hello", "world"} {
		index, err := pub.PublishSync(ctx, []byte(m))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("confirmed at index", index)
	}
	if err := pub.Close(); err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithCancel(ctx)
	cons, err := client.NewConsumer(c, "telemetry", func(_ context.Context, m core.Message) error {
		fmt.Printf("consumed %d: %s\n", m.Index, m.Data)
		if m.Index == 1 {
			cancel() // stop after the second message
		}
		return nil
	}, client.WithClientID("dashboard"))
	if err != nil {
		log.Fatal(err)
	}
	err = cons.Run(ctx)
	fmt.Println("run:", err)
	// Output:
	// confirmed at index 0
	// confirmed at index 1
	// consumed 0: hello
	// consumed 1: world
	// run: context canceled
}

// Messages with a key go to the partition of their key, one publisher per partition, so
// that each key's messages stay in order.
func ExampleKeyPartition() {
	store, _ := memory.New(nil)
	defer store.Close()
	h, err := hub.New(&core.Backend{Storage: store, Index: store})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	addr, err := h.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Dial(addr.String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	// A stream of 4 partitions, and a publisher for each.
	conn, err := c.Open(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	n, err := conn.CreateStream(ctx, "readings", 4)
	conn.Close()
	if err != nil {
		log.Fatal(err)
	}
	pubs := make([]*client.Publisher, n)
	for p := range pubs {
		if pubs[p], err = client.NewPublisher(ctx, c, "readings", client.WithPartition(p)); err != nil {
			log.Fatal(err)
		}
		defer pubs[p].Close()
	}
	for _, m := range []struct{ key, data string }{{"device-1", "20.5"}, {"device-3", "18.0"}, {"device-1", "20.7"}} {
		p := client.KeyPartition([]byte(m.key), n)
		index, err := pubs[p].PublishSync(ctx, []byte(m.data))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %s: partition %d, index %d\n", m.key, m.data, p, index)
	}
	// Output:
	// device-1 20.5: partition 2, index 0
	// device-3 18.0: partition 0, index 0
	// device-1 20.7: partition 2, index 1
}
