package brokers

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeMvn is an mvn that copies one jar into -DoutputDirectory and logs "run" into
// $FAKE_LOG, "overlap" when another run of it is in progress. With FAKE_FAIL=1 it is cut
// short: it leaves a half-written jar and fails.
const fakeMvn = `#!/bin/sh
for a; do case "$a" in -DoutputDirectory=*) out="${a#-DoutputDirectory=}";; esac; done
mkdir "$FAKE_LOG.running" 2>/dev/null || echo overlap >> "$FAKE_LOG"
sleep 0.3
mkdir -p "$out"
echo run >> "$FAKE_LOG"
rmdir "$FAKE_LOG.running"
if [ "$FAKE_FAIL" = 1 ]; then echo ha > "$out/half.jar"; exit 1; fi
echo jar > "$out/a.jar"
`

// fakeTool puts an executable name running script first on PATH and an empty cache in
// SLUICE_CACHE for the rest of the test, and returns the file the script logs its runs to
// ($FAKE_LOG).
func fakeTool(t *testing.T, name, script string) (log string) {
	t.Helper()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	log = filepath.Join(t.TempDir(), name+".log")
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_LOG", log)
	t.Setenv("FAKE_FAIL", "")
	t.Setenv("SLUICE_CACHE", t.TempDir())
	return log
}

// runs returns the runs a fake tool logged ("run", or "overlap" for one that started while
// another ran).
func runs(t *testing.T, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// TestMavenClasspathConcurrentFirstUse: go test runs the packages that start Kafka (or
// Pulsar) in parallel processes, which on first use resolve the same jars into the same
// cache directory. One resolves them, the others wait for it and use its jars: two mvn
// runs copying into one directory at once left jars half written for the other's broker.
func TestMavenClasspathConcurrentFirstUse(t *testing.T) {
	log := fakeTool(t, "mvn", fakeMvn)
	arts := []MavenArtifact{{"org.example", "broker", "1.0"}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	jars := make([][]string, 3)
	errs := make([]error, len(jars))
	for i := range jars {
		wg.Go(func() {
			<-start
			jars[i], errs[i] = MavenClasspath(t.Context(), "example", arts, nil, nil)
		})
	}
	close(start)
	wg.Wait()
	for i := range jars {
		if errs[i] != nil || len(jars[i]) != 1 || filepath.Base(jars[i][0]) != "a.jar" {
			t.Errorf("caller %d: MavenClasspath = %v, %v; want the one jar", i, jars[i], errs[i])
		}
	}
	if got := runs(t, log); len(got) != 1 || got[0] != "run" {
		t.Errorf("mvn log %q; want one run: the other callers wait for it and use its jars", got)
	}
}

// TestMavenClasspathCutShortResolvesAgain: a resolution that failed or was cut short (a
// crash, Ctrl-C) is made again by the next call, and what it left (a half-written jar,
// which mvn would keep rather than copy again) is not on the class path.
func TestMavenClasspathCutShortResolvesAgain(t *testing.T) {
	log := fakeTool(t, "mvn", fakeMvn)
	arts := []MavenArtifact{{"org.example", "broker", "1.0"}}
	t.Setenv("FAKE_FAIL", "1")
	if jars, err := MavenClasspath(t.Context(), "example", arts, nil, nil); err == nil {
		t.Fatalf("MavenClasspath with mvn failing = %v; want an error", jars)
	}
	t.Setenv("FAKE_FAIL", "")
	jars, err := MavenClasspath(t.Context(), "example", arts, nil, nil)
	if err != nil || len(jars) != 1 || filepath.Base(jars[0]) != "a.jar" {
		t.Errorf("MavenClasspath after a failed resolution = %v, %v; want the one jar, without the failed run's", jars, err)
	}
	if got := runs(t, log); len(got) != 2 {
		t.Errorf("mvn log %q; want two runs: the failed one and the one after it", got)
	}
}
