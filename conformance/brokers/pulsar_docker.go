package brokers

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

func startPulsarDocker(ctx context.Context, logw io.Writer) (*Pulsar, error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	bp, wp := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	image := "apachepulsar/pulsar:" + PulsarVersion
	fmt.Fprintf(logw, "pulsar: starting container %s (the first start pulls the image)\n", image)
	url := "pulsar://127.0.0.1:" + bp
	ready := func(ctx context.Context) error { return waitPulsar(ctx, url) }
	c, err := runContainer(ctx, "pulsar", image, []string{bp, wp}, 3*time.Minute, ready,
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
	)
	if err != nil {
		return nil, err
	}
	return &Pulsar{URL: url, AdminURL: "http://127.0.0.1:" + wp, Kind: "docker",
		launched: launched{name: "pulsar", logw: logw, ctr: &brokerContainer{name: "pulsar", c: c}}}, nil
}
