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
