package report

import (
	"encoding/json"
	"io"
)

// jsonReport is the schema of the JSON report.
type jsonReport struct {
	OK bool `json:"ok"`
	// Interrupted: a run was interrupted (see the package doc).
	Interrupted bool          `json:"interrupted,omitempty"`
	Backends    []jsonBackend `json:"backends"`
	Tests       []jsonTest    `json:"tests"`
}

type jsonBackend struct {
	Name         string  `json:"name"`
	URL          string  `json:"url,omitempty"`
	Capabilities string  `json:"capabilities,omitempty"`
	SuiteVersion string  `json:"suite_version,omitempty"`
	Error        string  `json:"error,omitempty"`
	OK           bool    `json:"ok"`
	Passed       int     `json:"passed"`
	Failed       int     `json:"failed"`
	Skipped      int     `json:"skipped"`
	Interrupted  int     `json:"interrupted,omitempty"` // tests cut short
	Incomplete   bool    `json:"incomplete,omitempty"`  // the run was interrupted
	NotRun       bool    `json:"not_run,omitempty"`     // the backend was not reached
	Seconds      float64 `json:"seconds"`
}

type jsonTest struct {
	Name    string       `json:"name"`
	Results []jsonResult `json:"results"`
}

type jsonResult struct {
	Backend string   `json:"backend"`
	Outcome Status   `json:"outcome"`
	Message string   `json:"message,omitempty"`
	Logs    []string `json:"logs,omitempty"`
	Seconds float64  `json:"seconds"`
}

// WriteJSON writes the report as one indented JSON object:
//
//	{"ok": false,
//	 "backends": [{"name": "bbolt", "url": "...", "ok": true, "passed": 60, "failed": 0, "skipped": 2, "seconds": 4.2}],
//	 "tests": [{"name": "Storage/Order/OneBatch",
//	            "results": [{"backend": "bbolt", "outcome": "pass", "seconds": 0.01}]}]}
//
// outcome is "pass", "fail", "skip", "interrupted" or "not run"; message is the failure
// messages joined by newlines, the skip reason, or what an interrupted test reported
// after the interruption. results are in the order of backends. After an interruption
// the report has "interrupted": true, and each backend interrupted its count of tests
// cut short, "incomplete": true, and "not_run": true if it was not reached.
func (m Matrix) WriteJSON(w io.Writer) error {
	out := jsonReport{OK: m.OK(), Interrupted: m.Incomplete(), Backends: []jsonBackend{}, Tests: []jsonTest{}}
	for _, b := range m.Backends {
		out.Backends = append(out.Backends, jsonBackend{
			Name: b.Name, URL: b.URL, Capabilities: b.Capabilities, SuiteVersion: b.SuiteVersion, Error: b.Error, OK: b.OK(),
			Passed: b.Passed, Failed: b.Failed, Skipped: b.Skipped, Interrupted: b.Interrupted,
			Incomplete: b.Incomplete, NotRun: b.NotRun(), Seconds: b.Duration.Seconds(),
		})
	}
	for _, r := range m.Rows {
		t := jsonTest{Name: r.Test}
		for i, c := range r.Cells {
			t.Results = append(t.Results, jsonResult{
				Backend: m.Backends[i].Name, Outcome: c.Status, Message: c.Message, Logs: c.Logs,
				Seconds: c.Duration.Seconds(),
			})
		}
		out.Tests = append(out.Tests, t)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
