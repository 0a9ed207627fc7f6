package hub_test

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestReadyLogsVersion: the hub's first log line says which Sluice it is, as an operator
// reading a log of a problem wants to know.
func TestReadyLogsVersion(t *testing.T) {
	var logs hubtest.LogBuffer
	b := openMemory(t)
	defer b.Close()
	hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `msg="hub ready"`) {
			if want := "version=" + strconv.Quote(core.Version()); !strings.Contains(line, want) && !strings.Contains(line, "version="+core.Version()+" ") {
				t.Errorf("hub ready line lacks %s: %s", want, line)
			}
			return
		}
	}
	t.Fatalf("no hub ready line in the log:\n%s", logs.String())
}
