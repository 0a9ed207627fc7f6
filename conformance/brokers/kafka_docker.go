package brokers

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

func startKafkaDocker(ctx context.Context, logw io.Writer) (*Kafka, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	image := "apache/kafka:" + KafkaVersion
	fmt.Fprintf(logw, "kafka: starting container %s (the first start pulls the image)\n", image)
	c, err := testcontainers.Run(ctx, image,
		testcontainers.WithEnv(map[string]string{
			"KAFKA_NODE_ID":                                          "1",
			"KAFKA_PROCESS_ROLES":                                    "broker,controller",
			"KAFKA_LISTENERS":                                        "PLAINTEXT://0.0.0.0:" + p + ",CONTROLLER://127.0.0.1:9093",
			"KAFKA_ADVERTISED_LISTENERS":                             "PLAINTEXT://127.0.0.1:" + p,
			"KAFKA_CONTROLLER_LISTENER_NAMES":                        "CONTROLLER",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                         "1@127.0.0.1:9093",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":                 "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":                    "1",
			"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
			"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR":            "1",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                        "false",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":                 "0",
			"KAFKA_NUM_NETWORK_THREADS":                              "2",
			"KAFKA_NUM_IO_THREADS":                                   "2",
			"KAFKA_HEAP_OPTS":                                        "-Xms128m -Xmx512m",
		}),
		testcontainers.WithExposedPorts(p+"/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{
				network.MustParsePort(p + "/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: p}},
			}
		}),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, wait.ForListeningPort(p+"/tcp")),
	)
	if err != nil {
		if c != nil {
			_ = testcontainers.TerminateContainer(c)
		}
		return nil, fmt.Errorf("kafka: start container %s: %w", image, err)
	}
	k := &Kafka{Brokers: []string{"127.0.0.1:" + p}, Kind: "docker", launched: launched{name: "kafka", logw: logw, ctr: &brokerContainer{name: "kafka", c: c}}}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := waitKafka(wctx, k.Brokers, nil); err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, fmt.Errorf("kafka: container %s not ready: %w", image, err)
	}
	return k, nil
}
