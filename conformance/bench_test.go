package conformance_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
)

// shortFetchesEnv makes BenchmarkShortFetches run; TestBenchmarkStorageFetchBytes sets it.
const shortFetchesEnv = "SLUICE_CONFORMANCE_SHORT_FETCHES"

// BenchmarkShortFetches is BenchmarkStorage on a memory store whose Fetch returns at most 10
// messages, fewer than the limit the benchmark asks for (as Pulsar's may). Only
// TestBenchmarkStorageFetchBytes runs it.
func BenchmarkShortFetches(b *testing.B) {
	if os.Getenv(shortFetchesEnv) == "" {
		b.Skipf("run by TestBenchmarkStorageFetchBytes (%s set)", shortFetchesEnv)
	}
	conformance.BenchmarkStorage(b, volatile(func(s *memory.Store) hooks {
		return hooks{fetch: func(ctx context.Context, stream string, p int, from uint64, limit int) ([]core.Message, error) {
			return s.Fetch(ctx, stream, p, from, min(limit, 10))
		}}
	}))
}

// TestBenchmarkStorageFetchBytes runs the Fetch benchmark of BenchmarkStorage on a backend
// whose Fetch returns fewer messages than the limit, and checks that the MB/s it reports
// are the bytes it read: its msgs/s times the 1 KiB message size. Both figures come from the
// same run and the same elapsed time, so they agree whatever the machine's speed.
func TestBenchmarkStorageFetchBytes(t *testing.T) {
	if os.Getenv(shortFetchesEnv) != "" {
		t.Skip("in the benchmark's process")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkShortFetches$/^Fetch/", "-test.benchtime=50x")
	cmd.Env = append(os.Environ(), shortFetchesEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the benchmark: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`(?m)^BenchmarkShortFetches/Fetch/size=1024/limit=100\S*\s.*$`).Find(out)
	if line == nil {
		t.Fatalf("no Fetch result in the benchmark's output:\n%s", out)
	}
	metric := func(unit string) float64 {
		t.Helper()
		m := regexp.MustCompile(`([0-9.e+]+) ` + regexp.QuoteMeta(unit) + `\b`).FindSubmatch(line)
		if m == nil {
			t.Fatalf("no %s in %q", unit, line)
		}
		x, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatalf("%s in %q: %v", unit, line, err)
		}
		return x
	}
	t.Logf("%s", line)
	mbs, msgs := metric("MB/s"), metric("msgs/s")
	want := msgs * 1024 / 1e6
	if mbs < want*0.99 || mbs > want*1.01 {
		t.Errorf("the Fetch benchmark reports %.2f MB/s at %.0f msgs/s of 1 KiB messages, which is %.2f MB/s: "+
			"its MB/s must count the bytes Fetch returned, not the limit's worth (%q)", mbs, msgs, want, line)
	}
}
