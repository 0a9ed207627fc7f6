package securechannel

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestIdentitySaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "identity")
	id := mustIdentity(t)
	if err := SaveIdentity(path, id, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.PublicKey() != id.PublicKey() || got.private != id.private {
		t.Fatal("loaded identity differs")
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), id.PublicKey().String()) {
		t.Fatal("file does not show the public key")
	}

	// No overwrite unless asked.
	other := mustIdentity(t)
	err = SaveIdentity(path, other, nil)
	if !errors.Is(err, ErrIdentityExists) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite without option: %v", err)
	}
	if got, _ := LoadIdentity(path); got.PublicKey() != id.PublicKey() {
		t.Fatal("refused save changed the file")
	}
	if err := SaveIdentity(path, other, &SaveOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadIdentity(path); got.PublicKey() != other.PublicKey() {
		t.Fatal("overwrite did not replace the identity")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestLoadIdentityErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadIdentity(filepath.Join(dir, "missing"))
	if !errors.Is(err, ErrIdentityNotFound) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "sluice keygen -out "+filepath.Join(dir, "missing")) {
		t.Fatalf("missing: %v", err)
	}

	good := filepath.Join(dir, "good")
	if err := SaveIdentity(good, mustIdentity(t), nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	if runtime.GOOS != "windows" {
		if err := os.Chmod(good, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = LoadIdentity(good)
		if !errors.Is(err, ErrIdentityPermissions) || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("0644: %v", err)
		}
		// Any access for group or others, not only reading by everyone.
		for _, mode := range []os.FileMode{0o640, 0o620, 0o610, 0o604, 0o602, 0o601} {
			if err := os.Chmod(good, mode); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadIdentity(good); !errors.Is(err, ErrIdentityPermissions) {
				t.Fatalf("%#o: %v, want ErrIdentityPermissions", mode, err)
			}
		}
		if err := os.Chmod(good, 0o400); err != nil { // read-only for the owner is fine
			t.Fatal(err)
		}
		if _, err := LoadIdentity(good); err != nil {
			t.Fatalf("0400: %v", err)
		}
	}

	other := mustIdentity(t)
	lines := strings.Split(string(data), "\n")
	corrupt := map[string]string{
		"empty":           "",
		"garbage":         "not an identity\n",
		"short key":       strings.Replace(string(data), "private-key: ", "private-key: ab", 1),
		"non-hex":         strings.Replace(string(data), "private-key: ", "private-key: zz", 1)[:len(data)],
		"missing public":  lines[0] + "\n" + lines[1] + "\n",
		"mismatched keys": lines[0] + "\n" + lines[1] + "\npublic-key: " + other.PublicKey().String() + "\n",
		"repeated field":  string(data) + lines[1] + "\n",
		"unknown field":   string(data) + "colour: blue\n",
		"too long":        string(data) + "#" + strings.Repeat("x", maxIdentityFile) + "\n",
		"truncated":       string(data[:len(data)/2]),
		"binary junk":     "\x00\x01\x02",
	}
	for name, content := range corrupt {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadIdentity(p)
			if !errors.Is(err, ErrIdentityCorrupt) || !strings.Contains(err.Error(), "sluice keygen") {
				t.Fatalf("got %v, want ErrIdentityCorrupt with advice", err)
			}
		})
	}
	if _, err := LoadIdentity(dir); !errors.Is(err, ErrIdentityCorrupt) {
		t.Fatalf("directory: %v", err)
	}
}

func TestPublicKeyString(t *testing.T) {
	id := mustIdentity(t)
	s := id.PublicKey().String()
	if len(s) != 64 || id.String() != s {
		t.Fatalf("printable key %q", s)
	}
	k, err := ParsePublicKey(" " + strings.ToUpper(s) + "\n")
	if err != nil || k != id.PublicKey() {
		t.Fatalf("ParsePublicKey: %v, %v", k, err)
	}
	for _, bad := range []string{"", s[:63], s + "0", "g" + s[1:]} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Fatalf("ParsePublicKey(%q) accepted", bad)
		}
	}
}

func TestTrustKeys(t *testing.T) {
	a, b := mustIdentity(t), mustIdentity(t)
	p := TrustKeys(a.PublicKey())
	if err := p.Trust(a.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := p.Trust(b.PublicKey()); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("untrusted key: %v", err)
	}
	if err := TrustKeys().Trust(a.PublicKey()); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("empty list: %v", err)
	}
	// Keys that differ from a trusted one in a single byte, first or last, are refused.
	for _, i := range []int{0, KeySize - 1} {
		k := a.PublicKey()
		k[i] ^= 1
		if err := p.Trust(k); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("key differing in byte %d: %v", i, err)
		}
	}
}
