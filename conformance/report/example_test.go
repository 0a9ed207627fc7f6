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

// The parts of a certifier: run the suite on a URL of a registered scheme and write the
// same Markdown, JSON and JUnit reports as `sluice conformance`. Package certify puts them
// together, with the command's flags and progress output, as certify.Main.
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
