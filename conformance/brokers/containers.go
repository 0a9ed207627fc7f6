package brokers

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// runContainer starts image with opts and each of ports published on the same number on
// 127.0.0.1, waits up to deadline for the first port to listen, then for ready. A container
// that fails either is removed. name prefixes the errors.
func runContainer(ctx context.Context, name, image string, ports []string, deadline time.Duration, ready func(context.Context) error, opts ...testcontainers.ContainerCustomizer) (*testcontainers.DockerContainer, error) {
	exposed := make([]string, len(ports))
	for i, p := range ports {
		exposed[i] = p + "/tcp"
	}
	lo := netip.MustParseAddr("127.0.0.1")
	opts = append(opts,
		testcontainers.WithExposedPorts(exposed...),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{}
			for _, p := range ports {
				hc.PortBindings[network.MustParsePort(p+"/tcp")] = []network.PortBinding{{HostIP: lo, HostPort: p}}
			}
		}),
		testcontainers.WithWaitStrategyAndDeadline(deadline, wait.ForListeningPort(exposed[0])),
	)
	c, err := testcontainers.Run(ctx, image, opts...)
	if err != nil {
		if c != nil {
			_ = testcontainers.TerminateContainer(c)
		}
		return nil, fmt.Errorf("%s: start container %s: %w", name, image, err)
	}
	if err := ready(ctx); err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, fmt.Errorf("%s: container %s not ready: %w", name, image, err)
	}
	return c, nil
}

// brokerContainer is a broker run with testcontainers-go. Launchers publish each port on the same
// number inside the container and on 127.0.0.1, so the address a broker advertises is the one
// the host dials, and it stays the same across restart (docker stop + start keeps the port
// bindings and the data).
type brokerContainer struct {
	name string // for errors: "kafka", "pulsar", "kinesis-mock"
	c    *testcontainers.DockerContainer
}

// restart kills the container (stop with no grace period) and starts it again.
func (bc *brokerContainer) restart(ctx context.Context) error {
	var zero time.Duration
	if err := bc.c.Stop(ctx, &zero); err != nil {
		return fmt.Errorf("%s: stop container: %w", bc.name, err)
	}
	if err := bc.c.Start(ctx); err != nil {
		return fmt.Errorf("%s: start container: %w", bc.name, err)
	}
	return nil
}

// terminate removes the container.
func (bc *brokerContainer) terminate() error {
	if err := testcontainers.TerminateContainer(bc.c); err != nil {
		return fmt.Errorf("%s: %w", bc.name, err)
	}
	return nil
}
