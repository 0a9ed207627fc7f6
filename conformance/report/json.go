package report

import (
	"encoding/json"
	"io"
)

// jsonReport is the schema of the JSON report.
type jsonReport struct {
	OK       bool          `json:"ok"`
	Backends []jsonBackend `json:"backends"`
	Tests    []jsonTest    `json:"tests"`
}

type jsonBackend struct {
	Name         string  `json:"name"`
	URL          string  `json:"url,omitempty"`
	Capabilities string  `json:"capabilities,omitempty"`
	Error        string  `json:"error,omitempty"`
	OK           bool    `json:"ok"`
	Passed       int     `json:"passed"`
	Failed       int     `json:"failed"`
	Skipped      int     `json:"skipped"`
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
// outcome is "pass", "fail", "skip" or "not run"; message is the failure messages joined
// by newlines, or the skip reason. results are in the order of backends.
func (m Matrix) WriteJSON(w io.Writer) error {
	out := jsonReport{OK: m.OK(), Backends: []jsonBackend{}, Tests: []jsonTest{}}
	for _, b := range m.Backends {
		out.Backends = append(out.Backends, jsonBackend{
			Name: b.Name, URL: b.URL, Capabilities: b.Capabilities, Error: b.Error, OK: b.OK(),
			Passed: b.Passed, Failed: b.Failed, Skipped: b.Skipped, Seconds: b.Duration.Seconds(),
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
