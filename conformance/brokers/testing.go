package brokers

import (
	"flag"
	"fmt"
	"testing"
)

// shortErr is returned by the Start functions in `go test -short` when brokers are not
// required: -short is for fast local iteration and never downloads or starts a broker.
func shortErr(broker string) error {
	if testing.Testing() && flag.Parsed() && testing.Short() && !Required() {
		return fmt.Errorf("-short: not starting %s", broker)
	}
	return nil
}

// Unavailable reports that a broker could not be started: under [Required] it fails the
// test (with err, which carries the log tail); otherwise it skips the test with the reason.
func Unavailable(tb testing.TB, broker string, err error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%s could not start and brokers are required (CI=true or SLUICE_REQUIRE_BROKERS=1): %v", broker, err)
	}
	tb.Skipf("%s unavailable (set CI=true or SLUICE_REQUIRE_BROKERS=1 to make this a failure): %v", broker, err)
}
