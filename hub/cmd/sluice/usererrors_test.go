package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// These tests run the commands in-process against an in-process hub on a memory backend.

// startMemHub starts a hub on a memory backend listening on addr ("127.0.0.1:0" for any
// port) and returns its address and backend.
func startMemHub(t *testing.T, addr string) (string, *core.Backend) {
	t.Helper()
	b, err := core.Open(t.Context(), "memory://")
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(b, hub.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		_ = b.Close()
	})
	return a.String(), b
}

// runIO runs "sluice args..." in-process with stdin and returns the exit status, stdout and
// stderr.
func runIO(ctx context.Context, stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, &stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// mustRun runs a command that must succeed and returns its stdout.
func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, out, errs := runIO(t.Context(), stdin, args...)
	if code != 0 {
		t.Fatalf("sluice %q: exit %d\n%s", args, code, errs)
	}
	return out
}

// wantRun runs a command that must exit with code and print each of errWants to stderr,
// and returns its stdout. A command that runs for a minute (a tail) is interrupted.
func wantRun(t *testing.T, code int, errWants []string, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got, out, errs := runIO(ctx, stdin, args...)
	if got != code {
		t.Errorf("sluice %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, got, code, out, errs)
	}
	for _, w := range errWants {
		if !strings.Contains(errs, w) {
			t.Errorf("sluice %q: stderr lacks %q:\n%s", args, w, errs)
		}
	}
	return out
}

func TestCLIUnreachableHub(t *testing.T) {
	addr := hubtest.RefusedAddr(t)
	refused := []string{"cannot reach hub " + addr + ": connection refused", "sluice hub"}
	wantRun(t, 1, refused, "", "pull", "-hub", addr, "greetings")
	wantRun(t, 2, []string{`-hub "localhost": missing port`}, "", "pull", "-hub", "localhost", "greetings")
	wantRun(t, 2, []string{"missing port"}, "", "push", "-hub", "localhost", "greetings", "x")

	// push: a warning at the first failure, then the last cause, and that nothing was
	// sent (so nothing can have been stored).
	code, _, errs := runIO(t.Context(), "", "push", "-timeout", "1s", "-hub", addr, "greetings", "x", "y")
	for _, w := range append(refused, "; retrying for up to -timeout 1s\n", "the hub confirmed nothing for -timeout 1s, so push gave up",
		"0 of 2 message(s) confirmed", "; nothing was sent", "\n  a hub that is slow or restarting needs a longer -timeout (the default is 30s)\n") {
		if !strings.Contains(errs, w) {
			t.Errorf("push to a hub that is not running: stderr lacks %q", w)
		}
	}
	if code != 1 || strings.Contains(errs, "may or may not") || strings.Count(errs, "retrying") != 1 {
		t.Errorf("push to a hub that is not running: exit %d, want 1, one warning, nothing sent:\n%s", code, errs)
	}
}

func TestCLITailWarnsWhileHubIsDown(t *testing.T) {
	// The hub is reached through a proxy that resets every connection until it is told
	// otherwise: a hub that is down, on an address nobody else can take meanwhile.
	hubAddr, b := startMemHub(t, "127.0.0.1:0")
	if _, err := b.Storage.CreateStream(t.Context(), "events", 1); err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(hubAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetRefuse(true)
	addr := proxy.Addr()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb bytes.Buffer
	errw := &lockedWriter{w: &errb}
	stderr := func() string {
		errw.mu.Lock()
		defer errw.mu.Unlock()
		return errb.String()
	}
	exited := make(chan int, 1)
	go func() { // ends when ctx is cancelled
		exited <- run(ctx, []string{"tail", "-hub", addr, "-raw", "events"}, &stdio{in: strings.NewReader(""), out: &lockedWriter{w: &out}, err: errw})
	}()
	waitFor := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(stderr(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("tail did not print %q within 30s; stderr:\n%s", what, stderr())
			}
			select {
			case code := <-exited:
				t.Fatalf("tail exited with %d; stderr:\n%s", code, stderr())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitFor("hub "+addr, 1)
	waitFor("; retrying", 1)
	time.Sleep(300 * time.Millisecond) // more failed attempts, which must not warn again
	proxy.SetRefuse(false)
	waitFor("connected to hub "+addr, 1)
	if n := strings.Count(stderr(), "; retrying"); n != 1 {
		t.Errorf("tail warned %d times during one outage, want once:\n%s", n, stderr())
	}
	// A second outage is warned about again.
	proxy.SetRefuse(true)
	proxy.ResetAll()
	waitFor("; retrying", 2)
	proxy.SetRefuse(false)
	waitFor("connected to hub "+addr, 2)
	cancel()
	if code := <-exited; code != exitInterrupted || !strings.HasSuffix(stderr(), "sluice tail: interrupted after 0 message(s)\n") {
		t.Fatalf("tail exit %d after interrupt, want 130 saying so; stderr:\n%s", code, stderr())
	}
}

func TestCLIPullTailDoNotCreateStreams(t *testing.T) {
	addr, _ := startMemHub(t, "127.0.0.1:0")
	missing := []string{`stream "greetinsg" does not exist on hub ` + addr, "sluice create greetinsg"}
	wantRun(t, 1, missing, "", "pull", "-hub", addr, "greetinsg")
	wantRun(t, 1, missing, "", "tail", "-hub", addr, "greetinsg")
	// Neither created it: it gets the partitions asked for now.
	if got := mustRun(t, "", "create", "-hub", addr, "-partitions", "4", "greetinsg"); got != "stream greetinsg: 4 partition(s)\n" {
		t.Errorf("create after pull and tail printed %q", got)
	}

	// Asking for other partitions than an existing stream has is an error.
	mustRun(t, "", "create", "-hub", addr, "greetings")
	wantRun(t, 1, []string{"greetings exists with 1 partition(s), not 4"}, "", "create", "-hub", addr, "-partitions", "4", "greetings")
	if got := mustRun(t, "", "create", "-hub", addr, "greetinsg"); got != "stream greetinsg: 4 partition(s)\n" {
		t.Errorf("create without -partitions of a 4-partition stream printed %q", got)
	}
}

func TestCLIPullJSONRoundTrips(t *testing.T) {
	addr, _ := startMemHub(t, "127.0.0.1:0")
	msgs := []string{"\xff\xfe", "héllo", "", "a\"b\n"}
	mustRun(t, "", append([]string{"push", "-hub", addr, "bin", "--"}, msgs...)...)
	out := mustRun(t, "", "pull", "-hub", addr, "-json", "bin")
	dec := json.NewDecoder(strings.NewReader(out))
	for i, want := range msgs {
		var m struct {
			Index      uint64
			Data       *string
			DataBase64 []byte `json:"data_base64"`
		}
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("message %d: %v in %q", i, err, out)
		}
		got := string(m.DataBase64)
		if m.Data != nil {
			got = *m.Data
		}
		if m.Index != uint64(i) || got != want || (m.Data != nil) == (m.DataBase64 != nil) {
			t.Errorf("message %d: %+v, want index %d data %q in exactly one field", i, m, i, want)
		}
	}
}

func TestCLIPushLongLine(t *testing.T) {
	addr, _ := startMemHub(t, "127.0.0.1:0")
	limit := strconv.Itoa(client.MaxMessageSize)
	// An argument over the limit: nothing is pushed.
	long := strings.Repeat("x", client.MaxMessageSize+1)
	wantRun(t, 1, []string{"message 2 is " + strconv.Itoa(len(long)) + " bytes, the limit is " + limit, "nothing was pushed"},
		"", "push", "-hub", addr, "s", "ok", long)
	wantRun(t, 1, []string{"does not exist"}, "", "pull", "-hub", addr, "s")

	// A line over the limit stops push there; the lines before it are pushed.
	stdin := "a\r\nb\n" + strings.Repeat("x", 70000) + "\r\nc\n"
	out := wantRun(t, 1, []string{"line 3 is 70000 bytes, the limit is " + limit, "2 of 2 line(s) confirmed", "line 3 and the rest"},
		stdin, "push", "-hub", addr, "s")
	if out != "0\n1\n" {
		t.Errorf("push printed %q, want the indexes of lines 1 and 2", out)
	}
	if got := mustRun(t, "", "pull", "-hub", addr, "-raw", "s"); got != "a\nb\n" {
		t.Errorf("pull printed %q", got)
	}
	// A line of exactly the limit, with "\r\n", and a last line without "\n" are pushed.
	mustRun(t, "", "create", "-hub", addr, "t")
	if got := mustRun(t, strings.Repeat("y", client.MaxMessageSize)+"\r\nz", "push", "-hub", addr, "t"); got != "0\n1\n" {
		t.Errorf("push of a line at the limit printed %q", got)
	}
}

func TestCLIPushRejectsFlagsAfterStream(t *testing.T) {
	addr, _ := startMemHub(t, "127.0.0.1:0")
	wantRun(t, 2, []string{`"-quiet" after the stream name looks like a flag`, "--"}, "", "push", "-hub", addr, "greetings", "-quiet", "third")
	wantRun(t, 2, []string{`"-raw" after the stream name looks like a flag`}, "", "pull", "-hub", addr, "greetings", "-raw")
	if got := mustRun(t, "", "push", "-hub", addr, "greetings", "--", "-quiet", "third"); got != "0\n1\n" {
		t.Errorf("push -- printed %q", got)
	}
	if got := mustRun(t, "", "pull", "-hub", addr, "-raw", "greetings"); got != "-quiet\nthird\n" {
		t.Errorf("pull printed %q", got)
	}
}

func TestConformanceRunMatchesNothing(t *testing.T) {
	dir := t.TempDir()
	wantRun(t, 2, []string{`-run "NoSuchTest": no test matched`}, "", "conformance", "-backend", "memory://", "-run", "NoSuchTest", "-out", dir)
}

// TestCLIBackendURLErrorsHidePassword: a -backend URL refused before anything is opened
// (a typo in the scheme, a bad escape) is shown without its password.
func TestCLIBackendURLErrorsHidePassword(t *testing.T) {
	for _, args := range [][]string{
		{"hub", "-listen", "127.0.0.1:0", "-backend", "kafak://user:s3cret@host:9092"},
		{"hub", "-listen", "127.0.0.1:0", "-backend", "kafka://user:s3cret@host%zz:9092"},
		{"conformance", "-backend", "kafak://user:s3cret@host:9092", "-out", t.TempDir()},
	} {
		code, out, errs := runIO(t.Context(), "", args...)
		if code != 2 || !strings.Contains(errs, "user:xxxxx@host") || strings.Contains(out+errs, "s3cret") {
			t.Errorf("sluice %q: exit %d, want 2 and the URL without its password:\nstdout: %s\nstderr: %s", args, code, out, errs)
		}
	}
}

func TestCLIUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	wantRun(t, 2, []string{`unknown backend "nosuch"`}, "", "hub", "-backend", "nosuch://x")
	wantRun(t, 2, []string{"-window 0"}, "", "push", "-window", "0", "s", "x")
	wantRun(t, 2, []string{`unknown backend "foo"`}, "", "bench", "-backend", "foo://", "-out", dir)
	if _, err := os.Stat(filepath.Join(dir, "bench.md")); err == nil {
		t.Error("bench wrote bench.md for an unknown backend")
	}
	wantRun(t, 2, []string{`unknown backend "foo"`}, "", "conformance", "-backend", "foo://", "-out", dir)
	// The help is true: the sluice:// backend's package, and the message limit of push.
	if code, out, _ := runIO(t.Context(), "", "help", "hub"); code != 0 || !strings.Contains(out, "is backends/remote") {
		t.Errorf("sluice help hub: exit %d, lacks backends/remote:\n%s", code, out)
	}
	if _, out, _ := runIO(t.Context(), "", "help", "push"); !strings.Contains(out, strconv.Itoa(client.MaxMessageSize)+" bytes") {
		t.Errorf("sluice help push does not state the limit %d:\n%s", client.MaxMessageSize, out)
	}
}

// More bad command lines: each exits 2 before reaching any hub, names what is wrong, and
// ends with the command's usage and where its help is.
func TestCLIBadCommandLines(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens: a command that got past its checks exits 1
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "-hub", addr, "a", "b"}, "at most one stream name, got 2"},
		{[]string{"create", "-hub", addr, "orders", "-partitions", "3"}, `"-partitions" after the stream name looks like a flag: flags go before the stream name`},
		{[]string{"create", "-hub", addr, "bad name"}, "stream name"},
		{[]string{"create", "-hub", ":4000"}, `-hub ":4000": want HOST:PORT`},
		{[]string{"push", "-hub", "sluice://127.0.0.1:4000", "s", "x"}, `-hub "sluice://127.0.0.1:4000": want HOST:PORT without a scheme, e.g. -hub 127.0.0.1:4000`},
		{[]string{"pull", "-hub", "tcp://10.0.0.5:4000/", "s"}, `-hub "tcp://10.0.0.5:4000/": want HOST:PORT without a scheme, e.g. -hub 10.0.0.5:4000`},
		// A port no hub can listen on is a typo: not retried as an unreachable hub (tail
		// would retry forever).
		{[]string{"tail", "-hub", "127.0.0.1:99999", "s"}, `-hub "127.0.0.1:99999": port 99999: want 1 to 65535`},
		{[]string{"push", "-hub", "127.0.0.1:0", "-timeout", "1s", "s", "x"}, `-hub "127.0.0.1:0": port 0: want 1 to 65535`},
		{[]string{"pull", "-hub", "127.0.0.1:abc", "s"}, `-hub "127.0.0.1:abc": port abc: want 1 to 65535`},
		{[]string{"create", "-hub", addr, "-timeout", "0", "s"}, "-timeout 0s: want more than 0"},
		{[]string{"push", "-hub", addr, "-timeout", "0", "s", "x"}, "-timeout 0s: want more than 0"},
		{[]string{"pull", "-hub", addr, "-idle", "0", "s"}, "-idle 0s: want more than 0"},
		{[]string{"pull", "-hub", addr, "s", "t"}, "want exactly one stream name, got 2"},
		{[]string{"tail", "-hub", addr}, "want exactly one stream name, got 0"},
		// A bad client id is a bad command line, also an empty one (an unset variable):
		// not reported after reaching the hub, nor silently read without saving.
		{[]string{"tail", "-hub", addr, "-client-id", strings.Repeat("c", core.MaxClientIDLen+1), "s"}, "-client-id: invalid argument: client id is 256 bytes long, the limit is 255"},
		{[]string{"pull", "-hub", addr, "-client-id", "", "s"}, "-client-id: invalid argument: empty client id"},
		{[]string{"pull", "-hub", addr, "-client-id", "a\nb", "s"}, "-client-id: invalid argument: client id"},
		{[]string{"hub", "-listen", "127.0.0.1:0", "-backend", "sluice-data"}, `backend URL "sluice-data" has no scheme`},
		{[]string{"hub", "-listen", ":abc", "-backend", "memory://"}, `-listen ":abc": want [HOST]:PORT`},
		{[]string{"hub", "-listen", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:99999", "-backend", "memory://"}, `-metrics-addr "127.0.0.1:99999": want [HOST]:PORT`},
	} {
		wantRun(t, 2, []string{tc.want, "usage: sluice " + tc.args[0] + " ", "(see sluice " + tc.args[0] + " -help)"}, "", tc.args...)
	}
}

// "sluice help" is asked for: it goes to standard output (sluice help | less) and exits 0;
// without a command the list goes to standard error with exit 2.
func TestCLIHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "push"}} {
		if code, out, errs := runIO(t.Context(), "", args...); code != 0 || !strings.Contains(out, "tail") || errs != "" {
			t.Errorf("sluice %q: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", args, code, out, errs)
		}
	}
	// So does "sluice COMMAND -help" (sluice push -help | less).
	for _, args := range [][]string{{"push", "-help"}, {"pull", "-h"}, {"hub", "--help"}} {
		if code, out, errs := runIO(t.Context(), "", args...); code != 0 || !strings.Contains(out, "usage: sluice "+args[0]) || errs != "" {
			t.Errorf("sluice %q: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", args, code, out, errs)
		}
	}
	if code, out, errs := runIO(t.Context(), ""); code != 2 || out != "" || !strings.Contains(errs, "commands:") {
		t.Errorf("sluice: exit %d, stdout %q, stderr %q; want 2 and the commands on stderr", code, out, errs)
	}
}

