package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// The mixed chaos run: publishers with outboxes that restart (Close with a short close
// timeout, a new Publisher on the same outbox, sometimes a new Client), consumers that
// restart (Close, a new Consumer with the same client id), a hub restarted on the same
// bbolt file (graceful Shutdown, a Shutdown whose deadline expires, or Close) and a fault
// proxy that resets connections, pauses either direction and delays chunks, all at random
// moments from one seed (hubtest.ChaosSeeds: SLUICE_CHAOS_SEED, SLUICE_CHAOS_RUNS).
// SLUICE_CHAOS_HUBOPTS=1 also draws the hub's limits (tiny batches, queues, pull limits, a
// worker idle timeout of milliseconds) at random on each start.

var quietChaosLogger = slog.New(slog.DiscardHandler)

func chaosMixPayload(pub, seq uint32, pad int) []byte {
	b := make([]byte, 8+pad)
	binary.BigEndian.PutUint32(b, pub)
	binary.BigEndian.PutUint32(b[4:], seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(seq + uint32(i))
	}
	return b
}

// chaosMixRecord is what one consumer instance handled.
type chaosMixRecord struct {
	instance int
	index    uint64
	pub, seq uint32
}

func TestChaosMix(t *testing.T) {
	for _, seed := range hubtest.ChaosSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { chaosMixRun(t, seed) })
		if t.Failed() {
			return
		}
	}
}

