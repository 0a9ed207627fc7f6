package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

func TestConn(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	ctx := t.Context()
	conn, err := c.Open(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if n, err := conn.CreateStream(ctx, "parts", 3); err != nil || n != 3 {
		t.Fatalf("CreateStream(3) = %d, %v; want 3", n, err)
	}
	if n, err := conn.CreateStream(ctx, "parts", 1); err != nil || n != 3 {
		t.Fatalf("CreateStream(1) of a 3-partition stream = %d, %v; want 3 (the existing count)", n, err)
	}
	idx, err := conn.Push(ctx, "parts", 2, [][]byte{[]byte("a"), []byte("b")})
	if err != nil || len(idx) != 2 || idx[1] <= idx[0] {
		t.Fatalf("Push = %v, %v", idx, err)
	}
	if _, err := conn.Push(ctx, "parts", 3, [][]byte{[]byte("x")}); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("Push to partition 3 of 3 = %v, want ErrInvalidArgument", err)
	}
	if _, err := conn.Push(ctx, "unknown", 0, [][]byte{[]byte("x")}); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Push to a stream this Conn did not create = %v, want ErrStreamNotFound", err)
	}
	msgs, err := conn.Pull(ctx, "parts", 2, idx[1], 10, 0)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "b" {
		t.Fatalf("Pull from %d = %v, %v; want [b]", idx[1], msgs, err)
	}
	// A long poll returns as soon as a message arrives.
	done := make(chan []core.Message, 1)
	go func() {
		m, err := conn.Pull(ctx, "parts", 0, 0, 10, 10*time.Second)
		if err != nil {
			t.Errorf("long-poll Pull: %v", err)
		}
		done <- m
	}()
	if _, err := conn.Push(ctx, "parts", 0, [][]byte{[]byte("late")}); err != nil {
		t.Fatal(err)
	}
	if m := <-done; len(m) != 1 || string(m[0].Data) != "late" {
		t.Fatalf("long-poll Pull = %v, want [late]", m)
	}

	if _, err := conn.GetIndex(ctx, "me", "parts", 2); !errors.Is(err, core.ErrIndexNotFound) {
		t.Fatalf("GetIndex before any save = %v, want ErrIndexNotFound", err)
	}
	if v, err := conn.SaveIndex(ctx, "me", "parts", 2, 5); err != nil || v != 5 {
		t.Fatalf("SaveIndex(5) = %d, %v", v, err)
	}
	if v, err := conn.SaveIndex(ctx, "me", "parts", 2, 3); err != nil || v != 5 {
		t.Fatalf("SaveIndex(3) after 5 = %d, %v; want 5 (monotonic)", v, err)
	}
	if v, err := conn.GetIndex(ctx, "me", "parts", 2); err != nil || v != 5 {
		t.Fatalf("GetIndex = %d, %v; want 5", v, err)
	}
	if conn.Err() != nil {
		t.Fatalf("Err = %v on a working Conn", conn.Err())
	}
	conn.Close()
	if _, err := conn.GetIndex(ctx, "me", "parts", 2); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("GetIndex after Close = %v, want ErrClosed", err)
	}
}
