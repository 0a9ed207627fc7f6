// Package bench measures what a hub costs on top of its broker: the same workloads run
// through an in-process hub over real TCP (driven by package core/client, as devices use it)
// and directly on the backend's core.Storage, on the same broker in the same run, so every
// result carries a hub/raw ratio.
//
// # Workloads
//
//   - push: throughput of confirmed appends at each message size, with Config.Window
//     messages in flight in batches of Config.Batch (hub: a client.Publisher with that window
//     and batch size; raw: Window/Batch goroutines each calling Storage.Append with Batch
//     messages). The messages are random and the Batch messages of one request are
//     distinct, so that no layer can compress them away (a Kafka producer compresses each
//     record batch as a whole).
//   - pull: throughput of reading back a filled stream from index 0, after one untimed read
//     of it, Limit messages or client.DefaultPullMaxBytes per request, whichever is fewer
//     (hub: client.Conn.Pull; raw: Storage.Fetch).
//   - push-latency: time from a message's scheduled send to its durable confirm, at a fixed
//     rate (Config.Rate) of Config.LatencySize messages (hub: Publisher.Publish and the Ack;
//     raw: one Storage.Append per message). Latencies are measured from the schedule, not from
//     the actual send, so a stall is not hidden (no coordinated omission).
//   - e2e-latency: publish-to-consume latency at the same rate (hub: a Publisher and a
//     long-polling client.Consumer; raw: Storage.Append and a reader calling Storage.Fetch,
//     sleeping Config.PollInterval when caught up, since Storage has no long poll). The
//     clock starts once the reader has received a warm-up message, so connecting and
//     positioning the reader is not measured. A message that arrives twice (delivery is at
//     least once) counts once, at its first arrival; Sample.Duplicates counts the others.
//   - e2e-encrypted (not run by default; see ExtraWorkloads): what end-to-end encryption
//     costs, both paths through the hub: delivered messages per second from device A to
//     device B at each message size, sent for Config.Duration by one goroutine, on the
//     paths "plain" (a client.Publisher and a client.Consumer) and "encrypted" (a Noise XX
//     secure channel over the bi-directional stream transport of package
//     core/client/bistream; the handshake is not measured). Its ratio is encrypted/plain.
//     Each message carries a sequence number, so that a message delivered twice (the
//     secure channel drops duplicates, the plain consumer does not) counts once on both
//     paths; Sample.Duplicates counts the others.
//
// A [Target] may also give a Native client: the broker's own client (package
// hub/bench/native wraps bbolt and franz-go) on the same broker. The raw workloads then also
// run on it, as the path "native", and reports add the hub/native ratio.
//
// Every workload runs Config.Runs times; the paths alternate within each run, each run in
// the opposite order of the one before, so that drift of a noisy machine, and what an
// earlier measurement left behind (a deleted stream's pages for bbolt to reuse, a broker
// still catching up), hit all of them. Reports show the median of the runs and their spread
// (min–max); the ratio is taken within each run, hub/raw (for latencies, of the p50; for
// e2e-encrypted, encrypted/plain), and reported as the median and spread of those per-run
// ratios ([PairedRatio]), so that a run slowed as a whole does not skew it.
//
// # Output
//
// [Report.WriteMarkdown], [Report.WriteJSON] and [Report.Charts] (one SVG bar chart per
// workload: backends × message sizes, hub and raw side by side); [Report.WriteFiles] writes them all.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

// Workload names.
const (
	Push        = "push"
	Pull        = "pull"
	PushLatency = "push-latency"
	E2ELatency  = "e2e-latency"
)

// Workloads lists the default workloads, in the order they run.
var Workloads = []string{Push, Pull, PushLatency, E2ELatency}

// ExtraWorkloads lists the workloads that run only when Config.Workloads names them, after
// the default ones.
var ExtraWorkloads = []string{E2EEncrypted}

// allWorkloads lists every workload, in the order they run.
func allWorkloads() []string { return slices.Concat(Workloads, ExtraWorkloads) }

