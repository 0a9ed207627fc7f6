package tcp_test

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// Two nodes on loopback: the server has an echo worker, the client routes a message to it
// by TCP address and receives the reply through the same connection.
func Example() {
	server, _ := routing.NewNode()
	defer server.Close()
	st, _ := tcp.New(server)
	addr, err := st.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	server.Register("echo", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		return m.Reply(ctx, m.Payload)
	}))

	client, _ := routing.NewNode()
	defer client.Close()
	if _, err := tcp.New(client); err != nil {
		panic(err)
	}
	replies := make(chan *routing.Message, 1)
	client.Register("app", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		replies <- m
		return nil
	}))

	err = client.Send(context.Background(), wire.TransportMessage{
		OnwardRoute: wire.Route{wire.TCP(addr.String()), wire.Local("echo")},
		ReturnRoute: wire.Route{wire.Local("app")},
		Payload:     []byte("ping"),
	})
	if err != nil {
		panic(err)
	}
	r := <-replies
	fmt.Printf("%q from %s via a connection address of %d characters\n", r.Payload, r.ReturnRoute[1], len(r.ReturnRoute[0].Value))
	// Output:
	// "ping" from 0#echo via a connection address of 32 characters
}
