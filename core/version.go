package core

import (
	"runtime/debug"
	"strings"
)

// ModulePath is the path of the Sluice module.
const ModulePath = "github.com/sluicehq/sluice"

// Version returns the version of the Sluice module built into the running program, as the
// Go toolchain recorded it: a release or pseudo-version such as "v1.2.0" when a program
// requires Sluice as a module, or "(devel)" when the program was built inside Sluice's own
// source tree, followed then by the VCS revision and ", modified" when the toolchain stamped
// them (go build in a git checkout: "(devel) rev 0123456789ab, modified"). A module
// replaced by a local directory gives "(devel) replaced by DIR", one replaced by another
// module "PATH VERSION (replacing VERSION)". It returns "unknown" for a
// program built without module information.
//
// `sluice version` prints it, and the conformance suite records it in every result, so a
// report says which suite certified a backend.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return versionOf(bi)
}

// versionOf finds the Sluice module in bi: the main module, or a dependency.
func versionOf(bi *debug.BuildInfo) string {
	if bi.Main.Path == ModulePath {
		return mainVersion(bi)
	}
	for _, m := range bi.Deps {
		if m.Path != ModulePath {
			continue
		}
		if r := m.Replace; r != nil {
			if r.Version != "" {
				return r.Path + " " + r.Version + " (replacing " + orDevel(m.Version) + ")"
			}
			return "(devel) replaced by " + r.Path
		}
		return orDevel(m.Version)
	}
	return "unknown"
}

// mainVersion is the version of Sluice built as the main module, with the VCS stamp.
func mainVersion(bi *debug.BuildInfo) string {
	v := orDevel(bi.Main.Version)
	var rev string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	short := rev[:min(12, len(rev))]
	if rev != "" && !strings.Contains(v, short) { // a pseudo-version names the revision already
		v += " rev " + short
	}
	if modified && !strings.HasSuffix(v, "+dirty") { // Go 1.24 and later mark a dirty tree so
		v += ", modified"
	}
	return v
}

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}