// create reports a hub it cannot reach as push and pull do, once it retried for -timeout;
// and an existing stream cannot be created again with fewer partitions either.
func TestCLICreateErrors(t *testing.T) {
	addr := hubtest.RefusedAddr(t)
	refused := "cannot reach hub " + addr + ": connection refused"
	_, _, errs := runIO(t.Context(), "", "create", "-hub", addr, "-timeout", "1500ms", "s")
	if want := "sluice create: " + refused + hubHint + "; retrying for up to -timeout 1.5s\nsluice create: " + refused + hubHint + "\n"; errs != want {
		t.Errorf("create to a hub that is not running: stderr\n%s\nwant\n%s", errs, want)
	}

	addr, _ = startMemHub(t, "127.0.0.1:0")
	mustRun(t, "", "create", "-hub", addr, "-partitions", "4", "s")
	out := wantRun(t, 1, []string{"s exists with 4 partition(s), not 1"}, "", "create", "-hub", addr, "-partitions", "1", "s")
	if out != "stream s: 4 partition(s)\n" {
		t.Errorf("create -partitions 1 of a 4-partition stream printed %q", out)
	}
}

// A create run right after starting a hub ("sluice hub &" in a script, as in the README)
// waits for the hub to listen instead of failing with "connection refused", and says
// nothing about it when that takes less than a second.
func TestCLICreateWaitsForHub(t *testing.T) {
	addr := freeAddr(t)
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := runIO(t.Context(), "", "create", "-hub", addr, "s")
		done <- result{code, out, errs}
	}()
	time.Sleep(300 * time.Millisecond)
	startMemHub(t, addr)
	r := <-done
	if r.code != 0 || r.out != "stream s: 1 partition(s)\n" || r.errs != "" {
		t.Errorf("create before the hub listens: exit %d, stdout %q, stderr %q; want 0, the stream and no warning", r.code, r.out, r.errs)
	}
}

