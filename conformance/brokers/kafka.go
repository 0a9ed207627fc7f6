package brokers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaVersion is the Apache Kafka release the launcher runs, as a local process (jars from
// Maven Central) or as the apache/kafka container image.
const KafkaVersion = "4.4.0"

// kafkaLog4jSLF4J binds Kafka's SLF4J 1.x logging to the log4j2 it ships with; the
// kafka_2.13 POM leaves the binding to the distribution, so without it the broker is mute.
var kafkaLog4jSLF4J = MavenArtifact{"org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.5"}

// Kafka is a running single-node Apache Kafka cluster (KRaft, combined broker and
// controller) or an external cluster named by KAFKA_BROKERS.
//
// The methods are safe for concurrent use.
type Kafka struct {
	// Brokers are the bootstrap addresses, "host:port".
	Brokers []string
	// Kind says how the cluster runs: "process", "docker" or "external".
	Kind string

	launched
}

// StartKafka starts a single-node Kafka for tests and returns once it serves metadata.
// Progress, the launcher time and disk use go to logw (may be nil). The selection order
// (KAFKA_BROKERS, Docker, local process) is described in the package doc; a local process
// needs java 17+ and, on first use, mvn to download Kafka's jars into the cache.
//
// The caller must call Stop. Errors carry the broker's log tail.
func StartKafka(ctx context.Context, logw io.Writer) (*Kafka, error) {
	if logw == nil {
		logw = io.Discard
	}
	start := time.Now()
	if err := shortErr("kafka"); err != nil {
		return nil, err
	}
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		k := &Kafka{Brokers: splitAddrs(env), Kind: "external", launched: launched{name: "kafka", logw: logw}}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := KafkaPing(wctx, k.Brokers); err != nil {
			return nil, fmt.Errorf("kafka: KAFKA_BROKERS=%q does not answer: %w", env, err)
		}
		fmt.Fprintf(logw, "kafka: using external cluster %s\n", env)
		return k, nil
	}
	var (
		k   *Kafka
		err error
	)
	if Mode() == "docker" || DockerAvailable() {
		k, err = startKafkaDocker(ctx, logw)
	} else {
		k, err = startKafkaProcess(ctx, logw)
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "kafka: Apache Kafka %s (%s) ready on %s in %s\n", KafkaVersion, k.Kind, strings.Join(k.Brokers, ","), time.Since(start).Round(10*time.Millisecond))
	return k, nil
}

// Addr returns the bootstrap addresses joined by commas (the KAFKA_BROKERS form).
func (k *Kafka) Addr() string { return strings.Join(k.Brokers, ",") }

// CanRestart reports whether Restart works: true for clusters this launcher started.
func (k *Kafka) CanRestart() bool { return k.Kind != "external" }

