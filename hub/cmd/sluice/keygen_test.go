package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/securechannel"
)

func runKeygen(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"keygen"}, args...), &stdio{in: strings.NewReader(""), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

func TestKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.key")

	code, out, errOut := runKeygen(t, "-out", path)
	if code != 0 {
		t.Fatalf("keygen exit %d, stderr %q", code, errOut)
	}
	printed, err := securechannel.ParsePublicKey(out)
	if err != nil {
		t.Fatalf("keygen printed %q: %v", out, err)
	}
	id, err := securechannel.LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if id.PublicKey() != printed {
		t.Fatalf("printed key %s, file holds %s", printed, id.PublicKey())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 && runtime.GOOS != "windows" {
		t.Fatalf("key file mode %#o, want 0600", perm)
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		code, out, errOut := runKeygen(t, "-out", path)
		if code != 1 || out != "" || !strings.Contains(errOut, "-force") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 1, nothing, a hint about -force", code, out, errOut)
		}
		again, err := securechannel.LoadIdentity(path)
		if err != nil || again.PublicKey() != printed {
			t.Fatalf("identity changed after a refused keygen: %v", err)
		}
	})

	t.Run("force replaces", func(t *testing.T) {
		code, out, errOut := runKeygen(t, "-out", path, "-force")
		if code != 0 {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		k, err := securechannel.ParsePublicKey(out)
		if err != nil || k == printed {
			t.Fatalf("forced keygen printed %q (%v), want a new key", out, err)
		}
		id, err := securechannel.LoadIdentity(path)
		if err != nil || id.PublicKey() != k {
			t.Fatalf("file does not hold the printed key: %v", err)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		if code, _, _ := runKeygen(t); code != 2 {
			t.Fatalf("no -out: exit %d, want 2", code)
		}
		if code, _, _ := runKeygen(t, "-out", path, "extra"); code != 2 {
			t.Fatalf("extra argument: exit %d, want 2", code)
		}
	})
}

// -out in a directory that does not exist names that directory, not a temporary file.
func TestKeygenMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "device.key")
	code, _, errOut := runKeygen(t, "-out", path)
	if code != 1 || !strings.Contains(errOut, "directory "+dir+" does not exist") || strings.Contains(errOut, ".tmp") {
		t.Errorf("keygen -out in a missing directory: exit %d, stderr %q", code, errOut)
	}
}

// -out under a path that is a file, not a directory, says so.
func TestKeygenParentIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runKeygen(t, "-out", filepath.Join(file, "device.key"))
	if code != 1 || out != "" || !strings.Contains(errOut, file+" is not a directory") {
		t.Errorf("keygen -out under a file: exit %d, stdout %q, stderr %q; want 1 and that %s is not a directory", code, out, errOut, file)
	}
}

// -out naming a directory is a usage error that suggests a file in it, with or without
// -force (which cannot replace a directory).
func TestKeygenOutIsADirectory(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"-out", dir}, {"-force", "-out", dir}} {
		code, out, errOut := runKeygen(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, dir+" is a directory") || !strings.Contains(errOut, filepath.Join(dir, "device.key")) || strings.Contains(errOut, "-force to replace") {
			t.Errorf("keygen %v: exit %d, stdout %q, stderr %q; want 2 and that it is a directory", args, code, out, errOut)
		}
	}
}

// -out naming something that is not a regular file (a device such as /dev/null or
// /dev/stdout, a pipe, a socket) is a usage error, also with -force, which would replace it
// with a regular file. A Unix socket stands in for a device here.
func TestKeygenOutIsNotARegularFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs a Unix socket to stand in for a device")
	}
	path := filepath.Join(t.TempDir(), "sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("create a Unix socket to stand in for a device: %v", err)
	}
	defer ln.Close()
	for _, args := range [][]string{{"-out", path}, {"-force", "-out", path}} {
		code, out, errOut := runKeygen(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, path+" is not a regular file") || strings.Contains(errOut, "-force to replace") {
			t.Errorf("keygen %v: exit %d, stdout %q, stderr %q; want 2 and that it is not a regular file", args, code, out, errOut)
		}
		if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
			t.Fatalf("keygen %v replaced the socket: %v, %v", args, fi.Mode(), err)
		}
	}
}

// TestKeygenOutIsASymlink: an -out that is a symbolic link is refused, also with -force,
// which would have renamed the new key file over the link, not over the file it names.
func TestKeygenOutIsASymlink(t *testing.T) {
	dir := t.TempDir()
	target, link := filepath.Join(dir, "device.key"), filepath.Join(dir, "link.key")
	if err := os.WriteFile(target, []byte("old key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		if runtime.GOOS == "windows" { // symbolic links need a privilege there
			t.Skipf("cannot create a symbolic link: %v", err)
		}
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-out", link}, {"-force", "-out", link}} {
		code, out, errOut := runKeygen(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, link+" is a symbolic link") {
			t.Errorf("keygen %v: exit %d, stdout %q, stderr %q; want 2 and that it is a symbolic link", args, code, out, errOut)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
			t.Fatalf("keygen %v replaced the link: %v, %v", args, fi.Mode(), err)
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != "old key" {
			t.Fatalf("keygen %v changed the file the link names: %q, %v", args, b, err)
		}
	}
}

// -out in a directory the user cannot write to says so, naming the directory, not the
// temporary file keygen writes first. (Root writes anywhere: the test needs another user.)
func TestKeygenDirectoryNotWritable(t *testing.T) {
	if runtime.GOOS == "windows" || (os.Geteuid() == 0 && runtime.GOOS != "linux") {
		t.Skip("needs a user that directory permissions apply to (not Windows; root only on Linux, where the test drops the capability that overrides them)")
	}
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	var code int
	var out, errOut string
	withoutDACOverride(t, func() { code, out, errOut = runKeygen(t, "-out", filepath.Join(dir, "device.key")) })
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot create files in directory "+dir) || strings.Contains(errOut, ".tmp") {
		t.Errorf("keygen -out in a read-only directory: exit %d, stdout %q, stderr %q; want 1 and that %s is not writable", code, out, errOut, dir)
	}
}
