package pulsar_test

import (
	"context"
	"fmt"
	"log"

	"github.com/apache/pulsar-client-go/pulsar"

	sluicepulsar "github.com/sluicehq/sluice/backends/pulsar"
	"github.com/sluicehq/sluice/core"
)

// A hub opens the backend by URL; the package registers the "pulsar" scheme.
func ExampleOpen() {
	ctx := context.Background()
	b, err := core.Open(ctx, "pulsar://127.0.0.1:6650?admin=http://127.0.0.1:8080&prefix=sluice-")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Storage.CreateStream(ctx, "sensors", 4); err != nil {
		log.Fatal(err)
	}
	idx, err := b.Storage.Append(ctx, "sensors", 0, [][]byte{[]byte("t=21.5")})
	if err != nil {
		log.Fatal(err)
	}
	msgs, err := b.Storage.Fetch(ctx, "sensors", 0, idx[0], 10)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", msgs[0].Data)
}

// New takes a client the caller configured (authentication, TLS, logging) and keeps.
func ExampleNew() {
	ctx := context.Background()
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: "pulsar://127.0.0.1:6650"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close() // the Store does not close a client it was given
	s, err := sluicepulsar.New(ctx, client, "http://127.0.0.1:8080", &sluicepulsar.Options{
		Namespace:   "sluice",
		TopicPrefix: "hub1-",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println(s.Capabilities())
}
