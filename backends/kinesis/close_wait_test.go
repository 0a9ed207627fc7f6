package kinesis

import (
	"testing"

	"github.com/sluicehq/sluice/backends/internal/closetest"
)

// A second Close must not return while the first still waits for a call in flight. No
// request reaches Kinesis: the call in flight is registered directly.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	s := offlineStore(t)
	closetest.SecondCloseWaits(t, &s.calls, s.Close)
}
