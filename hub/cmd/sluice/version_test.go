package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
)

func TestVersion(t *testing.T) {
	want := "sluice " + core.Version() + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &stdio{in: strings.NewReader(""), out: &out, err: &errb})
		if code != 0 || out.String() != want || errb.Len() != 0 {
			t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 0, %q, nothing", args[0], code, out.String(), errb.String(), want)
		}
	}

	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"version", "extra"}, &stdio{in: strings.NewReader(""), out: &out, err: &errb})
	if code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "usage: sluice version (see") {
		t.Errorf("sluice version extra: exit %d, stdout %q, stderr %q; want 2 and the synopsis without a trailing space", code, out.String(), errb.String())
	}
}

// TestBadFlagShortUsage: a bad flag gets the error, that flag's own help line and the
// synopsis, not the whole help (which would scroll the error out of sight); -help still
// prints the whole help.
func TestBadFlagShortUsage(t *testing.T) {
	runArgs := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &stdio{in: strings.NewReader(""), out: &out, err: &errb})
		return code, out.String() + errb.String()
	}
	code, out := runArgs("hub", "-idle-timeout", "5")
	for _, want := range []string{
		`invalid value "5" for flag -idle-timeout`,
		"-idle-timeout duration",
		"(default 5m0s)",
		"usage: sluice hub [flags] (see sluice hub -help)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bad duration: output lacks %q:\n%s", want, out)
		}
	}
	if code != 2 || strings.Contains(out, "-listen") || strings.Contains(out, "Run a Sluice hub") {
		t.Errorf("bad duration: exit %d, want 2 and only the failing flag's help:\n%s", code, out)
	}

	code, out = runArgs("hub", "-nosuch")
	if code != 2 || !strings.Contains(out, "flag provided but not defined: -nosuch") || strings.Contains(out, "Run a Sluice hub") {
		t.Errorf("unknown flag: exit %d:\n%s", code, out)
	}

	code, out = runArgs("hub", "-help")
	if code != 0 || !strings.Contains(out, "Run a Sluice hub") || !strings.Contains(out, "-listen") {
		t.Errorf("-help: exit %d, want 0 and the whole help:\n%s", code, out)
	}
}
