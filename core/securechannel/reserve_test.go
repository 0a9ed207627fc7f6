package securechannel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// TestSnapshotLimitsAtOnce: the first save of a channel stops Seal at the position the state
// records as soon as the state is taken, not once it is stored: a Seal while the state is
// being written must not use a nonce that a channel restored from it would use again.
func TestSnapshotLimitsAtOnce(t *testing.T) {
	a, b := pair(t, 0)
	open(t, b, seal(t, a, "before"), "before")
	_, pos := a.snapshot(nil, false) // taken, not yet stored: commitReservation not called
	sent := uint64(0)
	for {
		m, err := a.Seal([]byte("during the save"))
		if errors.Is(err, ErrReservationExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h, _, _ := ParseHeader(m); !(position{h.Epoch, h.Nonce}).less(pos) {
			t.Fatalf("sealed at epoch %d nonce %d while a state restarting at %+v was being stored", h.Epoch, h.Nonce, pos)
		}
		if sent++; sent > 2*ReserveNonces {
			t.Fatalf("sealed %d messages past a state taken and never stored", sent)
		}
	}
	if want := reservation(a.rekeyAfter); sent != want {
		t.Fatalf("sealed %d messages during the save, want the %d it reserves", sent, want)
	}
	// A second save, taken later, does not lower the first one's limit.
	_, pos2 := a.snapshot(nil, false)
	a.commitReservation(pos)
	if _, err := a.Seal([]byte("x")); !errors.Is(err, ErrReservationExhausted) {
		t.Fatalf("Seal after the first state was stored = %v, want ErrReservationExhausted until the second one is", err)
	}
	a.commitReservation(pos2)
	open(t, b, seal(t, a, "after the second save"), "after the second save")
}

// TestReservationSize: a state reserves ReserveNonces send nonces, or 16 epochs with a
// RekeyAfter below 64 (a quarter of MaxEpochSkip, so that a restored sender stays within
// reach of its peer).
func TestReservationSize(t *testing.T) {
	for _, tc := range []struct {
		rekeyAfter uint64
		want       position
	}{
		{1, position{16, 0}},
		{2, position{16, 0}},
		{63, position{16, 0}},
		{64, position{16, 0}},
		{65, position{15, 49}},
		{0, position{0, ReserveNonces}}, // DefaultRekeyAfter
	} {
		a, _ := pair(t, tc.rekeyAfter)
		if _, pos := a.snapshot(nil, false); pos != tc.want {
			t.Errorf("RekeyAfter %d: a state reserves up to %+v, want %+v", tc.rekeyAfter, pos, tc.want)
		}
	}
}

// TestExportedResponderReservesNothing: an XX responder waiting for message 3 whose state
// was exported (to save it) or restored completes again, with the same keys, whenever the same
// message 3 comes again (after a crash, or replayed by whoever recorded it). Its channel
// must not seal before the channel's own state is saved; one never exported seals at once.
func TestExportedResponderReservesNothing(t *testing.T) {
	ia, ib := mustIdentity(t), mustIdentity(t)
	ci := Config{Identity: ia, Trust: TrustKeys(ib.PublicKey())}
	cr := Config{Identity: ib, Trust: TrustKeys(ia.PublicKey())}
	for _, tc := range []struct {
		name     string
		export   bool
		restore  bool
		sealOpen bool
	}{
		{name: "never exported", sealOpen: true},
		{name: "exported", export: true},
		{name: "restored", export: true, restore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ini, res, m2 := toMessage2(t, ci, cr)
			if tc.export {
				res = exportResponder(t, res, cr, tc.restore)
			}
			if err := ini.ReadMessage(m2); err != nil {
				t.Fatal(err)
			}
			if err := res.ReadMessage(mustWrite(t, ini)); err != nil {
				t.Fatal(err)
			}
			ch, err := res.Channel()
			if err != nil {
				t.Fatal(err)
			}
			_, err = ch.Seal([]byte("reply"))
			if tc.sealOpen && err != nil {
				t.Fatalf("Seal = %v, want a sealed message", err)
			}
			if !tc.sealOpen && !errors.Is(err, ErrReservationExhausted) {
				t.Fatalf("Seal = %v, want ErrReservationExhausted until the channel is saved", err)
			}
			if _, err := ch.MarshalBinary(); err != nil {
				t.Fatal(err)
			}
			if _, err := ch.Seal([]byte("reply")); err != nil {
				t.Fatalf("Seal after the channel's state was taken: %v", err)
			}
		})
	}
}

