package hub_test

import (
	"errors"
	"net"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestListenOn: a hub serves on a listener its caller bound (as sluice hub binds -listen
// before it opens its backend), takes it over (Shutdown closes it), and closes one it is
// given once it has stopped.
func TestListenOn(t *testing.T) {
	b := openBbolt(t)
	defer b.Close()
	h, err := hub.New(b, hub.WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := h.ListenOn(ln)
	if err != nil {
		t.Fatal(err)
	}
	if addr.String() != ln.Addr().String() {
		t.Fatalf("ListenOn returned %s, want the listener's address %s", addr, ln.Addr())
	}
	c := hubtest.Dial(t, addr.String())
	s := c.Create("listen-on")
	if got := c.Push(s, 1, []byte("hi")); got.Status != wire.StatusOK {
		t.Fatalf("push status %d", got.Status)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on the listener after the hub closed: %v, want net.ErrClosed (the hub did not close it)", err)
	}
	late, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if _, err := h.ListenOn(late); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("ListenOn after Close: %v, want core.ErrClosed", err)
	}
	if _, err := late.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a listener given to a closed hub: %v, want net.ErrClosed (ListenOn did not close it)", err)
	}
}
