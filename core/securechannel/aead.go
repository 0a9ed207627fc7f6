package securechannel

import (
	"crypto/cipher"
	"encoding/binary"

	"golang.org/x/crypto/chacha20poly1305"
)

// transportCipher is the AEAD of one key epoch: ChaCha20-Poly1305 with the key taken from
// the Noise handshake (or its REKEY chain) and Noise's ChaChaPoly nonce encoding, 32 zero
// bits followed by the 64-bit nonce little-endian. It is exactly the cipher of flynn/noise's
// CipherChaChaPoly (a test proves that each opens what the other seals), without the
// allocation of a nonce per message: the nonce is built in a buffer of the cipher, so a
// transportCipher must not be used concurrently (the Channel's send or receive lock guards
// it).
type transportCipher struct {
	aead  cipher.AEAD
	nonce [chacha20poly1305.NonceSize]byte
}

func newTransportCipher(key [32]byte) *transportCipher {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		panic(err) // only for a key that is not 32 bytes
	}
	return &transportCipher{aead: aead}
}

// setNonce writes Noise's encoding of nonce n. The first four bytes stay zero.
func (c *transportCipher) setNonce(n uint64) []byte {
	binary.LittleEndian.PutUint64(c.nonce[4:], n)
	return c.nonce[:]
}

// seal appends the encryption of plaintext with nonce n and associated data ad to out, like
// noise.Cipher.Encrypt.
func (c *transportCipher) seal(out []byte, n uint64, ad, plaintext []byte) []byte {
	return c.aead.Seal(out, c.setNonce(n), plaintext, ad)
}

// open appends the decryption of ciphertext to out, like noise.Cipher.Decrypt.
func (c *transportCipher) open(out []byte, n uint64, ad, ciphertext []byte) ([]byte, error) {
	return c.aead.Open(out, c.setNonce(n), ciphertext, ad)
}
