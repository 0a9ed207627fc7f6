// Command benchreport runs the Sluice benchmark (package hub/bench) on every backend that
// can run on this machine and writes the results as a Markdown page with charts: bbolt
// always, and Kinesis (kinesis-mock), Kafka and Pulsar by starting them with the launchers
// of package conformance/brokers (which honour KINESIS_ENDPOINT, KAFKA_BROKERS and
// PULSAR_URL). A broker that cannot start is listed in the page as not measured.
//
// It is what `make bench-report` runs, from the repository root:
//
//	go run ./hub/bench/cmd/benchreport -out docs
//
// writes docs/benchmarks.md, docs/benchmarks/bench-WORKLOAD.svg and
// docs/benchmarks/benchmarks.json. Flags choose the backends, runs, durations and sizes;
// -h lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/sluicehq/sluice/backends/bbolt"
	_ "github.com/sluicehq/sluice/backends/kafka"
	_ "github.com/sluicehq/sluice/backends/kinesis"
	_ "github.com/sluicehq/sluice/backends/memory" // the kinesis backend's index store here
	_ "github.com/sluicehq/sluice/backends/pulsar"
	"github.com/sluicehq/sluice/conformance/brokers"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/bench"
	"github.com/sluicehq/sluice/hub/bench/native"
)

// broker is a backend benchreport knows how to provide: start returns the benchmark target
// (without its Name and Open) and the backend URL, and a function that stops what it started.
type broker struct {
	name  string
	start func(ctx context.Context, log io.Writer) (t bench.Target, rawURL string, stop func(), err error)
}

var allBrokers = []broker{
	{"bbolt", startBbolt},
	{"kinesis", startKinesis},
	{"kafka", startKafka},
	{"pulsar", startPulsar},
}

func startBbolt(context.Context, io.Writer) (bench.Target, string, func(), error) {
	dir, err := os.MkdirTemp("", "sluice-bench-bbolt-")
	if err != nil {
		return bench.Target{}, "", nil, err
	}
	u := url.URL{Scheme: "bbolt", Path: filepath.ToSlash(filepath.Join(dir, "sluice"))}
	t := bench.Target{
		Description: "embedded bbolt file in a temporary directory, fsync on every group commit",
		NativeName:  "go.etcd.io/bbolt used directly with its defaults, one DB.Batch per Append (which waits up to 10 ms to gather concurrent callers into one transaction, fsync on commit), another file in the same directory",
		Native: func(context.Context) (core.Storage, error) {
			return native.OpenBolt(filepath.Join(dir, "native.db"))
		},
	}
	return t, u.String(), func() { os.RemoveAll(dir) }, nil
}

func startKinesis(ctx context.Context, log io.Writer) (bench.Target, string, func(), error) {
	// Against a local emulator, never ask the EC2 metadata service for credentials.
	if os.Getenv("KINESIS_ENDPOINT") == "" && os.Getenv("AWS_EC2_METADATA_DISABLED") == "" {
		os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	}
	// The benchmark never restarts it: no state written to disk, which would take most of
	// kinesis-mock's CPU (see brokers.KinesisOptions).
	k, err := brokers.StartKinesisWith(ctx, log, brokers.KinesisOptions{Volatile: true})
	if err != nil {
		return bench.Target{}, "", nil, err
	}
	desc := "kinesis-mock " + brokers.KinesisMockVersion + " (npm kinesis-local), local process, state in memory only"
	if os.Getenv("KINESIS_ENDPOINT") != "" {
		desc = "external Kinesis endpoint (KINESIS_ENDPOINT)"
	}
	u := "kinesis://" + k.Region + "?endpoint=" + url.QueryEscape(k.Endpoint) + "&index=memory://"
	return bench.Target{Description: desc}, u, func() { _ = k.Stop() }, nil
}

func startKafka(ctx context.Context, log io.Writer) (bench.Target, string, func(), error) {
	k, err := brokers.StartKafka(ctx, log)
	if err != nil {
		return bench.Target{}, "", nil, err
	}
	desc := "Apache Kafka " + brokers.KafkaVersion + ", single KRaft node (" + k.Kind + "), acks=all"
	t := bench.Target{
		Description: desc,
		NativeName:  "franz-go used directly with the Sluice store's producer settings: one ProduceSync (acks=all, no linger, no compression) per Append, a direct partition consumer for Fetch",
		Native: func(context.Context) (core.Storage, error) {
			return native.OpenKafka(k.Brokers)
		},
	}
	return t, "kafka://" + k.Addr(), func() { _ = k.Stop() }, nil
}

