package brokers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// KinesisMockVersion is the kinesis-mock release (npm package kinesis-local) the launcher uses.
const KinesisMockVersion = "0.6.2"

// Kinesis is a running Kinesis-compatible endpoint.
type Kinesis struct {
	// Endpoint is the plain-HTTP endpoint URL, for example "http://127.0.0.1:4568".
	Endpoint string
	// Region is the region the endpoint serves.
	Region string

	proc    *Process
	ctr     *brokerContainer
	ready   func(context.Context) error // a container's: kinesis-mock answers
	env     []string
	node    string
	pkgDir  string
	dir     string
	logPath string
}

// StartKinesis returns a Kinesis endpoint for tests: KINESIS_ENDPOINT when set and it
// answers (with the standard AWS environment for credentials and AWS_REGION); else, where a Docker daemon
// answers, the kinesis-mock container; otherwise kinesis-mock from npm (package kinesis-local)
// installed into the cache on first use and started with node from its package directory on
// free 127.0.0.1 ports. Progress goes to log (may be nil). Stop it with Stop. The
// kinesis-mock it starts writes its state to disk every 500 ms, so that Restart keeps the
// streams (see StartKinesisWith).
func StartKinesis(ctx context.Context, log io.Writer) (*Kinesis, error) {
	return StartKinesisWith(ctx, log, KinesisOptions{})
}

// KinesisOptions configure the kinesis-mock StartKinesisWith starts.
type KinesisOptions struct {
	// Volatile keeps kinesis-mock's state in memory only. kinesis-mock otherwise writes its
	// whole state to disk every 500 ms, which under a steady load of large messages takes
	// most of its CPU (a benchmark's 16 KiB appends ran 2-3 times slower, and slower as data
	// accumulated); but Restart then loses every stream.
	Volatile bool
}

