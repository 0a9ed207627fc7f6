package kafka_test

import (
	"testing"

	"github.com/sluicehq/sluice/backends/kafka"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestHub runs the hub's end-to-end tests on the real Kafka broker: each subtest gets a
// fresh Store (its own franz-go client) on the shared broker; hubtest picks random stream
// names.
func TestHub(t *testing.T) {
	k := cluster(t)
	hubtest.Run(t, func(t *testing.T) *core.Backend {
		s, err := kafka.Dial(t.Context(), k.Brokers, &kafka.Options{Prefix: "sluicetest."})
		if err != nil {
			t.Fatalf("kafka.Dial: %v", err)
		}
		return &core.Backend{Storage: s, Index: s}
	})
}
