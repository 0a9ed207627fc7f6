package routing_test

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// A worker at "echo" replies to every message; the reply travels back along the return
// route to the worker at "client".
func Example() {
	node, err := routing.NewNode()
	if err != nil {
		panic(err)
	}
	defer node.Close()

	node.Register("echo", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		return m.Reply(ctx, m.Payload)
	}))
	replies := make(chan *routing.Message, 1)
	node.Register("client", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		replies <- m
		return nil
	}))

	err = node.Send(context.Background(), wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("client")},
		Payload:     []byte("hello"),
	})
	if err != nil {
		panic(err)
	}
	r := <-replies
	fmt.Printf("%q onward=[%s] return=[%s]\n", r.Payload, r.OnwardRoute, r.ReturnRoute)
	// Output:
	// "hello" onward=[0#client] return=[0#echo]
}
