package brokers

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
)

// PulsarVersion is the Apache Pulsar release the launcher runs, as a local standalone process
// (jars from Maven Central) or as the apachepulsar/pulsar container image.
const PulsarVersion = "4.2.4"

// pulsarJavaMajor is the lowest Java feature release that runs PulsarVersion.
const pulsarJavaMajor = 17

// Pulsar is a running Apache Pulsar standalone (broker, bookie and RocksDB metadata store in
// one JVM) or an external cluster named by PULSAR_URL and PULSAR_ADMIN_URL.
//
// The methods are safe for concurrent use.
type Pulsar struct {
	// URL is the binary protocol service URL, "pulsar://host:port".
	URL string
	// AdminURL is the web service (admin REST API) URL, "http://host:port".
	AdminURL string
	// Kind says how the cluster runs: "process", "docker" or "external".
	Kind string
	// Startup is how long the last start (or Restart) took until the readiness check passed.
	Startup time.Duration

	launched
}

// StartPulsar starts a Pulsar standalone for tests and returns once a message produced with
// pulsar-client-go can be read back. Progress, the start time and the JVM's resident memory
// go to logw (may be nil). The selection order (PULSAR_URL, Docker, local process) is
// described in the package doc; a local process needs Java 17+ and, on first use, mvn to
// download Pulsar's jars into the cache. With PULSAR_URL, PULSAR_ADMIN_URL names the admin
// REST API (default: the PULSAR_URL host on port 8080).
//
// The caller must call Stop. Errors carry the broker's log tail.
func StartPulsar(ctx context.Context, logw io.Writer) (*Pulsar, error) {
	if logw == nil {
		logw = io.Discard
	}
	if err := shortErr("pulsar"); err != nil {
		return nil, err
	}
	start := time.Now()
	if env := os.Getenv("PULSAR_URL"); env != "" {
		admin := os.Getenv("PULSAR_ADMIN_URL")
		if admin == "" {
			admin = defaultPulsarAdminURL(env)
		}
		p := &Pulsar{URL: env, AdminURL: admin, Kind: "external", launched: launched{name: "pulsar", logw: logw}}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := PulsarPing(wctx, p.URL); err != nil {
			return nil, fmt.Errorf("pulsar: PULSAR_URL=%q does not answer: %w", env, err)
		}
		p.Startup = time.Since(start)
		fmt.Fprintf(logw, "pulsar: using external cluster %s (admin %s)\n", p.URL, p.AdminURL)
		return p, nil
	}
	var (
		p   *Pulsar
		err error
	)
	if Mode() == "docker" || DockerAvailable() {
		p, err = startPulsarDocker(ctx, logw)
	} else {
		p, err = startPulsarProcess(ctx, logw)
	}
	if err != nil {
		return nil, err
	}
	p.Startup = time.Since(start)
	fmt.Fprintf(logw, "pulsar: Apache Pulsar %s (%s) ready on %s (admin %s) in %s%s\n", PulsarVersion, p.Kind, p.URL, p.AdminURL,
		p.Startup.Round(10*time.Millisecond), rssNote(p.proc))
	return p, nil
}

// CanRestart reports whether Restart works: true for clusters this launcher started.
func (p *Pulsar) CanRestart() bool { return p.Kind != "external" }

// Restart kills the standalone abruptly (SIGKILL to the process group, no graceful close of
// ledgers) and starts it again on the same ports with the same data directory, returning
// once a message can be produced and read again. It fails for an external cluster.
func (p *Pulsar) Restart(ctx context.Context) error {
	took, err := p.restart(ctx, p.Kind, p.URL, p.startProc, func(ctx context.Context) error { return waitPulsar(ctx, p.URL) })
	if err != nil {
		return err
	}
	p.Startup = took
	p.mu.Lock() // a Stop may run meanwhile
	note := rssNote(p.proc)
	p.mu.Unlock()
	fmt.Fprintf(p.logw, "pulsar: killed and restarted in %s%s\n", took.Round(10*time.Millisecond), note)
	return nil
}

