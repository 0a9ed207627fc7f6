package kinesis_test

import (
	"testing"

	"github.com/sluicehq/sluice/backends/kinesis"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestHub runs the hub's end-to-end tests (push, pull, index, long-poll, frames over real TCP)
// on Kinesis, with bbolt for consumer indexes.
func TestHub(t *testing.T) {
	c := client(t, nil)
	hubtest.Run(t, func(t *testing.T) *core.Backend {
		s, err := kinesis.New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := core.Open(t.Context(), "bbolt://"+t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return &core.Backend{Storage: s, Index: idx.Index}
	})
}
