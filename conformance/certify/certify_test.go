package certify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/conformance/report"
	"github.com/sluicehq/sluice/core"
)

func TestSplitPattern(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Storage", "Storage"},
		{"Storage/Order/One", "Storage|Order|One"},
		{"Storage/(A|B/C)", "Storage|(A|B/C)"},
		{`A/[/]x/\/y`, `A|[/]x|\/y`},
	} {
		if got := strings.Join(splitPattern(tc.in), "|"); got != tc.want {
			t.Errorf("splitPattern(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// certifier runs a certifier's main with args and returns its exit status and output.
func certifier(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = mainArgs(t.Context(), "certify-mybroker", args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestMainCertifies is an out-of-tree certifier's run: the memory backend stands for the
// backend its main imports.
func TestMainCertifies(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := certifier(t, "-backend", "memory://", "-run", "^Storage$/^Order$", "-out", dir)
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"conformance suite " + core.ModulePath + " " + core.Version() + "\n",
		"=== memory (memory://)",
		"PASS memory Storage/Order (",
		"ok   memory: ",
		"report: " + filepath.Join(dir, report.MarkdownFile),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Storage/AppendFetch") {
		t.Errorf("-run let other subtests through:\n%s", out)
	}
	data, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK       bool `json:"ok"`
		Backends []struct {
			Passed int `json:"passed"`
		} `json:"backends"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Backends) != 1 || rep.Backends[0].Passed == 0 {
		t.Errorf("report %s: %+v, want one passing backend", report.JSONFile, rep)
	}
}

func TestMainUsage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no -backend URL given"},
		{[]string{"-backend", "nosuch://"}, 2, `unknown backend "nosuch"`},
		{[]string{"-backend", "memory://", "extra"}, 2, "unexpected arguments"},
		{[]string{"-backend", "memory://", "-run", "("}, 2, "-run"},
		{[]string{"-backend", "memory://", "-run", "^NoSuchSuite$", "-out", t.TempDir()}, 2, "no test matched"},
		{[]string{"-backend", "memory://", "-out", file}, 2, "is a file"},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"-help"}, 0, "usage: certify-mybroker -backend URL"},
	} {
		code, out, errOut := certifier(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q (stdout %q)", tc.args, code, errOut, tc.code, tc.want, out)
		}
	}
}

func TestMainFailsOnABackendThatCannotOpen(t *testing.T) {
	// "memory://?x=1" is a registered scheme whose backend refuses the unknown parameter.
	code, out, errOut := certifier(t, "-backend", "memory://?nosuchparam=1", "-out", t.TempDir())
	if code != 1 || !strings.Contains(out, "FAIL memory") || !strings.Contains(errOut, "conformance failed on memory") {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s\nwant 1, a FAIL line and the failed backend named", code, out, errOut)
	}
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	dir := t.TempDir()
	err := Run(ctx, &out, Config{Backends: []string{"memory://"}, Out: dir})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Run with a cancelled context: %v, want an interrupted error", err)
	}
	md, rerr := os.ReadFile(filepath.Join(dir, report.MarkdownFile))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !strings.Contains(string(md), "INTERRUPTED") {
		t.Errorf("report of an interrupted run:\n%s", md)
	}
}

// TestMainInterruptedExits130: a certifier interrupted by a signal exits 130, as `sluice
// conformance` does, not 1 (a failed backend).
func TestMainInterruptedExits130(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errb bytes.Buffer
	code := mainArgs(ctx, "certify-mybroker", []string{"-backend", "memory://", "-out", t.TempDir()}, &out, &errb)
	if code != 130 || !strings.Contains(errb.String(), "interrupted") {
		t.Fatalf("exit %d, stderr %q; want 130 and the run reported as interrupted", code, errb.String())
	}
}

func init() {
	// "hangopen://" opens as a backend whose broker accepts connections but never answers
	// does: its Open returns only when its context ends.
	core.Register("hangopen", func(ctx context.Context, _ *url.URL) (*core.Backend, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("hangopen: no answer: %w", ctx.Err())
	})
}

// TestRunOpenThatHangsFails: the first Open of a backend, before its subtests, is bounded
// by -subtest-timeout as each subtest's Open is: a broker that never answers fails the
// backend instead of hanging the run, silently, until Ctrl-C.
func TestRunOpenThatHangsFails(t *testing.T) {
	// The watchdog only turns a hang into a failure of this test; it is no timing assert.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Long enough for memory's subtest on a loaded machine (at 50ms it timed out there).
	var out bytes.Buffer
	err := Run(ctx, &out, Config{Backends: []string{"hangopen://", "memory://"}, Out: t.TempDir(),
		SubtestTimeout: 2 * time.Second, Run: "^Storage$/^Order$"})
	if ctx.Err() != nil {
		t.Fatalf("Run still opening the backend after a minute, with -subtest-timeout 2s:\n%s", out.String())
	}
	if err == nil || !strings.Contains(err.Error(), "conformance failed on hangopen") {
		t.Errorf("Run: %v; want the backend that did not open failed", err)
	}
	for _, want := range []string{"FAIL hangopen: ", "-subtest-timeout 2s", "PASS memory Storage/Order ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
