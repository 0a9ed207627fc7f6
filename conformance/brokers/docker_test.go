package brokers

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestDockerAvailableChecksDockerHost: DOCKER_HOST naming a daemon that does not answer is
// no Docker daemon: the launchers then start local processes, as the package doc says,
// instead of containers that cannot start.
func TestDockerAvailableChecksDockerHost(t *testing.T) {
	t.Setenv("SLUICE_BROKERS", "")
	for _, host := range []string{
		"tcp://" + hubtest.RefusedAddr(t), // nothing listens there
		"unix://" + filepath.Join(t.TempDir(), "docker.sock"),
	} {
		t.Setenv("DOCKER_HOST", host)
		if DockerAvailable() {
			t.Errorf("DockerAvailable() with DOCKER_HOST=%s, where nothing listens, = true; want false", host)
		}
	}
	// One that answers is available.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("DOCKER_HOST", "tcp://"+l.Addr().String())
	if !DockerAvailable() {
		t.Errorf("DockerAvailable() with DOCKER_HOST=tcp://%s, which accepts connections, = false; want true", l.Addr())
	}
}
