package certify_test

import (
	_ "github.com/sluicehq/sluice/backends/memory" // stands for the backend to certify: its import registers its URL scheme

	"github.com/sluicehq/sluice/conformance/certify"
)

// A certifier for a backend that is not compiled into the sluice binary: the whole main
// package of, say, cmd/certify in the backend's repository. Run it as
// `go run ./cmd/certify -backend mybroker://127.0.0.1:7000`; it takes the flags of
// `sluice conformance`.
func Example() {
	certify.Main()
}
