package securechannel

import (
	"bytes"
	"math"
	"testing"
)

// noiseSeal seals a data message the way the channel did before it used chacha20poly1305
// directly: with flynn/noise's ChaChaPoly cipher of the suite.
func noiseSeal(key [32]byte, h Header, plaintext []byte) []byte {
	out := appendHeader(nil, h)
	return suite.Cipher(key).Encrypt(out, h.Nonce, out[:HeaderSize], plaintext)
}

// TestTransportCipherMatchesNoise proves the wire format did not change: for nonces that
// exercise every byte of the encoding, a data message sealed with flynn/noise's
// CipherChaChaPoly opens with the channel's cipher and the other way round, and both
// produce the same bytes.
func TestTransportCipherMatchesNoise(t *testing.T) {
	var key [32]byte
	for i := range key {
		key[i] = byte(i*7 + 1)
	}
	nonces := []uint64{0, 1, 255, 256, 1<<32 - 1, 1 << 32, 0x0102030405060708, 1<<64 - 2}
	for _, n := range nonces {
		for _, size := range []int{0, 1, 64, 1024} {
			pt := bytes.Repeat([]byte{byte(size), byte(n)}, size/2+1)[:size]
			h := Header{Epoch: uint32(n >> 7), Nonce: n}
			old := noiseSeal(key, h, pt)

			c := newTransportCipher(key)
			ad := appendHeader(nil, h)
			got := c.seal(append([]byte(nil), ad...), n, ad, pt)
			if !bytes.Equal(got, old) {
				t.Fatalf("nonce %#x, %d bytes: sealed %x, flynn/noise sealed %x", n, size, got, old)
			}
			opened, err := c.open(nil, n, old[:HeaderSize], old[HeaderSize:])
			if err != nil || !bytes.Equal(opened, pt) {
				t.Fatalf("nonce %#x, %d bytes: open of the flynn/noise message = %x, %v; want %x", n, size, opened, err, pt)
			}
			back, err := suite.Cipher(key).Decrypt(nil, n, got[:HeaderSize], got[HeaderSize:])
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("nonce %#x, %d bytes: flynn/noise open = %x, %v; want %x", n, size, back, err, pt)
			}
			if _, err := c.open(nil, n+1, old[:HeaderSize], old[HeaderSize:]); err == nil {
				t.Fatalf("nonce %#x: opened with the wrong nonce", n)
			}
		}
	}
}

// TestChannelOpensNoiseSealed runs the same check through a Channel, across a rekey: the
// messages flynn/noise seals with the epoch keys (the next one derived as the Noise
// specification defines REKEY) open in order, and what the Channel seals opens with
// flynn/noise.
func TestChannelOpensNoiseSealed(t *testing.T) {
	var k1, k2 [32]byte
	k1[0], k2[0] = 1, 2
	const rekeyAfter = 3
	recv := newChannel(k2, k1, PublicKey{}, PublicKey{}, []byte("b"), false, rekeyAfter)
	send := newChannel(k1, k2, PublicKey{}, PublicKey{}, []byte("b"), true, rekeyAfter)
	key := k1
	for i := range 2 * rekeyAfter {
		h := Header{Epoch: uint32(i / rekeyAfter), Nonce: uint64(i % rekeyAfter)}
		if i == rekeyAfter {
			// Noise's REKEY, spelled out: the first 32 bytes of ENCRYPT(k, 2^64-1, empty, zeros).
			key = [32]byte(suite.Cipher(key).Encrypt(nil, math.MaxUint64, nil, make([]byte, 32)))
		}
		pt := []byte{byte(i), 'x'}
		msg := noiseSeal(key, h, pt)
		got, err := recv.Open(msg)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("message %d sealed by flynn/noise: Open = %x, %v; want %x", i, got, err, pt)
		}
		sealed, err := send.Seal(pt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sealed, msg) {
			t.Fatalf("message %d: Seal = %x, flynn/noise = %x", i, sealed, msg)
		}
	}
}
