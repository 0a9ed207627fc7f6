package core

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"main without VCS stamp", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"}}, "(devel)"},
		{"main from a clean checkout", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"}, Settings: vcs(rev, "false")}, "(devel) rev 0123456789ab"},
		{"main from a modified checkout", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"}, Settings: vcs(rev, "true")}, "(devel) rev 0123456789ab, modified"},
		{"main with a pseudo-version", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v0.0.0-20261127074408-0123456789ab"}, Settings: vcs(rev, "false")}, "v0.0.0-20261127074408-0123456789ab"},
		{"main with a dirty pseudo-version", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v0.0.0-20261127074408-0123456789ab+dirty"}, Settings: vcs(rev, "true")}, "v0.0.0-20261127074408-0123456789ab+dirty"},
		{"a release required by another module", debug.BuildInfo{Main: debug.Module{Path: "example.com/certifier"}, Deps: []*debug.Module{
			{Path: "github.com/other/mod", Version: "v9.9.9"}, {Path: ModulePath, Version: "v1.2.0"}}}, "v1.2.0"},
		{"replaced by a directory", debug.BuildInfo{Main: debug.Module{Path: "example.com/certifier"}, Deps: []*debug.Module{
			{Path: ModulePath, Version: "v1.2.0", Replace: &debug.Module{Path: "../sluice"}}}}, "(devel) replaced by ../sluice"},
		{"replaced by another version", debug.BuildInfo{Main: debug.Module{Path: "example.com/certifier"}, Deps: []*debug.Module{
			{Path: ModulePath, Version: "v1.2.0", Replace: &debug.Module{Path: "example.com/fork", Version: "v1.2.1"}}}}, "example.com/fork v1.2.1 (replacing v1.2.0)"},
		{"not in the build", debug.BuildInfo{Main: debug.Module{Path: "example.com/other"}}, "unknown"},
	} {
		if got := versionOf(&tc.bi); got != tc.want {
			t.Errorf("%s: versionOf = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestVersionOfThisBinary(t *testing.T) {
	// A test binary of this package is built inside Sluice's source tree.
	if v := Version(); v == "unknown" || v == "" {
		t.Fatalf("Version() = %q for a test of the Sluice module itself", v)
	}
}
