package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/conformance/certify"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/bench"
)

func init() {
	register(&command{
		name:    "bench",
		summary: "measure backends through a hub and directly, side by side",
		usage:   "-backend URL [-backend URL ...] [flags]",
		help: `
Measure what a hub costs on each backend: every workload runs through an in-process hub
(listening on 127.0.0.1, driven over TCP by the client library, as devices use it) and
directly on the backend's Storage, on the same broker in the same run, so every result has
a hub/raw ratio.

Workloads: push (confirmed append throughput at each -sizes), pull (read-back throughput),
push-latency (schedule-to-confirm at a fixed -rate) and e2e-latency (publish-to-consume at
-rate); e2e-encrypted (device-to-device throughput at each -sizes through the hub, plain and
through a Noise secure channel, ratio encrypted/plain) runs only when -workloads names it.
Each runs -runs times; reports show medians and the min-max spread, and each ratio is
the median of the ratios within each run.

A progress bar is drawn on stderr when it is a terminal (not with -quiet). The results are
printed as Markdown and written to the -out directory: bench.md, bench.json and one SVG
chart per workload (bench-push.svg, ...). The benchmark creates uniquely named streams and
deletes them afterwards where the backend can delete streams.

The exit status is 1 when a backend could not be opened or a measurement failed (the
report is still written: it shows the failed runs and why, and what was measured).

Ctrl-C stops the run: the measurement cut short is left out (it is no error), the backends
not reached are listed as not measured, the report is marked interrupted and the exit
status is 130.

Examples:
  sluice bench -backend bbolt:bench-data
  sluice bench -backend memory:// -backend bbolt:bench-data -sizes 64,1024 -runs 3 -duration 1s
  sluice bench -backend bbolt:bench-data -workloads push-latency,e2e-latency -rate 500
`,
		flags: benchFlags,
	})
}

// intList is a comma-separated list of positive integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// nameList is a comma-separated list of names; spaces around each are ignored, so
// "push, pull" is push and pull.
type nameList []string

func (l *nameList) String() string { return strings.Join(*l, ",") }

func (l *nameList) Set(v string) error {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return fmt.Errorf("%q has an empty item: give names separated by commas", v)
		}
		out = append(out, f)
	}
	*l = out
	return nil
}

func benchFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	var (
		backends certify.URLList
		sizes    = intList(bench.DefaultSizes)
		wls      = nameList(bench.Workloads)
	)
	fs.Var(&backends, "backend", "backend URL to measure (repeatable), e.g. bbolt:data-dir, memory://")
	fs.Var(&sizes, "sizes", "message sizes in bytes for the throughput workloads, comma-separated")
	runs := fs.Int("runs", bench.DefaultRuns, "repetitions of each measurement (medians are reported)")
	duration := fs.Duration("duration", bench.DefaultDuration, "how long each measurement sends")
	out := fs.String("out", certify.DefaultOut, "directory for bench.md, bench.json and the SVG charts")
	fs.Var(&wls, "workloads", "workloads to run, comma-separated (also: "+strings.Join(bench.ExtraWorkloads, ",")+")")
	rate := fs.Int("rate", bench.DefaultRate, fmt.Sprintf("messages per second of the latency workloads (at most %d)", client.MaxWindow))
	latencySize := fs.Int("latency-size", bench.DefaultLatencySize, "message size of the latency workloads")
	window := fs.Int("window", bench.DefaultWindow, fmt.Sprintf("messages in flight in the throughput workloads (at most %d)", client.MaxWindow))
	batch := fs.Int("batch", bench.DefaultBatch, fmt.Sprintf("messages per request or Append, at most -window (without -batch: -window if that is below %d)", bench.DefaultBatch))
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) > 0 {
			return usageErr("unexpected arguments %q (give each URL with -backend)", args)
		}
		if len(backends) == 0 {
			return usageErr("no -backend URL given")
		}
		for _, u := range backends {
			if err := checkBackendURL(u); err != nil {
				return err
			}
		}
		if *runs <= 0 || *duration <= 0 || *rate <= 0 || *latencySize <= 0 || *window <= 0 || *batch <= 0 {
			return usageErr("-runs, -duration, -rate, -latency-size, -window and -batch must be positive")
		}
		batchSize := *batch
		if !flagSet(fs, "batch") {
			batchSize = 0 // the default: bench.DefaultBatch, or -window if that is smaller
		} else if *batch > *window {
			return usageErr("-batch %d is above -window %d: one request or Append cannot hold more messages than are in flight; lower -batch or raise -window", *batch, *window)
		}
		cfg := bench.Config{
			Sizes: sizes, Runs: *runs, Duration: *duration, Workloads: wls,
			Rate: *rate, LatencySize: *latencySize, Window: *window, Batch: batchSize,
		}
		if err := cfg.Validate(); err != nil {
			return usageErr("%v", err) // before -out is created
		}
		if err := certify.PrepareOutDir(*out); err != nil {
			return err
		}
		f, _ := sio.err.(*os.File)
		switch {
		case *quiet:
		case bench.IsTerminal(f):
			cfg.Progress = bench.NewProgressBar(f)
		default:
			cfg.Log = sio.err // not a terminal: one line per measurement instead of a bar
		}
		targets := make([]bench.Target, len(backends))
		for i, u := range backends {
			targets[i] = bench.URLTarget(u)
			targets[i].Description = core.RedactURL(u)
			open := targets[i].Open
			targets[i].Open = func(ctx context.Context) (*core.Backend, error) {
				// A broker that accepts connections and never answers must not hang the run.
				octx, cancel := context.WithTimeout(ctx, benchOpenTimeout)
				defer cancel()
				b, err := open(octx)
				if err != nil && ctx.Err() == nil && octx.Err() != nil {
					return nil, fmt.Errorf("opening it: no answer within %v: %w", benchOpenTimeout, err)
				}
				return b, err
			}
		}
		command := []string{"sluice", "bench"}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "backend" {
				for _, u := range backends {
					command = append(command, "-backend", core.RedactURL(u))
				}
				return
			}
			command = append(command, "-"+f.Name+"="+f.Value.String())
		})
		return runBench(ctx, sio, cfg, targets, *out, strings.Join(command, " "))
	}
}

