package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/tcp"
)

// hubHint ends the message of a hub that cannot be reached.
const hubHint = ` (is "sluice hub" running? set -hub or SLUICE_HUB)`

// requestTimeout bounds each plain request (stream info) of the client commands.
const requestTimeout = 10 * time.Second

// checkHubAddr returns a usage error when addr is not HOST:PORT with a port from 1 to
// 65535 (or a service name).
func checkHubAddr(addr string) error {
	if scheme, rest, ok := strings.Cut(addr, "://"); ok && scheme != "" && !strings.Contains(scheme, ":") {
		// sluice://HOST:PORT is how a hub is named as a backend URL; -hub takes the
		// address alone.
		return usageErr("-hub %q: want HOST:PORT without a scheme, e.g. -hub %s", addr, strings.TrimSuffix(rest, "/"))
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			return usageErr("-hub %q: missing port; want HOST:PORT, e.g. %s", addr, net.JoinHostPort(addr, "4000"))
		}
		return usageErr("-hub %q: want HOST:PORT, e.g. 127.0.0.1:4000: %v", addr, err)
	}
	if host == "" || port == "" {
		return usageErr("-hub %q: want HOST:PORT, e.g. 127.0.0.1:4000", addr)
	}
	// A port no hub can listen on is a typo, not a hub to retry until -timeout (push) or
	// forever (tail).
	if p, err := net.LookupPort("tcp", port); err != nil || p == 0 {
		return usageErr("-hub %q: port %s: want 1 to 65535, e.g. %s", addr, port, net.JoinHostPort(host, "4000"))
	}
	return nil
}

// hubError is a failure to talk to the hub at addr, worded for the person at the terminal:
// a network failure names its cause ("connection refused") and what to check, without the
// layers of the library's error chain. It unwraps to the library's error.
type hubError struct {
	addr  string
	cause error
}

func (e *hubError) Error() string {
	_, msg := e.describe()
	return msg
}

// describe returns what kind of failure e is (a hubWatch warns once per kind) and its
// message.
func (e *hubError) describe() (kind, msg string) {
	var dns *net.DNSError
	var op *net.OpError
	var httpServer *tcp.HTTPServerError
	switch {
	case errors.As(e.cause, &dns):
		return "resolve", fmt.Sprintf("cannot reach hub %s: cannot resolve %q: %s%s", e.addr, dns.Name, dns.Err, hubHint)
	case errors.Is(e.cause, client.ErrClosedBeforeAnswer):
		// Before the network error it may wrap: a dial reset by a peer that accepted the
		// connection is this failure too (see client.Dial).
		return "closed", fmt.Sprintf("hub %s closed the connection before answering: it may be at its connection limit (sluice hub -max-connections), or not be a sluice hub (an HTTP server, such as a hub's -metrics-addr, closes it too)", e.addr)
	case errors.As(e.cause, &op):
		cause := op.Err
		var se *os.SyscallError
		if errors.As(cause, &se) {
			cause = se.Err
		}
		return "reach", fmt.Sprintf("cannot reach hub %s: %v%s", e.addr, cause, hubHint)
	case errors.Is(e.cause, client.ErrRejected):
		return "rejected", fmt.Sprintf("hub %s refused the request: %v", e.addr, e.cause)
	case errors.As(e.cause, &httpServer):
		return "http", fmt.Sprintf("%s is not a sluice hub: it answered with HTTP (%q); check -hub: it takes the address a hub listens on (sluice hub -listen), not its -metrics-addr", e.addr, httpServer.Status)
	case errors.Is(e.cause, core.ErrUnavailable):
		return "lost", fmt.Sprintf("lost the connection to hub %s", e.addr)
	case errors.Is(e.cause, client.ErrTimeout):
		return "timeout", fmt.Sprintf("hub %s does not answer: %v", e.addr, e.cause)
	}
	return "other", fmt.Sprintf("hub %s: %v", e.addr, e.cause)
}

func (e *hubError) Unwrap() error { return e.cause }

// notHub reports whether err says that the hub address is an HTTP server's: a wrong
// address, which push and tail do not retry.
func notHub(err error) bool { return errors.Is(err, tcp.ErrHTTPServer) }