// Ctrl-C while create waits for a hub says that it was interrupted, and why it waited.
func TestCLICreateInterruptedWhileWaiting(t *testing.T) {
	addr := hubtest.RefusedAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	code, _, errs := runIO(ctx, "", "create", "-hub", addr, "s")
	if want := "sluice create: interrupted; last error: cannot reach hub " + addr + ": connection refused"; code != exitInterrupted || !strings.HasPrefix(errs, want) {
		t.Errorf("create interrupted while the hub refuses: exit %d, stderr %q; want 130 and %q", code, errs, want)
	}
}

// An argument of exactly the limit is pushed, as a standard input line of that size is.
func TestCLIPushArgumentAtLimit(t *testing.T) {
	addr, _ := startMemHub(t, "127.0.0.1:0")
	at := strings.Repeat("x", client.MaxMessageSize)
	if got := mustRun(t, "", "push", "-hub", addr, "s", at); got != "0\n" {
		t.Errorf("push of an argument at the limit printed %q", got)
	}
}

// A hub address whose host does not resolve says so.
func TestCLIUnresolvableHub(t *testing.T) {
	wantRun(t, 1, []string{`cannot reach hub nosuch.invalid:4000: cannot resolve "nosuch.invalid"`, "sluice hub"}, "", "pull", "-hub", "nosuch.invalid:4000", "s")
}

