package pulsar

import (
	"testing"

	"github.com/sluicehq/sluice/backends/internal/closetest"
)

// A second Close must not return while the first still waits for a call in flight. No
// broker is needed: openURL does no I/O, and the call in flight is registered directly.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	s, err := openURL("pulsar://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	closetest.SecondCloseWaits(t, &s.calls, s.Close)
}
