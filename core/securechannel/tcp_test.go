package securechannel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

func tcpNode(t *testing.T) (*routing.Node, *tcp.Transport) {
	t.Helper()
	node, err := routing.NewNode(routing.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	tr, err := tcp.New(node)
	if err != nil {
		t.Fatal(err)
	}
	return node, tr
}

// TestTCPLargestMessage runs a channel over the real TCP transport on loopback and sends the
// largest payload MaxPayloadSize allows, both ways: the ciphertext fits in a frame.
func TestTCPLargestMessage(t *testing.T) {
	a, _ := tcpNode(t)
	b, trb := tcpNode(t)
	addr, err := trb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ida, idb := mustIdentity(t), mustIdentity(t)
	listen(t, b, "sc", Config{Identity: idb, Trust: TrustKeys(ida.PublicKey())})
	if err := b.Register("echo", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		return m.Reply(ctx, m.Payload)
	})); err != nil {
		t.Fatal(err)
	}
	app := make(inbox, 4)
	if err := a.Register("app", app); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := Dial(ctx, a, wire.Route{wire.TCP(addr.String()), wire.Local("sc")}, Config{Identity: ida, Trust: TrustKeys(idb.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	onward, ret := wire.Route{wire.Local("echo")}, wire.Route{wire.Local("app")}
	n := MaxPayloadSize(onward, ret)
	if n <= 0 || n > MaxPlaintextSize {
		t.Fatalf("MaxPayloadSize = %d", n)
	}
	send := func(size int) error {
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(i)
		}
		return a.Send(ctx, wire.TransportMessage{OnwardRoute: append(wire.Route{sc.Address()}, onward...), ReturnRoute: ret, Payload: p})
	}
	if err := send(n + 1); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("payload of %d bytes: %v, want ErrMessageTooLarge", n+1, err)
	}
	if err := send(n); err != nil {
		t.Fatalf("payload of %d bytes: %v", n, err)
	}
	m := app.next(t)
	if len(m.Payload) != n || m.Payload[n-1] != byte(n-1) {
		t.Fatalf("echo of %d bytes came back as %d bytes", n, len(m.Payload))
	}
}
