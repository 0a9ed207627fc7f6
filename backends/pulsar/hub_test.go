package pulsar

import (
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestHub runs the hub's end-to-end tests (push, pull, index, long-poll, frames over real
// TCP) on the shared Pulsar standalone: each subtest gets its own Store (its own client and
// index topic prefix); hubtest picks random stream names.
func TestHub(t *testing.T) {
	broker(t)
	hubtest.Run(t, func(t *testing.T) *core.Backend {
		s, err := openStore(t, t.Context(), "prefix=hub-")
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		return backendOf(s)
	})
}
