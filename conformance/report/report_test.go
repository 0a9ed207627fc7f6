package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/conformance"
)

// sampleRuns are two backends: "good" passes or skips everything, "bad" fails one leaf, has
// a parent failing on its own (with a pipe, a newline and a control byte in the message)
// and did not run one test.
func sampleRuns() []Run {
	good := conformance.Result{Tests: []conformance.TestResult{
		{Name: "Storage/Order/OneBatch", Outcome: conformance.Pass, Leaf: true, Duration: 12 * time.Millisecond},
		{Name: "Storage/Persistence", Outcome: conformance.Skip, SkipReason: "backend does not declare Persistent", Leaf: true},
		{Name: "Storage/Index/Unique", Outcome: conformance.Pass, Leaf: true, Logs: []string{"capabilities: x"}},
		{Name: "Storage/Index", Outcome: conformance.Pass},
		{Name: "Storage", Outcome: conformance.Pass},
	}, Passed: 2, Skipped: 1, Duration: time.Second}
	bad := conformance.Result{Tests: []conformance.TestResult{
		{Name: "Storage/Order/OneBatch", Outcome: conformance.Fail, Leaf: true,
			Failures: []string{"Append reported indexes [1 0 3 2]; want strictly increasing", "second message"}},
		{Name: "Storage/Persistence", Outcome: conformance.Pass, Leaf: true},
		{Name: "Storage/Extra", Outcome: conformance.Fail, Failures: []string{"setup | broke\nwith \x01 control"}},
		{Name: "Storage", Outcome: conformance.Fail},
	}, Passed: 1, Failed: 2, Duration: 2 * time.Second}
	return []Run{
		{Backend: "good", URL: "memory://", Capabilities: "memory: max_message_size=1", Result: good},
		{Backend: "bad", URL: "broken://", Result: bad},
	}
}

func TestBuild(t *testing.T) {
	m := Build(sampleRuns())
	var names []string
	for _, r := range m.Rows {
		names = append(names, r.Test)
	}
	want := []string{"Storage/Order/OneBatch", "Storage/Persistence", "Storage/Index/Unique", "Storage/Extra"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("rows = %q, want %q", names, want)
	}
	if m.OK() {
		t.Error("OK() = true with a failing backend")
	}
	for _, tc := range []struct {
		row, col int
		status   Status
		msg      string
	}{
		{0, 0, StatusPass, ""},
		{0, 1, StatusFail, "Append reported indexes [1 0 3 2]; want strictly increasing\nsecond message"},
		{1, 0, StatusSkip, "backend does not declare Persistent"},
		{2, 1, StatusNotRun, ""},
		{3, 0, StatusNotRun, ""},
		{3, 1, StatusFail, "setup | broke\nwith \x01 control"},
	} {
		c := m.Rows[tc.row].Cells[tc.col]
		if c.Status != tc.status || c.Message != tc.msg {
			t.Errorf("cell %q/%s = %q %q, want %q %q", m.Rows[tc.row].Test, m.Backends[tc.col].Name, c.Status, c.Message, tc.status, tc.msg)
		}
	}
	if !m.Backends[0].OK() || m.Backends[1].OK() {
		t.Errorf("backend OK = %v, %v; want true, false", m.Backends[0].OK(), m.Backends[1].OK())
	}
}