func startPulsar(ctx context.Context, log io.Writer) (bench.Target, string, func(), error) {
	p, err := brokers.StartPulsar(ctx, log)
	if err != nil {
		return bench.Target{}, "", nil, err
	}
	desc := "Apache Pulsar " + brokers.PulsarVersion + " standalone (" + p.Kind + "), batching off, send receipts"
	return bench.Target{Description: desc}, p.URL + "?admin=" + url.QueryEscape(p.AdminURL), func() { _ = p.Stop() }, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	brokers.KillAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var names []string
	for _, b := range allBrokers {
		names = append(names, b.name)
	}
	which := fs.String("backends", strings.Join(names, ","), "backends to measure, comma-separated")
	out := fs.String("out", "docs", "directory for benchmarks.md and benchmarks/ (charts, JSON)")
	runs := fs.Int("runs", bench.DefaultRuns, "repetitions of each measurement")
	duration := fs.Duration("duration", bench.DefaultDuration, "how long each measurement sends")
	sizesFlag := fs.String("sizes", "64,1024,16384", "message sizes of the throughput workloads, comma-separated")
	rate := fs.Int("rate", bench.DefaultRate, "messages per second of the latency workloads")
	// The report covers every workload, the end-to-end encrypted one included.
	all := append(append([]string(nil), bench.Workloads...), bench.ExtraWorkloads...)
	workloads := fs.String("workloads", strings.Join(all, ","), "workloads to run, comma-separated")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sizes []int
	for _, f := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("-sizes: %q is not a positive integer", f)
		}
		sizes = append(sizes, n)
	}
	var chosen []broker
	for _, n := range strings.Split(*which, ",") {
		found := false
		for _, b := range allBrokers {
			if b.name == strings.TrimSpace(n) {
				chosen, found = append(chosen, b), true
			}
		}
		if !found {
			return fmt.Errorf("-backends: unknown backend %q; known: %s", n, strings.Join(names, ", "))
		}
	}
	var wls []string
	for _, w := range strings.Split(*workloads, ",") {
		wls = append(wls, strings.TrimSpace(w)) // as for -sizes and -backends
	}
	cfg := bench.Config{Sizes: sizes, Runs: *runs, Duration: *duration, Rate: *rate, Workloads: wls}
	ferr, _ := stderr.(*os.File)
	logw := io.Discard
	switch {
	case *quiet:
	case bench.IsTerminal(ferr):
		cfg.Progress = bench.NewProgressBar(ferr)
		logw = stderr
	default:
		cfg.Log = stderr
		logw = stderr
	}

	command := []string{"go run ./hub/bench/cmd/benchreport"}
	fs.Visit(func(f *flag.Flag) {
		// The page records how to reproduce it: leave out flags that only affect this
		// machine (an absolute output path, the progress display).
		if f.Name == "quiet" || (f.Name == "out" && filepath.IsAbs(f.Value.String())) {
			return
		}
		command = append(command, "-"+f.Name+"="+f.Value.String())
	})

	start := time.Now()
	var rep *bench.Report
	for _, b := range chosen {
		fmt.Fprintf(logw, "benchreport: starting %s\n", b.name)
		target, rawURL, stopBroker, err := b.start(ctx, logw)
		target.Name = b.name
		if err != nil {
			target.Open = func(context.Context) (*core.Backend, error) {
				return nil, fmt.Errorf("could not start %s: %s", b.name, firstLine(err.Error()))
			}
		} else {
			target.Open = func(ctx context.Context) (*core.Backend, error) { return core.Open(ctx, rawURL) }
		}
		r, err := bench.Run(ctx, cfg, target)
		if stopBroker != nil {
			stopBroker()
		}
		if r == nil {
			return err
		}
		if rep == nil {
			rep = r
		} else {
			rep.Backends = append(rep.Backends, r.Backends...)
			rep.Rows = append(rep.Rows, r.Rows...)
		}
		if err != nil {
			return err
		}
	}
	rep.Command = strings.Join(command, " ")
	intro := fmt.Sprintf("Generated by `%s` on %s in %v; do not edit by hand (`make bench-report` runs it with the defaults: 5 runs of 3 s). "+
		"Each workload runs through an in-process hub (over TCP on 127.0.0.1, driven by `core/client`) and "+
		"directly on the backend's `core.Storage`, on the same broker in the same run.",
		rep.Command, time.Now().UTC().Format("2006-01-02"), time.Since(start).Round(time.Second))
	paths, err := rep.WriteFiles(bench.Files{
		Markdown: filepath.Join(*out, "benchmarks.md"),
		JSON:     filepath.Join(*out, "benchmarks", "benchmarks.json"),
		ChartDir: filepath.Join(*out, "benchmarks"),
		Heading:  "Sluice benchmarks",
		Intro:    intro,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", strings.Join(paths, ", "))
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
