package main

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
)

// Defaults of "sluice hub".
const (
	defaultListen  = "127.0.0.1:4000"
	defaultBackend = "bbolt:sluice-data"
)

func init() {
	register(&command{
		name:    "hub",
		summary: "run a hub: the stream and index services over TCP",
		usage:   "[flags]",
		help: `
Run a Sluice hub. Devices create streams, push and pull messages through it with the Ockam
stream protocol over TCP; the hub stores them in a backend chosen by URL. It prints
"sluice hub listening on ADDRESS (backend NAME)" once it accepts connections. It binds
-listen and -metrics-addr before it opens the backend, so an address in use fails the start
at once and creates nothing (no bbolt directory or database). It stops gracefully on
SIGINT or SIGTERM: it stops accepting connections, confirms every push it had taken,
answers waiting pulls, then exits. Requests that arrive meanwhile are answered as not
taken, and Sluice clients send them again once the hub is back. What is not done within
-shutdown-timeout is abandoned: pushes whose append was cut short are confirmed with
status ERROR. -shutdown-timeout bounds closing the backend too (at least 1s is left for
it), so the hub exits soon after it. A graceful stop exits with status 0; one that did not
finish within -shutdown-timeout, or a backend that failed to close, exits 1. A second
SIGINT or SIGTERM stops the hub at once.

The hub does not authenticate its clients: whoever reaches -listen can create, push to,
read and move the saved index of any stream (payloads sent through secure channels stay
encrypted). It listens on 127.0.0.1 by default; listen on other interfaces only where
every client that can reach them is trusted (see docs/security.md). A hub listening
beyond loopback says so in a warning when it starts.

Partition workers are created on first use and retired after -worker-idle-timeout without
use; a retired partition works as before, its next message creates a new worker.

With -metrics-addr, the hub's metrics are served in the Prometheus text format at
http://ADDR/metrics, and as JSON under "sluice" at http://ADDR/debug/vars, beside the Go
runtime's "memstats" (the command line is not served: it can hold a backend password):
pushes, pulls, appends, errors, slow_consumers (connections closed because they did not
read their replies), connections (open now), connections_refused (connections closed at
once because the hub had -max-connections open; also warned about in the log, at most
every 10s), http_requests_refused (connections to -listen that sent an HTTP request:
answered 400 and closed; warned about likewise), retention_skipped (messages pulls skipped
because bbolt's max_messages deleted them before they were read; warned about likewise),
undeliverable_messages (requests to a stream that no longer exists, answered as failed,
and messages to unknown addresses, dropped; warned about likewise), partition_workers
(now) and partition_workers_retired, and more: see go doc
github.com/sluicehq/sluice/hub.Metrics. Prometheus names them sluice_hub_NAME, with _total
after a counter's name (sluice_hub_pushes_total; the gauges connections, partition_workers
and max_batch have none), and sluice_build_info{version="..."} gives the Sluice version.

Backends (the URL's scheme):
  bbolt:PATH or bbolt:///abs/path  embedded, durable (default: bbolt:sluice-data); PATH is a
                                   directory (the database is PATH/sluice.db, created with
                                   its directories) or a bbolt database file; every
                                   message is kept unless ?max_messages=N (each partition
                                   keeps its newest N)
  memory://                        in memory, lost at exit (tests, demos)
  kafka://HOST:9092[,HOST2:9092]   Apache Kafka (topic per stream, consumer-group offsets)
  pulsar://HOST:6650?admin=http://HOST:8080
                                   Apache Pulsar (partitioned topic per stream)
  kinesis://REGION?endpoint=URL&index=bbolt:DIR
                                   AWS Kinesis (stream per stream; consumer indexes in index=)
  sluice://HOST:PORT               another hub (a hub as a backend)
Each backend's options are in its package documentation:
go doc github.com/sluicehq/sluice/backends/NAME, where NAME is the scheme (the package of
sluice:// is backends/remote).

Environment: SLUICE_LISTEN and SLUICE_BACKEND set the defaults of -listen and -backend.

Examples:
  sluice hub
  sluice hub -listen 127.0.0.1:5000 -backend bbolt:/var/lib/sluice
  SLUICE_BACKEND=memory:// sluice hub -metrics-addr 127.0.0.1:9100
`,
		flags: hubFlags,
	})
}

func hubFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	listen := fs.String("listen", envOr("SLUICE_LISTEN", defaultListen), "TCP address to accept connections on (env SLUICE_LISTEN)")
	backendURL := fs.String("backend", envOr("SLUICE_BACKEND", defaultBackend), "backend URL (env SLUICE_BACKEND)")
	maxMsg := fs.Int("max-message-size", 0, "largest message in bytes (0: the smaller of the backend's limit and what fits in a frame)")
	maxConns := fs.Int("max-connections", hub.DefaultMaxConnections, "most concurrent TCP connections; more are closed at once (see connections_refused)")
	idle := fs.Duration("idle-timeout", hub.DefaultIdleTimeout, "close a connection that sends nothing for this long (0: never; else at least "+hub.MinIdleTimeout.String()+"); long polls are held at most half of it")
	maxWait := fs.Duration("max-pull-wait", hub.DefaultMaxPullWait, "longest a long-poll pull is held (at most half of -idle-timeout)")
	maxParked := fs.Int("max-parked-pulls", hub.DefaultMaxParkedPulls, "most long-poll pulls held at once on one stream partition; more are answered at once with no messages (see pull_waits_refused)")
	maxParkedPerConn := fs.Int("max-parked-pulls-per-connection", hub.DefaultMaxParkedPullsPerConnection, "most long-poll pulls held at once for one connection, over all partitions; more are answered at once with no messages (see pull_waits_refused)")
	workerIdle := fs.Duration("worker-idle-timeout", hub.DefaultWorkerIdleTimeout, "retire a partition worker unused for this long, freeing its memory (0: never)")
	metricsAddr := fs.String("metrics-addr", "", "serve metrics in the Prometheus text format at http://ADDR/metrics and as JSON at http://ADDR/debug/vars (empty: off)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	grace := fs.Duration("shutdown-timeout", 30*time.Second, "how long a graceful stop may take, closing the backend included, before in-flight work is abandoned")
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) > 0 {
			return usageErr("unexpected arguments %q", args)
		}
		var level slog.Level
		if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
			return usageErr("-log-level %q: want debug, info, warn or error", *logLevel)
		}
		badBackend := func(err error) error { return fromEnv(err, fs, "backend", "SLUICE_BACKEND") }
		if err := checkBackendURL(*backendURL); err != nil {
			return badBackend(err)
		}
		if err := checkListenAddr("-listen", *listen, "4000"); err != nil {
			return fromEnv(err, fs, "listen", "SLUICE_LISTEN")
		}
		if *metricsAddr != "" {
			if err := checkListenAddr("-metrics-addr", *metricsAddr, "9100"); err != nil {
				return err
			}
		}
		if *maxMsg < 0 || *maxMsg > hub.MaxFrameMessageSize {
			return usageErr("-max-message-size %d: want 1 to %d (what fits in a frame), or 0 for the largest the backend allows", *maxMsg, hub.MaxFrameMessageSize)
		}
		if *maxConns < 1 {
			return usageErr("-max-connections %d: want 1 or more", *maxConns)
		}
		if *idle < 0 || (*idle > 0 && *idle < hub.MinIdleTimeout) {
			return usageErr("-idle-timeout %v: want 0 (never) or at least %v (long polls are held at most half of it)", *idle, hub.MinIdleTimeout)
		}
		if *workerIdle < 0 {
			return usageErr("-worker-idle-timeout %v: want 0 (never) or more", *workerIdle)
		}
		if *maxWait <= 0 {
			return usageErr("-max-pull-wait %v: want more than 0 (with 0 every waiting tail would poll in a loop)", *maxWait)
		}
		if *maxParked < 1 {
			return usageErr("-max-parked-pulls %d: want 1 or more", *maxParked)
		}
		if *maxParkedPerConn < 1 {
			return usageErr("-max-parked-pulls-per-connection %d: want 1 or more", *maxParkedPerConn)
		}
		if *grace <= 0 {
			return usageErr("-shutdown-timeout %v: want more than 0", *grace)
		}
		log := slog.New(slog.NewTextHandler(sio.err, &slog.HandlerOptions{Level: level}))
		opts := []hub.Option{
			hub.WithLogger(log),
			hub.WithMaxConnections(*maxConns),
			hub.WithIdleTimeout(*idle),
			hub.WithMaxPullWait(*maxWait),
			hub.WithMaxParkedPulls(*maxParked),
			hub.WithMaxParkedPullsPerConnection(*maxParkedPerConn),
			hub.WithWorkerIdleTimeout(*workerIdle),
		}
		if *maxMsg != 0 {
			opts = append(opts, hub.WithMaxMessageSize(*maxMsg))
		}
		return runHub(ctx, sio, log, *listen, *backendURL, badBackend, *metricsAddr, *grace, opts)
	}
}

