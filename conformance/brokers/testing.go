package brokers

import "testing"

// Unavailable reports that a broker could not be started: under [Required] it fails the
// test (with err, which carries the log tail); otherwise it skips the test with the reason.
func Unavailable(tb testing.TB, broker string, err error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%s could not start and brokers are required (CI=true or SLUICE_REQUIRE_BROKERS=1): %v", broker, err)
	}
	tb.Skipf("%s unavailable (set CI=true or SLUICE_REQUIRE_BROKERS=1 to make this a failure): %v", broker, err)
}
