package report

import (
	"encoding/xml"
	"io"
	"strings"
	"time"
)

// The JUnit XML schema as CI systems read it (Jenkins, GitLab, GitHub actions):
// testsuites > testsuite > testcase > failure | skipped.
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Skipped  int          `xml:"skipped,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name       string          `xml:"name,attr"`
		Tests      int             `xml:"tests,attr"`
		Failures   int             `xml:"failures,attr"`
		Errors     int             `xml:"errors,attr"`
		Skipped    int             `xml:"skipped,attr"`
		Time       string          `xml:"time,attr"`
		Properties []junitProperty `xml:"properties>property,omitempty"`
		Cases      []junitCase     `xml:"testcase"`
		SystemErr  string          `xml:"system-err,omitempty"`
	}
	junitProperty struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	junitCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		Time      string        `xml:"time,attr"`
		Failure   *junitMessage `xml:"failure"`
		Error     *junitMessage `xml:"error"`
		Skipped   *junitMessage `xml:"skipped"`
		SystemOut string        `xml:"system-out,omitempty"`
	}
	junitMessage struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr,omitempty"`
		Text    string `xml:",chardata"`
	}
)

// WriteJUnit writes the report as JUnit XML: one testsuite per backend (named after it,
// with its URL and capabilities as properties) and one testcase per row, whose classname is
// "conformance.BACKEND.SUITE" and name the rest of the test's path. A failing test has a
// failure element (message: its first line; text: every message), a skipped one a skipped
// element with the reason, and a test the backend did not run, or that an interruption cut
// short, is reported as skipped, saying so. A run that could not complete adds a test case
// "Backend" (classname "conformance.BACKEND") with an error element giving its reason,
// counted in errors, and the reason in system-err; an interrupted run says so in
// system-err.
func (m Matrix) WriteJUnit(w io.Writer) error {
	out := junitSuites{Name: "sluice conformance"}
	var total time.Duration
	for i, b := range m.Backends {
		s := junitSuite{Name: b.Name, Time: seconds(b.Duration)}
		if b.URL != "" {
			s.Properties = append(s.Properties, junitProperty{"url", b.URL})
		}
		if b.Capabilities != "" {
			s.Properties = append(s.Properties, junitProperty{"capabilities", b.Capabilities})
		}
		if b.SuiteVersion != "" {
			s.Properties = append(s.Properties, junitProperty{"suite_version", b.SuiteVersion})
		}
		switch {
		case b.Error != "":
			// A test case of its own, with an error element: CI systems count test cases,
			// and a testsuite without any reads as nothing run, nothing failed.
			s.Errors = 1
			s.SystemErr = b.Error
			s.Cases = append(s.Cases, junitCase{Name: "Backend", Classname: "conformance." + b.Name, Time: seconds(0),
				Error: &junitMessage{Message: firstLine(b.Error), Type: "error", Text: b.Error}})
			s.Tests++
		case b.NotRun():
			s.SystemErr = "not run: interrupted before this backend"
		case b.Incomplete:
			s.SystemErr = "interrupted before every test ran"
		}
		for _, r := range m.Rows {
			c := r.Cells[i]
			suite, name, _ := strings.Cut(r.Test, "/")
			if name == "" {
				name = suite
			}
			tc := junitCase{Name: name, Classname: "conformance." + b.Name + "." + suite, Time: seconds(c.Duration)}
			switch c.Status {
			case StatusFail:
				tc.Failure = &junitMessage{Message: firstLine(c.Message), Type: "failure", Text: c.Message}
				s.Failures++
			case StatusSkip:
				tc.Skipped = &junitMessage{Message: c.Message}
				s.Skipped++
			case StatusInterrupted:
				tc.Skipped = &junitMessage{Message: "interrupted", Text: c.Message}
				s.Skipped++
			case StatusNotRun:
				msg := "not run on this backend"
				if b.Incomplete {
					msg = "not run: interrupted"
				}
				tc.Skipped = &junitMessage{Message: msg}
				s.Skipped++
			}
			if len(c.Logs) > 0 {
				tc.SystemOut = strings.Join(c.Logs, "\n")
			}
			s.Cases = append(s.Cases, tc)
			s.Tests++
		}
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
		out.Skipped += s.Skipped
		total += b.Duration
		out.Suites = append(out.Suites, s)
	}
	out.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
