package main

import (
	"context"
	"errors"
	"flag"

	"github.com/sluicehq/sluice/conformance/certify"
)

func init() {
	register(&command{
		name:    "conformance",
		summary: "certify backends: run the conformance suite against broker URLs",
		usage:   "-backend URL [-backend URL ...] [flags]",
		help: `
Run Sluice's conformance suite, the same one every backend's own tests run, against each
backend URL: every Storage and IndexStorage contract, against the real broker, and every
capability the backend declares. Each subtest uses fresh, uniquely named streams, deleted
afterwards when the backend can delete streams, so a shared broker can be tested safely.

One line is printed per subtest (outcome, backend, name, duration, and the failure or skip
reason), and "still running" after 30s without one (a subtest against a slow broker may
run until -subtest-timeout), then a report is written to the -out directory: a behaviour matrix (rows are
subtests, columns are backends) as conformance.md, conformance.json and
conformance.junit.xml. The exit status is 1 when any subtest failed or a backend could
not be opened (the report says which, and why).

Ctrl-C stops the run: the subtest running then is reported as interrupted (not failed),
the subtests and backends not reached as not run, the report is titled INTERRUPTED, and
the exit status is 130, also when subtests failed before it (the last line names the
backends they failed on).

-run selects subtests like "go test -run": a slash-separated list of regular expressions,
each matching one level of the name ("Storage/AppendFetch/AllByteValues").

Examples:
  sluice conformance -backend bbolt:conf-data
  sluice conformance -backend memory:// -backend bbolt:conf-data -out report
  sluice conformance -backend bbolt:conf-data -run '^Storage$/^(Order|Index)$'
`,
		flags: conformanceFlags,
	})
}

func conformanceFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	var c certify.Config
	c.Flags(fs)
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) > 0 {
			return usageErr("unexpected arguments %q (give each URL with -backend)", args)
		}
		if len(c.Backends) == 0 {
			return usageErr("no -backend URL given")
		}
		for _, u := range c.Backends {
			if err := checkBackendURL(u); err != nil {
				return err
			}
		}
		err := certify.Run(ctx, sio.out, c)
		if err != nil && ctx.Err() != nil && !errors.Is(err, certify.ErrUsage) {
			return interruptedError{err} // its text says what was and was not run
		}
		return err
	}
}

// interruptedError is the error of a run that Ctrl-C ended, which already says so: it
// matches errInterrupted (exit status 130) without adding the word again.
type interruptedError struct{ error }

func (e interruptedError) Is(target error) bool { return target == errInterrupted }

func (e interruptedError) Unwrap() error { return e.error }