// streamPartitions asks the hub whether stream exists and how many partitions it has,
// without creating it.
func streamPartitions(ctx context.Context, c *client.Client, stream string) (int, bool, error) {
	conn, err := c.Open(ctx, requestTimeout)
	if err != nil {
		return 0, false, err
	}
	defer conn.Close()
	return conn.StreamInfo(ctx, stream)
}

// errNoStream is the error of pull and tail for a stream that does not exist, read at
// partition.
func errNoStream(stream, addr string, partition int) error {
	if partition > 0 {
		return fmt.Errorf("stream %q does not exist on hub %s (create it with: sluice create -partitions %d %s)", stream, addr, partition+1, stream)
	}
	return fmt.Errorf("stream %q does not exist on hub %s (create it with: sluice create %s)", stream, addr, stream)
}

// errNoPartition is the error of pull for a -partition the stream does not have.
func errNoPartition(stream, addr string, partition, n int) error {
	return fmt.Errorf("-partition %d: stream %q has %d partition(s) on hub %s: use -partition 0 to %d", partition, stream, n, addr, n-1)
}

// partitionFlag declares the -partition flag of push, pull and tail.
func partitionFlag(fs *flag.FlagSet) *int {
	return fs.Int("partition", 0, "the stream's partition, from 0 (a partition above 0 needs a stream created with more partitions: sluice create -partitions N)")
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkPartition checks the value of -partition.
func checkPartition(p int) error {
	if p < 0 || p >= core.MaxPartitions {
		return usageErr("-partition %d: want 0 to %d", p, core.MaxPartitions-1)
	}
	return nil
}

// lastError holds the latest error reported to it.
type lastError struct {
	mu  sync.Mutex
	err error
}

func (l *lastError) set(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

func (l *lastError) get() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// hubWatch tells the user of a long-running command (tail, push) that the hub cannot be
// reached: one warning per kind of failure in a failure streak (a hub that refused
// connections and now accepts them but does not answer is named again), while the library
// retries, and one line when the hub answers again. It also says when a connected hub has
// answered nothing for silenceNotice (see noticeSilence).
type hubWatch struct {
	cmd, addr string
	w         io.Writer
	retrying  string // ends the warning (default "retrying")

	mu      sync.Mutex
	warned  map[string]bool // the kinds of failure warned about in this streak; none: no streak
	noticed time.Time       // when the silence that was reported began; zero: none reported
}

// fail reports err unless a failure of its kind was reported in the same streak.
func (h *hubWatch) fail(err error) {
	herr := &hubError{h.addr, err}
	kind, _ := herr.describe()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.warned[kind] {
		return
	}
	if h.warned == nil {
		h.warned = make(map[string]bool)
	}
	h.warned[kind] = true
	retrying := h.retrying
	if retrying == "" {
		retrying = "retrying"
	}
	fmt.Fprintf(h.w, "sluice %s: %s; %s\n", h.cmd, cliMessage(herr), retrying)
}

// failingLocked reports whether a failure streak's warning stands.
func (h *hubWatch) failingLocked() bool { return len(h.warned) > 0 }

// ok ends a failure streak or a reported silence, saying so when there was one.
func (h *hubWatch) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.failingLocked():
		fmt.Fprintf(h.w, "sluice %s: connected to hub %s\n", h.cmd, h.addr)
	case !h.noticed.IsZero():
		fmt.Fprintf(h.w, "sluice %s: hub %s answered after %v\n", h.cmd, h.addr, time.Since(h.noticed).Round(100*time.Millisecond))
	}
	h.warned, h.noticed = nil, time.Time{}
}

// noticeSilence arranges for one line to be printed when silenceNotice has passed since
// since and the command has not cancelled it meanwhile, which it does when the hub answers:
// a port that accepts connections and never answers (no sluice hub's), or a hub that stopped
// answering, would otherwise leave push silent until its -timeout and tail until its
// request times out. The line is "sluice CMD: " and what line returns; nothing is printed
// while a failure streak's warning or an earlier notice stands (until ok). The returned
// cancel may be called more than once; once it has returned, nothing is printed.
func (h *hubWatch) noticeSilence(since time.Time, line func() string) (cancel func()) {
	cancelled := false // guarded by h.mu
	t := time.AfterFunc(time.Until(since.Add(silenceNotice)), func() {
		text := line() // outside h.mu: it may ask the publisher, which reports to h
		h.mu.Lock()
		defer h.mu.Unlock()
		if !cancelled {
			h.noticeLocked(since, text)
		}
	})
	return func() {
		t.Stop()
		h.mu.Lock()
		cancelled = true
		h.mu.Unlock()
	}
}

