package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/conformance/conformancetest"
	"github.com/sluicehq/sluice/core"
)

// brokenScheme opens a memory backend whose indexes are not increasing, to prove that
// "sluice conformance" fails such a backend and says why.
const brokenScheme = "test-nonmonotonic"

func init() {
	core.Register(brokenScheme, func(ctx context.Context, _ *url.URL) (*core.Backend, error) {
		b, err := core.Open(ctx, "memory://")
		if err != nil {
			return nil, err
		}
		return conformancetest.NonMonotonic(b), nil
	})
}

// interruptScheme opens a memory backend whose Nth Append (counted across backends opened
// with it) interrupts the test's run, as Ctrl-C does, and then returns its context's error,
// as any backend cut short does.
const interruptScheme = "test-interrupt"

var interrupt struct {
	mu     sync.Mutex
	n      int // Appends left before the interruption
	cancel context.CancelFunc
}

type interruptingStorage struct{ core.Storage }

func (s interruptingStorage) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	interrupt.mu.Lock()
	interrupt.n--
	fire := interrupt.n == 0
	cancel := interrupt.cancel
	interrupt.mu.Unlock()
	if fire && cancel != nil {
		cancel()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Storage.Append(ctx, stream, partition, msgs)
}

func init() {
	core.Register(interruptScheme, func(ctx context.Context, _ *url.URL) (*core.Backend, error) {
		b, err := core.Open(ctx, "memory://")
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: interruptingStorage{b.Storage}, Index: b.Index}, nil
	})
}

// runCLI runs "sluice args..." in-process and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(t.Context(), args, &stdio{in: strings.NewReader(""), out: &out, err: &out})
	return code, out.String()
}

