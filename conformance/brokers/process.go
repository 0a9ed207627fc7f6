package brokers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a broker running as a local process group. Its output goes to a log file.
type Process struct {
	Name    string
	LogPath string

	cmd    *exec.Cmd
	done   chan struct{}
	err    error // exit status, valid after done is closed
	stopMu sync.Mutex
}

// StartProcess starts cmd in its own process group with stdout and stderr appended to
// logPath. The process group is killed when Stop or Kill is called, when the current
// process receives SIGINT or SIGTERM, and (Linux) when the current process dies.
func StartProcess(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("%s: log directory: %w", name, err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, cmd.Path, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	track(p)
	go func() { // owned by p: ends when the process exits
		p.err = cmd.Wait()
		logf.Close()
		untrack(p)
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Pid returns the process id (also the process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM to the process group, waits up to grace, then sends SIGKILL. It
// returns once the process has exited. Calling Stop on an exited process is a no-op.
func (p *Process) Stop(grace time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	return p.Kill()
}

// Kill sends SIGKILL to the whole process group and waits for the process to exit.
func (p *Process) Kill() error {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: process %d did not exit 30s after SIGKILL", p.Name, p.Pid())
	}
}

// LogTail returns the last n lines of the process log, for error messages.
func (p *Process) LogTail(n int) string { return LogTail(p.LogPath, n) }

// LogTail returns the last n lines of the file at path (or a note that it cannot be read).
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitReady calls check every interval until it returns nil, the process exits, or ctx
// ends. Errors carry the last check error and the tail of the log.
func (p *Process) WaitReady(ctx context.Context, interval time.Duration, check func(context.Context) error) error {
	last, err := pollReady(ctx, interval, p.done, check)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("%s exited before it was ready (%v); last check: %v\nlog tail (%s):\n%s", p.Name, p.err, last, p.LogPath, p.LogTail(40))
	default:
		return fmt.Errorf("%s not ready: %w; last check: %v\nlog tail (%s):\n%s", p.Name, err, last, p.LogPath, p.LogTail(40))
	}
}

// errExited: the process exited while pollReady waited for it.
var errExited = errors.New("exited")

// pollReady calls check, each call bounded to 10 s, every interval until it returns nil,
// exited is closed (errExited; nil never is) or ctx ends (ctx.Err()). It returns the last
// check's error with the reason it stopped.
func pollReady(ctx context.Context, interval time.Duration, exited <-chan struct{}, check func(context.Context) error) (last, err error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil, nil
		}
		select {
		case <-exited:
			return last, errExited
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePorts returns n distinct free ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Required reports whether brokers must start (CI=true or SLUICE_REQUIRE_BROKERS=1): then a
// broker that cannot start fails the test instead of skipping it.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("SLUICE_REQUIRE_BROKERS") == "1"
}

// Mode returns SLUICE_BROKERS: "process", "docker" or "" (detect).
func Mode() string { return strings.ToLower(os.Getenv("SLUICE_BROKERS")) }

// DockerAvailable reports whether a Docker daemon answers: a connection to DOCKER_HOST
// (unix:// or tcp://; another scheme, such as ssh://, is assumed to answer) or, without it,
// to /var/run/docker.sock.
func DockerAvailable() bool {
	if Mode() == "process" {
		return false
	}
	network, addr := "unix", "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		u, err := url.Parse(h)
		if err != nil {
			return false
		}
		switch u.Scheme {
		case "unix":
			addr = u.Path
		case "tcp":
			network, addr = "tcp", u.Host
		default:
			return true
		}
	}
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// DirSize returns the total size in bytes of the files under dir.
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// live holds the broker processes this process started and has not stopped, and the
// temporary data directories of its launchers that are not removed yet: on SIGINT or
// SIGTERM of the current process, KillAll kills the ones and removes the others.
var live = struct {
	sync.Mutex
	m    map[*Process]struct{}
	dirs map[string]struct{}
	once sync.Once
}{m: map[*Process]struct{}{}, dirs: map[string]struct{}{}}

func track(p *Process) {
	live.Lock()
	live.m[p] = struct{}{}
	live.Unlock()
	onSignalKillAll()
}

// onSignalKillAll makes SIGINT and SIGTERM of the current process call KillAll, then exit
// as the signal would have.
func onSignalKillAll() {
	live.once.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() { // lives as long as the process: kills brokers, then exits like the signal would
			sig := <-ch
			KillAll()
			signal.Stop(ch)
			if s, ok := sig.(syscall.Signal); ok {
				os.Exit(128 + int(s))
			}
			os.Exit(1)
		}()
	})
}

func untrack(p *Process) {
	live.Lock()
	delete(live.m, p)
	live.Unlock()
}

// newDataDir creates a launcher's temporary data directory (os.MkdirTemp with pattern),
// which removeDataDir removes, or KillAll if the current process is interrupted first.
func newDataDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	live.Lock()
	live.dirs[dir] = struct{}{}
	live.Unlock()
	onSignalKillAll()
	return dir, nil
}

// removeDataDir removes a directory newDataDir created.
func removeDataDir(dir string) error {
	live.Lock()
	delete(live.dirs, dir)
	live.Unlock()
	return os.RemoveAll(dir)
}

// KillAll kills every broker process group this process started and has not yet stopped,
// waits (up to 10 s) for them to exit, and removes the temporary data directories of the
// brokers not stopped. The launchers call it when the current process receives SIGINT or
// SIGTERM; a program that may end without stopping its brokers calls it before it exits.
func KillAll() {
	live.Lock()
	ps := make([]*Process, 0, len(live.m))
	for p := range live.m {
		ps = append(ps, p)
	}
	dirs := make([]string, 0, len(live.dirs))
	for d := range live.dirs {
		dirs = append(dirs, d)
	}
	clear(live.dirs)
	live.Unlock()
	for _, p := range ps {
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
	deadline := time.After(10 * time.Second)
	for _, p := range ps {
		select {
		case <-p.Done():
		case <-deadline:
		}
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}

// ErrNoJava is returned when no java binary can be found.
var ErrNoJava = errors.New("brokers: no java found; install a JDK 17+ or set JAVA_HOME")

// stopLocal stops a launcher's broker process (SIGTERM, then SIGKILL after 15 s), reports the
// disk its data directory used (with note, e.g. its memory) and removes that directory. A nil
// proc is a no-op.
func stopLocal(name string, proc *Process, dataDir string, log io.Writer, note string) error {
	if proc == nil {
		return nil
	}
	err := proc.Stop(15 * time.Second)
	fmt.Fprintf(log, "%s: stopped%s; data directory used %.1f MiB\n", name, note, float64(DirSize(dataDir))/(1<<20))
	if rerr := removeDataDir(dataDir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}
