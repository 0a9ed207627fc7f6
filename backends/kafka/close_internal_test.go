package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/backends/internal/closetest"
)

// A second Close must not return while the first still waits for a call in flight. No
// broker is needed: New does no I/O, and the call in flight is registered directly.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	cl, err := kgo.NewClient(append(ClientOpts(), kgo.SeedBrokers("127.0.0.1:1"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, err := New(t.Context(), cl, &Options{CloseTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	closetest.SecondCloseWaits(t, &s.calls, s.Close)
}
