package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/hub"
)

// "tail does not create streams" (tail -help), also not when it reconnects to a hub that
// came back without the stream (on a fresh backend): tail fails saying the stream does not
// exist.
func TestTailDoesNotRecreateStreamAfterReconnect(t *testing.T) {
	addr := freeAddr(t)
	start := func() (*hub.Hub, *core.Backend) {
		b, err := core.Open(t.Context(), "memory://")
		if err != nil {
			t.Fatal(err)
		}
		h, err := hub.New(b, hub.WithLogger(discard))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Listen(addr); err != nil {
			t.Fatal(err)
		}
		return h, b
	}
	stop := func(h *hub.Hub, b *core.Backend) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		_ = b.Close()
	}
	h1, b1 := start()
	mustRun(t, "", "create", "-hub", addr, "orders")
	mustRun(t, "", "push", "-hub", addr, "orders", "one")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := runAsync(ctx, strings.NewReader(""), "tail", "-hub", addr, "-client-id", "dash", "-raw", "orders")
	// Wait until tail printed the message (it is past its first check), then restart the
	// hub on a fresh backend.
	waitSavedIndex(t, b1, "dash", "orders", 1)
	stop(h1, b1)
	h2, b2 := start() // no stream "orders"
	defer stop(h2, b2)
	expectTailStreamGone(t, done, cancel, b2, addr)
}

// A stream deleted while tail follows it (the hub stays up) ends tail once it reconnects,
// saying that the stream does not exist: tail never creates it again.
func TestTailStopsWhenStreamIsDeleted(t *testing.T) {
	addr := freeAddr(t)
	b, err := core.Open(t.Context(), "memory://")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// A short long poll: the poll parked on the deleted stream ends sooner.
	h, err := hub.New(b, hub.WithLogger(discard), hub.WithMaxPullWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	}()
	if _, err := h.Listen(addr); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "create", "-hub", addr, "orders")
	mustRun(t, "", "push", "-hub", addr, "orders", "one")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := runAsync(ctx, strings.NewReader(""), "tail", "-hub", addr, "-client-id", "dash", "-raw", "orders")
	waitSavedIndex(t, b, "dash", "orders", 1)
	del, ok := b.Storage.(core.StreamDeleter)
	if !ok {
		t.Fatal("the memory backend cannot delete streams")
	}
	if err := del.DeleteStream(t.Context(), "orders"); err != nil {
		t.Fatal(err)
	}
	expectTailStreamGone(t, done, cancel, b, addr)
}

// expectTailStreamGone waits (at most 30s) for the "tail orders" run done to end, after it
// printed "one", and checks that it failed saying stream "orders" no longer exists on the hub
// at addr, without creating it again in b.
func expectTailStreamGone(t *testing.T, done <-chan cmdResult, cancel context.CancelFunc, b *core.Backend, addr string) {
	t.Helper()
	var r cmdResult
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		cancel()
		r = <-done
	}
	if _, err := b.Storage.Fetch(t.Context(), "orders", 0, 0, 1); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("after tail reconnected, stream \"orders\" exists (Fetch error %v): tail created it", err)
	}
	if r.code != 1 || r.out != "one\n" || !strings.Contains(r.err, `stream "orders" does not exist on hub `+addr) {
		t.Errorf("tail: exit %d, stdout %q, stderr:\n%s\nwant exit 1, \"one\", and that the stream does not exist", r.code, r.out, r.err)
	}
}

// waitSavedIndex waits until client has saved index want for partition 0 of stream in
// backend b (at most 30s).
func waitSavedIndex(t *testing.T, b *core.Backend, client, stream string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if i, err := b.Index.GetIndex(t.Context(), client, stream, 0); err == nil && i == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not save index %d of %s within 30s", client, want, stream)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pull exits 1 when the connection fails midway, saying how many messages it printed
// ("sluice pull -help"), instead of ending as if the stream had no more messages.
func TestPullFailsWhenConnectionFailsMidway(t *testing.T) {
	hubAddr, b := startMemHub(t, "127.0.0.1:0")
	proxy, err := faultproxy.New(hubAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	addr := proxy.Addr()
	mustRun(t, "", "push", "-hub", addr, "s", "one", "two")
	// -idle is far longer than the time between the last message and the failure.
	done := runAsync(t.Context(), strings.NewReader(""), "pull", "-hub", addr, "-client-id", "p", "-idle", "5s", "-raw", "s")
	waitSavedIndex(t, b, "p", "s", 2)
	proxy.SetRefuse(true)
	proxy.ResetAll()
	var r cmdResult
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("pull did not exit within 30s of the failure")
	}
	if r.code != 1 || r.out != "one\ntwo\n" || !strings.Contains(r.err, "stopped after 2 message(s)") || !strings.Contains(r.err, "hub "+addr) {
		t.Errorf("pull: exit %d, stdout %q, stderr:\n%s\nwant exit 1, both messages, stopped after 2", r.code, r.out, r.err)
	}
}

// A connection failure that pull recovers from (messages arrive after it) is not an error:
// pull ends at -idle with exit 0.
func TestPullRecoversFromConnectionFailure(t *testing.T) {
	hubAddr, b := startMemHub(t, "127.0.0.1:0")
	proxy, err := faultproxy.New(hubAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	mustRun(t, "", "push", "-hub", hubAddr, "s", "one")
	done := runAsync(t.Context(), strings.NewReader(""), "pull", "-hub", proxy.Addr(), "-client-id", "p", "-idle", "5s", "-raw", "s")
	waitSavedIndex(t, b, "p", "s", 1)
	proxy.ResetAll()
	// Pushed after the reset: pull gets it in a new session, after the failure.
	mustRun(t, "", "push", "-hub", hubAddr, "s", "two")
	var r cmdResult
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("pull did not exit within 60s")
	}
	if r.code != 0 || r.out != "one\ntwo\n" {
		t.Errorf("pull: exit %d, stdout %q, stderr:\n%s\nwant exit 0 and both messages", r.code, r.out, r.err)
	}
}