// checkListenAddr returns a usage error when addr, the value of flag, is not [HOST]:PORT;
// the error's example uses port, the flag's usual one (the metrics address must differ
// from the hub's, so one example for both would be wrong for one of them).
func checkListenAddr(flag, addr, port string) error {
	if hub.CheckListenAddr(addr) != nil {
		return usageErr("%s %q: want [HOST]:PORT, e.g. 127.0.0.1:%s (or :%s for every interface)", flag, addr, port, port)
	}
	return nil
}

// runHub binds its addresses, opens the backend, serves until ctx ends, then shuts down
// gracefully. It binds first, so that an address in use (say, a hub already running in
// the same directory) fails at once, before the backend is opened: that would create a
// bbolt database, or wait for the lock of the running hub's. badBackend words the usage
// error of a backend URL that core.Open refuses.
func runHub(ctx context.Context, sio *stdio, log *slog.Logger, listen, backendURL string, badBackend func(error) error, metricsAddr string, grace time.Duration, opts []hub.Option) (err error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return listenErr(listen, err)
	}
	// Closed here until the hub takes ln over (ListenOn), and mln until serveMetrics does.
	var mln net.Listener
	defer func() {
		if ln != nil {
			_ = ln.Close()
		}
		if mln != nil {
			_ = mln.Close()
		}
	}()
	if metricsAddr != "" {
		if mln, err = net.Listen("tcp", metricsAddr); err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				err = fmt.Errorf("%w (choose another -metrics-addr)", err)
			}
			return fmt.Errorf("metrics: %w", err)
		}
	}
	backend, err := core.Open(ctx, backendURL)
	if errors.Is(err, core.ErrInvalidOption) {
		return badBackend(usageErr("-backend %q: %v", core.RedactURL(backendURL), err))
	}
	if err != nil {
		return err
	}
	logBackend(log, backendURL, backend)
	// deadline is when a graceful stop must be done, closing the backend included; set
	// when the stop starts.
	var deadline time.Time
	defer func() {
		if deadline.IsZero() {
			deadline = time.Now().Add(grace)
		}
		err = errors.Join(err, closeBackend(backend, deadline, grace))
	}()
	h, err := hub.New(backend, opts...)
	if errors.Is(err, core.ErrInvalidOption) {
		return usageErr("%v", err)
	}
	if err != nil {
		return err
	}
	// From here on, every return goes through a graceful shutdown.
	stop := func() error {
		deadline = time.Now().Add(grace)
		sctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		err := h.Shutdown(sctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("the graceful stop did not finish within -shutdown-timeout %v: work still in flight was abandoned (pushes cut short were confirmed with status ERROR: clients send them again): %w", grace, err)
		}
		return err
	}
	hubLn := ln
	ln = nil // the hub's now, even if ListenOn fails
	addr, err := h.ListenOn(hubLn)
	if err != nil {
		return errors.Join(err, stop())
	}
	var metrics *http.Server
	if mln != nil {
		metrics = serveMetrics(h, mln, log)
		mln = nil
	}
	warnIfExposed(log, addr)
	fmt.Fprintf(sio.out, "sluice hub listening on %s (backend %s)\n", addr, backend.Storage.Capabilities().Name)
	<-ctx.Done()
	log.Info("stopping gracefully; a second SIGINT or SIGTERM stops at once", "reason", context.Cause(ctx), "shutdown_timeout", grace)
	if metrics != nil {
		_ = metrics.Close()
	}
	return stop()
}