func chaosMixRun(t *testing.T, seed uint64) {
	t.Logf("repro: SLUICE_CHAOS_SEED=%d SLUICE_CHAOS_RUNS=1 go test -race -run 'TestChaosMix' ./core/client", seed)
	rnd := hubtest.LockedRand(seed, 0x5eed)
	perPub := 300
	if v, err := strconv.Atoi(os.Getenv("SLUICE_CHAOS_MSGS")); err == nil {
		perPub = v
	}
	const (
		pubs     = 3
		consIDs  = 2
		stream   = "chaosmix"
		deadline = 180 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	baseline := runtime.NumGoroutine()
	dir := t.TempDir()

	randomOpts := os.Getenv("SLUICE_CHAOS_HUBOPTS") != ""
	hb := hubtest.NewRestartable(filepath.Join(dir, "hub.db"), func() []hub.Option {
		opts := []hub.Option{hub.WithLogger(quietChaosLogger), hub.WithMaxPullWait(time.Second)}
		if randomOpts {
			opts = append(opts,
				hub.WithWorkerIdleTimeout(time.Duration(1+rnd(30))*time.Millisecond),
				hub.WithMaxBatch(1+rnd(20), 1+rnd(64<<10)),
				hub.WithQueueLen(1+rnd(8)),
				hub.WithMaxAppendsInFlight(1+rnd(4)),
				hub.WithMaxPullLimit(1+rnd(50)),
				hub.WithMaxPullBytes(1+rnd(32<<10)),
				hub.WithMaxParkedPulls(1+rnd(4)),
				hub.WithMaxConcurrentFetches(1+rnd(3)),
			)
		}
		return opts
	})
	if err := hb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.New(hb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	backoff := client.Backoff{Min: 5 * time.Millisecond, Max: 100 * time.Millisecond, Factor: 2, Jitter: 0.5}
	dialClient := func() *client.Client {
		c, err := client.Dial(px.Addr(), client.WithDialTimeout(time.Second), client.WithLogger(quietChaosLogger), client.WithIdleTimeout(3*time.Second))
		if err != nil {
			t.Error(err)
			return nil
		}
		return c
	}

	// Faults: proxy and hub, until faultsStop.
	faultCtx, faultsStop := context.WithCancel(ctx)
	var fwg sync.WaitGroup
	var hubRestarts, proxyFaults int
	fwg.Add(2)
	go func() { // proxy faults
		defer fwg.Done()
		proxyFaults = hubtest.ProxyFaults(faultCtx, px, rnd, 60*time.Millisecond, 20*time.Millisecond)
	}()
	go func() { // hub restarts
		defer fwg.Done()
		var err error
		if hubRestarts, err = hb.Restarts(faultCtx, rnd, 100*time.Millisecond, 700*time.Millisecond); err != nil {
			t.Error(err)
		}
	}()

	// Consumers.
	type consProc struct {
		mu       sync.Mutex
		c        *client.Client
		cons     *client.Consumer
		done     chan struct{}
		instance int
		recs     []chaosMixRecord
		restarts int
	}
	cps := make([]*consProc, consIDs)
	consCtx, consStop := context.WithCancel(ctx)
	startCons := func(i int, cp *consProc, newClient bool) {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		if cp.c == nil || newClient {
			if cp.c != nil {
				_ = cp.c.Close()
			}
			cp.c = dialClient()
		}
		cp.instance++
		inst := cp.instance
		cons, err := client.NewConsumer(cp.c, stream, func(_ context.Context, m core.Message) error {
			pub, seq := parse(m.Data)
			if !bytes.Equal(m.Data, chaosMixPayload(pub, seq, len(m.Data)-8)) {
				t.Errorf("consumer %d: corrupt message at index %d", i, m.Index)
			}
			cp.mu.Lock()
			cp.recs = append(cp.recs, chaosMixRecord{inst, m.Index, pub, seq})
			cp.mu.Unlock()
			return nil
		},
			client.WithClientID(fmt.Sprintf("chaosmix-%d", i)),
			client.WithPullWait(time.Duration(50+rnd(300))*time.Millisecond),
			client.WithPullLimit(1+rnd(100)),
			client.WithConsumerRequestTimeout(500*time.Millisecond),
			client.WithConsumerBackoff(backoff),
			client.WithConsumerLogger(quietChaosLogger),
		)
		if err != nil {
			t.Error(err)
			return
		}
		cp.cons = cons
		done := make(chan struct{})
		cp.done = done
		go func() {
			defer close(done)
			if err := cons.Run(consCtx); err != nil && consCtx.Err() == nil {
				t.Errorf("consumer %d: Run: %v", i, err)
			}
		}()
	}
	stopCons := func(cp *consProc) {
		cp.mu.Lock()
		cons, done := cp.cons, cp.done
		cp.mu.Unlock()
		_ = cons.Close()
		<-done
	}
	for i := range cps {
		cps[i] = &consProc{}
		startCons(i, cps[i], true)
	}
	var cwg sync.WaitGroup
	for i, cp := range cps {
		cwg.Add(1)
		go func() { // consumer restarts
			defer cwg.Done()
			for consCtx.Err() == nil {
				if core.Sleep(consCtx, time.Duration(50+rnd(800))*time.Millisecond) != nil {
					return
				}
				stopCons(cp)
				cp.restarts++
				startCons(i, cp, rnd(2) == 0)
			}
		}()
	}

	// Publishers: each publishes perPub messages in order through a publisher with an
	// outbox that a restarter replaces at random moments.
	type pubProc struct {
		mu       sync.Mutex
		c        *client.Client
		p        *client.Publisher
		ok       []bool // Publish returned nil for seq
		restarts int
	}
	pps := make([]*pubProc, pubs)
	openPub := func(i int, pp *pubProc, newClient bool) error {
		if pp.c == nil || newClient {
			if pp.c != nil {
				_ = pp.c.Close()
			}
			pp.c = dialClient()
		}
		var err error
		for range 50 { // the old publisher's outbox is closed by its Close
			pp.p, err = client.NewPublisher(ctx, pp.c, stream,
				client.WithOutbox(filepath.Join(dir, fmt.Sprintf("pub%d.outbox", i))),
				client.WithWindow(1+rnd(64)),
				client.WithMaxBatch(1+rnd(16)),
				client.WithRequestTimeout(500*time.Millisecond),
				client.WithCloseTimeout(time.Duration(rnd(3)*rnd(50))*time.Millisecond),
				client.WithBackoff(backoff),
				client.WithPublisherLogger(quietChaosLogger),
			)
			if err == nil {
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return err
	}
	var pwg sync.WaitGroup
	pubCtx, pubStop := context.WithCancel(ctx)
	for i := range pps {
		pp := &pubProc{ok: make([]bool, perPub)}
		pps[i] = pp
		if err := openPub(i, pp, true); err != nil {
			t.Fatal(err)
		}
		pwg.Add(2)
		go func() {
			defer pwg.Done()
			for seq := 0; seq < perPub; {
				if ctx.Err() != nil {
					t.Errorf("publisher %d: deadline at seq %d", i, seq)
					return
				}
				pp.mu.Lock()
				p := pp.p
				pp.mu.Unlock()
				_, err := p.Publish(ctx, chaosMixPayload(uint32(i), uint32(seq), rnd(3)*rnd(1500)))
				if err != nil {
					if errors.Is(err, core.ErrClosed) {
						time.Sleep(time.Millisecond)
						continue // restarted meanwhile: publish it again to the new one
					}
					t.Errorf("publisher %d: Publish %d: %v", i, seq, err)
					return
				}
				pp.mu.Lock()
				pp.ok[seq] = true
				pp.mu.Unlock()
				seq++
				if rnd(10) == 0 {
					time.Sleep(time.Duration(rnd(20)) * time.Millisecond)
				}
			}
		}()
		go func() { // restarts
			defer pwg.Done()
			for pubCtx.Err() == nil {
				if core.Sleep(pubCtx, time.Duration(50+rnd(600))*time.Millisecond) != nil {
					return
				}
				pp.mu.Lock()
				_ = pp.p.Close() // may leave messages in the outbox
				pp.restarts++
				err := openPub(i, pp, rnd(2) == 0)
				pp.mu.Unlock()
				if err != nil {
					t.Errorf("publisher %d: reopen: %v", i, err)
					return
				}
			}
		}()
	}
	// Wait until every publisher published everything (their restarters keep going
	// meanwhile), then stop restarting them.
	for {
		all := true
		for _, pp := range pps {
			pp.mu.Lock()
			if !pp.ok[perPub-1] {
				all = false
			}
			pp.mu.Unlock()
		}
		if all || ctx.Err() != nil || t.Failed() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pubStop()
	// Keep the faults going a little longer, then stop them so the run converges.
	_ = core.Sleep(ctx, time.Duration(rnd(500))*time.Millisecond)
	faultsStop()
	fwg.Wait()
	pwg.Wait()
	for i, pp := range pps {
		if err := pp.p.Flush(ctx); err != nil {
			t.Errorf("publisher %d: Flush after faults: %v (stats %+v)", i, err, pp.p.Stats())
		}
	}
	// Consumers must catch up.
	wantAll := func(cp *consProc) (missing int, first string) {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		seen := map[[2]uint32]bool{}
		for _, r := range cp.recs {
			seen[[2]uint32{r.pub, r.seq}] = true
		}
		for i := range pubs {
			for s := range perPub {
				if !seen[[2]uint32{uint32(i), uint32(s)}] {
					if missing == 0 {
						first = fmt.Sprintf("pub %d seq %d", i, s)
					}
					missing++
				}
			}
		}
		return missing, first
	}
	for i, cp := range cps {
		for {
			n, first := wantAll(cp)
			if n == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Errorf("consumer %d: %d messages never handled (first %s); stats %+v", i, n, first, cp.cons.Stats())
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	consStop()
	cwg.Wait()
	for _, cp := range cps {
		stopCons(cp)
	}

	// The stream: first occurrences per publisher in order, everything there.
	for _, pp := range pps {
		_ = pp.p.Close()
		_ = pp.c.Close()
	}
	for _, cp := range cps {
		_ = cp.c.Close()
	}
	_ = px.Close()
	store := hb.Store()
	var all []core.Message
	for from := uint64(0); ; {
		ms, err := store.Fetch(context.Background(), stream, 0, from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		all = append(all, ms...)
		from = ms[len(ms)-1].Index + 1
	}
	next := make([]uint32, pubs)
	dups := 0
	for k, m := range all {
		if m.Index != uint64(k) {
			t.Errorf("stream not dense: position %d holds index %d", k, m.Index)
			break
		}
		pub, seq := parse(m.Data)
		switch {
		case seq == next[pub]:
			next[pub]++
		case seq < next[pub]:
			dups++
		default:
			t.Errorf("stream: publisher %d seq %d at index %d before seq %d (order broken)", pub, seq, m.Index, next[pub])
		}
	}
	for i := range pubs {
		if int(next[i]) != perPub {
			t.Errorf("stream: publisher %d: only %d of %d in order", i, next[i], perPub)
		}
	}
	// Consumers: per instance strictly increasing indexes; each instance starts no later
	// than one past what earlier instances handled (no index skipped).
	for i, cp := range cps {
		lastByInst := map[int]uint64{}
		var maxHandled int64 = -1
		curInst := 0
		for _, r := range cp.recs {
			if r.instance != curInst {
				if int64(r.index) > maxHandled+1 {
					t.Errorf("consumer %d instance %d started at index %d, but only up to %d was handled: skipped", i, r.instance, r.index, maxHandled)
				}
				curInst = r.instance
			} else if r.index <= lastByInst[r.instance] {
				t.Errorf("consumer %d instance %d: index %d after %d", i, r.instance, r.index, lastByInst[r.instance])
			} else if int64(r.index) > maxHandled+1 {
				t.Errorf("consumer %d instance %d: index %d after %d: gap", i, r.instance, r.index, lastByInst[r.instance])
			}
			lastByInst[r.instance] = r.index
			maxHandled = max(maxHandled, int64(r.index))
		}
		t.Logf("consumer %d: %d handled, %d instances", i, len(cp.recs), cp.instance)
	}
	t.Logf("stream: %d messages, %d duplicates; %d hub restarts, %d proxy faults", len(all), dups, hubRestarts, proxyFaults)
	if err := hb.Stop(hubtest.StopGraceful, 0); err != nil {
		t.Errorf("hub stop: %v", err)
	}

	// Goroutines: back to the baseline.
	var n int
	for range 100 {
		n = runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Errorf("%d goroutines left, baseline %d:\n%s", n, baseline, chaosTrimStacks(string(buf)))
}

func chaosTrimStacks(s string) string {
	var out []string
	for _, g := range strings.Split(s, "\n\n") {
		if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "testing.(*T).Run") {
			continue
		}
		out = append(out, g)
	}
	return strings.Join(out, "\n\n")
}
