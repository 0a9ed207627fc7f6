package hub_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
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

// The hub's fallback creates partition workers on first use. On a node it was given, the
// node's fallback may belong to someone else (a bistream.Transport takes it with
// routing.Node.AddFallback): New must not silently replace it, and Shutdown must remove only
// its own.
func TestHubLeavesOthersFallback(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	// fallbackAsked reports whether sending to an address with no worker consulted the
	// fallback that records its calls in *asked.
	fallbackAsked := func(t *testing.T, n *routing.Node, asked *atomic.Int32, addr string) bool {
		t.Helper()
		before := asked.Load()
		msg := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(addr)}, Payload: []byte("x")}
		if err := n.Send(t.Context(), msg); !errors.Is(err, routing.ErrNoRoute) {
			t.Fatalf("send to %q: %v, want ErrNoRoute", addr, err)
		}
		return asked.Load() > before
	}
	recorder := func(asked *atomic.Int32) func(context.Context, string) routing.Worker {
		return func(context.Context, string) routing.Worker { asked.Add(1); return nil }
	}

	t.Run("node has a fallback", func(t *testing.T) {
		node, err := routing.NewNode()
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		var asked atomic.Int32
		remove, err := node.AddFallback(recorder(&asked))
		if err != nil {
			t.Fatal(err)
		}
		defer remove()
		h, err := hub.New(b, hub.WithNode(node))
		if err == nil {
			defer h.Close()
		}
		if !errors.Is(err, routing.ErrAddressInUse) {
			t.Errorf("New on a node with a fallback: err = %v, want ErrAddressInUse", err)
		}
		if !fallbackAsked(t, node, &asked, "nobody") {
			t.Error("New replaced the fallback the node had")
		}
	})

	t.Run("fallback replaced after New", func(t *testing.T) {
		node, err := routing.NewNode()
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		h, err := hub.New(b, hub.WithNode(node))
		if err != nil {
			t.Fatal(err)
		}
		var asked atomic.Int32
		node.SetFallback(recorder(&asked)) // its owner's choice; the hub's is gone
		if err := h.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !fallbackAsked(t, node, &asked, "nobody") {
			t.Error("Shutdown removed a fallback that was not the hub's")
		}
	})
}

// A hub on a node it was given leaves no worker there once Shutdown has returned, also one
// that a message's first use was creating meanwhile: its partition-count lookup answered
// just before the shutdown cancelled it (blockingStore holds the answer back until then). A
// worker left behind would answer every request to its address as not taken, for ever,
// and a new hub on the node would never see them.
func TestShutdownLeavesNoWorkerOnGivenNode(t *testing.T) {
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &blockingStore{Store: m, entered: make(chan struct{}), release: make(chan struct{})}
	if _, err := s.CreateStream(t.Context(), "s", 1); err != nil {
		t.Fatal(err)
	}
	node, err := routing.NewNode()
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	h, err := hub.New(&core.Backend{Storage: s, Index: s}, hub.WithNode(node), hub.WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	addr := "stream.s.0"
	sent := make(chan error, 1)
	go func() {
		sent <- node.Send(context.Background(), wire.TransportMessage{
			OnwardRoute: wire.Route{wire.Local(addr)},
			ReturnRoute: wire.Route{wire.Local("nobody")},
			Payload:     wire.EncodePayload(wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("a")}),
		})
	}()
	<-s.entered // the first use of addr is looking up the stream
	if err := h.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(s.release)
	select {
	case <-sent:
	case <-time.After(time.Minute):
		t.Fatal("the send to the partition did not return")
	}
	nop := routing.WorkerFunc(func(context.Context, *routing.Message) error { return nil })
	if err := node.Register(addr, nop); err != nil {
		t.Errorf("after Shutdown, the address %q is still taken (by a worker of the stopped hub?): %v", addr, err)
	}
}

// A hub on a node it was given takes the TCP transport its Listen created off the node when
// it shuts down: a new hub on the node listens again, and the node's sends to TCP addresses
// find no route meanwhile rather than a closed transport.
func TestShutdownLeavesNoTransportOnGivenNode(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	node, err := routing.NewNode(routing.WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	for i := range 2 {
		h, err := hub.New(b, hub.WithNode(node), hub.WithLogger(quietLogger))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Listen("127.0.0.1:0"); err != nil {
			t.Fatalf("hub %d on the node: Listen: %v", i+1, err)
		}
		if err := h.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		err = node.Send(t.Context(), wire.TransportMessage{OnwardRoute: wire.Route{wire.TCP("127.0.0.1:1"), wire.Local("x")}})
		if !errors.Is(err, routing.ErrNoRoute) {
			t.Fatalf("after hub %d's Shutdown, a send to a TCP address: %v, want an error matching routing.ErrNoRoute", i+1, err)
		}
	}
}