// Paths a workload is measured on: through the hub, on the backend's core.Storage, and (for
// targets with a Native client) on the broker's own client.
const (
	PathHub    = "hub"
	PathRaw    = "raw"
	PathNative = "native"
)

// Defaults of [Config].
var (
	DefaultSizes              = []int{64, 1024, 16384}
	DefaultRuns               = 5
	DefaultDuration           = 3 * time.Second
	DefaultRate               = 200
	DefaultLatencySize        = 1024
	DefaultWindow             = 256
	DefaultBatch              = 64
	DefaultLimit              = 256
	DefaultPollInterval       = time.Millisecond
	DefaultMeasurementTimeout = 2 * time.Minute
)

// Config says what to measure. The zero value of every field means its default.
type Config struct {
	// Sizes are the message sizes of the throughput workloads, in bytes.
	Sizes []int
	// Runs is how many times each measurement is repeated.
	Runs int
	// Duration is how long each measurement sends (and at most how long a pull reads).
	Duration time.Duration
	// Workloads selects workloads by name, from Workloads and ExtraWorkloads (default: all
	// of Workloads). pull reads what the
	// hub push wrote; without push it first fills a stream through the raw path.
	Workloads []string
	// Rate is the fixed send rate of the latency workloads, in messages per second (at
	// most client.MaxWindow: a second's worth is kept in flight).
	Rate int
	// LatencySize is the message size of the latency workloads.
	LatencySize int
	// Window is how many messages the throughput workloads keep in flight (at most
	// client.MaxWindow).
	Window int
	// Batch is how many messages go in one request or Append, at most Window (a batch
	// larger than what is in flight cannot be sent); 0 means DefaultBatch, or Window if
	// that is smaller.
	Batch int
	// Limit is the most messages one pull or Fetch asks for.
	Limit int
	// PollInterval is how long the raw e2e reader sleeps when it is caught up.
	PollInterval time.Duration
	// Timeout bounds each measurement beyond its Duration (default 2 minutes).
	Timeout time.Duration
	// Progress, if not nil, receives progress: see [Progress].
	Progress Progress
	// Log, if not nil, receives one line per finished measurement.
	Log io.Writer
}