// Restart kills the broker abruptly (SIGKILL, no controlled shutdown) and starts it again
// on the same ports with the same data directory, returning once it serves metadata again.
// It fails for an external cluster.
func (k *Kafka) Restart(ctx context.Context) error {
	took, err := k.restart(ctx, k.Kind, k.Addr(), k.startProc, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return waitKafka(ctx, k.Brokers)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(k.logw, "kafka: killed and restarted in %s\n", took.Round(10*time.Millisecond))
	return nil
}

// Stop shuts the broker down (SIGTERM, then SIGKILL after 15s), reports the disk it used and
// removes its data. Stopping an external cluster does nothing. A second Stop returns nil.
func (k *Kafka) Stop() error { return k.stop(k.Kind, nil) }

func startKafkaProcess(ctx context.Context, logw io.Writer) (*Kafka, error) {
	java, err := Java()
	if err != nil {
		return nil, err
	}
	jars, err := MavenClasspath(ctx, "kafka-"+KafkaVersion, []MavenArtifact{
		{"org.apache.kafka", "kafka_2.13", KafkaVersion},
		kafkaLog4jSLF4J,
	}, nil, logw)
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	dir, err := newDataDir("sluice-kafka-")
	if err != nil {
		return nil, fmt.Errorf("kafka: data directory: %w", err)
	}
	k := &Kafka{
		Brokers:  []string{"127.0.0.1:" + strconv.Itoa(ports[0])},
		Kind:     "process",
		launched: launched{name: "kafka", logw: logw, dataDir: dir, logPath: filepath.Join(dir, "kafka.log")},
	}
	fail := func(err error) (*Kafka, error) {
		_ = removeDataDir(dir)
		return nil, err
	}
	props := filepath.Join(dir, "server.properties")
	log4j := filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(props, []byte(kafkaServerProperties(ports[0], ports[1], filepath.Join(dir, "data"))), 0o644); err != nil {
		return fail(fmt.Errorf("kafka: %w", err))
	}
	if err := os.WriteFile(log4j, []byte(kafkaLog4j), 0o644); err != nil {
		return fail(fmt.Errorf("kafka: %w", err))
	}
	cp := strings.Join(jars, string(os.PathListSeparator))
	jvm := []string{"-Xms128m", "-Xmx512m", "-XX:+UseSerialGC",
		"-Djava.awt.headless=true", "-Dlog4j2.configurationFile=" + log4j, "-cp", cp}

	// Format the KRaft metadata directory once with a fresh cluster id.
	format := exec.CommandContext(ctx, java, append(jvm, "kafka.tools.StorageTool", "format",
		"--cluster-id", kafkaClusterID(), "--config", props, "--ignore-formatted")...)
	if out, err := format.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("kafka: format storage: %w\n%s", err, tail(string(out), 30)))
	}
	k.newCmd = func() *exec.Cmd {
		// Not CommandContext: the broker outlives the ctx of StartKafka; Stop ends it.
		return exec.Command(java, append(jvm, "kafka.Kafka", props)...)
	}
	if err := k.startProc(ctx); err != nil {
		if k.proc != nil {
			_ = k.proc.Kill()
		}
		return fail(err)
	}
	return k, nil
}

// startProc starts the broker process and waits until it serves metadata.
func (k *Kafka) startProc(ctx context.Context) error {
	return k.startLocal(ctx, 2*time.Minute, 250*time.Millisecond, func(ctx context.Context) error {
		return KafkaPing(ctx, k.Brokers)
	})
}

// KafkaPing returns nil once the cluster at brokers answers a metadata request with at
// least one live broker and an active controller.
func KafkaPing(ctx context.Context, brokers []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequestRetries(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if len(resp.Brokers) == 0 || resp.ControllerID < 0 {
		return fmt.Errorf("metadata lists %d broker(s), controller %d", len(resp.Brokers), resp.ControllerID)
	}
	return nil
}

// waitKafka polls KafkaPing until it succeeds or ctx ends.
func waitKafka(ctx context.Context, brokers []string) error {
	last, err := pollReady(ctx, 250*time.Millisecond, nil, func(ctx context.Context) error { return KafkaPing(ctx, brokers) })
	if err != nil {
		return fmt.Errorf("%w; last ping: %v", err, last)
	}
	return nil
}

// kafkaServerProperties is a single-node KRaft configuration sized for a small shared
// machine: one log directory, replication factor 1, few threads, small segments and
// index files. The short broker session lets a killed broker re-register quickly after a
// restart (the controller first has to fence the previous incarnation).
func kafkaServerProperties(port, controllerPort int, logDir string) string {
	return fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[2]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[3]s
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=300
broker.session.timeout.ms=1500
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.segment.bytes=8388608
log.index.size.max.bytes=65536
file.delete.delay.ms=5000
log.retention.check.interval.ms=60000
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=4194304
`, port, controllerPort, logDir)
}

const kafkaLog4j = `rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
logger.started.name=kafka.server.KafkaRaftServer
logger.started.level=INFO
`

// kafkaClusterID returns a random cluster id in Kafka's Uuid form (22 characters of
// unpadded URL-safe base64, not starting with '-').
func kafkaClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		if s := base64.RawURLEncoding.EncodeToString(b[:]); s[0] != '-' {
			return s
		}
	}
}

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
