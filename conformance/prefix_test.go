package conformance_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/conformance"
)

// TestRunInvalidStreamPrefix: a Harness.StreamPrefix that no stream name can start with
// (or that leaves no room for the names the suite makes) is the harness's mistake, said
// once per suite, naming the field: it failed every subtest instead, each with an
// "invalid argument" from the backend, as if the backend refused valid names.
func TestRunInvalidStreamPrefix(t *testing.T) {
	for _, prefix := range []string{"my app/", strings.Repeat("p", 90)} {
		h := memoryHarness(nil)
		h.StreamPrefix = prefix
		res := conformance.Run(t.Context(), h, nil)
		var subtests []string // failed, blaming the backend
		for _, tr := range res.Tests {
			if strings.Contains(tr.Name, "/") && tr.Outcome == conformance.Fail {
				subtests = append(subtests, tr.Name)
			}
		}
		if len(subtests) > 0 {
			t.Errorf("StreamPrefix %.20q: subtests %v failed, blaming the backend (%q)", prefix, subtests, find(t, res, subtests[0]).Failures)
			continue
		}
		for _, suite := range []string{"Storage", "IndexStorage"} {
			tr := find(t, res, suite)
			if tr.Outcome != conformance.Fail || len(tr.Failures) != 1 || !strings.Contains(tr.Failures[0], "Harness.StreamPrefix") {
				t.Errorf("StreamPrefix %.20q: %s = %v %q; want it failed, saying what is wrong with Harness.StreamPrefix", prefix, suite, tr.Outcome, tr.Failures)
			}
		}
	}
}
