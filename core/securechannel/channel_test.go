package securechannel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/core"
)

func seal(t *testing.T, c *Channel, s string) []byte {
	t.Helper()
	m, err := c.Seal([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func open(t *testing.T, c *Channel, m []byte, want string) {
	t.Helper()
	pt, err := c.Open(m)
	if err != nil {
		t.Fatalf("Open(%q): %v", want, err)
	}
	if string(pt) != want {
		t.Fatalf("Open = %q, want %q", pt, want)
	}
}

func TestTamperedRejectedAndChannelContinues(t *testing.T) {
	a, b := pair(t, 0)
	m := seal(t, a, "original")
	for i := range m {
		bad := bytes.Clone(m)
		bad[i] ^= 0x80
		_, err := b.Open(bad)
		if err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
		if i >= HeaderSize && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("byte %d flipped: %v, want ErrDecrypt", i, err)
		}
	}
	if _, err := b.Open(m[:len(m)-1]); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("truncated: %v", err)
	}
	// The untouched message (same nonce as all the forgeries) still opens: failures did not
	// advance the window.
	open(t, b, m, "original")
	open(t, b, seal(t, a, "next"), "next")
}

func TestReplayAndDuplicate(t *testing.T) {
	a, b := pair(t, 0)
	first := seal(t, a, "m0")
	open(t, b, first, "m0")
	if _, err := b.Open(first); !errors.Is(err, ErrDuplicate) || !errors.Is(err, ErrReplay) {
		t.Fatalf("duplicate: %v", err)
	}
	// Push the window past the first message: it is now too old.
	var last []byte
	for i := 1; i <= WindowSize+1; i++ {
		last = seal(t, a, fmt.Sprint("m", i))
		open(t, b, last, fmt.Sprint("m", i))
	}
	_, err := b.Open(first)
	if !errors.Is(err, ErrReplay) || errors.Is(err, ErrDuplicate) {
		t.Fatalf("too old: %v, want ErrReplay (not ErrDuplicate)", err)
	}
	if _, err := b.Open(last); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate of last: %v", err)
	}
}

// TestAtLeastOnceDeliveredOnce delivers every message several times in a shuffled order and
// checks that the application sees each exactly once.
func TestAtLeastOnceDeliveredOnce(t *testing.T) {
	a, b := pair(t, 0)
	const n = 500
	var wire [][]byte
	for i := range n {
		m := seal(t, a, fmt.Sprint(i))
		for range 1 + i%3 {
			wire = append(wire, m)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(wire), func(i, j int) { wire[i], wire[j] = wire[j], wire[i] })
	seen := map[string]int{}
	dups := 0
	for _, m := range wire {
		pt, err := b.Open(m)
		switch {
		case errors.Is(err, ErrDuplicate):
			dups++
		case err != nil:
			t.Fatal(err)
		default:
			seen[string(pt)]++
		}
	}
	if len(seen) != n {
		t.Fatalf("delivered %d distinct messages, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("message %s delivered %d times", k, c)
		}
	}
	if dups != len(wire)-n {
		t.Fatalf("dropped %d duplicates, want %d", dups, len(wire)-n)
	}
}

func TestOutOfOrderWithinWindow(t *testing.T) {
	a, b := pair(t, 0)
	msgs := make([][]byte, WindowSize)
	for i := range msgs {
		msgs[i] = seal(t, a, fmt.Sprint(i))
	}
	// Newest first: every older one is still within the window.
	for i := len(msgs) - 1; i >= 0; i-- {
		open(t, b, msgs[i], fmt.Sprint(i))
	}
	// One beyond the window makes the oldest unacceptable.
	far := seal(t, a, "far")
	open(t, b, far, "far")
	if _, err := b.Open(msgs[0]); !errors.Is(err, ErrReplay) {
		t.Fatalf("message 0 after nonce %d: %v", WindowSize, err)
	}
	if _, err := b.Open(msgs[1]); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("re-open of accepted message 1: %v", err)
	}
}

func TestGapThenLateArrival(t *testing.T) {
	a, b := pair(t, 0)
	m0, m1, m2 := seal(t, a, "0"), seal(t, a, "1"), seal(t, a, "2")
	open(t, b, m2, "2")
	open(t, b, m0, "0")
	open(t, b, m1, "1")
}

