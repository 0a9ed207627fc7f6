package memory_test

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/backends/memory"
)

func ExampleNew() {
	ctx := context.Background()
	s, err := memory.New(nil)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	if _, err := s.CreateStream(ctx, "sensors", 1); err != nil {
		panic(err)
	}
	idx, err := s.Append(ctx, "sensors", 0, [][]byte{[]byte("21.5C"), []byte("21.7C")})
	if err != nil {
		panic(err)
	}
	fmt.Println("indexes:", idx)

	msgs, err := s.Fetch(ctx, "sensors", 0, 0, 10)
	if err != nil {
		panic(err)
	}
	for _, m := range msgs {
		fmt.Printf("%d: %s\n", m.Index, m.Data)
	}

	// A consumer saves the NEXT index it will read.
	if err := s.SaveIndex(ctx, "dashboard", "sensors", 0, msgs[len(msgs)-1].Index+1); err != nil {
		panic(err)
	}
	next, err := s.GetIndex(ctx, "dashboard", "sensors", 0)
	if err != nil {
		panic(err)
	}
	fmt.Println("next:", next)
	// Output:
	// indexes: [0 1]
	// 0: 21.5C
	// 1: 21.7C
	// next: 2
}
