package brokers

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// KinesisMockImage is the kinesis-mock container image used where a Docker daemon answers.
const KinesisMockImage = "ghcr.io/etspaceman/kinesis-mock:" + KinesisMockVersion

// startKinesisDocker runs kinesis-mock as a container with testcontainers-go, its plain port
// published on the same port number on 127.0.0.1 so the endpoint survives a restart.
func startKinesisDocker(ctx context.Context, log io.Writer, region string, persist bool) (*Kinesis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	fmt.Fprintf(log, "brokers: starting container %s (the first start pulls the image)\n", KinesisMockImage)
	endpoint := "http://127.0.0.1:" + p
	ready := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		last, err := pollReady(ctx, 200*time.Millisecond, nil, func(ctx context.Context) error { return kinesisPing(ctx, endpoint) })
		if err != nil {
			return fmt.Errorf("%w; last ping: %v", err, last)
		}
		return nil
	}
	c, err := runContainer(ctx, "brokers", KinesisMockImage, []string{p}, 2*time.Minute, ready,
		testcontainers.WithEnv(map[string]string{
			"KINESIS_MOCK_PLAIN_PORT": p,
			"AWS_REGION":              region,
			"CREATE_STREAM_DURATION":  "0ms",
			"DELETE_STREAM_DURATION":  "300ms",
			"SHOULD_PERSIST_DATA":     strconv.FormatBool(persist),
			"PERSIST_PATH":            "/tmp/kinesis-data",
			"PERSIST_INTERVAL":        "500ms",
		}),
	)
	if err != nil {
		return nil, err
	}
	return &Kinesis{Endpoint: endpoint, Region: region, ctr: &brokerContainer{name: "kinesis-mock", c: c}, ready: ready}, nil
}
