package brokers

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

func startKafkaDocker(ctx context.Context, logw io.Writer) (*Kafka, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	image := "apache/kafka:" + KafkaVersion
	fmt.Fprintf(logw, "kafka: starting container %s (the first start pulls the image)\n", image)
	brokers := []string{"127.0.0.1:" + p}
	ready := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return waitKafka(ctx, brokers)
	}
	c, err := runContainer(ctx, "kafka", image, []string{p}, 2*time.Minute, ready,
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
	)
	if err != nil {
		return nil, err
	}
	return &Kafka{Brokers: brokers, Kind: "docker", launched: launched{name: "kafka", logw: logw, ctr: &brokerContainer{name: "kafka", c: c}}}, nil
}