// noticeLocked prints "sluice CMD: " and text, a silence that began at since, unless a
// failure streak's warning or an earlier notice stands (until ok).
func (h *hubWatch) noticeLocked(since time.Time, text string) {
	if h.failingLocked() || !h.noticed.IsZero() {
		return
	}
	h.noticed = since
	fmt.Fprintf(h.w, "sluice %s: %s\n", h.cmd, text)
}

// answerWatch names a hub that stops answering in the middle of a long-running command: a
// command that is owed an answer (tail, whose long-poll pulls the hub answers within the
// pull wait, with or without messages) and has had none for limit prints line, through its
// hubWatch, rather than stay silent until the request times out; the hub's next answer
// prints that it answered (hubWatch.ok). The time the command spends on its own work
// (tail blocked writing to a slow standard output, when no pull is outstanding) is no
// silence of the hub: it counts from the end of that work. One timer looks at the time of
// the last answer at most once per limit, however many answers arrive.
type answerWatch struct {
	h     *hubWatch
	limit time.Duration
	line  func() string

	mu      sync.Mutex
	last    time.Time   // the last answer, or the end of the command's own work after it
	busy    bool        // the command is doing its own work (between begin and end)
	stopped bool        // stop was called: nothing more is printed
	t       *time.Timer // fires when limit may have passed since last
}

// watchAnswers starts an answerWatch: the time without an answer counts from now.
func (h *hubWatch) watchAnswers(limit time.Duration, line func() string) *answerWatch {
	a := &answerWatch{h: h, limit: limit, line: line, last: time.Now()}
	a.mu.Lock() // the timer's function must not see a nil a.t
	a.t = time.AfterFunc(limit, a.check)
	a.mu.Unlock()
	return a
}

// answered records an answer of the hub: the silence, if any, ended.
func (a *answerWatch) answered() {
	a.mu.Lock()
	a.last = time.Now()
	a.mu.Unlock()
	a.h.ok()
}

// begin and end bracket the command's own work, which does not count as the hub's silence.
func (a *answerWatch) begin() { a.setBusy(true) }

func (a *answerWatch) end() { a.setBusy(false) }

func (a *answerWatch) setBusy(busy bool) {
	a.mu.Lock()
	a.busy = busy
	a.last = time.Now()
	a.mu.Unlock()
}

// stop ends the watch; once it has returned, nothing is printed.
func (a *answerWatch) stop() {
	a.mu.Lock()
	a.stopped = true
	a.t.Stop()
	a.mu.Unlock()
}

// check runs when the timer fires: it reports a silence of limit since last (once: the
// hubWatch prints no second notice until the hub answers), and sets the timer for when
// there may be one.
func (a *answerWatch) check() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	wait := a.limit - time.Since(a.last)
	if wait <= 0 && !a.busy {
		a.h.mu.Lock()
		a.h.noticeLocked(a.last, a.line())
		a.h.mu.Unlock()
	}
	if wait <= 0 {
		wait = a.limit
	}
	a.t.Reset(wait)
}

// checkBackendURL returns a usage error when raw is not a URL with a registered scheme,
// before anything is opened or written.
// The URL is shown without its password.
func checkBackendURL(raw string) error {
	u, err := url.Parse(raw)
	shown := core.RedactURL(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL it quotes
		}
		return usageErr("backend URL %q: %v", shown, err)
	}
	scheme := u.Scheme
	if scheme == "" {
		return usageErr("backend URL %q has no scheme; use one of %s", shown, strings.Join(core.Schemes(), ", "))
	}
	for _, s := range core.Schemes() {
		if s == scheme {
			return nil
		}
	}
	return usageErr("unknown backend %q in %q; use one of %s", scheme, shown, strings.Join(core.Schemes(), ", "))
}

// silenceNotice is how long push waits for a confirm, and tail for the hub's first answer,
// before they say that the hub has answered nothing (a variable for tests).
var silenceNotice = 5 * time.Second

// tailPullWait is how long the hub holds tail's pulls that find no new message (a variable
// for tests): a hub that has not answered one within tailPullWait + silenceNotice is named.
var tailPullWait = client.DefaultPullWait
