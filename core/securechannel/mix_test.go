package securechannel

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// sealNext seals one message on c as its application-facing address does (saving the
// session file again when the reserved nonces run out) and returns its position. When c has
// no session file and no reserved nonce left, it calls MarshalBinary, as an application
// that stores its channel's state itself does, and stores the state in *latest.
func sealNext(t *testing.T, c *SecureChannel, latest *[]byte) position {
	t.Helper()
	c.mu.Lock()
	ch := c.ch
	c.mu.Unlock()
	m, err := ch.Seal([]byte("x"))
	if errors.Is(err, ErrReservationExhausted) {
		m, err = c.resaveAndSeal(ch, []byte("x"))
		if errors.Is(err, ErrReservationExhausted) {
			state, merr := c.MarshalBinary()
			if merr != nil {
				t.Fatal(merr)
			}
			*latest = state
			m, err = ch.Seal([]byte("x"))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := ParseHeader(m)
	if err != nil {
		t.Fatal(err)
	}
	return position{h.Epoch, h.Nonce}
}

// TestSaveSessionAndMarshalBinaryDoNotMix: an application that saves a channel both ways,
// SaveSession and MarshalBinary, must not make a channel restored after a crash reuse a
// nonce: each way extends the send reservation the other's state does not record. The mix
// is refused with a clear error instead; whichever state the application restores from,
// its next message is above every nonce used before the crash.
func TestSaveSessionAndMarshalBinaryDoNotMix(t *testing.T) {
	t.Run("MarshalBinary after SaveSession", func(t *testing.T) {
		f := newFixture(t, false, 0)
		sc := f.dial(t)
		path := filepath.Join(t.TempDir(), "a.session")
		if err := sc.SaveSession(path); err != nil {
			t.Fatal(err)
		}
		var latest []byte
		for range 10 {
			sealNext(t, sc, &latest)
		}
		_, err := sc.MarshalBinary() // a snapshot on the side
		if err != nil && (!errors.Is(err, core.ErrInvalidArgument) || !strings.Contains(err.Error(), "SaveSession")) {
			t.Fatalf("MarshalBinary of a channel saved to a session file: %v, want core.ErrInvalidArgument naming SaveSession", err)
		}
		var used position
		for range ReserveNonces - 4 {
			used = sealNext(t, sc, &latest)
		}
		// The crash; the application restores from its session file.
		r, err := RestoreSession(f.net.node(t, "a2"), f.cfgA, path)
		if err != nil {
			t.Fatal(err)
		}
		if next := sealNext(t, r, &latest); !used.less(next) {
			t.Fatalf("restored channel sealed at %+v, not above %+v used before the crash: nonce reuse", next, used)
		}
		if _, err := r.MarshalBinary(); !errors.Is(err, core.ErrInvalidArgument) {
			t.Fatalf("MarshalBinary of a channel restored from a session file: %v, want core.ErrInvalidArgument", err)
		}
	})
	t.Run("SaveSession after MarshalBinary", func(t *testing.T) {
		f := newFixture(t, false, 0)
		sc := f.dial(t)
		latest, err := sc.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			sealNext(t, sc, &latest)
		}
		path := filepath.Join(t.TempDir(), "a.session")
		err = sc.SaveSession(path) // a file on the side
		if err != nil && (!errors.Is(err, core.ErrInvalidArgument) || !strings.Contains(err.Error(), "MarshalBinary")) {
			t.Fatalf("SaveSession of a channel saved with MarshalBinary: %v, want core.ErrInvalidArgument naming MarshalBinary", err)
		}
		var used position
		for range ReserveNonces - 4 {
			used = sealNext(t, sc, &latest)
		}
		// The crash; the application restores from the last state it stored.
		r, err := Restore(f.net.node(t, "a2"), f.cfgA, latest)
		if err != nil {
			t.Fatal(err)
		}
		if next := sealNext(t, r, &latest); !used.less(next) {
			t.Fatalf("restored channel sealed at %+v, not above %+v used before the crash: nonce reuse", next, used)
		}
	})
}