func TestBuildDuplicateNames(t *testing.T) {
	m := Build([]Run{{Backend: "bbolt"}, {Backend: "bbolt"}, {}})
	got := []string{m.Backends[0].Name, m.Backends[1].Name, m.Backends[2].Name}
	if got[0] != "bbolt" || got[1] != "bbolt#2" || got[2] != "backend" {
		t.Errorf("names = %q", got)
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := Build(sampleRuns()).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# Sluice conformance report: FAIL",
		"| good | `memory://` | 2 | 1 | 0 | 1s |",
		"| Test | good | bad |",
		"| `Storage/Order/OneBatch` | ✅ pass | ❌ **fail**: Append reported indexes [1 0 3 2]; want strictly increasing … |",
		"⏭️ skip: backend does not declare Persistent",
		`❌ **fail**: setup \| broke …`,
		"· not run",
		"### bad: Storage/Order/OneBatch",
		"- memory: max_message_size=1",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	// Every matrix line has one cell per backend plus the test name.
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| `Storage/") {
			if n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|"); n != 4 {
				t.Errorf("matrix line has %d separators, want 4: %s", n, line)
			}
		}
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := Build(sampleRuns()).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got jsonReport
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("JSON report does not parse: %v\n%s", err, b.String())
	}
	if got.OK || len(got.Backends) != 2 || len(got.Tests) != 4 {
		t.Fatalf("ok=%v backends=%d tests=%d, want false, 2, 4", got.OK, len(got.Backends), len(got.Tests))
	}
	if b := got.Backends[1]; b.Name != "bad" || b.OK || b.Failed != 2 || b.Seconds != 2 {
		t.Errorf("backend 1 = %+v", b)
	}
	r := got.Tests[0].Results[1]
	if r.Backend != "bad" || r.Outcome != StatusFail || !strings.HasPrefix(r.Message, "Append reported indexes") {
		t.Errorf("Storage/Order/OneBatch on bad = %+v", r)
	}
	if r := got.Tests[2].Results[0]; len(r.Logs) != 1 || r.Logs[0] != "capabilities: x" {
		t.Errorf("logs = %q", r.Logs)
	}
}

// The JUnit shape a CI system reads, parsed independently of the writer's own types.
type parsedSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []struct {
		Name       string `xml:"name,attr"`
		Tests      int    `xml:"tests,attr"`
		Failures   int    `xml:"failures,attr"`
		Skipped    int    `xml:"skipped,attr"`
		Properties []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Errors    int    `xml:"errors,attr"`
		SystemErr string `xml:"system-err"`
		Cases     []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Skipped *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"skipped"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
	Errors int    `xml:"errors,attr"`
	Time   string `xml:"time,attr"`
}

func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := Build(sampleRuns()).WriteJUnit(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "<?xml") {
		t.Errorf("no XML declaration: %.40q", b.String())
	}
	var got parsedSuites
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("JUnit report does not parse: %v\n%s", err, b.String())
	}
	if got.Tests != 8 || got.Failures != 2 || got.Skipped != 3 || len(got.Suites) != 2 {
		t.Fatalf("testsuites tests=%d failures=%d skipped=%d suites=%d; want 8, 2, 3, 2\n%s", got.Tests, got.Failures, got.Skipped, len(got.Suites), b.String())
	}
	good, bad := got.Suites[0], got.Suites[1]
	if good.Name != "good" || good.Failures != 0 || good.Skipped != 2 || len(good.Properties) != 2 || good.Properties[0].Value != "memory://" {
		t.Errorf("suite good = %+v", good)
	}
	c := good.Cases[0]
	if c.Name != "Order/OneBatch" || c.Classname != "conformance.good.Storage" || c.Time != "0.012" || c.Failure != nil || c.Skipped != nil {
		t.Errorf("good case 0 = %+v", c)
	}
	if c := good.Cases[1]; c.Skipped == nil || c.Skipped.Message != "backend does not declare Persistent" {
		t.Errorf("good case 1 = %+v", c)
	}
	if c := bad.Cases[0]; c.Failure == nil || c.Failure.Message != "Append reported indexes [1 0 3 2]; want strictly increasing …" ||
		!strings.Contains(c.Failure.Text, "second message") {
		t.Errorf("bad case 0 = %+v", c)
	}
	// The control byte is not valid XML 1.0: it must be replaced, not break the file.
	if c := bad.Cases[3]; c.Failure == nil || !strings.Contains(c.Failure.Text, "setup | broke\nwith \uFFFD control") {
		t.Errorf("bad case 3 = %+v", c)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	paths, err := WriteFiles(dir, sampleRuns())
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("paths = %q", paths)
	}
	for _, name := range []string{MarkdownFile, JSONFile, JUnitFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if fi.Size() == 0 {
			t.Errorf("%s is empty", name)
		}
	}
}

// An interrupted run: the test cut short is interrupted, not failed, a backend not reached
// is listed as not run, and the report says INTERRUPTED.
func TestInterrupted(t *testing.T) {
	runs := []Run{
		{Backend: "slow", URL: "slow://", Result: conformance.Result{Tests: []conformance.TestResult{
			{Name: "Storage/Order/OneBatch", Outcome: conformance.Pass, Leaf: true},
			{Name: "Storage/Append/StreamNotFound", Outcome: conformance.Interrupted, Leaf: true, Failures: []string{"Append: context canceled"}},
			{Name: "Storage/Append", Outcome: conformance.Interrupted},
		}, Passed: 1, Interrupted: 1, Incomplete: true, Duration: time.Second}},
		{Backend: "memory", URL: "memory://", Result: conformance.Result{Incomplete: true}},
	}
	m := Build(runs)
	if m.OK() || !m.Incomplete() || m.Verdict() != "INTERRUPTED" {
		t.Errorf("OK %v, Incomplete %v, Verdict %q; want false, true, INTERRUPTED", m.OK(), m.Incomplete(), m.Verdict())
	}
	if b := m.Backends[1]; !b.NotRun() || m.Backends[0].NotRun() {
		t.Errorf("NotRun = %v, %v; want false, true", m.Backends[0].NotRun(), b.NotRun())
	}
	if c := m.Rows[1].Cells[0]; c.Status != StatusInterrupted || c.Message != "Append: context canceled" {
		t.Errorf("interrupted cell = %+v", c)
	}
	if c := m.Rows[1].Cells[1]; c.Status != StatusNotRun {
		t.Errorf("cell of the backend not reached = %+v", c)
	}
	var md bytes.Buffer
	if err := m.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Sluice conformance report: INTERRUPTED", "⏸️ interrupted", "| memory | `memory://` | 0 | 0 | 0 | not run (interrupted) |", "1s, interrupted (1 test(s) cut short)"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}
	if strings.Contains(md.String(), "## Failures") {
		t.Errorf("Markdown lists failures:\n%s", md.String())
	}
	var js bytes.Buffer
	if err := m.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got jsonReport
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.OK || !got.Interrupted || len(got.Backends) != 2 || !got.Backends[1].NotRun || got.Backends[0].Interrupted != 1 || got.Tests[1].Results[0].Outcome != StatusInterrupted {
		t.Errorf("JSON report: %s", js.String())
	}
	var x bytes.Buffer
	if err := m.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	var suites parsedSuites
	if err := xml.Unmarshal(x.Bytes(), &suites); err != nil {
		t.Fatal(err)
	}
	if suites.Failures != 0 || suites.Skipped != 3 {
		t.Errorf("JUnit: %d failures, %d skipped; want 0 and 3 (1 interrupted, 2 not run)\n%s", suites.Failures, suites.Skipped, x.String())
	}
	m = Build(append(runs, sampleRuns()[1]))
	if v := m.Verdict(); v != "FAIL (INTERRUPTED)" {
		t.Errorf("Verdict with a failure and an interruption = %q", v)
	}
}

func TestBuildDuplicateNamesStayUnique(t *testing.T) {
	m := Build([]Run{{Backend: "x"}, {Backend: "x"}, {Backend: "x"}, {Backend: "x#2"}, {Backend: "y#2"}, {Backend: "y"}, {Backend: "y"}})
	var got []string
	seen := map[string]bool{}
	for _, b := range m.Backends {
		if seen[b.Name] {
			t.Errorf("name %q twice in %q", b.Name, got)
		}
		seen[b.Name] = true
		got = append(got, b.Name)
	}
	if got[1] != "x#2" || got[2] != "x#3" || got[5] != "y" || got[6] != "y#3" {
		t.Errorf("names = %q", got)
	}
}

func TestRunOK(t *testing.T) {
	for _, c := range []struct {
		run  Run
		want bool
	}{
		{Run{Result: conformance.Result{Passed: 3}}, true},
		{Run{Result: conformance.Result{Passed: 3, Failed: 1}}, false},
		{Run{Error: "cannot open", Result: conformance.Result{Passed: 3}}, false},
		{Run{Result: conformance.Result{Passed: 3, Incomplete: true}}, false},
	} {
		if got := c.run.OK(); got != c.want {
			t.Errorf("%+v: OK() = %v, want %v", c.run, got, c.want)
		}
	}
}

func TestIsRow(t *testing.T) {
	for _, c := range []struct {
		tr   conformance.TestResult
		want bool
	}{
		{conformance.TestResult{Outcome: conformance.Pass, Leaf: true}, true},
		{conformance.TestResult{Outcome: conformance.Pass}, false},
		{conformance.TestResult{Outcome: conformance.Fail}, false},
		{conformance.TestResult{Outcome: conformance.Fail, Failures: []string{"setup"}}, true},
		{conformance.TestResult{Outcome: conformance.Interrupted, Failures: []string{"canceled"}}, false},
	} {
		if got := IsRow(c.tr); got != c.want {
			t.Errorf("IsRow(%+v) = %v, want %v", c.tr, got, c.want)
		}
	}
}

// passingRuns are two backends on which everything passed or skipped.
func passingRuns() []Run {
	r := sampleRuns()[0]
	return []Run{r, {Backend: "other", Result: r.Result}}
}

// TestAllPass checks that every format says so when every backend passed.
func TestAllPass(t *testing.T) {
	m := Build(passingRuns())
	if !m.OK() || m.Verdict() != "PASS" {
		t.Fatalf("OK %v, Verdict %q; want true, PASS", m.OK(), m.Verdict())
	}
	var js bytes.Buffer
	if err := m.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got jsonReport
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !got.OK || got.Interrupted || !got.Backends[0].OK || !got.Backends[1].OK {
		t.Errorf("JSON report of a passing run: %s", js.String())
	}
	var md bytes.Buffer
	if err := m.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(md.String(), "# Sluice conformance report: PASS\n") || strings.Contains(md.String(), "## Failures") || strings.Contains(md.String(), "interrupted") {
		t.Errorf("Markdown of a passing run:\n%s", md.String())
	}
	var x bytes.Buffer
	if err := m.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	var suites parsedSuites
	if err := xml.Unmarshal(x.Bytes(), &suites); err != nil {
		t.Fatal(err)
	}
	if suites.Failures != 0 || suites.Errors != 0 || suites.Tests != 6 || suites.Skipped != 2 {
		t.Errorf("JUnit of a passing run:\n%s", x.String())
	}
}

// TestBackendError checks that a backend that could not be tested fails every format, and
// that its reason is shown without breaking the Markdown table.
func TestBackendError(t *testing.T) {
	runs := append(passingRuns(), Run{Backend: "down|x", URL: "pg://`h`", Error: "open: refused |\r\nretry later"})
	m := Build(runs)
	if m.OK() || m.Verdict() != "FAIL" || m.Backends[2].OK() || m.Backends[2].NotRun() {
		t.Fatalf("OK %v, Verdict %q, backend OK %v, NotRun %v; want false, FAIL, false, false", m.OK(), m.Verdict(), m.Backends[2].OK(), m.Backends[2].NotRun())
	}
	// An error found before an interruption is a failure, not a backend not reached.
	if b := Build([]Run{{Backend: "z", Error: "cannot open", Result: conformance.Result{Incomplete: true}}}).Backends[0]; b.NotRun() {
		t.Errorf("a backend with an error is not run: %+v", b)
	}

	var js bytes.Buffer
	if err := m.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got jsonReport
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if b := got.Backends[2]; got.OK || b.OK || b.Error != "open: refused |\r\nretry later" {
		t.Errorf("JSON report: %s", js.String())
	}
	if b := got.Backends[0]; !b.OK || b.Passed != 2 || b.Skipped != 1 || b.Failed != 0 {
		t.Errorf("JSON backend good = %+v, want ok, 2 passed, 1 skipped", b)
	}
	if r := got.Tests[0].Results[0]; r.Seconds != 0.012 {
		t.Errorf("JSON seconds of Storage/Order/OneBatch = %v, want 0.012", r.Seconds)
	}

	var md bytes.Buffer
	if err := m.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if want := "| down\\|x | `pg://'h'` | 0 | 0 | 0 (open: refused \\| retry later) | 0s |\n"; !strings.Contains(md.String(), want) {
		t.Errorf("Markdown lacks %q:\n%s", want, md.String())
	}
	if want := "| Test | good | other | down\\|x |\n"; !strings.Contains(md.String(), want) {
		t.Errorf("Markdown lacks %q:\n%s", want, md.String())
	}

	var x bytes.Buffer
	if err := m.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	var suites parsedSuites
	if err := xml.Unmarshal(x.Bytes(), &suites); err != nil {
		t.Fatal(err)
	}
	if s := suites.Suites[2]; suites.Errors != 1 || s.Errors != 1 || !strings.Contains(s.SystemErr, "retry later") {
		t.Errorf("JUnit: %d errors, suite %+v; want 1 error and the reason in system-err\n%s", suites.Errors, s, x.String())
	}
	if suites.Suites[0].Errors != 0 {
		t.Errorf("JUnit: the passing suite has errors\n%s", x.String())
	}
}

// TestJUnitDetails checks what a CI system shows besides the counts: logs, an interrupted
// test's message and the total time, with XML-special text escaped.
func TestJUnitDetails(t *testing.T) {
	runs := []Run{{Backend: "a", Result: conformance.Result{Tests: []conformance.TestResult{
		{Name: "S/Logs", Outcome: conformance.Pass, Leaf: true, Logs: []string{"<b>&amp;</b>", "]]> \x02"}},
		{Name: "S/Cut", Outcome: conformance.Interrupted, Leaf: true, Failures: []string{"Append: <canceled> & gone"}},
	}, Passed: 1, Interrupted: 1, Incomplete: true, Duration: 1500 * time.Millisecond}},
		{Backend: "b", Result: conformance.Result{Duration: 2 * time.Second, Tests: []conformance.TestResult{
			{Name: "S/Empty", Outcome: conformance.Fail, Leaf: true},
		}, Failed: 1}}}
	m := Build(runs)
	if c := m.Rows[2].Cells[1]; c.Status != StatusFail || c.Message != "failed (no message)" {
		t.Errorf("failed cell without a message = %+v", c)
	}
	var x bytes.Buffer
	if err := m.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	var suites parsedSuites
	if err := xml.Unmarshal(x.Bytes(), &suites); err != nil {
		t.Fatalf("JUnit report does not parse: %v\n%s", err, x.String())
	}
	if suites.Time != "3.500" {
		t.Errorf("testsuites time = %q, want 3.500", suites.Time)
	}
	a := suites.Suites[0]
	if got := a.Cases[0].SystemOut; got != "<b>&amp;</b>\n]]> \uFFFD" {
		t.Errorf("system-out = %q", got)
	}
	if c := a.Cases[1]; c.Skipped == nil || c.Skipped.Message != "interrupted" || c.Skipped.Text != "Append: <canceled> & gone" {
		t.Errorf("interrupted case = %+v", c)
	}
	if !strings.Contains(a.SystemErr, "interrupted") {
		t.Errorf("system-err of the interrupted suite = %q", a.SystemErr)
	}
	if c := suites.Suites[1].Cases[2]; c.Failure == nil || c.Failure.Message != "failed (no message)" {
		t.Errorf("failed case without a message = %+v", c)
	}
}

func TestFirstLine(t *testing.T) {
	exact := strings.Repeat("é", maxCellMessage)
	for _, c := range []struct{ in, want string }{
		{"one", "one"},
		{"one\ntwo", "one …"},
		{exact, exact},
		{exact + "x", exact + " …"},
	} {
		if got := firstLine(c.in); got != c.want {
			t.Errorf("firstLine(%.20q...) = %.20q... (%d runes), want %d runes", c.in, got, len([]rune(got)), len([]rune(c.want)))
		}
	}
}

// TestMarkdownDetails checks the parts of the Markdown report that keep it well formed: a
// skip without a reason, the interruption notice, and a failure message holding a code
// fence.
func TestMarkdownDetails(t *testing.T) {
	runs := []Run{{Backend: "a", Result: conformance.Result{Tests: []conformance.TestResult{
		{Name: "S/Skip", Outcome: conformance.Skip, Leaf: true},
		{Name: "S/Fence", Outcome: conformance.Fail, Leaf: true, Failures: []string{"got\n```\nmarkdown\n```"}},
	}, Skipped: 1, Failed: 1, Incomplete: true}}}
	var b bytes.Buffer
	if err := Build(runs).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| `S/Skip` | ⏭️ skip |\n",
		"The run was interrupted",
		"# Sluice conformance report: FAIL (INTERRUPTED)",
		"```\ngot\n'''\nmarkdown\n'''\n```\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "```"); n != 2 {
		t.Errorf("Markdown has %d code fences, want 2 (one block):\n%s", n, md)
	}
}

// TestWriteFilesReportsWriteErrors writes the Markdown report into a full device (a
// symbolic link to Linux's /dev/full): WriteFiles must report the failed write.
func TestWriteFilesReportsWriteErrors(t *testing.T) {
	const full = "/dev/full"
	if _, err := os.Stat(full); err != nil {
		t.Skipf("no %s: %v", full, err)
	}
	dir := t.TempDir()
	if err := os.Symlink(full, filepath.Join(dir, MarkdownFile)); err != nil {
		t.Skipf("symlink: %v", err)
	}
	if paths, err := WriteFiles(dir, sampleRuns()); err == nil {
		t.Fatalf("WriteFiles into a full device = %q, nil; want an error", paths)
	}
}

func TestSuiteVersion(t *testing.T) {
	render := func(runs []Run) (md, js, junit string) {
		m := Build(runs)
		var a, b, c bytes.Buffer
		if err := m.WriteMarkdown(&a); err != nil {
			t.Fatal(err)
		}
		if err := m.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		if err := m.WriteJUnit(&c); err != nil {
			t.Fatal(err)
		}
		return a.String(), b.String(), c.String()
	}

	runs := sampleRuns()
	md, js, junit := render(runs)
	if strings.Contains(md, "Conformance suite") || strings.Contains(js, "suite_version") || strings.Contains(junit, "suite_version") {
		t.Errorf("a report of results without a suite version mentions one:\n%s\n%s\n%s", md, js, junit)
	}

	runs[0].Result.SuiteVersion = "v1.2.0"
	runs[1].Result.SuiteVersion = "v1.2.0"
	md, js, junit = render(runs)
	if want := "\nConformance suite: `github.com/sluicehq/sluice v1.2.0`\n"; !strings.Contains(md, want) {
		t.Errorf("Markdown lacks %q:\n%s", want, md)
	}
	var parsed struct {
		Backends []struct {
			Name         string `json:"name"`
			SuiteVersion string `json:"suite_version"`
		} `json:"backends"`
	}
	if err := json.Unmarshal([]byte(js), &parsed); err != nil {
		t.Fatal(err)
	}
	for _, b := range parsed.Backends {
		if b.SuiteVersion != "v1.2.0" {
			t.Errorf("JSON backend %s: suite_version %q, want v1.2.0", b.Name, b.SuiteVersion)
		}
	}
	if n := strings.Count(junit, `<property name="suite_version" value="v1.2.0">`); n != 2 {
		t.Errorf("JUnit has %d suite_version properties, want one per backend:\n%s", n, junit)
	}

	runs[1].Result.SuiteVersion = "(devel) rev 0123456789ab"
	md, _, _ = render(runs)
	for _, want := range []string{
		"certified by different versions",
		"- good: `github.com/sluicehq/sluice v1.2.0`",
		"- bad: `github.com/sluicehq/sluice (devel) rev 0123456789ab`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown of two suite versions lacks %q:\n%s", want, md)
		}
	}
}

// TestMarkdownCapabilitiesNotAllVerified: a capability whose check was skipped (by default
// MaxPartitions above 64, or any check -run left out) is not verified, and the report does
// not say it is.
func TestMarkdownCapabilitiesNotAllVerified(t *testing.T) {
	res := conformance.Result{Tests: []conformance.TestResult{
		{Name: "Storage/Index/Dense", Outcome: conformance.Skip, SkipReason: "not declared", Leaf: true},
		{Name: "Storage/CreateStream/MaxPartitions", Outcome: conformance.Skip, Leaf: true,
			SkipReason: "MaxPartitions 1024 is more than the 64 partitions this suite creates"},
	}, Skipped: 2}
	var b bytes.Buffer
	if err := Build([]Run{{Backend: "kafka", Capabilities: "kafka: max_partitions=1024 persistent", Result: res}}).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	if strings.Contains(md, "each one is verified") || !strings.Contains(md, "a skipped test verified nothing") {
		t.Errorf("the Markdown says the declared capabilities are all verified, or does not say that a skipped test verified nothing:\n%s", md)
	}
}
