package hub_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/hub"
)

// A New that fails on a node it was given removes what it registered and nothing else: the
// addresses it found taken belong to someone else (here, another hub or worker).
func TestFailedNewLeavesOthersRegistrations(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	nop := routing.WorkerFunc(func(context.Context, *routing.Message) error { return nil })
	taken := func(t *testing.T, n *routing.Node, addr string) bool {
		t.Helper()
		err := n.Register(addr, nop)
		if err == nil {
			return false // it is ours now; the node's Close removes it
		}
		if !errors.Is(err, routing.ErrAddressInUse) {
			t.Fatalf("register %q: %v", addr, err)
		}
		return true
	}

	t.Run("another hub on the node", func(t *testing.T) {
		node, err := routing.NewNode()
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		first, err := hub.New(b, hub.WithNode(node))
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if h, err := hub.New(b, hub.WithNode(node)); !errors.Is(err, routing.ErrAddressInUse) {
			if h != nil {
				h.Close()
			}
			t.Fatalf("second hub on the node: err = %v, want ErrAddressInUse", err)
		}
		for _, addr := range []string{hub.StreamAddress, hub.IndexAddress} {
			if !taken(t, node, addr) {
				t.Errorf("the failed New unregistered the first hub's %q", addr)
			}
		}
	})

	t.Run("index address taken", func(t *testing.T) {
		node, err := routing.NewNode()
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		if err := node.Register(hub.IndexAddress, nop); err != nil {
			t.Fatal(err)
		}
		if h, err := hub.New(b, hub.WithNode(node)); !errors.Is(err, routing.ErrAddressInUse) {
			if h != nil {
				h.Close()
			}
			t.Fatalf("New with %q taken: err = %v, want ErrAddressInUse", hub.IndexAddress, err)
		}
		if !taken(t, node, hub.IndexAddress) {
			t.Errorf("the failed New unregistered the other worker's %q", hub.IndexAddress)
		}
		if taken(t, node, hub.StreamAddress) {
			t.Errorf("the failed New left its own %q registered", hub.StreamAddress)
		}
	})
}
