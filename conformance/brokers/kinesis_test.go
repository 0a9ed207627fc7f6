package brokers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub/hubtest"
)

func TestKinesisMockStartsAndRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := StartKinesis(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "kinesis-mock", err)
	}
	defer k.Stop()
	if err := kinesisPing(ctx, k.Endpoint); err != nil {
		t.Fatalf("ping %s: %v\n%s", k.Endpoint, err, k.LogTail(20))
	}
	if k.Process() == nil {
		return // external endpoint: nothing to restart
	}
	checkLoopbackOnly(t, "kinesis-mock", k.Process().Pid())
	old := k.Process().Pid()
	if err := k.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if k.Process().Pid() == old {
		t.Fatalf("restart kept pid %d", old)
	}
	if err := kinesisPing(ctx, k.Endpoint); err != nil {
		t.Fatalf("ping after restart: %v\n%s", err, k.LogTail(20))
	}
}

// TestKinesisEndpointThatDoesNotAnswer: KINESIS_ENDPOINT naming nothing is a broker that
// cannot start, as KAFKA_BROKERS and PULSAR_URL are (a skip with the reason, or a failure
// under CI=true), not an endpoint every test then fails to reach.
func TestKinesisEndpointThatDoesNotAnswer(t *testing.T) {
	ep := "http://" + hubtest.RefusedAddr(t) // nothing listens there
	t.Setenv("KINESIS_ENDPOINT", ep)
	t.Setenv("SLUICE_REQUIRE_BROKERS", "1") // also under -short: an external endpoint starts nothing
	k, err := StartKinesis(t.Context(), nil)
	if err == nil {
		t.Fatalf("StartKinesis with KINESIS_ENDPOINT=%s, where nothing listens, returned %+v and no error", ep, k)
	}
	if !strings.Contains(err.Error(), "KINESIS_ENDPOINT="+strconv.Quote(ep)+" does not answer") {
		t.Errorf("StartKinesis: %v; want it to say that KINESIS_ENDPOINT does not answer", err)
	}
}

// An external endpoint answers although it rejects kinesisPing's made-up signature, as AWS
// does: StartKinesis uses it.
func TestKinesisEndpointThatRejectsTheSignature(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"__type":"UnrecognizedClientException"}`, http.StatusBadRequest)
	}))
	defer srv.Close()
	t.Setenv("KINESIS_ENDPOINT", srv.URL)
	t.Setenv("SLUICE_REQUIRE_BROKERS", "1")
	k, err := StartKinesis(t.Context(), nil)
	if err != nil || k.Endpoint != srv.URL {
		t.Fatalf("StartKinesis with KINESIS_ENDPOINT=%s = %+v, %v; want that endpoint", srv.URL, k, err)
	}
}

// fakeNpm is an npm that installs a kinesis-local with an empty main.js under --prefix and
// logs "run" into $FAKE_LOG, "overlap" when another run of it is in progress. With
// FAKE_FAIL=1 it is cut short: main.js is written, the rest of the package is not.
const fakeNpm = `#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --prefix) prefix="$2"; shift;; esac; shift; done
mkdir "$FAKE_LOG.running" 2>/dev/null || echo overlap >> "$FAKE_LOG"
sleep 0.3
mkdir -p "$prefix/node_modules/kinesis-local" && echo > "$prefix/node_modules/kinesis-local/main.js"
echo run >> "$FAKE_LOG"
rmdir "$FAKE_LOG.running"
if [ "$FAKE_FAIL" = 1 ]; then echo > "$prefix/node_modules/half-installed.js"; exit 1; fi
`

// TestInstallKinesisMockConcurrentFirstUse: the test binaries that go test runs in parallel
// install kinesis-mock into the same cache on first use: one installs it, the others wait
// for it, instead of two npm installs into one directory at once.
func TestInstallKinesisMockConcurrentFirstUse(t *testing.T) {
	log := fakeTool(t, "npm", fakeNpm)
	var wg sync.WaitGroup
	start := make(chan struct{})
	dirs := make([]string, 3)
	errs := make([]error, len(dirs))
	for i := range dirs {
		wg.Go(func() {
			<-start
			dirs[i], errs[i] = installKinesisMock(t.Context(), io.Discard)
		})
	}
	close(start)
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("caller %d: installKinesisMock = %q, %v; want %q", i, dirs[i], errs[i], dirs[0])
		}
	}
	if got := runs(t, log); len(got) != 1 || got[0] != "run" {
		t.Errorf("npm log %q; want one run: the other callers wait for it", got)
	}
}

// TestInstallKinesisMockCutShortInstallsAgain: an npm install that failed or was cut short
// (a crash, Ctrl-C) after it wrote kinesis-local's main.js is not taken for an install: the
// next call installs again, into a clean directory.
func TestInstallKinesisMockCutShortInstallsAgain(t *testing.T) {
	log := fakeTool(t, "npm", fakeNpm)
	t.Setenv("FAKE_FAIL", "1")
	if dir, err := installKinesisMock(t.Context(), io.Discard); err == nil {
		t.Fatalf("installKinesisMock with npm failing = %q; want an error", dir)
	}
	t.Setenv("FAKE_FAIL", "")
	dir, err := installKinesisMock(t.Context(), io.Discard)
	if err != nil {
		t.Fatalf("installKinesisMock after a failed install: %v", err)
	}
	if got := runs(t, log); len(got) != 2 {
		t.Errorf("npm log %q; want two runs: the failed one and the one after it", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "half-installed.js")); !os.IsNotExist(err) {
		t.Errorf("what the failed install left is still there (stat: %v); want a clean install", err)
	}
}

// A volatile kinesis-mock serves as the default one does but writes nothing to disk: its
// state stays in memory (no file under its data path however long it runs).
func TestKinesisMockVolatile(t *testing.T) {
	t.Setenv("KINESIS_ENDPOINT", "") // a local process, the one to check
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := StartKinesisWith(ctx, os.Stderr, KinesisOptions{Volatile: true})
	if err != nil {
		Unavailable(t, "kinesis-mock", err)
	}
	defer k.Stop()
	if k.Process() == nil {
		t.Fatalf("no local kinesis-mock process to check")
	}
	if err := kinesisPing(ctx, k.Endpoint); err != nil {
		t.Fatalf("ping %s: %v\n%s", k.Endpoint, err, k.LogTail(20))
	}
	// It would have written its state several times by now (every 500 ms).
	time.Sleep(2 * time.Second)
	if entries, err := os.ReadDir(filepath.Join(k.dir, "data")); err == nil && len(entries) > 0 {
		t.Fatalf("a volatile kinesis-mock wrote %d file(s) to %s", len(entries), filepath.Join(k.dir, "data"))
	}
}