// StartKinesisWith is StartKinesis with opts (which an external endpoint ignores).
func StartKinesisWith(ctx context.Context, log io.Writer, opts KinesisOptions) (*Kinesis, error) {
	if log == nil {
		log = io.Discard
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	if err := shortErr("kinesis-mock"); err != nil {
		return nil, err
	}
	if ep := os.Getenv("KINESIS_ENDPOINT"); ep != "" {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := httpAnswers(wctx, ep); err != nil {
			return nil, fmt.Errorf("brokers: KINESIS_ENDPOINT=%q does not answer: %w", ep, err)
		}
		fmt.Fprintf(log, "brokers: using external Kinesis endpoint %s\n", ep)
		return &Kinesis{Endpoint: ep, Region: region}, nil
	}
	start := time.Now()
	if Mode() == "docker" || DockerAvailable() {
		k, err := startKinesisDocker(ctx, log, region, !opts.Volatile)
		if err == nil {
			fmt.Fprintf(log, "brokers: kinesis-mock container ready at %s in %s\n", k.Endpoint, time.Since(start).Round(time.Millisecond))
		}
		return k, err
	}
	pkgDir, err := installKinesisMock(ctx, log)
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("brokers: kinesis-mock needs Node.js (node) on PATH: %w", err)
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	dir, err := newDataDir("sluice-kinesis-*")
	if err != nil {
		return nil, fmt.Errorf("brokers: kinesis data dir: %w", err)
	}
	k := &Kinesis{
		node:     node,
		pkgDir:   pkgDir,
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		Region:   region,
		dir:      dir,
		logPath:  filepath.Join(dir, "kinesis-mock.log"),
		env: append(os.Environ(),
			"KINESIS_MOCK_PLAIN_PORT="+strconv.Itoa(ports[0]),
			"KINESIS_MOCK_TLS_PORT="+strconv.Itoa(ports[1]),
			"AWS_REGION="+region,
			// Fast stream lifecycle and persistence, so tests and restarts are quick. A
			// deleted stream stays DELETING for a moment, as on Kinesis, so that the backend
			// is tested against it.
			"CREATE_STREAM_DURATION=0ms", "DELETE_STREAM_DURATION=300ms",
			"UPDATE_SHARD_COUNT_DURATION=0ms",
			"SHOULD_PERSIST_DATA="+strconv.FormatBool(!opts.Volatile), "PERSIST_PATH="+filepath.Join(dir, "data"), "PERSIST_INTERVAL=500ms",
			"LOG_LEVEL=WARN",
		),
	}
	if err := os.WriteFile(filepath.Join(dir, "loopback.js"), []byte(kinesisLoopbackJS), 0o644); err != nil {
		_ = removeDataDir(dir)
		return nil, fmt.Errorf("brokers: kinesis-mock: %w", err)
	}
	if err := k.start(ctx); err != nil {
		_ = removeDataDir(dir)
		return nil, err
	}
	fmt.Fprintf(log, "brokers: kinesis-mock %s ready at %s in %s\n", KinesisMockVersion, k.Endpoint, time.Since(start).Round(time.Millisecond))
	return k, nil
}

func (k *Kinesis) start(ctx context.Context) error {
	cmd := exec.Command(k.node, "--require", filepath.Join(k.dir, "loopback.js"), filepath.Join(k.pkgDir, "main.js"))
	cmd.Dir = k.pkgDir
	cmd.Env = k.env
	p, err := StartProcess("kinesis-mock", cmd, k.logPath)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.WaitReady(wctx, 200*time.Millisecond, func(ctx context.Context) error { return kinesisPing(ctx, k.Endpoint) }); err != nil {
		_ = p.Kill()
		return err
	}
	k.proc = p
	return nil
}

// kinesisLoopbackJS is loaded into node before kinesis-mock, which listens on every
// interface and has no setting for it: its servers then listen on 127.0.0.1 only.
const kinesisLoopbackJS = `'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
const wildcard = (h) => h === undefined || h === null || h === '' || h === '0.0.0.0' || h === '::';
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^[0-9]+$/.test(args[0]))) {
    if (typeof args[1] !== 'string') {
      args.splice(1, 0, '127.0.0.1');
    } else if (wildcard(args[1])) {
      args[1] = '127.0.0.1';
    }
  } else if (args[0] !== null && typeof args[0] === 'object' && args[0].port !== undefined && wildcard(args[0].host)) {
    args[0] = Object.assign({}, args[0], { host: '127.0.0.1' });
  }
  return listen.apply(this, args);
};
`

// Process returns the local kinesis-mock process, or nil for an external endpoint or a
// container.
func (k *Kinesis) Process() *Process { return k.proc }

// Restart kills kinesis-mock and starts it again on the same ports with the same data
// directory. Data persisted before the kill (kinesis-mock writes every 500ms) is reloaded. It
// returns once kinesis-mock answers again (process or container).
func (k *Kinesis) Restart(ctx context.Context) error {
	if k.ctr != nil {
		if err := k.ctr.restart(ctx); err != nil {
			return err
		}
		if err := k.ready(ctx); err != nil {
			return fmt.Errorf("brokers: kinesis-mock container not ready after restart: %w", err)
		}
		return nil
	}
	if k.proc == nil {
		return fmt.Errorf("brokers: cannot restart an external Kinesis endpoint")
	}
	if err := k.proc.Kill(); err != nil {
		return err
	}
	return k.start(ctx)
}

// Stop kills kinesis-mock and removes its data directory (or terminates its container). It is
// a no-op for an external endpoint.
func (k *Kinesis) Stop() error {
	if k.ctr != nil {
		return k.ctr.terminate()
	}
	if k.proc == nil {
		return nil
	}
	err := k.proc.Stop(5 * time.Second)
	if rerr := removeDataDir(k.dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// LogTail returns the end of kinesis-mock's log.
func (k *Kinesis) LogTail(n int) string {
	if k.proc == nil {
		return "(external endpoint: no log)"
	}
	return k.proc.LogTail(n)
}

// installKinesisMock installs kinesis-local with npm into the cache (once) and returns the
// package directory.
func installKinesisMock(ctx context.Context, log io.Writer) (string, error) {
	cache, err := CacheDir("kinesis-local-" + KinesisMockVersion)
	if err != nil {
		return "", err
	}
	pkgDir := filepath.Join(cache, "node_modules", "kinesis-local")
	err = fillCacheOnce(ctx, cache, func() error {
		if _, err := exec.LookPath("npm"); err != nil {
			return fmt.Errorf("brokers: installing kinesis-mock needs npm on PATH: %w", err)
		}
		// An install cut short may have left a package half written.
		for _, name := range []string{"node_modules", "package.json", "package-lock.json"} {
			if err := os.RemoveAll(filepath.Join(cache, name)); err != nil {
				return fmt.Errorf("brokers: %w", err)
			}
		}
		start := time.Now()
		fmt.Fprintf(log, "brokers: installing kinesis-local@%s with npm (first use; cached in %s)\n", KinesisMockVersion, cache)
		cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--prefix", cache, "kinesis-local@"+KinesisMockVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("brokers: npm install kinesis-local@%s: %w\n%s", KinesisMockVersion, err, tail(string(out), 20))
		}
		if _, err := os.Stat(filepath.Join(pkgDir, "main.js")); err != nil {
			return fmt.Errorf("brokers: npm install kinesis-local@%s installed no main.js: %w", KinesisMockVersion, err)
		}
		fmt.Fprintf(log, "brokers: installed kinesis-local in %s, %d MiB\n", time.Since(start).Round(time.Second), DirSize(cache)>>20)
		return nil
	})
	if err != nil {
		return "", err
	}
	return pkgDir, nil
}

// httpAnswers returns nil when endpoint answers an HTTP request, whatever the status: an
// external endpoint may reject the signature kinesisPing makes up, as AWS does.
func httpAnswers(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// kinesisPing sends a ListStreams request. kinesis-mock checks that a signature is present but
// not that it is valid, so a syntactically complete header is enough.
func kinesisPing(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader([]byte("{}")))
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "Kinesis_20131202.ListStreams")
	req.Header.Set("X-Amz-Date", now.Format("20060102T150405Z"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/"+now.Format("20060102")+"/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ListStreams: HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}
