package report_test

import (
	"context"
	"fmt"
	"os"

	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/conformance/report"
	"github.com/sluicehq/sluice/core"

	_ "github.com/sluicehq/sluice/backends/memory" // an out-of-tree backend: your package
)

// A certifier for a backend that is not compiled into the sluice binary: a main that
// imports the backend's package runs the suite on a URL of its scheme and writes the same
// Markdown, JSON and JUnit reports as `sluice conformance`.
func Example_certifier() {
	ctx := context.Background()
	const url = "memory://" // for example "mybroker://host:1234"
	h := conformance.Harness{Open: func(ctx context.Context) (*core.Backend, error) { return core.Open(ctx, url) }}
	res := conformance.Run(ctx, h, nil)

	dir, err := os.MkdirTemp("", "conformance-report")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	files, err := report.WriteFiles(dir, []report.Run{{Backend: "memory", URL: url, Result: res}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("certified:", res.OK(), "reports:", len(files))
	// Output: certified: true reports: 3
}
