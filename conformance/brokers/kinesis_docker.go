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

// KinesisMockImage is the kinesis-mock container image used where a Docker daemon answers.
const KinesisMockImage = "ghcr.io/etspaceman/kinesis-mock:" + KinesisMockVersion

// startKinesisDocker runs kinesis-mock as a container with testcontainers-go, its plain port
// published on the same port number on 127.0.0.1 so the endpoint survives a restart.
func startKinesisDocker(ctx context.Context, log io.Writer, region string) (*Kinesis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	fmt.Fprintf(log, "brokers: starting container %s (the first start pulls the image)\n", KinesisMockImage)
	c, err := testcontainers.Run(ctx, KinesisMockImage,
		testcontainers.WithEnv(map[string]string{
			"KINESIS_MOCK_PLAIN_PORT": p,
			"AWS_REGION":              region,
			"CREATE_STREAM_DURATION":  "0ms",
			"DELETE_STREAM_DURATION":  "0ms",
			"SHOULD_PERSIST_DATA":     "true",
			"PERSIST_PATH":            "/tmp/kinesis-data",
			"PERSIST_INTERVAL":        "500ms",
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
		return nil, fmt.Errorf("brokers: start container %s: %w", KinesisMockImage, err)
	}
	k := &Kinesis{Endpoint: "http://127.0.0.1:" + p, Region: region, ctr: &brokerContainer{name: "kinesis-mock", c: c}}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := kinesisPing(wctx, k.Endpoint); err == nil {
			return k, nil
		} else if wctx.Err() != nil {
			_ = testcontainers.TerminateContainer(c)
			return nil, fmt.Errorf("brokers: container %s not ready: %w", KinesisMockImage, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
