package report

import (
	"bytes"
	"encoding/xml"
	"testing"
)

// TestJUnitBackendErrorIsATestCase checks that a backend that could not be tested shows up
// as a test case with an error element: CI systems count test cases, and a testsuite of
// none (tests="0" errors="1") reads as nothing run, nothing failed.
func TestJUnitBackendErrorIsATestCase(t *testing.T) {
	m := Build([]Run{{Backend: "kafka", URL: "kafka://broker:9092", Error: "open kafka backend: dial: connection refused\nretry later"}})
	var b bytes.Buffer
	if err := m.WriteJUnit(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Tests  int `xml:"tests,attr"`
		Errors int `xml:"errors,attr"`
		Suites []struct {
			Tests  int `xml:"tests,attr"`
			Errors int `xml:"errors,attr"`
			Cases  []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Error     *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("JUnit report does not parse: %v\n%s", err, b.String())
	}
	if len(got.Suites) != 1 {
		t.Fatalf("%d testsuites, want 1\n%s", len(got.Suites), b.String())
	}
	s := got.Suites[0]
	var errored int
	for _, c := range s.Cases {
		if c.Error != nil {
			errored++
			if c.Error.Message != "open kafka backend: dial: connection refused …" || c.Error.Text != "open kafka backend: dial: connection refused\nretry later" {
				t.Errorf("error element = %+v", *c.Error)
			}
			if c.Classname != "conformance.kafka" {
				t.Errorf("classname = %q, want conformance.kafka", c.Classname)
			}
		}
	}
	if errored != 1 || s.Errors != 1 || s.Tests != len(s.Cases) || got.Tests != s.Tests || got.Errors != 1 {
		t.Errorf("testsuites tests=%d errors=%d; testsuite tests=%d errors=%d with %d test case(s), %d with an error element; want one test case with an error, counted\n%s",
			got.Tests, got.Errors, s.Tests, s.Errors, len(s.Cases), errored, b.String())
	}
}
