package securechannel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// TestCutShortBelowWindowDeliveredAgain: a data message whose delivery is blocked (its
// worker's mailbox is full) while later messages of the channel, delivered concurrently by
// another goroutine (another subscription or connection), move the replay window past it,
// and whose delivery is then cut short, is delivered when it comes again, once. Before, the
// window could not forget it any more and it was dropped as a replay: lost.
func TestCutShortBelowWindowDeliveredAgain(t *testing.T) {
	net := &memNet{}
	na := net.node(t, "a")
	nb := net.node(t, "b", routing.WithMailboxSize(1))
	ida, idb := mustIdentity(t), mustIdentity(t)
	l := listen(t, nb, "sc", Config{Identity: idb, Trust: TrustKeys(ida.PublicKey())})
	slow := newStallWorker(t, nb, "slow")
	fast := make(inbox, 2*WindowSize)
	if err := nb.Register("fast", fast); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := Dial(ctx, na, wire.Route{mem("b"), wire.Local("sc")}, Config{Identity: ida, Trust: TrustKeys(idb.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rc := onlyChannel(t, l)
	hb := holdBack(&fixture{net: net}) // the test delivers a's data messages itself
	send := func(to, payload string) {
		t.Helper()
		if err := na.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{sc.Address(), wire.Local(to)}, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	send("slow", "cut short")
	for i := range WindowSize + 1 {
		send("fast", fmt.Sprint(i))
	}

	// The slow worker is busy and its mailbox (one message) is full.
	slow.fill(t)
	// One subscription delivers the message for the slow worker: it blocks.
	first := hb.dataMessage(t, 0)
	stopped, stop := context.WithCancel(ctx)
	defer stop()
	cutShort := make(chan error, 1)
	go func() { cutShort <- nb.Send(stopped, first.Clone()) }()
	waitFor(t, func() bool {
		rc.openingMu.Lock()
		defer rc.openingMu.Unlock()
		return len(rc.opening) == 1
	})
	// Another delivers the later messages meanwhile: the window moves past the first.
	for i := 1; i <= WindowSize+1; i++ {
		if err := nb.Send(ctx, hb.dataMessage(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range WindowSize + 1 {
		if m := fast.next(t); string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("fast got %q, want %d", m.Payload, i)
		}
	}
	stop() // the first subscription stops: the delivery is cut short
	if err := <-cutShort; !errors.Is(err, context.Canceled) {
		t.Fatalf("cut-short delivery returned %v, want context.Canceled", err)
	}
	slow.free(t)

	// The message comes again (the subscription did not move past it): delivered, once.
	for range 2 {
		if err := nb.Send(ctx, first.Clone()); err != nil {
			t.Fatal(err)
		}
	}
	if err := nb.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("slow")}, Payload: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	if p := slow.next(t); p != "cut short" {
		t.Fatalf("after the cut-short message came again the slow worker got %q, want it: the message was lost", p)
	}
	if p := slow.next(t); p != "marker" {
		t.Fatalf("then %q, want the marker: the message was delivered twice", p)
	}
	if d := rc.Stats().Duplicates; d != 1 {
		t.Fatalf("Duplicates = %d, want 1 (the second repeat)", d)
	}
}

// TestForgetPassedOrRetired: forgetting a message that the replay window has passed, or
// whose epoch was retired, since it was opened (later messages were opened concurrently)
// makes it a held message: accepted once when it comes again, also by a channel restored
// from a state saved meanwhile, and dropped from the states saved once it was handled.
func TestForgetPassedOrRetired(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rekeyAfter uint64
		later      int
	}{
		{"passed by the window", 0, WindowSize + 1},
		{"retired epoch", 3, 8}, // epoch 0 nonce 0, then up to epoch 2
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t, tc.rekeyAfter)
			m := seal(t, a, "cut short")
			var key [32]byte
			if _, err := b.openInPlace(bytes.Clone(m), func(_ Header, k [32]byte) { key = k }); err != nil {
				t.Fatal(err)
			}
			backlog(t, a, b, tc.later)
			h, _, err := ParseHeader(m)
			if err != nil {
				t.Fatal(err)
			}
			if tc.rekeyAfter > 0 && b.cur.epoch < h.Epoch+2 {
				t.Fatalf("receiver at epoch %d: epoch %d is not retired", b.cur.epoch, h.Epoch)
			}
			b.forget(h, key)
			state := mustMarshal(t, b) // saved before it came again
			open(t, b, m, "cut short")
			if _, err := b.Open(m); !errors.Is(err, ErrDuplicate) {
				t.Fatalf("the message a third time: %v, want ErrDuplicate", err)
			}
			b2 := restoreChannel(t, state)
			open(t, b2, m, "cut short")
			if _, err := b2.Open(m); !errors.Is(err, ErrDuplicate) {
				t.Fatalf("restored channel, the message again: %v, want ErrDuplicate", err)
			}
			b3 := restoreChannel(t, mustMarshal(t, b)) // saved after it was handled
			if _, err := b3.Open(m); !errors.Is(err, ErrReplay) {
				t.Fatalf("state saved after the message was handled: %v, want ErrReplay", err)
			}
			if len(b.held) != 0 {
				t.Fatalf("the handled message is still held: %+v", b.held)
			}
		})
	}
}

// TestForgetTwoRetiredEpochs: deliveries of messages of two epochs, both retired meanwhile,
// are cut short, newest first: each message becomes held with its own epoch (kept in order
// of epoch and nonce), is accepted once when it comes again, and a save keeps them.
func TestForgetTwoRetiredEpochs(t *testing.T) {
	a, b := pair(t, 3)
	ms := make([][]byte, 4) // epoch 0 nonces 0, 1, 2, then epoch 1 nonce 0
	keys := make([][32]byte, len(ms))
	for i := range ms {
		ms[i] = seal(t, a, fmt.Sprint(i))
		if _, err := b.openInPlace(bytes.Clone(ms[i]), func(_ Header, k [32]byte) { keys[i] = k }); err != nil {
			t.Fatal(err)
		}
	}
	backlog(t, a, b, 6) // b moves to epoch 3: epochs 0 and 1 are retired
	for _, i := range []int{3, 2, 0} {
		h, _, err := ParseHeader(ms[i])
		if err != nil {
			t.Fatal(err)
		}
		b.forget(h, keys[i])
	}
	b2 := restoreChannel(t, mustMarshal(t, b))
	for _, c := range []*Channel{b, b2} {
		for _, i := range []int{0, 2, 3} {
			open(t, c, ms[i], fmt.Sprint(i))
		}
		wantReplay(t, c, ms, 0, 1, 2, 3)
	}
}