func TestConformanceBrokenBackendFails(t *testing.T) {
	dir := t.TempDir()
	code, out := runCLI(t, "conformance", "-backend", "memory://", "-backend", brokenScheme+"://",
		"-run", "^Storage$/(Order|Index)", "-out", dir)
	if code != 1 {
		t.Fatalf("exit status %d, want 1; output:\n%s", code, out)
	}
	// The progress line names the failing subtest and the failure says what was wrong.
	for _, want := range []string{
		"=== memory (memory://)",
		"PASS memory Storage/Order (",
		"FAIL memory#2 Storage/Index/StrictlyIncreasing (",
		"indexes must be strictly increasing",
		"conformance failed on memory#2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Storage/Fetch") || strings.Contains(out, "IndexStorage/") {
		t.Errorf("-run let other subtests through:\n%s", out)
	}

	var rep struct {
		OK       bool
		Backends []struct {
			Name         string
			OK           bool
			Passed       int
			Failed       int
			SuiteVersion string `json:"suite_version"`
		}
		Tests []struct {
			Name    string
			Results []struct {
				Backend, Outcome, Message string
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "conformance.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Backends) != 2 {
		t.Fatalf("report ok=%v with %d backends; want false, 2", rep.OK, len(rep.Backends))
	}
	if b := rep.Backends[0]; !b.OK || b.Failed != 0 || b.Passed == 0 {
		t.Errorf("memory: %+v, want passing", b)
	}
	// The report and the progress output say which suite certified (also after -run).
	for _, b := range rep.Backends {
		if b.SuiteVersion != core.Version() {
			t.Errorf("%s: suite_version %q, want %q", b.Name, b.SuiteVersion, core.Version())
		}
	}
	if want := "conformance suite github.com/sluicehq/sluice " + core.Version() + "\n"; !strings.HasPrefix(out, want) {
		t.Errorf("output does not start with %q:\n%s", want, out)
	}
	if b := rep.Backends[1]; b.OK || b.Failed == 0 {
		t.Errorf("broken memory: %+v, want failures", b)
	}
	failures := 0
	for _, tc := range rep.Tests {
		if len(tc.Results) != 2 {
			t.Fatalf("%s has %d results, want 2", tc.Name, len(tc.Results))
		}
		if r := tc.Results[1]; r.Outcome == "fail" {
			failures++
			if !strings.Contains(r.Message, "index") {
				t.Errorf("%s failure message %q does not mention indexes", tc.Name, r.Message)
			}
		}
		if r := tc.Results[0]; r.Outcome == "fail" {
			t.Errorf("%s fails on the working backend: %s", tc.Name, r.Message)
		}
	}
	if failures == 0 {
		t.Error("no failing row for the broken backend")
	}

	md, err := os.ReadFile(filepath.Join(dir, "conformance.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "❌ **fail**") || !strings.Contains(string(md), "| Test | memory | memory#2 |") {
		t.Errorf("Markdown matrix lacks the failure or the columns:\n%s", md)
	}
	junit, err := os.ReadFile(filepath.Join(dir, "conformance.junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name string `xml:"name,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(junit, &suites); err != nil {
		t.Fatalf("JUnit report does not parse: %v", err)
	}
	if suites.Failures != failures || len(suites.Suites) != 2 {
		t.Errorf("JUnit: %d failures in %d suites; want %d in 2", suites.Failures, len(suites.Suites), failures)
	}
}

func TestConformanceBbolt(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "report")
	code, text := runCLI(t, "conformance", "-backend", "bbolt://"+filepath.Join(dir, "data"), "-out", out,
		"-run", "^Storage$/(Persistence|CreateStream)/MaxPartitions", "-create-max-partitions")
	if code != 0 {
		t.Fatalf("exit status %d, want 0; output:\n%s", code, text)
	}
	// Persistence has no subtests: it matches at its level and runs, as with "go test -run".
	for _, want := range []string{"PASS bbolt Storage/Persistence", "PASS bbolt Storage/CreateStream/MaxPartitions (",
		"ok   bbolt: 2 passed, 0 skipped, 0 failed"} {
		if !strings.Contains(text, want) {
			t.Errorf("no progress line %q:\n%s", want, text)
		}
	}
	for _, name := range []string{"conformance.md", "conformance.json", "conformance.junit.xml"} {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", name, err)
		}
	}
}

func TestConformanceUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"conformance"}, 2, "no -backend URL"},
		{[]string{"conformance", "-backend", "memory://", "extra"}, 2, "unexpected arguments"},
		{[]string{"conformance", "-backend", "memory://", "-run", "(", "-out", t.TempDir()}, 2, "-run"},
		{[]string{"conformance", "-backend", "nosuch://", "-out", t.TempDir()}, 2, "unknown backend"},
		// Negative durations are typos, not silently the default (-subtest-timeout) or 0
		// (-max-wait).
		{[]string{"conformance", "-backend", "memory://", "-subtest-timeout", "-1s", "-out", t.TempDir()}, 2, "-subtest-timeout -1s: want more than 0"},
		{[]string{"conformance", "-backend", "memory://", "-max-wait", "-1s", "-out", t.TempDir()}, 2, "-max-wait -1s: want 0 or more"},
	} {
		code, out := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("sluice %q: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}

// Ctrl-C during "sluice conformance" is not a failure of the backend it was testing: the
// subtest it cut short is interrupted, the backend not reached is listed as not run, the
// report says INTERRUPTED, and the exit status is 130.
func TestConformanceInterruptIsNotAFailure(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	interrupt.mu.Lock()
	interrupt.n, interrupt.cancel = 10, cancel
	interrupt.mu.Unlock()
	defer func() {
		interrupt.mu.Lock()
		interrupt.cancel = nil
		interrupt.mu.Unlock()
	}()
	var out bytes.Buffer
	code := run(ctx, []string{"conformance", "-backend", interruptScheme + "://", "-backend", "memory://", "-out", dir},
		&stdio{in: strings.NewReader(""), out: &out, err: &out})
	if code != exitInterrupted || !strings.Contains(out.String(), "---- memory#2: not run (interrupted)") || !strings.Contains(out.String(), "sluice conformance: interrupted (") {
		t.Errorf("exit %d; want 130, saying interrupted and memory#2 not run:\n%s", code, out.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "conformance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK, Interrupted bool
		Backends        []struct {
			Name        string
			Failed      int
			Interrupted int
			NotRun      bool `json:"not_run"`
		}
		Tests []struct {
			Name    string
			Results []struct{ Backend, Outcome, Message string }
		}
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	interrupted := 0
	for _, tc := range rep.Tests {
		for _, r := range tc.Results {
			switch r.Outcome {
			case "fail":
				t.Errorf("%s failed on %s: %s", tc.Name, r.Backend, r.Message)
			case "interrupted":
				interrupted++
			}
		}
	}
	if rep.OK || !rep.Interrupted || interrupted != 1 || len(rep.Backends) != 2 {
		t.Fatalf("report ok=%v interrupted=%v, %d interrupted results, %d backends; want false, true, 1, 2\n%s", rep.OK, rep.Interrupted, interrupted, len(rep.Backends), data)
	}
	if b := rep.Backends[0]; b.Failed != 0 || b.Interrupted != 1 || b.NotRun {
		t.Errorf("backend 1: %+v; want 1 test interrupted, none failed", b)
	}
	if b := rep.Backends[1]; b.Name != "memory#2" || !b.NotRun {
		t.Errorf("backend 2: %+v; want memory#2, not run", b)
	}
	md, err := os.ReadFile(filepath.Join(dir, "conformance.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(md), "# Sluice conformance report: INTERRUPTED\n") {
		t.Errorf("Markdown report is not titled INTERRUPTED:\n%s", md)
	}
}

// -out naming an existing file is found before the suite runs, not after.
func TestConformanceOutIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "report")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"conformance", "-backend", "memory://", "-out", file},
		{"bench", "-backend", "memory://", "-runs", "1", "-duration", "10ms", "-sizes", "64", "-out", file},
	} {
		code, out := runCLI(t, args...)
		if code != 2 || !strings.Contains(out, "is a file") || strings.Contains(out, "PASS") || strings.Contains(out, "run 1/") {
			t.Errorf("sluice %q: exit %d; want 2 before running:\n%s", args, code, out)
		}
	}
}

// A password in a backend URL appears nowhere, neither in the output nor in the reports.
func TestConformanceRedactsPassword(t *testing.T) {
	dir := t.TempDir()
	code, out := runCLI(t, "conformance", "-backend", userInfoScheme+"://user:secret@", "-run", "Storage/Order", "-out", dir)
	if code != 0 || !strings.Contains(out, userInfoScheme+"://user:xxxxx@") {
		t.Errorf("exit %d; want 0 naming the URL without its password:\n%s", code, out)
	}
	for _, name := range []string{"", "conformance.md", "conformance.json", "conformance.junit.xml"} {
		data := []byte(out)
		if name != "" {
			var err error
			if data, err = os.ReadFile(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Contains(string(data), "secret") {
			t.Errorf("the password of the backend URL is in %q:\n%s", name, data)
		}
	}
}