// RSS returns the resident memory of the standalone JVM in bytes, read from
// /proc/<pid>/status (Linux only). It fails for clusters that do not run as a local process.
func (p *Pulsar) RSS() (int64, error) {
	p.mu.Lock()
	proc := p.proc
	p.mu.Unlock()
	if proc == nil {
		return 0, fmt.Errorf("pulsar: the %s cluster is not a local process", p.Kind)
	}
	return processRSS(proc.Pid())
}

// rssNote returns ", JVM RSS N MiB" for proc, the standalone's process ("" for none). The
// caller reads proc under p.mu, which stop holds while it calls its note.
func rssNote(proc *Process) string {
	if proc == nil {
		return ""
	}
	rss, err := processRSS(proc.Pid())
	if err != nil {
		return ""
	}
	return fmt.Sprintf(", JVM RSS %d MiB", rss>>20)
}

// Stop shuts the standalone down (SIGTERM, then SIGKILL after 15s), reports the disk it used
// and removes its data. Stopping an external cluster does nothing. A second Stop returns nil.
func (p *Pulsar) Stop() error { return p.stop(p.Kind, func() string { return rssNote(p.proc) }) }

func startPulsarProcess(ctx context.Context, logw io.Writer) (*Pulsar, error) {
	java, err := pulsarJava()
	if err != nil {
		return nil, err
	}
	jars, err := MavenClasspathBOM(ctx, "pulsar-"+PulsarVersion,
		// Pulsar's parent POM pins the versions of its distribution (OpenTelemetry, log4j,
		// Netty, ...); without it Maven's nearest-wins picks mismatched jars that fail at start.
		[]MavenArtifact{{Group: "org.apache.pulsar", Artifact: "pulsar", Version: PulsarVersion}},
		[]MavenArtifact{{Group: "org.apache.pulsar", Artifact: "pulsar-broker", Version: PulsarVersion}},
		nil, logw)
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	dir, err := newDataDir("sluice-pulsar-")
	if err != nil {
		return nil, fmt.Errorf("pulsar: data directory: %w", err)
	}
	p := &Pulsar{
		URL:      "pulsar://127.0.0.1:" + strconv.Itoa(ports[0]),
		AdminURL: "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		Kind:     "process",
		launched: launched{name: "pulsar", logw: logw, dataDir: dir, logPath: filepath.Join(dir, "pulsar.log")},
	}
	fail := func(err error) (*Pulsar, error) {
		_ = removeDataDir(dir)
		return nil, err
	}
	conf := filepath.Join(dir, "standalone.conf")
	log4j := filepath.Join(dir, "log4j2.xml")
	if err := os.WriteFile(conf, []byte(pulsarStandaloneConf(ports[0], ports[1], loopbackInterface())), 0o644); err != nil {
		return fail(fmt.Errorf("pulsar: %w", err))
	}
	if err := os.WriteFile(log4j, []byte(pulsarLog4j), 0o644); err != nil {
		return fail(fmt.Errorf("pulsar: %w", err))
	}
	args := []string{"-Xms128m", "-Xmx512m", "-XX:MaxDirectMemorySize=256m", "-XX:+UseSerialGC",
		"-XX:+IgnoreUnrecognizedVMOptions", "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
		"-Dlog4j.configurationFile=" + log4j, "-Dpulsar.allocator.exit_on_oom=true",
		"-Dio.netty.recycler.maxCapacityPerThread=4096"}
	// The --add-opens list bin/pulsar passes on Java 17+.
	for _, o := range []string{"java.base/sun.net", "java.base/java.lang", "java.base/java.io", "java.base/java.util",
		"java.base/sun.nio.ch", "java.management/sun.management", "jdk.management/com.sun.management.internal",
		"java.base/jdk.internal.platform"} {
		args = append(args, "--add-opens", o+"=ALL-UNNAMED")
	}
	args = append(args, "-cp", strings.Join(jars, string(os.PathListSeparator)),
		"org.apache.pulsar.PulsarStandaloneStarter", "--config", conf,
		"--no-functions-worker", "--no-stream-storage", "--advertised-address", "127.0.0.1",
		"--bookkeeper-port", strconv.Itoa(ports[2]),
		"--bookkeeper-dir", filepath.Join(dir, "bookkeeper"),
		"--metadata-dir", filepath.Join(dir, "metadata"),
		// Standalone keeps using ZooKeeper only when this directory exists; it never does,
		// so the metadata lives in RocksDB under --metadata-dir.
		"--zookeeper-dir", filepath.Join(dir, "zookeeper-unused"))
	p.newCmd = func() *exec.Cmd {
		// Not CommandContext: the broker outlives the ctx of StartPulsar; Stop ends it.
		cmd := exec.Command(java, args...)
		cmd.Dir = dir
		return cmd
	}
	if err := p.startProc(ctx); err != nil {
		if p.proc != nil {
			_ = p.proc.Kill()
		}
		return fail(err)
	}
	return p, nil
}

