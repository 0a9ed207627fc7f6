package brokers

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"time"
)

// launched is what Kafka and Pulsar keep of a broker this package started: the local
// process (with the command that starts it again, its data directory and log) or the
// container, and the Restart and Stop that go with them. mu serializes Restart and Stop.
type launched struct {
	name string // "kafka" or "pulsar": the prefix of messages
	logw io.Writer
	mu   sync.Mutex

	// kind "process"
	proc    *Process
	newCmd  func() *exec.Cmd
	dataDir string // removed by Stop
	logPath string

	// kind "docker"
	ctr *brokerContainer
}

// startLocal starts the broker's process from newCmd and waits, up to timeout and checking
// every interval, until ready answers.
func (l *launched) startLocal(ctx context.Context, timeout, interval time.Duration, ready func(context.Context) error) error {
	p, err := StartProcess(l.name, l.newCmd(), l.logPath)
	if err != nil {
		return err
	}
	l.proc = p
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return p.WaitReady(ctx, interval, ready)
}

// restart kills the broker abruptly and starts it again and returns how long that took: a
// process with startProc (which waits until it is ready), a container by restarting it and
// waiting for ready. An external cluster (addr) cannot be restarted.
func (l *launched) restart(ctx context.Context, kind, addr string, startProc, ready func(context.Context) error) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := time.Now()
	switch kind {
	case "process":
		if err := l.proc.Kill(); err != nil {
			return 0, err
		}
		if err := startProc(ctx); err != nil {
			return 0, err
		}
	case "docker":
		if err := l.ctr.restart(ctx); err != nil {
			return 0, err
		}
		if err := ready(ctx); err != nil {
			return 0, fmt.Errorf("%s: container not ready after restart: %w", l.name, err)
		}
	default:
		return 0, fmt.Errorf("%s: cannot restart an external cluster (%s)", l.name, addr)
	}
	return time.Since(start), nil
}

// stop shuts the broker down: a process with stopLocal (note, if not nil, is called while it
// still runs and its text ends the report), a container by terminating it. Stopping an
// external cluster, or stopping twice, does nothing.
func (l *launched) stop(kind string, note func() string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch kind {
	case "process":
		if l.proc == nil {
			return nil
		}
		text := ""
		if note != nil {
			text = note()
		}
		err := stopLocal(l.name, l.proc, l.dataDir, l.logw, text)
		l.proc = nil
		return err
	case "docker":
		if l.ctr == nil {
			return nil
		}
		err := l.ctr.terminate()
		l.ctr = nil
		return err
	}
	return nil
}

// LogTail returns the last n lines of the broker's log, or "" when it has none here.
func (l *launched) LogTail(n int) string {
	if l.logPath == "" {
		return ""
	}
	return LogTail(l.logPath, n)
}
