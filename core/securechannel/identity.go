package securechannel

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// KeySize is the length in bytes of a Curve25519 public or private key.
const KeySize = 32

// PublicKey is a Curve25519 static public key: the identity of a device. Its printable form
// (String, ParsePublicKey) is 64 lowercase hexadecimal characters.
type PublicKey [KeySize]byte

// String returns the key as 64 lowercase hexadecimal characters.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// ParsePublicKey parses the printable form of a public key (64 hexadecimal characters, case
// insensitive, surrounding white space ignored).
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	s = strings.TrimSpace(s)
	if len(s) != 2*KeySize {
		return k, fmt.Errorf("securechannel: public key %q: want %d hexadecimal characters, got %d", s, 2*KeySize, len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("securechannel: public key %q: %w", s, err)
	}
	return k, nil
}

// Identity is a device's static Curve25519 key pair. The private key never leaves the
// Identity except through SaveIdentity. An Identity is immutable and safe for concurrent use.
type Identity struct {
	private [KeySize]byte
	public  PublicKey
}

// GenerateIdentity returns a new random identity.
func GenerateIdentity() (*Identity, error) {
	var priv [KeySize]byte
	if _, err := io.ReadFull(rand.Reader, priv[:]); err != nil {
		return nil, fmt.Errorf("securechannel: generate identity: %w", err)
	}
	return identityFromPrivate(priv[:])
}

func identityFromPrivate(priv []byte) (*Identity, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	id := &Identity{}
	copy(id.private[:], priv)
	copy(id.public[:], k.PublicKey().Bytes())
	return id, nil
}

// PublicKey returns the identity's public key, the value peers list in their trust policy.
func (id *Identity) PublicKey() PublicKey { return id.public }

// String returns the printable public key; the private key is never printed.
func (id *Identity) String() string { return id.public.String() }

// SaveOptions configures SaveIdentity. The zero value (or nil) is the safe default.
type SaveOptions struct {
	// Overwrite replaces an existing file. Without it SaveIdentity refuses to overwrite, so
	// an identity cannot be lost by accident.
	Overwrite bool
}

const identityHeader = "# Sluice identity: a Noise static Curve25519 key pair. Keep this file secret.\n"

// SaveIdentity writes id to path with permissions 0600, atomically: a reader sees the old
// file or the complete new one. It refuses to replace an existing file (ErrIdentityExists)
// unless opts.Overwrite is set. The directory must exist.
func SaveIdentity(path string, id *Identity, opts *SaveOptions) error {
	if id == nil {
		return fmt.Errorf("securechannel: save identity %s: nil identity", path)
	}
	overwrite := opts != nil && opts.Overwrite
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%w: %w: %s; pass Overwrite to replace it (the old identity is lost)", ErrIdentityExists, fs.ErrExist, path)
		}
	}
	var b bytes.Buffer
	b.WriteString(identityHeader)
	fmt.Fprintf(&b, "private-key: %x\n", id.private[:])
	fmt.Fprintf(&b, "public-key: %s\n", id.public)

	// Without Overwrite the file is linked into place, which fails if path exists: that
	// closes the race with the Lstat above.
	if err := writeFileAtomic(path, b.Bytes(), overwrite); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %w: %s; pass Overwrite to replace it (the old identity is lost)", ErrIdentityExists, fs.ErrExist, path)
		}
		return fmt.Errorf("securechannel: save identity %s: %w", path, err)
	}
	return nil
}

// maxIdentityFile bounds how much of a file LoadIdentity reads.
const maxIdentityFile = 4096

// LoadIdentity reads an identity written by SaveIdentity. The errors say what to do:
// a missing file matches ErrIdentityNotFound (and fs.ErrNotExist), a file readable or
// writable by group or others matches ErrIdentityPermissions (checked on Unix-like systems),
// a damaged file matches ErrIdentityCorrupt.
func LoadIdentity(path string) (*Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w: %s; create one with `sluice keygen -out %s`", ErrIdentityNotFound, fs.ErrNotExist, path, path)
		}
		return nil, fmt.Errorf("securechannel: load identity %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("securechannel: load identity %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file; name a key file, or create one with `sluice keygen -out FILE`", ErrIdentityCorrupt, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: %s has mode %#o, other users may read the private key; run `chmod 600 %s` (and consider the key compromised: replace it with `sluice keygen -force -out %s`)", ErrIdentityPermissions, path, perm, path, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err != nil {
		return nil, fmt.Errorf("securechannel: load identity %s: %w", path, err)
	}
	id, err := parseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s; restore it from a backup or create a new one with `sluice keygen -force -out %s`", ErrIdentityCorrupt, path, err, path)
	}
	return id, nil
}

// parseIdentity parses the identity file format: comment lines starting with '#', blank
// lines, and exactly one "private-key: <hex>" and one "public-key: <hex>" line. The public
// key must match the one derived from the private key.
func parseIdentity(data []byte) (*Identity, error) {
	if len(data) > maxIdentityFile {
		return nil, errors.New("file is too long")
	}
	var priv, pub []byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		key, val, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want \"name: value\"", line)
		}
		val = strings.TrimSpace(val)
		var dst *[]byte
		switch strings.TrimSpace(key) {
		case "private-key":
			dst = &priv
		case "public-key":
			dst = &pub
		default:
			return nil, fmt.Errorf("line %d: unknown field %q", line, key)
		}
		if *dst != nil {
			return nil, fmt.Errorf("line %d: field %q repeated", line, key)
		}
		b, err := hex.DecodeString(val)
		if err != nil || len(b) != KeySize {
			return nil, fmt.Errorf("line %d: %s is not %d hexadecimal bytes", line, key, KeySize)
		}
		*dst = b
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if priv == nil || pub == nil {
		return nil, errors.New("missing private-key or public-key")
	}
	id, err := identityFromPrivate(priv)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(id.public[:], pub) != 1 {
		return nil, errors.New("public-key does not match private-key")
	}
	return id, nil
}