// startProc starts the standalone process and waits until it serves produce and read.
func (p *Pulsar) startProc(ctx context.Context) error {
	return p.startLocal(ctx, 3*time.Minute, 500*time.Millisecond, func(ctx context.Context) error {
		return PulsarPing(ctx, p.URL)
	})
}

// PulsarPing returns nil once the cluster at url accepts a message on a topic of
// public/default and returns it to a reader. The test topic is created on first use.
func PulsarPing(ctx context.Context, url string) error {
	deadline, ok := ctx.Deadline()
	timeout := 10 * time.Second
	if ok {
		timeout = time.Until(deadline)
	}
	if timeout <= 0 {
		return ctx.Err()
	}
	cl, err := pulsar.NewClient(pulsar.ClientOptions{
		URL:               url,
		ConnectionTimeout: timeout,
		OperationTimeout:  timeout,
		Logger:            pulsarlog.DefaultNopLogger(),
	})
	if err != nil {
		return err
	}
	defer cl.Close()
	type result struct{ err error }
	done := make(chan result, 1)
	go func() { // owned by PulsarPing: bounded by the client's operation timeout
		done <- result{pulsarRoundTrip(ctx, cl)}
	}()
	select {
	case r := <-done:
		return r.err
	case <-ctx.Done():
		// The client operations above have no ctx; Close (deferred) makes them return.
		return ctx.Err()
	}
}

func pulsarRoundTrip(ctx context.Context, cl pulsar.Client) error {
	const topic = "persistent://public/default/sluice-ready"
	prod, err := cl.CreateProducer(pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	if err != nil {
		return fmt.Errorf("create producer: %w", err)
	}
	defer prod.Close()
	payload := []byte("ready " + strconv.FormatInt(time.Now().UnixNano(), 10))
	id, err := prod.Send(ctx, &pulsar.ProducerMessage{Payload: payload})
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	r, err := cl.CreateReader(pulsar.ReaderOptions{Topic: topic, StartMessageID: id, StartMessageIDInclusive: true})
	if err != nil {
		return fmt.Errorf("create reader: %w", err)
	}
	defer r.Close()
	m, err := r.Next(ctx)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(m.Payload(), payload) {
		return fmt.Errorf("read back %q, want %q", m.Payload(), payload)
	}
	return nil
}

// waitPulsar polls PulsarPing until it succeeds or ctx (bounded to 3 minutes) ends.
func waitPulsar(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	last, err := pollReady(ctx, 500*time.Millisecond, nil, func(ctx context.Context) error { return PulsarPing(ctx, url) })
	if err != nil {
		return fmt.Errorf("%w; last ping: %v", err, last)
	}
	return nil
}

// defaultPulsarAdminURL guesses the admin URL of a cluster from its service URL: the same
// host on the default web service port 8080.
func defaultPulsarAdminURL(serviceURL string) string {
	host := strings.TrimPrefix(strings.TrimPrefix(serviceURL, "pulsar+ssl://"), "pulsar://")
	if i := strings.IndexAny(host, ",/"); i >= 0 {
		host = host[:i]
	}
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	return "http://" + host + ":8080"
}

// pulsarJava returns a java binary of at least pulsarJavaMajor: JAVA_HOME's or the one on
// PATH when recent enough, else the newest JDK installed under /usr/lib/jvm.
func pulsarJava() (string, error) {
	if j, err := Java(); err == nil {
		if v, err := javaMajor(j); err == nil && v >= pulsarJavaMajor {
			return j, nil
		}
	}
	cands, _ := filepath.Glob("/usr/lib/jvm/*/bin/java")
	best, bestV := "", 0
	for _, c := range cands {
		if v, err := javaMajor(c); err == nil && v > bestV {
			best, bestV = c, v
		}
	}
	if bestV >= pulsarJavaMajor {
		return best, nil
	}
	return "", fmt.Errorf("pulsar %s needs Java %d+: %w", PulsarVersion, pulsarJavaMajor, ErrNoJava)
}

var javaVersionRE = regexp.MustCompile(`version "(1\.)?(\d+)`)

// javaMajor runs `java -version` and returns the feature release (8, 17, 25, ...).
func javaMajor(java string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, java, "-version").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s -version: %w", java, err)
	}
	m := javaVersionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s -version: no version in %q", java, out)
	}
	return strconv.Atoi(string(m[2]))
}