func (c Config) withDefaults() Config {
	if len(c.Sizes) == 0 {
		c.Sizes = DefaultSizes
	}
	if c.Runs <= 0 {
		c.Runs = DefaultRuns
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if len(c.Workloads) == 0 {
		c.Workloads = Workloads
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.LatencySize <= 0 {
		c.LatencySize = DefaultLatencySize
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Batch <= 0 {
		c.Batch = min(DefaultBatch, c.Window)
	}
	if c.Limit <= 0 {
		c.Limit = DefaultLimit
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultMeasurementTimeout
	}
	if c.Progress == nil {
		c.Progress = nopProgress{}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Validate returns the error, matching core.ErrInvalidOption, that Run would return for c,
// so that a caller can refuse a bad configuration before it prepares anything.
func (c Config) Validate() error { return c.withDefaults().validate() }

// validate reports a configuration error matching core.ErrInvalidOption.
func (c Config) validate() error {
	for _, s := range append(append([]int(nil), c.Sizes...), c.LatencySize) {
		if s < 8 {
			return fmt.Errorf("bench: %w: message size %d is below 8 bytes (latency messages carry a timestamp)", core.ErrInvalidOption, s)
		}
		if s > hub.MaxFrameMessageSize {
			return fmt.Errorf("bench: %w: message size %d is above what a hub accepts (%d)", core.ErrInvalidOption, s, hub.MaxFrameMessageSize)
		}
	}
	// The publishers of the throughput workloads keep Window messages in flight, those of
	// the latency workloads a second's worth at Rate.
	if c.Window > client.MaxWindow {
		return fmt.Errorf("bench: %w: window %d is above the most a publisher keeps in flight (%d)", core.ErrInvalidOption, c.Window, client.MaxWindow)
	}
	if c.Batch > c.Window {
		return fmt.Errorf("bench: %w: batch %d is above window %d: one request or Append cannot hold more messages than are in flight; lower the batch or raise the window", core.ErrInvalidOption, c.Batch, c.Window)
	}
	if c.Rate > client.MaxWindow {
		return fmt.Errorf("bench: %w: rate %d/s is above what the latency workloads can keep in flight (%d messages)", core.ErrInvalidOption, c.Rate, client.MaxWindow)
	}
	for _, w := range c.Workloads {
		if !slices.Contains(allWorkloads(), w) {
			return fmt.Errorf("bench: %w: unknown workload %q; use %v", core.ErrInvalidOption, w, allWorkloads())
		}
	}
	return nil
}

// Target is a backend to measure.
type Target struct {
	// Name labels the backend in reports; default the backend's Capabilities().Name.
	Name string
	// Description says what it is in the report (for example "kinesis-mock 0.6.2, local").
	Description string
	// Open opens the backend. The benchmark closes it.
	Open func(ctx context.Context) (*core.Backend, error)
	// Native, if set, opens the broker's own client (bbolt, franz-go, ...) on the same
	// broker, wrapped as a core.Storage of which the benchmark uses only CreateStream, Append
	// (one partition), Fetch and Close; its streams are deleted afterwards if it implements
	// core.StreamDeleter. The raw workloads then also run on it as the path "native", with
	// the same batching, so that reports show what the Sluice backend itself costs.
	Native func(ctx context.Context) (core.Storage, error)
	// NativeName describes the native client in reports, like "bbolt (one Update per Append)".
	NativeName string
}

// URLTarget is the target that opens rawURL with core.Open.
func URLTarget(rawURL string) Target {
	return Target{Open: func(ctx context.Context) (*core.Backend, error) { return core.Open(ctx, rawURL) }}
}

// Sample is the outcome of one run of one measurement.
type Sample struct {
	// Messages is how many messages were confirmed (push), read (pull) or measured (latency).
	Messages int `json:"messages"`
	// Seconds is the measured time.
	Seconds float64 `json:"seconds"`
	// MsgsPerSec and MBPerSec are the throughput (MB = 10^6 bytes).
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
	// P50, P99 and P999 are latency percentiles in milliseconds (latency workloads).
	P50  float64 `json:"p50_ms,omitempty"`
	P99  float64 `json:"p99_ms,omitempty"`
	P999 float64 `json:"p999_ms,omitempty"`
	// Duplicates counts the messages that arrived again while the reader of e2e-latency or
	// of e2e-encrypted waited for the others (delivery is at least once: a publisher resends
	// a message whose confirm it did not get, a consumer reads again what it had not yet
	// saved its position past). Messages, the rates and the percentiles count each message
	// once, on its first arrival.
	Duplicates int `json:"duplicates,omitempty"`
	// Error says why the run failed; the other fields are then zero.
	Error string `json:"error,omitempty"`
}

// Stat is the median and the spread of one metric over the runs.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func statOf(samples []Sample, f func(Sample) float64) Stat {
	var xs []float64
	for _, s := range samples {
		if s.Error == "" {
			xs = append(xs, f(s))
		}
	}
	lo, hi := MinMax(xs)
	return Stat{Median: Median(xs), Min: lo, Max: hi}
}

// Summary is one path's measurement over all runs.
type Summary struct {
	Runs []Sample `json:"runs"`
	// Errors counts failed runs.
	Errors int `json:"errors"`
	// Duplicates is the sum of the runs' Sample.Duplicates.
	Duplicates int  `json:"duplicates,omitempty"`
	MsgsPerSec Stat `json:"msgs_per_sec"`
	MBPerSec   Stat `json:"mb_per_sec"`
	P50        Stat `json:"p50_ms"`
	P99        Stat `json:"p99_ms"`
	P999       Stat `json:"p999_ms"`
}

func summarize(runs []Sample) *Summary {
	s := &Summary{Runs: runs}
	for _, r := range runs {
		if r.Error != "" {
			s.Errors++
		}
		s.Duplicates += r.Duplicates
	}
	s.MsgsPerSec = statOf(runs, func(r Sample) float64 { return r.MsgsPerSec })
	s.MBPerSec = statOf(runs, func(r Sample) float64 { return r.MBPerSec })
	s.P50 = statOf(runs, func(r Sample) float64 { return r.P50 })
	s.P99 = statOf(runs, func(r Sample) float64 { return r.P99 })
	s.P999 = statOf(runs, func(r Sample) float64 { return r.P999 })
	return s
}

// FirstError returns the first failed run's error, or "".
func (s *Summary) FirstError() string {
	for _, r := range s.Runs {
		if r.Error != "" {
			return r.Error
		}
	}
	return ""
}

// Row is one workload at one message size on one backend, through the hub and raw.
type Row struct {
	Backend  string   `json:"backend"`
	Workload string   `json:"workload"`
	Size     int      `json:"size"`
	Hub      *Summary `json:"hub,omitempty"`
	Raw      *Summary `json:"raw,omitempty"`
	// Plain and Encrypted are the paths of the e2e-encrypted workload (which has no Hub,
	// Raw or Native): both through the hub, without and with a secure channel.
	Plain     *Summary `json:"plain,omitempty"`
	Encrypted *Summary `json:"encrypted,omitempty"`
	// Native is the native client's measurement, if the target has one.
	Native *Summary `json:"native,omitempty"`
	// Ratio is hub/raw of msgs/s for throughput (below 1: the hub is slower) and of p50 for
	// latencies (above 1: the hub is slower); for e2e-encrypted it is encrypted/plain of
	// msgs/s. It is taken within each run, and Ratio holds the median and the spread of
	// those ratios over the runs ([PairedRatio]); NaN (null in JSON) when unknown.
	Ratio Stat `json:"-"`
	// NativeRatio is hub/native, like Ratio; NaN without a native measurement.
	NativeRatio Stat `json:"-"`
}

// IsLatency reports whether w is a latency workload.
func IsLatency(w string) bool { return w == PushLatency || w == E2ELatency }

// BackendInfo describes a measured backend.
type BackendInfo struct {
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
	Capabilities string `json:"capabilities"`
	// Native describes the native client measured as the path "native", if any.
	Native string `json:"native,omitempty"`
	// Error says why the backend could not be measured at all.
	Error string `json:"error,omitempty"`
	// Interrupted reports that the run was interrupted (its context ended) while this
	// backend was measured: the measurements it did not make are missing, none is an error.
	Interrupted bool `json:"interrupted,omitempty"`
	// NotRun reports that the run was interrupted before this backend.
	NotRun bool `json:"not_run,omitempty"`
}

// Report is the result of [Run].
type Report struct {
	Config   ReportConfig  `json:"config"`
	Machine  Machine       `json:"machine"`
	Backends []BackendInfo `json:"backends"`
	Rows     []Row         `json:"rows"`
	// Command is the command line that produced the report, if the caller sets it.
	Command string `json:"command,omitempty"`
	// Interrupted reports that [Run]'s context ended before every measurement was made.
	Interrupted bool `json:"interrupted,omitempty"`
}

// ReportConfig is the configuration a report was made with.
type ReportConfig struct {
	Sizes        []int    `json:"sizes"`
	Runs         int      `json:"runs"`
	Duration     string   `json:"duration"`
	Workloads    []string `json:"workloads"`
	Rate         int      `json:"rate"`
	LatencySize  int      `json:"latency_size"`
	Window       int      `json:"window"`
	Batch        int      `json:"batch"`
	Limit        int      `json:"limit"`
	PollInterval string   `json:"poll_interval"`
}

// Run measures every target with cfg and returns the report. A target that cannot be
// opened, or a measurement that fails, is recorded in the report, not returned as an error;
// Run returns an error only for an invalid configuration (matching core.ErrInvalidOption) or
// when ctx ends (an operator's Ctrl-C). It then returns the partial report, marked
// Interrupted: the measurement cut short is left out (it is no error), and the targets not
// reached are listed as NotRun.
func Run(ctx context.Context, cfg Config, targets ...Target) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rep := &Report{
		Machine: DescribeMachine(),
		Config: ReportConfig{
			Sizes: cfg.Sizes, Runs: cfg.Runs, Duration: cfg.Duration.String(), Workloads: cfg.Workloads,
			Rate: cfg.Rate, LatencySize: cfg.LatencySize, Window: cfg.Window, Batch: cfg.Batch,
			Limit: cfg.Limit, PollInterval: cfg.PollInterval.String(),
		},
	}
	plan := cfg.plan()
	total := 0
	for _, t := range targets {
		total += cfg.Runs * stepCount(plan, t)
	}
	cfg.Progress.Start(total)
	defer cfg.Progress.Finish()
	names := map[string]int{}
	for _, t := range targets {
		if ctx.Err() != nil {
			name := t.Name
			if name == "" {
				name = "backend"
			}
			rep.Backends = append(rep.Backends, BackendInfo{Name: name, Description: t.Description, NotRun: true})
			continue
		}
		info, rows := measureTarget(ctx, cfg, plan, t, names)
		rep.Backends = append(rep.Backends, info)
		rep.Rows = append(rep.Rows, rows...)
	}
	rep.Interrupted = ctx.Err() != nil
	return rep, ctx.Err()
}

// step is one (workload, size) of a run.
type step struct {
	workload string
	size     int
}

// plan lists the steps of one run, in order.
func (c Config) plan() []step {
	var p []step
	for _, w := range allWorkloads() {
		if !slices.Contains(c.Workloads, w) {
			continue
		}
		if IsLatency(w) {
			p = append(p, step{w, c.LatencySize})
			continue
		}
		for _, s := range c.Sizes {
			p = append(p, step{w, s})
		}
	}
	return p
}

// measureTarget opens t, starts a hub on it and runs every step cfg.Runs times.
func measureTarget(ctx context.Context, cfg Config, plan []step, t Target, names map[string]int) (BackendInfo, []Row) {
	info := BackendInfo{Name: t.Name, Description: t.Description}
	fail := func(err error) (BackendInfo, []Row) {
		if info.Name == "" {
			info.Name = "backend"
		}
		info.Error = err.Error()
		cfg.Progress.Add(cfg.Runs*stepCount(plan, t), info.Name+": "+info.Error)
		fmt.Fprintf(cfg.Log, "%s: cannot measure: %v\n", info.Name, err)
		return info, nil
	}
	if t.Open == nil {
		return fail(fmt.Errorf("bench: %w: target has no Open function", core.ErrInvalidOption))
	}
	b, err := t.Open(ctx)
	if err != nil && ctx.Err() != nil { // interrupted while opening
		if info.Name == "" {
			info.Name = "backend"
		}
		info.NotRun = true
		return info, nil
	}
	if err != nil {
		return fail(err)
	}
	defer b.Close()
	caps := b.Storage.Capabilities()
	if info.Name == "" {
		info.Name = caps.Name
	}
	names[info.Name]++
	if n := names[info.Name]; n > 1 {
		info.Name = fmt.Sprintf("%s#%d", info.Name, n)
	}
	info.Capabilities = caps.String()

	var nativeStore core.Storage
	if t.Native != nil {
		nativeStore, err = t.Native(ctx)
		if err != nil {
			return fail(fmt.Errorf("native client: %w", err))
		}
		defer nativeStore.Close() // after e.close, which deletes its streams
		info.Native = t.NativeName
		if info.Native == "" {
			info.Native = "native client"
		}
	}
	e, err := newEnv(ctx, b)
	if err != nil {
		return fail(err)
	}
	defer e.close()
	e.native = nativeStore

	samples := map[step]map[string][]Sample{}
	for run := 1; run <= cfg.Runs; run++ {
		pushed := map[string]*written{} // path/size -> the stream the push of that path wrote in this run
		for _, st := range plan {
			paths := workloadPaths(st.workload, nativeStore != nil)
			if run%2 == 0 {
				slices.Reverse(paths)
			}
			for _, path := range paths {
				if ctx.Err() != nil {
					break
				}
				desc := fmt.Sprintf("%s %s %s %s run %d/%d", info.Name, st.workload, FormatSize(st.size), path, run, cfg.Runs)
				cfg.Progress.Describe(desc)
				s := e.measure(ctx, cfg, st, path, pushed)
				if ctx.Err() != nil { // cut short: not a measurement, nor an error
					fmt.Fprintf(cfg.Log, "%s: interrupted\n", desc)
					break
				}
				if samples[st] == nil {
					samples[st] = map[string][]Sample{}
				}
				samples[st][path] = append(samples[st][path], s)
				fmt.Fprintf(cfg.Log, "%s: %s\n", desc, s)
				cfg.Progress.Add(1, desc)
			}
		}
		e.deleteStreams()
	}
	info.Interrupted = ctx.Err() != nil
	var rows []Row
	for _, st := range plan {
		runs := samples[st]
		if len(runs) == 0 {
			continue // not reached before an interruption
		}
		key := func(s Sample) float64 { return s.MsgsPerSec }
		noNative := Stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
		if st.workload == E2EEncrypted {
			r := Row{Backend: info.Name, Workload: st.workload, Size: st.size,
				Plain: summarize(runs[PathPlain]), Encrypted: summarize(runs[PathEncrypted])}
			r.Ratio, r.NativeRatio = PairedRatio(runs[PathEncrypted], runs[PathPlain], key), noNative
			rows = append(rows, r)
			continue
		}
		r := Row{Backend: info.Name, Workload: st.workload, Size: st.size,
			Hub: summarize(runs[PathHub]), Raw: summarize(runs[PathRaw])}
		if IsLatency(st.workload) {
			key = func(s Sample) float64 { return s.P50 }
		}
		r.Ratio, r.NativeRatio = PairedRatio(runs[PathHub], runs[PathRaw], key), noNative
		if e.native != nil {
			r.Native = summarize(runs[PathNative])
			r.NativeRatio = PairedRatio(runs[PathHub], runs[PathNative], key)
		}
		rows = append(rows, r)
	}
	return info, rows
}

// stepCount is how many measurements one run of plan makes on t.
func stepCount(plan []step, t Target) int {
	n := 0
	for _, st := range plan {
		n += len(workloadPaths(st.workload, t.Native != nil))
	}
	return n
}

// String renders a sample for the log.
func (s Sample) String() string {
	switch {
	case s.Error != "":
		return "error: " + s.Error
	case s.P50 > 0 && s.Duplicates > 0:
		return fmt.Sprintf("%d msgs (and %d duplicates), p50 %s p99 %s p99.9 %s", s.Messages, s.Duplicates, FormatMillis(s.P50), FormatMillis(s.P99), FormatMillis(s.P999))
	case s.P50 > 0:
		return fmt.Sprintf("%d msgs, p50 %s p99 %s p99.9 %s", s.Messages, FormatMillis(s.P50), FormatMillis(s.P99), FormatMillis(s.P999))
	case s.Duplicates > 0:
		return fmt.Sprintf("%d msgs (and %d duplicates) in %.2fs: %s msgs/s, %.2f MB/s", s.Messages, s.Duplicates, s.Seconds, FormatCount(s.MsgsPerSec), s.MBPerSec)
	}
	return fmt.Sprintf("%d msgs in %.2fs: %s msgs/s, %.2f MB/s", s.Messages, s.Seconds, FormatCount(s.MsgsPerSec), s.MBPerSec)
}

// env is one backend under measurement: the backend, a hub on it and a client of the hub.
type env struct {
	// hubErr is the first error the hub logged during the current measurement (see
	// measure): a backend whose appends fail makes the hub path wait for confirms that never
	// come, which alone says only that the measurement timed out.
	hubErr  firstLogged
	b       *core.Backend
	native  core.Storage // nil without a native client
	h       *hub.Hub
	addr    string // the hub's listening address
	cl      *client.Client
	prefix  string
	seq     int
	streams []created
}

// created is a stream made by the benchmark, to delete at the end of a run.
type created struct {
	st   core.Storage
	name string
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func newEnv(ctx context.Context, b *core.Backend) (*env, error) {
	e := &env{b: b}
	h, err := hub.New(b, hub.WithLogger(slog.New(&e.hubErr)))
	if err != nil {
		return nil, fmt.Errorf("bench: start hub: %w", err)
	}
	addr, err := h.Listen("127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bench: hub listen: %w", err), h.Close())
	}
	cl, err := client.Dial(addr.String())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bench: dial hub: %w", err), h.Close())
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	e.h, e.addr, e.cl, e.prefix = h, addr.String(), cl, "bench-"+hex.EncodeToString(rnd[:])+"-"
	return e, nil
}

// firstLogged is a slog.Handler that keeps the first record at level Error, as "message
// key=value ...", and drops every other one (the hub's log is not the benchmark's output).
type firstLogged struct {
	mu    sync.Mutex
	first string
}

func (f *firstLogged) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (f *firstLogged) Handle(_ context.Context, r slog.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.first != "" {
		return nil
	}
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	f.first = b.String()
	return nil
}

func (f *firstLogged) WithAttrs([]slog.Attr) slog.Handler { return f } // the hub adds none
func (f *firstLogged) WithGroup(string) slog.Handler      { return f }

// take returns the record kept (empty if none) and forgets it.
func (f *firstLogged) take() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := f.first
	f.first = ""
	return first
}

// close stops the client and the hub (not the backend) after deleting the streams.
func (e *env) close() {
	e.deleteStreams()
	_ = e.cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.h.Shutdown(ctx); err != nil {
		_ = e.h.Close()
	}
}

// stream returns a new unique stream name on the backend, remembered for deletion.
func (e *env) stream(label string) string { return e.streamOn(e.b.Storage, label) }

// streamOn returns a new unique stream name on st, remembered for deletion.
func (e *env) streamOn(st core.Storage, label string) string {
	e.seq++
	n := fmt.Sprintf("%s%s-%d", e.prefix, label, e.seq)
	e.streams = append(e.streams, created{st, n})
	return n
}

// deleteStreams deletes the streams made so far where the storage can.
func (e *env) deleteStreams() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range e.streams {
		if d, ok := c.st.(core.StreamDeleter); ok {
			_ = d.DeleteStream(ctx, c.name) // best effort: a missing stream is fine
		}
	}
	e.streams = nil
}

