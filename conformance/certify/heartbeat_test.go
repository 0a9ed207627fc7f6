package certify

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
)

// slowAppends is a memory backend whose Append takes a while, as a broker's may.
type slowAppends struct{ core.Storage }

func (s slowAppends) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	select {
	case <-time.After(100 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Storage.Append(ctx, stream, partition, msgs)
}

func init() {
	core.Register("slowmemory", func(ctx context.Context, u *url.URL) (*core.Backend, error) {
		s, err := memory.New(nil)
		if err != nil {
			return nil, err
		}
		return &core.Backend{Storage: slowAppends{s}, Index: s}, nil
	})
}

// TestHeartbeatWhileSubtestRuns: while no subtest finishes for heartbeatEvery, the run says
// it goes on (a subtest against a slow broker can take minutes), and says nothing more once
// the suite ended.
func TestHeartbeatWhileSubtestRuns(t *testing.T) {
	defer func(d time.Duration) { heartbeatEvery = d }(heartbeatEvery)
	heartbeatEvery = 10 * time.Millisecond
	code, out, errOut := certifier(t, "-backend", "slowmemory://", "-run", "^Storage$/^Order$", "-out", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "still running") || !strings.Contains(out, "-subtest-timeout") {
		t.Fatalf("no heartbeat while the subtest ran:\n%s", out)
	}
	if i, j := strings.LastIndex(out, "still running"), strings.Index(out, "ok   "); i > j {
		t.Errorf("a heartbeat after the suite ended:\n%s", out)
	}
}