// A create to a server that never answers says which hub does not answer and within what.
func TestCLICreateSilentHub(t *testing.T) {
	addr := hubtest.SilentServer(t)
	wantRun(t, 1, []string{"hub " + addr + " does not answer", "no reply within -timeout 300ms (is it a sluice hub?)"}, "",
		"create", "-hub", addr, "-timeout", "300ms", "s")
}

// A push to a server that accepts connections and never answers (a port that is not a
// hub's) says so, instead of only that nothing was confirmed.
func TestCLIPushSilentHub(t *testing.T) {
	addr := hubtest.SilentServer(t)
	wantRun(t, 1, []string{"the hub confirmed nothing for -timeout 300ms",
		"; " + addr + " accepted the connection but answered nothing: is it a sluice hub?"}, "",
		"push", "-hub", addr, "-timeout", "300ms", "s", "x")
}

// A client command pointed at an HTTP port (a hub's -metrics-addr, say) is told that it is
// no hub, quoting the answer, and which address -hub takes; push and tail stop at once
// instead of retrying an address that cannot work.
func TestCLIHTTPPortIsNoHub(t *testing.T) {
	addr := hubtest.HTTPServer(t)
	want := []string{addr + ` is not a sluice hub: it answered with HTTP ("HTTP/1.1 400 Bad Request")`, "sluice hub -listen"}
	for _, args := range [][]string{
		{"create", "-hub", addr, "s"},
		{"pull", "-hub", addr, "s"},
		{"tail", "-hub", addr, "s"},
		{"push", "-timeout", "50s", "-hub", addr, "s", "m"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		code, _, errs := runIO(ctx, "", args...)
		cancel()
		if code != 1 {
			t.Errorf("sluice %q: exit %d, want 1\nstderr: %s", args, code, errs)
		}
		for _, w := range want {
			if !strings.Contains(errs, w) {
				t.Errorf("sluice %q: stderr lacks %q:\n%s", args, w, errs)
			}
		}
		for _, bad := range []string{"retrying", "connection limit", "confirmed nothing"} {
			if strings.Contains(errs, bad) {
				t.Errorf("sluice %q: stderr says %q, want it to stop at the HTTP answer:\n%s", args, bad, errs)
			}
		}
	}
}

// -raw and -json exclude each other; an error of package core is printed without its own
// "sluice: " after the command's.
func TestCLIUsageMessages(t *testing.T) {
	addr := hubtest.RefusedAddr(t)
	for _, cmd := range []string{"pull", "tail"} {
		wantRun(t, 2, []string{"-raw and -json exclude each other"}, "", cmd, "-hub", addr, "-raw", "-json", "s")
	}
	_, _, errs := runIO(t.Context(), "", "push", "-hub", addr, "bad name", "x")
	if want := "sluice push: usage: invalid argument: "; !strings.Contains(errs, want) || strings.Contains(errs, ": sluice: ") {
		t.Errorf("push with a bad stream name: stderr %q, want %q and no second \"sluice: \"", errs, want)
	}
}

// A bench whose configuration is refused creates no -out directory.
func TestBenchBadWorkloadCreatesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report")
	wantRun(t, 2, []string{`unknown workload "bogus"`}, "", "bench", "-backend", "memory://", "-workloads", "bogus", "-out", out)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-out %s after a refused configuration: %v, want it not created", out, err)
	}
}

// freeAddr returns a loopback address that is free now, for a hub to listen on later (its
// port could be taken meanwhile). An address to dial where nothing listens is
// hubtest.RefusedAddr's, which nothing can take.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
