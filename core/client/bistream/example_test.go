package bistream_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// A request and its reply travel through two streams on a hub: the requester publishes to
// the echo device's inbox with its own inbox as return stream; the echo worker replies along
// the return route, which leads back through the requester's inbox.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// An in-process hub on 127.0.0.1.
	store, _ := memory.New(nil)
	defer store.Close()
	h, _ := hub.New(&core.Backend{Storage: store, Index: store})
	defer h.Close()
	addr, _ := h.Listen("127.0.0.1:0")

	// The echo device: a worker that answers, and a subscription to its inbox.
	echo, _ := client.Dial(addr.String())
	defer echo.Close()
	_ = echo.Node().Register("echo", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		return m.Reply(ctx, append([]byte("echo: "), m.Payload...))
	}))
	te, _ := bistream.New(echo.Node(), echo)
	defer te.Close()
	_, _ = te.Subscribe("inbox-echo", "echo-device")

	// The requester: a worker that receives the reply, and a subscription to its inbox.
	req, _ := client.Dial(addr.String())
	defer req.Close()
	replies := make(chan string, 1)
	_ = req.Node().Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		replies <- string(m.Payload)
		return nil
	}))
	tr, _ := bistream.New(req.Node(), req)
	defer tr.Close()
	_, _ = tr.Subscribe("inbox-app", "app-device")

	route, _ := tr.Route("inbox-echo", "inbox-app")
	err := req.Node().Send(ctx, wire.TransportMessage{
		OnwardRoute: append(route, wire.Local("echo")),
		ReturnRoute: wire.Route{wire.Local("app")},
		Payload:     []byte("hello through streams"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	select {
	case r := <-replies:
		fmt.Println(r)
	case <-ctx.Done():
		fmt.Println("no reply")
	}
	// Output: echo: hello through streams
}
