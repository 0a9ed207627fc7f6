package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
)

// Size of the chaos run: publishers x messages each, consumers, hub kills.
const (
	chaosPublishers = 3
	chaosMessages   = 300
	chaosConsumers  = 2
	chaosKills      = 2
	chaosStream     = "chaos"
	chaosResetEvery = 100 * time.Millisecond
)

// TestChaos runs publishers and consumers through a fault proxy that resets every
// connection every 100ms, while the hub process (the real binary on a bbolt directory) is
// SIGKILLed and restarted twice on the same port and data. It checks that every confirmed
// message is consumed at least once, in order per publisher, and reports the duplicates.
// The kills are triggered by progress (confirmed messages), not by the clock; the only
// bound is the overall deadline.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run builds the binary and takes tens of seconds; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	bin := chaosBuild(t)
	dir := t.TempDir()
	port := chaosFreePort(t)
	hubAddr := "127.0.0.1:" + port
	hub := chaosStartHub(t, bin, dir, hubAddr)
	t.Cleanup(func() { hub.kill() })

	px, err := faultproxy.New(hubAddr, faultproxy.WithResetEvery(chaosResetEvery))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()

	backoff := client.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2, Jitter: 0.5}
	newClient := func() *client.Client {
		c, err := client.Dial(px.Addr(), client.WithDialTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	// Consumers, each with its own client id and its own view of the per-publisher order.
	// Consumer 0 is replaced after the first kill by a new consumer (a restarted device)
	// with the same client id: it must resume from the saved index without a gap.
	checkers := make([]*chaosChecker, chaosConsumers)
	consumers := make([]*client.Consumer, chaosConsumers)
	var cwg sync.WaitGroup
	cctx, cstop := context.WithCancel(ctx)
	defer cstop()
	var restartedStats client.ConsumerStats
	startConsumer := func(i int) {
		chk := checkers[i]
		cons, err := client.NewConsumer(newClient(), chaosStream, func(_ context.Context, m core.Message) error {
			chk.add(m.Data)
			return nil
		},
			client.WithClientID(fmt.Sprintf("chaos-consumer-%d", i)),
			client.WithPullWait(200*time.Millisecond),
			client.WithConsumerRequestTimeout(time.Second),
			client.WithConsumerBackoff(backoff),
		)
		if err != nil {
			t.Fatal(err)
		}
		consumers[i] = cons
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			if err := cons.Run(cctx); err != nil && cctx.Err() == nil {
				t.Errorf("consumer %d: Run: %v", i, err)
			}
		}()
	}
	for i := range chaosConsumers {
		checkers[i] = newChaosChecker()
		startConsumer(i)
	}

	// Publishers. Publisher i waits before message gate[k] until kill k happened, so that
	// every kill lands while messages are being published; a short pause between messages
	// spreads the run over many proxy resets.
	var confirmed atomic.Int64
	killed := make([]chan struct{}, chaosKills)
	for k := range killed {
		killed[k] = make(chan struct{})
	}
	pubs := make([]*client.Publisher, chaosPublishers)
	var pwg sync.WaitGroup
	for i := range chaosPublishers {
		p, err := client.NewPublisher(ctx, newClient(), chaosStream,
			client.WithWindow(64),
			client.WithMaxBatch(16),
			client.WithRequestTimeout(time.Second),
			client.WithBackoff(backoff),
		)
		if err != nil {
			t.Fatal(err)
		}
		pubs[i] = p
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			var acks []*client.Ack
			for seq := range chaosMessages {
				for k := range chaosKills {
					if seq == chaosMessages*(2*k+3)/(2*chaosKills+2) {
						select {
						case <-killed[k]:
						case <-ctx.Done():
						}
					}
				}
				time.Sleep(2 * time.Millisecond)
				a, err := p.Publish(ctx, chaosPayload(uint32(i), uint32(seq)))
				if err != nil {
					t.Errorf("publisher %d: Publish %d: %v", i, seq, err)
					return
				}
				acks = append(acks, a)
				go func() { // ends when the ack completes (at the latest when p closes)
					<-a.Done()
					confirmed.Add(1)
				}()
			}
			for seq, a := range acks {
				if _, err := a.Wait(ctx); err != nil {
					t.Errorf("publisher %d: message %d not confirmed: %v", i, seq, err)
					return
				}
			}
		}()
	}

	// The killer: SIGKILL and restart the hub after a third and two thirds of the
	// messages are confirmed (progress-driven, so slow machines only run longer).
	total := int64(chaosPublishers * chaosMessages)
	for k := 1; k <= chaosKills; k++ {
		threshold := total * int64(k) / (chaosKills + 1)
		for confirmed.Load() < threshold {
			if ctx.Err() != nil {
				t.Fatalf("deadline before %d confirms (kill %d): %d confirmed; publisher stats %v", threshold, k, confirmed.Load(), chaosPubStats(pubs))
			}
			time.Sleep(5 * time.Millisecond)
		}
		hub.kill()
		t.Logf("kill %d: hub SIGKILLed after %d confirms", k, confirmed.Load())
		hub = chaosStartHub(t, bin, dir, hubAddr)
		if k == 1 {
			old := consumers[0]
			if err := old.Close(); err != nil {
				t.Errorf("consumer 0: Close: %v", err)
			}
			restartedStats = old.Stats()
			pos, _ := old.Position()
			t.Logf("consumer 0 restarted at position %d (%d messages handled)", pos, restartedStats.Handled)
			startConsumer(0)
		}
		close(killed[k-1])
	}
	pwg.Wait()
	if t.Failed() {
		cstop()
		cwg.Wait()
		return
	}
	for i, p := range pubs {
		if err := p.Flush(ctx); err != nil {
			t.Errorf("publisher %d: Flush: %v", i, err)
		}
	}

	// Every confirmed message must reach every consumer.
	for i, chk := range checkers {
		for !chk.complete(chaosPublishers, chaosMessages) {
			if ctx.Err() != nil {
				t.Fatalf("consumer %d did not get every confirmed message before the deadline: %s; stats %+v", i, chk.progress(chaosPublishers), consumers[i].Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cstop()
	cwg.Wait()

	var pubDups uint64
	for i, p := range pubs {
		st := p.Stats()
		pubDups += st.DuplicatesPossible
		t.Logf("publisher %d: %+v", i, st)
		if err := p.Close(); err != nil {
			t.Errorf("publisher %d: Close: %v", i, err)
		}
	}
	for i, chk := range checkers {
		chk.report(t, i)
		t.Logf("consumer %d: %+v", i, consumers[i].Stats())
	}
	t.Logf("consumer 0 before its restart: %+v", restartedStats)
	t.Logf("proxy: %+v", px.Stats())
	t.Logf("chaos: %d publishers x %d messages, %d consumers, %d hub kills, resets every %v: publishers resent %d possibly-duplicate messages",
		chaosPublishers, chaosMessages, chaosConsumers, chaosKills, chaosResetEvery, pubDups)
}

func chaosPayload(pub, seq uint32) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b, pub)
	binary.BigEndian.PutUint32(b[4:], seq)
	return b
}

// chaosChecker checks one consumer's view: for each publisher, the first occurrences of its
// sequence numbers arrive as 0, 1, 2, ...; a number seen before is a duplicate; a number
// ahead of the next expected one is a gap or reorder (an error).
type chaosChecker struct {
	mu     sync.Mutex
	next   map[uint32]uint32
	dups   int
	errors []string
}

func newChaosChecker() *chaosChecker { return &chaosChecker{next: map[uint32]uint32{}} }

func (c *chaosChecker) add(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(b) < 8 {
		c.errors = append(c.errors, fmt.Sprintf("message of %d bytes", len(b)))
		return
	}
	pub, seq := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	switch n := c.next[pub]; {
	case seq == n:
		c.next[pub] = n + 1
	case seq < n:
		c.dups++
	default:
		if len(c.errors) < 20 {
			c.errors = append(c.errors, fmt.Sprintf("publisher %d: seq %d arrived while %d was expected (gap or reorder)", pub, seq, n))
		}
	}
}

func (c *chaosChecker) complete(pubs, msgs int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range pubs {
		if c.next[uint32(p)] < uint32(msgs) {
			return len(c.errors) > 0 // stop waiting once it is wrong anyway
		}
	}
	return true
}

func (c *chaosChecker) progress(pubs int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for p := range pubs {
		parts = append(parts, fmt.Sprintf("publisher %d: %d in order", p, c.next[uint32(p)]))
	}
	return strings.Join(parts, ", ")
}

func (c *chaosChecker) report(t *testing.T, i int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errors {
		t.Errorf("consumer %d: %s", i, e)
	}
	t.Logf("consumer %d: every confirmed message consumed in order per publisher; %d duplicates", i, c.dups)
}

func chaosPubStats(pubs []*client.Publisher) string {
	var b strings.Builder
	for i, p := range pubs {
		if p != nil {
			fmt.Fprintf(&b, "[%d] %+v ", i, p.Stats())
		}
	}
	return b.String()
}

// chaosBuild builds the sluice binary into a temporary directory.
func chaosBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// chaosFreePort returns a loopback port that was free a moment ago.
func chaosFreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// chaosHub is one hub process.
type chaosHub struct {
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
}

// chaosStartHub starts "sluice hub" on addr with its data in dir and waits until it
// listens. A restart right after a kill may find the port briefly taken: it retries.
func chaosStartHub(t *testing.T, bin, dir, addr string) *chaosHub {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := chaosTryStartHub(bin, dir, addr)
		if err == nil {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("start hub: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func chaosTryStartHub(bin, dir, addr string) (*chaosHub, error) {
	cmd := exec.Command(bin, "hub", "-listen", addr, "-backend", "bbolt:"+filepath.Join(dir, "data"), "-log-level", "error", "-max-pull-wait", "1s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &chaosLimitedWriter{w: &stderr, n: 8 << 10}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &chaosHub{cmd: cmd, exited: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() { // owned by h: ends when the process's stdout closes (it exits)
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if !ok && strings.HasPrefix(sc.Text(), "sluice hub listening on") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(h.exited)
	}()
	select {
	case ok := <-ready:
		if ok {
			return h, nil
		}
		<-h.exited
		return nil, fmt.Errorf("hub exited before listening: %s", stderr.String())
	case <-time.After(30 * time.Second):
		h.kill()
		return nil, fmt.Errorf("hub did not listen within 30s: %s", stderr.String())
	}
}

// kill SIGKILLs the hub's process group and waits for it to exit.
func (h *chaosHub) kill() {
	h.once.Do(func() {
		if h.cmd.Process != nil {
			_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-h.exited
	})
}

// chaosLimitedWriter keeps at most n bytes.
type chaosLimitedWriter struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func (l *chaosLimitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}
