package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

// TestHubAtConnectionLimit: a hub at its connection limit accepts a connection and closes it
// at once. The client says so (ErrClosedBeforeAnswer, which names the likely cause) instead
// of only that it lost the connection, and a publisher retries until the hub has room.
func TestHubAtConnectionLimit(t *testing.T) {
	h := startHub(t, hub.WithMaxConnections(1))
	ctx := t.Context()
	// The one connection the hub allows.
	first := dial(t, h.Addr)
	held, err := first.Open(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.CreateStream(ctx, "limited", 1); err != nil {
		t.Fatal(err)
	}

	second := dial(t, h.Addr)
	conn, err := second.Open(ctx, 10*time.Second)
	if err == nil {
		_, err = conn.CreateStream(ctx, "limited", 1)
		conn.Close()
	}
	if !errors.Is(err, client.ErrClosedBeforeAnswer) || !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), "connection limit") {
		t.Fatalf("CreateStream on a hub at its connection limit = %v, want ErrClosedBeforeAnswer (naming the connection limit) and ErrUnavailable", err)
	}

	errs := make(chan error, 100)
	p := newPublisher(t, second, "limited", client.WithBackoff(fastBackoff), client.WithPublisherSessionErrors(func(err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	a, err := p.Publish(ctx, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, client.ErrClosedBeforeAnswer) {
			t.Fatalf("publisher session error %v, want ErrClosedBeforeAnswer", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the publisher reported no session error within 30s")
	}
	held.Close()
	if err := first.Close(); err != nil { // frees the hub's connection
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := a.Wait(wctx); err != nil {
		t.Fatalf("publish once the hub had room: %v", err)
	}
}

// TestLostConnectionAfterAnswer: a connection that closes after the hub answered on it is a
// lost connection, not one the hub closed before answering, and the error says why.
func TestLostConnectionAfterAnswer(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	ctx := t.Context()
	conn, err := c.Open(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.CreateStream(ctx, "answered", 1); err != nil {
		t.Fatal(err)
	}
	for i := 0; px.ResetAll() == 0; i++ { // the connection is open: the first call resets it
		if i == 30_000 {
			t.Fatal("the proxy had no connection to reset")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-conn.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the Conn did not notice the reset within 30s")
	}
	if err := conn.Err(); !errors.Is(err, core.ErrUnavailable) || errors.Is(err, client.ErrClosedBeforeAnswer) || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Conn error after a reset = %v, want ErrUnavailable, not ErrClosedBeforeAnswer, saying why (connection reset)", err)
	}
}

// TestConnectionResetAtOnce: a peer that accepts the connection and resets it at once (a
// proxy whose target is down, a hub at its connection limit) is one failure, whichever way
// the reset reaches the client: during the dial (connect: connection reset by peer) or once
// the connection is open. Both match ErrClosedBeforeAnswer, so that callers who tell
// failures apart (sluice tail warns once for each kind in an outage) see one kind.
func TestConnectionResetAtOnce(t *testing.T) {
	px := newProxy(t, startHub(t).Addr)
	px.SetRefuse(true)
	c := dial(t, px.Addr())
	ctx := t.Context()
	for i := range 300 {
		conn, err := c.Open(ctx, 10*time.Second)
		if err == nil {
			_, err = conn.CreateStream(ctx, "reset", 1)
			conn.Close()
		}
		if !errors.Is(err, client.ErrClosedBeforeAnswer) || !errors.Is(err, core.ErrUnavailable) {
			t.Fatalf("attempt %d: CreateStream through a connection reset at once = %v, want ErrClosedBeforeAnswer and ErrUnavailable", i, err)
		}
	}
}