// processRSS returns the resident set size of pid from /proc/<pid>/status, in bytes.
func processRSS(pid int) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// pulsarStandaloneConf is a standalone configuration sized for a small shared machine:
// loopback only, one bookie with ensemble/quorum 1, few threads, small caches, infinite
// retention (a storage backend must not lose messages no subscription holds) and no
// inactive-topic deletion. The same file configures the bookie, which listens on the
// interface named lo (the loopback interface) instead of every interface.
func pulsarStandaloneConf(brokerPort, webPort int, lo string) string {
	lines := map[string]string{
		"listeningInterface":                        lo,
		"allowLoopback":                             "true",
		"clusterName":                               "standalone",
		"bindAddress":                               "127.0.0.1",
		"advertisedAddress":                         "127.0.0.1",
		"brokerServicePort":                         strconv.Itoa(brokerPort),
		"webServicePort":                            strconv.Itoa(webPort),
		"managedLedgerDefaultEnsembleSize":          "1",
		"managedLedgerDefaultWriteQuorum":           "1",
		"managedLedgerDefaultAckQuorum":             "1",
		"managedLedgerCacheSizeMB":                  "32",
		"defaultRetentionTimeInMinutes":             "-1",
		"defaultRetentionSizeInMB":                  "-1",
		"brokerDeleteInactiveTopicsEnabled":         "false",
		"allowAutoTopicCreationType":                "non-partitioned",
		"functionsWorkerEnabled":                    "false",
		"webSocketServiceEnabled":                   "false",
		"transactionCoordinatorEnabled":             "false",
		"numIOThreads":                              "2",
		"numHttpServerThreads":                      "4",
		"numOrderedExecutorThreads":                 "2",
		"numExecutorThreadPoolSize":                 "2",
		"numCacheExecutorThreadPoolSize":            "1",
		"bookkeeperClientNumWorkerThreads":          "2",
		"managedLedgerNumSchedulerThreads":          "2",
		"brokerShutdownTimeoutMs":                   "3000",
		"journalSyncData":                           "true",
		"dbStorage_writeCacheMaxSizeMb":             "16",
		"dbStorage_readAheadCacheMaxSizeMb":         "16",
		"dbStorage_rocksDB_blockCacheSize":          "16777216",
		"numAddWorkerThreads":                       "1",
		"numReadWorkerThreads":                      "2",
		"numJournalCallbackThreads":                 "2",
		"serverNumIOThreads":                        "2",
		"httpServerEnabled":                         "false",
		"exposeTopicLevelMetricsInPrometheus":       "false",
		"loadBalancerReportUpdateMinIntervalMillis": "60000",
	}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + lines[k] + "\n")
	}
	return b.String()
}

// loopbackInterface returns the name of the machine's loopback interface ("lo" on Linux,
// "lo0" on macOS).
func loopbackInterface() string {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i.Name
		}
	}
	return "lo"
}

// pulsarLog4j logs warnings (and the broker's start and stop) to the process log.
const pulsarLog4j = `<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Console name="out" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{HH:mm:ss.SSS} %-5level [%t] %c{1} - %msg%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="org.apache.pulsar.broker.PulsarService" level="info"/>
    <Logger name="org.apache.pulsar.PulsarStandalone" level="info"/>
    <Root level="warn"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
`