// runBench runs the benchmark, prints the Markdown report and writes the files into out.
func runBench(ctx context.Context, sio *stdio, cfg bench.Config, targets []bench.Target, out, command string) error {
	start := time.Now()
	rep, err := bench.Run(ctx, cfg, targets...)
	if rep == nil {
		return usageErr("%v", err) // only an invalid configuration returns no report
	}
	rep.Command = command
	heading := "Sluice benchmark"
	if rep.Interrupted {
		heading += " (INTERRUPTED)"
	}
	paths, werr := rep.WriteFiles(bench.Files{
		Markdown: filepath.Join(out, "bench.md"),
		JSON:     filepath.Join(out, "bench.json"),
		ChartDir: out,
		Heading:  heading,
	})
	if perr := rep.WriteMarkdown(sio.out, nil); perr != nil && werr == nil {
		werr = perr
	}
	fmt.Fprintf(sio.out, "report (%v): %s\n", time.Since(start).Round(time.Second), strings.Join(paths, ", "))
	if werr != nil {
		return werr
	}
	if err != nil {
		return interrupted(fmt.Sprintf(" (%v): the report is incomplete", context.Cause(ctx)))
	}
	var failed []string
	for _, b := range rep.Backends {
		if b.Error != "" {
			failed = append(failed, b.Name+": "+b.Error)
		}
	}
	// A measurement that failed leaves a gap in the report, which says so under its table.
	for _, r := range rep.Rows {
		for _, p := range []struct {
			name string
			s    *bench.Summary
		}{{bench.PathHub, r.Hub}, {bench.PathRaw, r.Raw}, {bench.PathNative, r.Native}, {bench.PathPlain, r.Plain}, {bench.PathEncrypted, r.Encrypted}} {
			if p.s != nil && p.s.Errors > 0 {
				failed = append(failed, fmt.Sprintf("%s %s %s %s (%d of %d runs failed): %s",
					r.Backend, r.Workload, bench.FormatSize(r.Size), p.name, p.s.Errors, len(p.s.Runs), p.s.FirstError()))
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not measure %s", strings.Join(failed, "; "))
	}
	return nil
}

// benchOpenTimeout bounds the opening of each backend, as bench.DefaultMeasurementTimeout
// bounds each measurement (tests shorten it).
var benchOpenTimeout = bench.DefaultMeasurementTimeout
