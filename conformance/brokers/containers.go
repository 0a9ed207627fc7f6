package brokers

import (
	"context"
	"fmt"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

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