// listenErr words the error of binding -listen addr: which address, why, and what to do
// (not net's "listen tcp A: bind: ...", which reads as the hub's inner workings).
func listenErr(addr string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
		var se *os.SyscallError // "bind: address already in use": keep the errno only
		if errors.As(err, &se) {
			err = se.Err
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("cannot listen on %s: %w (is another sluice hub running? stop it, or choose another -listen)", addr, err)
	}
	return fmt.Errorf("cannot listen on %s: %w (choose another -listen)", addr, err)
}

// warnIfExposed warns when the hub listens on an address other than loopback: it does not
// authenticate its clients, which the help and docs/security.md say, but a hub moved to
// ":4000" to reach it from another machine should say so where its operator looks.
func warnIfExposed(log *slog.Logger, addr net.Addr) {
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		log.Warn("the hub does not authenticate its clients: whoever reaches this address can create, push to, read and move the saved index of any stream; listen here only if every client that can reach it is trusted (see docs/security.md)",
			"address", addr.String())
	}
}

// logBackend logs the backend's URL (without its password) and, for a backend that keeps
// its data in a file (bbolt, also as Kinesis' index=), the file's absolute path: a relative
// path such as the default bbolt:sluice-data depends on the hub's working directory, which
// a service manager chooses.
func logBackend(log *slog.Logger, rawURL string, b *core.Backend) {
	attrs := []any{"url", core.RedactURL(rawURL)}
	for _, part := range []any{b.Storage, b.Index} {
		if f, ok := part.(interface{ Path() string }); ok {
			path := f.Path()
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			attrs = append(attrs, "path", path)
			break
		}
	}
	log.Info("backend open", attrs...)
}

// minBackendClose is the least time a stopping hub waits for its backend to close, also
// when the graceful stop used up -shutdown-timeout.
const minBackendClose = time.Second

// closeBackend closes b and waits for it until deadline (at least minBackendClose): a
// backend whose broker does not answer must not keep a stopping hub from exiting long
// after -shutdown-timeout (grace). Kafka's Close alone may wait 20s for calls in flight.
func closeBackend(b *core.Backend, deadline time.Time, grace time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- b.Close() }() // ends when Close returns, or with the process
	t := time.NewTimer(max(time.Until(deadline), minBackendClose))
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("close backend: %w", err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("close backend: not closed within -shutdown-timeout %v; stopped without waiting for it", grace)
	}
}

// metricsHub is the hub whose metrics expvar publishes (expvar names are process-wide).
var (
	metricsHub  atomic.Pointer[hub.Hub]
	publishOnce sync.Once
)

// serveMetrics serves h's metrics on ln, which it takes over: in the Prometheus text format
// at /metrics, and at /debug/vars with expvar (under "sluice").
func serveMetrics(h *hub.Hub, ln net.Listener, log *slog.Logger) *http.Server {
	metricsHub.Store(h)
	publishOnce.Do(func() {
		expvar.Publish("sluice", expvar.Func(func() any {
			if h := metricsHub.Load(); h != nil {
				return h.Metrics()
			}
			return nil
		}))
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/vars", serveVars)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", hub.PrometheusContentType)
		_ = h.Metrics().WritePrometheus(w) // fails only when the client is gone
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { // owned by srv: ends when runHub closes it
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	log.Info("metrics at " + base + "/metrics (Prometheus) and " + base + "/debug/vars (JSON)")
	return srv
}

// serveVars serves the published expvar variables as expvar.Handler does, except
// "cmdline": the command line can hold a password (-backend kafka://user:password@...),
// and the metrics address is often reachable by more people than the hub's host.
func serveVars(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	fmt.Fprint(w, "{\n")
	first := true
	expvar.Do(func(kv expvar.KeyValue) {
		if kv.Key == "cmdline" {
			return
		}
		if !first {
			fmt.Fprint(w, ",\n")
		}
		first = false
		fmt.Fprintf(w, "%q: %s", kv.Key, kv.Value)
	})
	fmt.Fprint(w, "\n}\n")
}