func mustWrite(t *testing.T, h *Handshake) []byte {
	t.Helper()
	m, err := h.WriteMessage()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAcceptingOnlyForNewMessages: openInPlace reports a message as being accepted only
// once it authenticated and passed the replay check, so a worker never marks a duplicate or
// a forgery of a handled message as unhandled.
func TestAcceptingOnlyForNewMessages(t *testing.T) {
	a, b := pair(t, 0)
	m := seal(t, a, "transfer $100")
	calls := 0
	accepting := func(Header, [32]byte) { calls++ }
	if _, err := b.openInPlace(append([]byte(nil), m...), accepting); err != nil || calls != 1 {
		t.Fatalf("new message: err %v, accepting called %d times, want once", err, calls)
	}
	if _, err := b.openInPlace(append([]byte(nil), m...), accepting); !errors.Is(err, ErrReplay) || calls != 1 {
		t.Fatalf("duplicate: err %v, accepting called %d times in all, want once", err, calls)
	}
	forged := append([]byte(nil), seal(t, a, "next")...)
	forged[len(forged)-1] ^= 1
	if _, err := b.openInPlace(forged, accepting); !errors.Is(err, ErrDecrypt) || calls != 1 {
		t.Fatalf("forgery: err %v, accepting called %d times in all, want once", err, calls)
	}

	// A held message (below the window of a restored channel) too: accepting is called with
	// its header and its epoch's key when it is accepted, and not for its duplicate.
	ms := backlog(t, a, b, WindowSize+3)
	r := restoreChannel(t, saveWith(t, b, ms[1:2]))
	want, _, _ := ParseHeader(ms[1])
	var got []Header
	var key [32]byte
	heldAccepting := func(h Header, k [32]byte) { got, key = append(got, h), k }
	if _, err := r.openInPlace(bytes.Clone(ms[1]), heldAccepting); err != nil {
		t.Fatal(err)
	}
	if _, err := r.openInPlace(bytes.Clone(ms[1]), heldAccepting); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("held message again: %v, want ErrDuplicate", err)
	}
	if len(got) != 1 || got[0] != want || key != r.cur.key {
		t.Fatalf("held message: accepting called with %+v (key of the epoch: %v), want once with %+v", got, key == r.cur.key, want)
	}
}

// TestSaveDuringDuplicateKeepsHandledMessage: a duplicate (or a forgery with its header)
// of a handled message, being opened while the session is saved, must not make the save
// leave the handled message out of its replay window, or a restored channel would accept it
// and the application would process it twice.
func TestSaveDuringDuplicateKeepsHandledMessage(t *testing.T) {
	a, b := pair(t, 0)
	sc := &SecureChannel{encAddr: "enc", decAddr: "dec", peerRoute: wire.Route{wire.Local("peer")}, ch: a,
		done: make(chan struct{}), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	m := seal(t, b, "transfer $100")
	open(t, a, append([]byte(nil), m...), "transfer $100") // handled
	var stop atomic.Bool
	done := make(chan struct{})
	go func() { // stopped below
		defer close(done)
		for !stop.Load() {
			_ = sc.openAndDeliver(context.Background(), a, append([]byte(nil), m...))
		}
	}()
	defer func() {
		stop.Store(true)
		<-done
	}()
	for i := range 1000 {
		state, _, _, err := sc.snapshot(false)
		if err != nil {
			t.Fatal(err)
		}
		s, err := decodeSession(state)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.channel.Open(append([]byte(nil), m...)); !errors.Is(err, ErrReplay) {
			t.Fatalf("save %d: a channel restored from it opens the handled message again (err %v)", i, err)
		}
	}
}

// TestRestartsWithoutSendingDoNotSkipEpochs: a device that only receives restores its
// channel at every start and saves it (at the stop, or after what it received). Each
// restart must not skip a reservation of send nonces: with a small RekeyAfter one is 16
// epochs, and after a few restarts its first message would be more than MaxEpochSkip
// epochs ahead of the peer, which could then open nothing it sends, ever again.
func TestRestartsWithoutSendingDoNotSkipEpochs(t *testing.T) {
	for _, rekeyAfter := range []uint64{2, 100} {
		t.Run(fmt.Sprint("rekeyAfter=", rekeyAfter), func(t *testing.T) {
			f := newFixture(t, false, rekeyAfter)
			sc := f.dial(t)
			f.send(t, sc, "before")
			if m := f.app.next(t); string(m.Payload) != "echo: before" {
				t.Fatalf("reply %q", m.Payload)
			}
			rc := recvWithin(t, f.established, "the channel established (OnChannel)")
			path := filepath.Join(t.TempDir(), "b.session")
			if err := rc.SaveSession(path); err != nil {
				t.Fatal(err)
			}
			for range 2 * MaxEpochSkip { // restarts that send nothing
				n, err := routing.NewNode(routing.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
				if err != nil {
					t.Fatal(err)
				}
				l, err := Listen(n, "sc", f.cfgB, nil)
				if err != nil {
					t.Fatal(err)
				}
				r, err := l.RestoreSession(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.SaveSession(path); err != nil {
					t.Fatal(err)
				}
				l.Close()
				n.Close()
			}
			n, err := routing.NewNode(routing.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			l, err := Listen(n, "sc", f.cfgB, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			r, err := l.RestoreSession(path)
			if err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			ch := r.ch
			r.mu.Unlock()
			// Seal saves the session to reserve nonces, as the restored channel does before
			// its first message.
			m, err := r.resaveAndSeal(ch, []byte("after the restarts"))
			if err != nil {
				t.Fatal(err)
			}
			h, _, _ := ParseHeader(m)
			if _, err := sc.ch.Open(m); err != nil {
				t.Fatalf("the peer cannot open the first message after the restarts (epoch %d nonce %d): %v", h.Epoch, h.Nonce, err)
			}
		})
	}
}