// written is a stream that a run's push (or, without one, fill) wrote for its pulls.
type written struct {
	stream string
	read   bool // the untimed first read was done
}

// measure runs one step on one path. pushed maps path/size to the stream that path's push
// wrote in this run: pull reads it (hub and raw read what the hub push wrote; native reads
// what the native push wrote, as it may not see the backend's streams).
func (e *env) measure(ctx context.Context, cfg Config, st step, path string, pushed map[string]*written) Sample {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.Timeout)
	defer cancel()
	e.hubErr.take() // what an earlier measurement left
	storage := e.b.Storage
	source := PathHub
	if path == PathNative {
		storage, source = e.native, PathNative
	}
	key := fmt.Sprintf("%s/%d", source, st.size)
	var (
		s      Sample
		stream string
		err    error
	)
	switch st.workload {
	case Push:
		if path == PathHub {
			s, stream, err = e.pushHub(ctx, cfg, st.size)
		} else {
			s, stream, err = e.pushRaw(ctx, cfg, storage, st.size)
		}
		if err == nil && path == source {
			pushed[key] = &written{stream: stream}
		}
	case Pull:
		w, ok := pushed[key]
		if !ok {
			if stream, err = e.fill(ctx, cfg, storage, st.size); err != nil {
				break
			}
			w = &written{stream: stream}
			pushed[key] = w
		}
		if !w.read {
			// One untimed read first: whichever path reads first in a run would otherwise
			// pay for the broker's and the backend's cold caches alone.
			if _, err = pullRaw(ctx, cfg, storage, w.stream, st.size); err != nil {
				break
			}
			w.read = true
		}
		if path == PathHub {
			s, err = e.pullHub(ctx, cfg, w.stream, st.size)
		} else {
			s, err = pullRaw(ctx, cfg, storage, w.stream, st.size)
		}
	case PushLatency:
		if path == PathHub {
			s, err = e.pushLatencyHub(ctx, cfg, st.size)
		} else {
			s, err = e.pushLatencyRaw(ctx, cfg, storage, st.size)
		}
	case E2ELatency:
		if path == PathHub {
			s, err = e.e2eHub(ctx, cfg, st.size)
		} else {
			s, err = e.e2eRaw(ctx, cfg, storage, st.size)
		}
	case E2EEncrypted:
		if path == PathEncrypted {
			s, err = e.encryptedThroughput(ctx, cfg, st.size)
		} else {
			s, err = e.plainThroughput(ctx, cfg, st.size)
		}
	}
	if err != nil {
		if logged := e.hubErr.take(); logged != "" {
			err = fmt.Errorf("%w (the hub logged: %s)", err, logged)
		}
		return Sample{Error: err.Error()}
	}
	return s
}

