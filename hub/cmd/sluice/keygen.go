package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/core/securechannel"
)

func init() {
	register(&command{
		name:    "keygen",
		summary: "create a device identity (a secure channel key pair) in a key file",
		usage:   "-out FILE [-force]",
		help: `
Create a new identity for a device: a Noise static Curve25519 key pair, written to FILE with
permissions 0600 (readable by its owner only). The public key id (64 hexadecimal characters)
is printed on standard output: give it to the peers that should trust this device (their
trust policy lists it). keygen refuses to overwrite an existing file, because the old
identity would be lost for good; pass -force to replace it anyway.

Examples:
  sluice keygen -out device-a.key
  sluice keygen -out device-a.key -force     # replace the identity (peers must re-trust it)
`,
		flags: keygenFlags,
	})
}

func keygenFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	out := fs.String("out", "", "key file to create (required)")
	force := fs.Bool("force", false, "overwrite an existing key file (its identity is lost)")
	return func(_ context.Context, sio *stdio, args []string) error {
		if len(args) > 0 {
			return usageErr("unexpected argument %q", args[0])
		}
		if *out == "" {
			return usageErr("-out FILE is required")
		}
		if fi, err := os.Lstat(*out); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			// The key file is written beside -out and renamed over it: that would replace
			// the link, not the file it names (with -force, even a link such as /dev/stdout).
			target, _ := os.Readlink(*out)
			return usageErr("-out %s is a symbolic link (to %s); name the key file itself", *out, target)
		}
		if fi, err := os.Stat(*out); err == nil && fi.IsDir() {
			return usageErr("-out %s is a directory; name the key file, e.g. -out %s", *out, filepath.Join(*out, "device.key"))
		} else if err == nil && !fi.Mode().IsRegular() {
			// A device, pipe or socket (-out /dev/stdout, /dev/null): -force would replace
			// it with a regular file, which as root breaks the system's /dev.
			return usageErr("-out %s is not a regular file (%s); name the key file, e.g. -out device.key", *out, fileKind(fi.Mode()))
		}
		// Say which directory is missing, not the name of the temporary file that
		// SaveIdentity writes first.
		dir := filepath.Dir(*out)
		if dir != "" {
			fi, err := os.Stat(dir)
			switch {
			case errors.Is(err, os.ErrNotExist):
				return fmt.Errorf("cannot create %s: directory %s does not exist (create it first)", *out, dir)
			case err != nil:
				return fmt.Errorf("cannot create %s: %w", *out, err)
			case !fi.IsDir():
				return fmt.Errorf("cannot create %s: %s is not a directory", *out, dir)
			}
		}
		id, err := securechannel.GenerateIdentity()
		if err != nil {
			return err
		}
		if err := securechannel.SaveIdentity(*out, id, &securechannel.SaveOptions{Overwrite: *force}); err != nil {
			if errors.Is(err, securechannel.ErrIdentityExists) {
				return fmt.Errorf("%s exists; pass -force to replace it (its identity is lost)", *out)
			}
			if errors.Is(err, os.ErrPermission) {
				// The temporary file SaveIdentity writes first is in dir.
				return fmt.Errorf("cannot create %s: you cannot create files in directory %s (permission denied): choose a directory you can write to", *out, dir)
			}
			return err
		}
		fmt.Fprintln(sio.out, id.PublicKey())
		return nil
	}
}

// fileKind names the type of a file that is neither a regular file nor a directory.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "not a file keygen can replace"
}
