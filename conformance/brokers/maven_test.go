package brokers

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeMvn is an mvn that copies one jar into -DoutputDirectory and logs "run" into
// $FAKE_MVN_LOG, "overlap" when another run of it is in progress.
const fakeMvn = `#!/bin/sh
for a; do case "$a" in -DoutputDirectory=*) out="${a#-DoutputDirectory=}";; esac; done
mkdir "$FAKE_MVN_LOG.running" 2>/dev/null || echo overlap >> "$FAKE_MVN_LOG"
sleep 0.3
mkdir -p "$out" && echo jar > "$out/a.jar"
echo run >> "$FAKE_MVN_LOG"
rmdir "$FAKE_MVN_LOG.running"
`

// TestMavenClasspathConcurrentFirstUse: go test runs the packages that start Kafka (or
// Pulsar) in parallel processes, which on first use resolve the same jars into the same
// cache directory. One resolves them, the others wait for it and use its jars: two mvn
// runs copying into one directory at once left jars half written for the other's broker.
func TestMavenClasspathConcurrentFirstUse(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "mvn"), []byte(fakeMvn), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "mvn.log")
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_MVN_LOG", log)
	t.Setenv("SLUICE_CACHE", t.TempDir())
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
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(data)); len(got) != 1 || got[0] != "run" {
		t.Errorf("mvn log %q; want one run: the other callers wait for it and use its jars", got)
	}
}
