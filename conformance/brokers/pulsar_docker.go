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

func startPulsarDocker(ctx context.Context, logw io.Writer) (*Pulsar, error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	bp, wp := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	image := "apachepulsar/pulsar:" + PulsarVersion
	fmt.Fprintf(logw, "pulsar: starting container %s (the first start pulls the image)\n", image)
	c, err := testcontainers.Run(ctx, image,
		testcontainers.WithEnv(map[string]string{
			// apply-config-from-env.py copies PULSAR_PREFIX_<key> into standalone.conf.
			"PULSAR_PREFIX_brokerServicePort":                 bp,
			"PULSAR_PREFIX_webServicePort":                    wp,
			"PULSAR_PREFIX_advertisedAddress":                 "127.0.0.1",
			"PULSAR_PREFIX_defaultRetentionTimeInMinutes":     "-1",
			"PULSAR_PREFIX_defaultRetentionSizeInMB":          "-1",
			"PULSAR_PREFIX_brokerDeleteInactiveTopicsEnabled": "false",
			"PULSAR_MEM": "-Xms128m -Xmx512m -XX:MaxDirectMemorySize=256m",
		}),
		testcontainers.WithCmd("sh", "-c",
			"bin/apply-config-from-env.py conf/standalone.conf && exec bin/pulsar standalone --no-functions-worker --no-stream-storage"),
		testcontainers.WithExposedPorts(bp+"/tcp", wp+"/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			lo := netip.MustParseAddr("127.0.0.1")
			hc.PortBindings = network.PortMap{
				network.MustParsePort(bp + "/tcp"): {{HostIP: lo, HostPort: bp}},
				network.MustParsePort(wp + "/tcp"): {{HostIP: lo, HostPort: wp}},
			}
		}),
		testcontainers.WithWaitStrategyAndDeadline(3*time.Minute, wait.ForListeningPort(bp+"/tcp")),
	)
	if err != nil {
		if c != nil {
			_ = testcontainers.TerminateContainer(c)
		}
		return nil, fmt.Errorf("pulsar: start container %s: %w", image, err)
	}
	p := &Pulsar{URL: "pulsar://127.0.0.1:" + bp, AdminURL: "http://127.0.0.1:" + wp, Kind: "docker",
		launched: launched{name: "pulsar", logw: logw, ctr: &brokerContainer{name: "pulsar", c: c}}}
	if err := waitPulsar(ctx, p.URL, nil); err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, fmt.Errorf("pulsar: container %s not ready: %w", image, err)
	}
	return p, nil
}
