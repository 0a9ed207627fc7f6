package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"

	"github.com/sluicehq/sluice/core"
)

func init() {
	register(&command{
		name:    "version",
		summary: "print the version of sluice and of the Go toolchain that built it",
		usage:   "",
		help: `
Print the version of this sluice binary: the module version Go recorded when it was built
(a release such as v1.2.0, or "(devel)" with the git revision for a build from a checkout),
then the Go version, operating system and architecture. "sluice -version" is the same.
Conformance reports record the same version, so a report says which suite certified a
backend.

Example:
  sluice version
`,
		flags: func(*flag.FlagSet) func(context.Context, *stdio, []string) error {
			return func(_ context.Context, sio *stdio, args []string) error {
				if len(args) > 0 {
					return usageErr("unexpected argument %q", args[0])
				}
				_, err := fmt.Fprintln(sio.out, versionLine())
				return err
			}
		},
	})
}

// versionLine is what `sluice version` prints.
func versionLine() string {
	return fmt.Sprintf("sluice %s (%s %s/%s)", core.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
