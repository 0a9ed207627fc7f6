package tcp_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestDialFailure: a message routed to an address where nothing listens fails with an error
// matching core.ErrUnavailable. (An external test: hubtest, which holds the refused port for
// the whole test, imports this package through the hub.)
func TestDialFailure(t *testing.T) {
	n, err := routing.NewNode()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := tcp.New(n); err != nil {
		t.Fatal(err)
	}
	addr := hubtest.RefusedAddr(t)
	err = n.Send(context.Background(), wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP(addr)}})
	if !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("send to %s, where nothing listens: %v, want an error matching core.ErrUnavailable", addr, err)
	}
}
