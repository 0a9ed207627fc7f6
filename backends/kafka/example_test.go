package kafka_test

import (
	"context"
	"fmt"
	"log"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/backends/kafka"
	"github.com/sluicehq/sluice/core"
)

// Open a Kafka backend by URL, as the hub does. Needs a broker, so it only compiles.
func Example() {
	ctx := context.Background()
	b, err := core.Open(ctx, "kafka://127.0.0.1:9092?prefix=demo.&replication=1")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Storage.CreateStream(ctx, "sensors", 1); err != nil {
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
	fmt.Printf("%d: %s\n", msgs[0].Index, msgs[0].Data)
	// The consumer saves the NEXT index it will read.
	if err := b.Index.SaveIndex(ctx, "dashboard", "sensors", 0, msgs[0].Index+1); err != nil {
		log.Fatal(err)
	}
}

// Use your own franz-go client (for mutual TLS, OAUTHBEARER, ...): start from ClientOpts.
// The Store does not close a client it did not create.
func ExampleNew() {
	ctx := context.Background()
	opts := append(kafka.ClientOpts(), kgo.SeedBrokers("127.0.0.1:9092"), kgo.ClientID("hub-1"))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	s, err := kafka.New(ctx, cl, &kafka.Options{Prefix: "demo.", ReplicationFactor: 3})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println(s.Capabilities())
}