// throughput fills in the rates of s from its message count, size and duration.
func throughput(n, size int, d time.Duration) Sample {
	s := Sample{Messages: n, Seconds: d.Seconds()}
	if d > 0 {
		s.MsgsPerSec = float64(n) / d.Seconds()
		s.MBPerSec = s.MsgsPerSec * float64(size) / 1e6
	}
	return s
}

// latencySample fills in the percentiles of s from l.
func latencySample(l *Latencies, d time.Duration) Sample {
	ms := func(p float64) float64 { return float64(l.Percentile(p)) / float64(time.Millisecond) }
	s := Sample{Messages: int(l.Count()), Seconds: d.Seconds(), P50: ms(50), P99: ms(99), P999: ms(99.9)}
	if d > 0 {
		s.MsgsPerSec = float64(l.Count()) / d.Seconds()
	}
	return s
}

// FormatSize renders a byte count as "64 B", "1 KiB", "16 KiB".
func FormatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// FormatCount renders a rate with three significant digits and a k/M suffix.
func FormatCount(x float64) string {
	x = round3(x) // before the unit is picked: 999,999 is "1M", not "1000k"
	switch {
	case math.IsNaN(x):
		return "–"
	case x >= 1e6:
		return trim(x/1e6) + "M"
	case x >= 1e3:
		return trim(x/1e3) + "k"
	}
	return trim(x)
}

// FormatMillis renders milliseconds with a unit: "0.42 ms", "12.3 ms", "1.20 s".
func FormatMillis(ms float64) string {
	ms = round3(ms) // before the unit is picked: 999.7 is "1 s", not "1000 ms"
	switch {
	case math.IsNaN(ms):
		return "–"
	case ms >= 1000:
		return trim(ms/1000) + " s"
	}
	return trim(ms) + " ms"
}

// round3 rounds x to three significant digits (NaN and infinities stay as they are).
func round3(x float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 3, 64), 64)
	if err != nil {
		return x
	}
	return r
}

// trim renders x with (at most) three significant digits, without trailing zeros.
func trim(x float64) string {
	var s string
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		s = fmt.Sprintf("%.1f", x)
	case x >= 0.1:
		s = fmt.Sprintf("%.2f", x)
	default:
		s = fmt.Sprintf("%.3f", x)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