func TestRekeyWithSmallThreshold(t *testing.T) {
	const threshold = 3
	a, b := pair(t, threshold)
	for i := range 20 {
		m := seal(t, a, fmt.Sprint(i))
		h, _, err := ParseHeader(m)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Header{Epoch: uint32(i / threshold), Nonce: uint64(i % threshold)}); h != want {
			t.Fatalf("message %d header %+v, want %+v", i, h, want)
		}
		open(t, b, m, fmt.Sprint(i))
		// And the other direction keeps flowing too.
		open(t, a, seal(t, b, fmt.Sprint("r", i)), fmt.Sprint("r", i))
	}
}

func TestRekeyStragglersAndSkips(t *testing.T) {
	a, b := pair(t, 2)
	var ms [][]byte
	for i := range 12 { // epochs 0..5, two messages each
		ms = append(ms, seal(t, a, fmt.Sprint(i)))
	}
	open(t, b, ms[0], "0")
	// Epoch 1 arrives; epoch 0 straggler (ms[1]) still opens.
	open(t, b, ms[2], "2")
	open(t, b, ms[1], "1")
	// Jump from epoch 1 to epoch 4 (epochs 2 and 3 lost or late).
	open(t, b, ms[8], "8")
	// Epoch 3 was never seen: it is the retained previous epoch, still accepted.
	open(t, b, ms[7], "7")
	open(t, b, ms[6], "6")
	// Epochs 0..2 are retired: their stragglers are dropped as replays.
	for _, i := range []int{3, 4, 5} {
		if _, err := b.Open(ms[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("retired epoch message %d: %v", i, err)
		}
	}
	open(t, b, ms[9], "9")
	open(t, b, ms[10], "10")
	if _, err := b.Open(ms[6]); !errors.Is(err, ErrReplay) {
		t.Fatalf("epoch 3 after moving to 5: %v", err)
	}
	open(t, b, ms[11], "11")
}

func TestEpochTooFarAhead(t *testing.T) {
	a, b := pair(t, 1)
	var m []byte
	for range MaxEpochSkip + 2 {
		m = seal(t, a, "x")
	}
	if _, err := b.Open(m); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("epoch %d ahead: %v", MaxEpochSkip+1, err)
	}
	// A forged header for a later epoch does not move the receiver.
	forged := bytes.Clone(seal(t, a, "y"))
	forged[4] = 1 // epoch low byte, now a nearby epoch with the wrong key
	if _, err := b.Open(forged); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("forged epoch: %v", err)
	}
}

// TestSealExhaustedAfterLastEpoch: the sender's last epoch is MaxUint32; once it is used up,
// Seal returns ErrExhausted every time instead of wrapping the epoch around to 0, whose
// headers the receiver has accepted already.
func TestSealExhaustedAfterLastEpoch(t *testing.T) {
	a, b := pair(t, 2)
	a.send.epoch = math.MaxUint32 // as if the channel had rotated that often
	b.cur = recvEpoch{epoch: math.MaxUint32, key: a.send.key, cipher: newTransportCipher(a.send.key)}
	for i := range 2 {
		m := seal(t, a, fmt.Sprint(i))
		if h, _, _ := ParseHeader(m); h != (Header{Epoch: math.MaxUint32, Nonce: uint64(i)}) {
			t.Fatalf("message %d header %+v", i, h)
		}
		open(t, b, m, fmt.Sprint(i))
	}
	for range 2 {
		if m, err := a.Seal([]byte("x")); !errors.Is(err, ErrExhausted) {
			t.Fatalf("Seal after the last epoch = %x, %v; want ErrExhausted", m, err)
		}
	}
}

