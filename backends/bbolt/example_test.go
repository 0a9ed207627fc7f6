package bbolt_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/sluicehq/sluice/backends/bbolt"
)

func ExampleNew() {
	dir, err := os.MkdirTemp("", "sluice-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := bbolt.New(ctx, dir, nil) // the database is dir/sluice.db
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if _, err := s.CreateStream(ctx, "sensors", 2); err != nil {
		log.Fatal(err)
	}
	idx, err := s.Append(ctx, "sensors", 1, [][]byte{[]byte("21.5C"), []byte("21.7C")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("appended at", idx)

	msgs, err := s.Fetch(ctx, "sensors", 1, 0, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("%d: %s\n", m.Index, m.Data)
	}

	// A consumer that handled both messages saves the next index it will read.
	if err := s.SaveIndex(ctx, "dashboard", "sensors", 1, 2); err != nil {
		log.Fatal(err)
	}
	next, err := s.GetIndex(ctx, "dashboard", "sensors", 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dashboard resumes at", next)
	// Output:
	// appended at [0 1]
	// 0: 21.5C
	// 1: 21.7C
	// dashboard resumes at 2
}
