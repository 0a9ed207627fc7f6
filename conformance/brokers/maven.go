package brokers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// MavenArtifact is group:artifact:version of a Maven Central artifact.
type MavenArtifact struct{ Group, Artifact, Version string }

func (a MavenArtifact) String() string { return a.Group + ":" + a.Artifact + ":" + a.Version }

// MavenClasspath resolves artifacts and all their runtime dependencies from Maven Central
// with `mvn dependency:copy-dependencies` into a cache directory (once; later calls reuse it)
// and returns the jar paths. Progress and timing go to log (may be nil). excludes are
// "group:artifact" pairs left out of the resolution.
func MavenClasspath(ctx context.Context, name string, artifacts []MavenArtifact, excludes []string, log io.Writer) ([]string, error) {
	return MavenClasspathBOM(ctx, name, nil, artifacts, excludes, log)
}

// MavenClasspathBOM is [MavenClasspath] with boms imported into the dependency management
// (Maven's scope "import"), so that transitive dependencies get the versions a project was
// built and released with rather than Maven's nearest-wins pick. Pulsar needs this: its
// parent POM pins the versions its distribution ships.
func MavenClasspathBOM(ctx context.Context, name string, boms, artifacts []MavenArtifact, excludes []string, log io.Writer) ([]string, error) {
	if log == nil {
		log = io.Discard
	}
	h := sha256.New()
	for _, b := range boms {
		fmt.Fprintln(h, "bom:"+b.String())
	}
	for _, a := range artifacts {
		fmt.Fprintln(h, a.String())
	}
	for _, e := range excludes {
		fmt.Fprintln(h, "-"+e)
	}
	dir, err := CacheDir(filepath.Join("maven", name+"-"+hex.EncodeToString(h.Sum(nil))[:12]))
	if err != nil {
		return nil, err
	}
	libDir := filepath.Join(dir, "lib")
	err = fillCacheOnce(ctx, dir, func() error {
		if _, err := exec.LookPath("mvn"); err != nil {
			return fmt.Errorf("brokers: %s needs Maven (mvn) to download its jars: %w", name, err)
		}
		// A resolution cut short may have left a jar half written, which mvn would keep.
		if err := os.RemoveAll(libDir); err != nil {
			return fmt.Errorf("brokers: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pom.xml"), []byte(pom(name, boms, artifacts, excludes)), 0o644); err != nil {
			return fmt.Errorf("brokers: write pom: %w", err)
		}
		start := time.Now()
		fmt.Fprintf(log, "brokers: resolving %s from Maven Central (first use; cached in %s)\n", name, dir)
		cmd := exec.CommandContext(ctx, "mvn", "-B", "-q", "-f", filepath.Join(dir, "pom.xml"),
			"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+libDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("brokers: mvn resolve %s: %w\n%s", name, err, tail(string(out), 30))
		}
		fmt.Fprintf(log, "brokers: resolved %s in %s, %d MiB\n", name, time.Since(start).Round(time.Second), DirSize(libDir)>>20)
		return nil
	})
	if err != nil {
		return nil, err
	}
	jars, err := filepath.Glob(filepath.Join(libDir, "*.jar"))
	if err != nil || len(jars) == 0 {
		return nil, fmt.Errorf("brokers: no jars in %s (delete %s to resolve again)", libDir, dir)
	}
	sort.Strings(jars)
	return jars, nil
}

func pom(name string, boms, artifacts []MavenArtifact, excludes []string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.brokers</groupId>
  <artifactId>` + name + `</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
`)
	if len(boms) > 0 {
		b.WriteString("  <dependencyManagement><dependencies>\n")
		for _, m := range boms {
			fmt.Fprintf(&b, "    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version><type>pom</type><scope>import</scope></dependency>\n", m.Group, m.Artifact, m.Version)
		}
		b.WriteString("  </dependencies></dependencyManagement>\n")
	}
	b.WriteString("  <dependencies>\n")
	for _, a := range artifacts {
		fmt.Fprintf(&b, "    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version>\n", a.Group, a.Artifact, a.Version)
		if len(excludes) > 0 {
			b.WriteString("      <exclusions>\n")
			for _, e := range excludes {
				g, art, _ := strings.Cut(e, ":")
				fmt.Fprintf(&b, "        <exclusion><groupId>%s</groupId><artifactId>%s</artifactId></exclusion>\n", g, art)
			}
			b.WriteString("      </exclusions>\n")
		}
		b.WriteString("    </dependency>\n")
	}
	b.WriteString("  </dependencies>\n</project>\n")
	return b.String()
}

// Java returns the java binary to run: $JAVA_HOME/bin/java, else java on PATH.
func Java() (string, error) {
	if jh := os.Getenv("JAVA_HOME"); jh != "" {
		p := filepath.Join(jh, "bin", "java")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", ErrNoJava
	}
	return p, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