func TestSealTooLarge(t *testing.T) {
	a, b := pair(t, 0)
	_, err := a.Seal(make([]byte, MaxPlaintextSize+1))
	if !errors.Is(err, ErrMessageTooLarge) || !errors.Is(err, core.ErrMessageTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	m, err := a.Seal(make([]byte, MaxPlaintextSize))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != MaxSealedSize {
		t.Fatalf("max message is %d bytes, want %d", len(m), MaxSealedSize)
	}
	if _, err := b.Open(m); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(append(m, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized: %v", err)
	}
}

func TestOpenMalformed(t *testing.T) {
	_, b := pair(t, 0)
	// A data message with the nonce Noise reserves for REKEY.
	reserved := append([]byte{byte(TypeData), 0, 0, 0, 0}, bytes.Repeat([]byte{0xff}, 8)...)
	reserved = append(reserved, make([]byte, TagSize)...)
	for _, m := range [][]byte{nil, {4}, make([]byte, Overhead-1), append([]byte{1}, make([]byte, Overhead)...), reserved} {
		if _, err := b.Open(m); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Open(%x): %v", m, err)
		}
	}
}

func TestChannelsAreIndependent(t *testing.T) {
	a1, b1 := pair(t, 0)
	a2, _ := pair(t, 0)
	if _, err := b1.Open(seal(t, a2, "x")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("message of another channel: %v", err)
	}
	open(t, b1, seal(t, a1, "y"), "y")
}

func TestConcurrentSealOpen(t *testing.T) {
	a, b := pair(t, 0)
	const workers, per = 4, 200 // fewer than WindowSize: any order is within the window
	out := make(chan []byte, workers*per)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				m, err := a.Seal([]byte(fmt.Sprint(w, "-", i)))
				if err != nil {
					t.Error(err)
					return
				}
				out <- m
			}
		})
	}
	wg.Wait()
	close(out)
	var msgs [][]byte
	for m := range out {
		msgs = append(msgs, m)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(msgs); i += workers {
				pt, err := b.Open(msgs[i])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[string(pt)] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != workers*per {
		t.Fatalf("opened %d distinct, want %d", len(seen), workers*per)
	}
}

// TestSealInPlace checks that sealing in place produces what Seal produces for the same
// position: the peer opens both, interleaved, and the in-place buffer is not copied.
func TestSealInPlace(t *testing.T) {
	a, b := pair(t, 3) // rekeys on the way
	for i := range 8 {
		pt := fmt.Appendf(nil, "message %d", i)
		var m []byte
		if i%2 == 0 {
			buf := append(make([]byte, HeaderSize, Overhead+len(pt)), pt...)
			var err error
			if m, err = a.sealInPlace(buf); err != nil {
				t.Fatal(err)
			}
			if &m[0] != &buf[0] {
				t.Fatalf("message %d: sealInPlace copied a buffer with room for the tag", i)
			}
		} else {
			m = seal(t, a, string(pt))
		}
		got, err := b.Open(m)
		if err != nil {
			t.Fatalf("open message %d: %v", i, err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("message %d opened as %q, want %q", i, got, pt)
		}
	}
	if _, err := a.sealInPlace(make([]byte, HeaderSize-1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("sealInPlace without room for the header: %v, want ErrMalformed", err)
	}
	big := make([]byte, HeaderSize+MaxPlaintextSize+1)
	if _, err := a.sealInPlace(big); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("sealInPlace of %d bytes: %v, want ErrMessageTooLarge", len(big)-HeaderSize, err)
	}
}

// TestOpenInPlace checks that opening in place returns the plaintext in the message's own
// bytes, and keeps Open's checks: a duplicate is refused before anything is decrypted, a
// tampered message fails and changes nothing in the channel.
func TestOpenInPlace(t *testing.T) {
	a, b := pair(t, 0)
	m := seal(t, a, "in place")
	keep := bytes.Clone(m)
	pt, err := b.openInPlace(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != "in place" || &pt[0] != &m[HeaderSize] {
		t.Fatalf("openInPlace returned %q, not in the message's bytes", pt)
	}
	orig := bytes.Clone(keep)
	if _, err := b.openInPlace(keep, nil); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second open: %v, want ErrDuplicate", err)
	}
	if !bytes.Equal(keep, orig) {
		t.Fatal("the duplicate was decrypted in place")
	}
	next := seal(t, a, "next")
	bad := bytes.Clone(next)
	bad[len(bad)-1] ^= 1
	if _, err := b.openInPlace(bad, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered: %v, want ErrDecrypt", err)
	}
	if got, err := b.openInPlace(next, nil); err != nil || string(got) != "next" {
		t.Fatalf("open after a tampered copy: %q, %v", got, err)
	}

	// unopenInPlace gives m its ciphertext back, and ignores a plaintext that is not the one
	// openInPlace returned for m (part of it, or a copy).
	decrypted := bytes.Clone(m)
	b.unopenInPlace(m, pt[:len(pt)-1])
	b.unopenInPlace(m, bytes.Clone(pt))
	if !bytes.Equal(m, decrypted) {
		t.Fatal("unopenInPlace encrypted a plaintext that openInPlace did not return for the message")
	}
	b.unopenInPlace(m, pt)
	if !bytes.Equal(m, orig) {
		t.Fatal("unopenInPlace did not restore the data message")
	}
}

// TestForget checks that a message whose acceptance was forgotten (its delivery was cut
// short) is accepted once more, and only once, also in the previous key epoch, and that
// forgetting what is out of the window changes nothing.
func TestForget(t *testing.T) {
	a, b := pair(t, 4) // rekey every 4 messages
	var msgs [][]byte
	for i := range 6 {
		msgs = append(msgs, seal(t, a, fmt.Sprint("m", i)))
	}
	for i, m := range msgs {
		if _, err := b.Open(m); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	for _, i := range []int{3, 5} { // 3 is in the previous epoch, 5 in the current one
		h, _, err := ParseHeader(msgs[i])
		if err != nil {
			t.Fatal(err)
		}
		b.forget(h, [32]byte{}) // in the window: the key is not needed
		if pt, err := b.Open(msgs[i]); err != nil || string(pt) != fmt.Sprint("m", i) {
			t.Fatalf("message %d after forget: %q, %v; want it accepted", i, pt, err)
		}
		if _, err := b.Open(msgs[i]); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("message %d a third time: %v, want ErrDuplicate", i, err)
		}
	}
	if _, err := b.Open(msgs[2]); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("message 2, never forgotten: %v, want ErrDuplicate", err)
	}
	b.forget(Header{Epoch: 99, Nonce: 1}, [32]byte{}) // an epoch b does not have: nothing happens
}

// TestWindowForget checks window.forget against accept: a forgotten nonce is new again, the
// highest nonce stays, and nonces outside the window are left alone.
func TestWindowForget(t *testing.T) {
	var w window
	w.forget(5) // empty window: nothing to forget
	if w.any {
		t.Fatal("forget on an empty window accepted something")
	}
	for _, n := range []uint64{10, 11, 12, 2000} {
		w.accept(n)
	}
	w.forget(2000)
	if err := w.check(2000); err != nil || w.max != 2000 {
		t.Fatalf("after forget(2000): check %v, max %d; want nil and 2000", err, w.max)
	}
	w.forget(11) // slid out of the window already: still refused as too old
	if err := w.check(11); !errors.Is(err, ErrReplay) || errors.Is(err, ErrDuplicate) {
		t.Fatalf("check(11) after forget: %v, want too old", err)
	}
	w.accept(2000)
	w.accept(1999)
	w.forget(1999)
	if w.check(1999) != nil || !errors.Is(w.check(2000), ErrDuplicate) {
		t.Fatal("forget(1999) did not make 1999 new, or touched 2000")
	}
}

// TestReflectedMessageRejected checks that each direction has its own key: a message sent
// back to its sender (reflected by whoever relays it) fails authentication there.
func TestReflectedMessageRejected(t *testing.T) {
	a1, b1 := pair(t, 0)
	a2, b2 := pair(t, 0) // a fresh pair: the sender's window must not know the nonce yet
	for _, dir := range []struct {
		name     string
		from, to *Channel
	}{{"initiator", a1, b1}, {"responder", b2, a2}} {
		m := seal(t, dir.from, "to the peer")
		if _, err := dir.from.Open(bytes.Clone(m)); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("%s opened its own message: %v, want ErrDecrypt", dir.name, err)
		}
		open(t, dir.to, m, "to the peer")
	}
}

// TestForgedLaterEpochsDoNotMoveReceiver sends forged messages that claim later key epochs
// (which make the receiver derive those epochs' keys): they fail authentication and leave the
// receive state as it was, so the stragglers of the current epoch and the genuine messages
// of the next ones still open.
func TestForgedLaterEpochsDoNotMoveReceiver(t *testing.T) {
	a, b := pair(t, 2) // epochs 0, 1, 2: two messages each
	var ms [][]byte
	for i := range 6 {
		ms = append(ms, seal(t, a, fmt.Sprint(i)))
	}
	open(t, b, ms[0], "0")
	for epoch := uint32(1); epoch <= 4; epoch++ {
		forged := bytes.Clone(ms[1])
		binary.BigEndian.PutUint32(forged[1:5], epoch)
		if _, err := b.Open(forged); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("forged message for epoch %d: %v, want ErrDecrypt", epoch, err)
		}
	}
	open(t, b, ms[1], "1") // epoch 0 is still the current epoch
	open(t, b, ms[3], "3")
	open(t, b, ms[2], "2") // epoch 1 became current by a genuine message only
	open(t, b, ms[4], "4")
	open(t, b, ms[5], "5")
}
