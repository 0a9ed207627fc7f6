package bistream_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestChaosSecureChannel sends messages from device A to device B through a secure channel
// carried by streams, while the hub restarts on its bbolt file, a fault proxy resets and
// pauses connections, both devices' links go offline and online, and both devices' processes
// restart the documented way (A: link closed, session saved, node closed; B: link closed,
// node drained, session saved, node closed), restoring their channels from session files.
// B's application must see every message exactly once, in order. hubtest.ChaosSeeds
// (SLUICE_CHAOS_SEED, SLUICE_CHAOS_RUNS) chooses the seeds.
func TestChaosSecureChannel(t *testing.T) {
	for _, seed := range hubtest.ChaosSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { chaosSCRun(t, seed) })
		if t.Failed() {
			return
		}
	}
}

var chaosQuiet = slog.New(slog.DiscardHandler)

// chaosDev is one device: a node with its channel, and a link to the hub.
type chaosDev struct {
	name   string
	node   *routing.Node
	cli    *client.Client
	tr     *bistream.Transport
	outbox string
}

func chaosSCRun(t *testing.T, seed uint64) {
	t.Logf("repro: SLUICE_CHAOS_SEED=%d SLUICE_CHAOS_RUNS=1 go test -race -run TestChaosSecureChannel ./core/client/bistream", seed)
	rnd := hubtest.LockedRand(seed, 0xc4a05)
	const n = 300
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	hb := hubtest.NewRestartable(filepath.Join(dir, "hub.db"), func() []hub.Option {
		return []hub.Option{hub.WithLogger(chaosQuiet), hub.WithMaxPullWait(time.Second)}
	})
	if err := hb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := hb.Stop(hubtest.StopGraceful, 0); err != nil {
			t.Errorf("hub stop: %v", err)
		}
	}()
	px, err := faultproxy.New(hb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	backoff := client.Backoff{Min: 5 * time.Millisecond, Max: 100 * time.Millisecond, Factor: 2, Jitter: 0.5}

	idA, idB := mustIdentity(t), mustIdentity(t)
	cfgA := securechannel.Config{Identity: idA, Trust: securechannel.TrustKeys(idB.PublicKey())}
	cfgB := securechannel.Config{Identity: idB, Trust: securechannel.TrustKeys(idA.PublicKey())}
	sessA, sessB := filepath.Join(dir, "a.session"), filepath.Join(dir, "b.session")

	online := func(d *chaosDev) error {
		cli, err := client.Dial(px.Addr(), client.WithDialTimeout(time.Second), client.WithLogger(chaosQuiet))
		if err != nil {
			return err
		}
		tr, err := bistream.New(d.node, cli,
			bistream.WithLogger(chaosQuiet),
			bistream.WithOutboxDir(d.outbox),
			bistream.WithPublisherOptions(client.WithBackoff(backoff), client.WithRequestTimeout(500*time.Millisecond),
				client.WithCloseTimeout(time.Duration(rnd(3)*rnd(100))*time.Millisecond), client.WithWindow(1+rnd(32)), client.WithMaxBatch(1+rnd(8)),
				client.WithPublisherLogger(chaosQuiet)),
			bistream.WithConsumerOptions(client.WithConsumerBackoff(backoff), client.WithPullWait(time.Duration(50+rnd(300))*time.Millisecond),
				client.WithConsumerRequestTimeout(500*time.Millisecond), client.WithPullLimit(1+rnd(50)), client.WithConsumerLogger(chaosQuiet)))
		if err != nil {
			_ = cli.Close()
			return err
		}
		if _, err := tr.Subscribe("inbox-"+d.name, "device-"+d.name); err != nil {
			_ = tr.Close()
			_ = cli.Close()
			return err
		}
		d.cli, d.tr = cli, tr
		return nil
	}
	offline := func(d *chaosDev) {
		if d.tr == nil {
			return
		}
		_ = d.tr.Close() // may leave messages in the outboxes
		_ = d.cli.Close()
		d.cli, d.tr = nil, nil
	}
	newNode := func(name string) *routing.Node {
		nd, err := routing.NewNode(routing.WithLogger(chaosQuiet), routing.WithMailboxSize(1+rnd(8)))
		if err != nil {
			t.Fatal(err)
		}
		return nd
	}
	for _, name := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, name+"-outbox"), 0o700); err != nil {
			t.Fatal(err)
		}
	}

	// B: the receiver. Its application records what it gets.
	var gotMu sync.Mutex
	var got []string
	b := &chaosDev{name: "b", outbox: filepath.Join(dir, "b-outbox")}
	var lB *securechannel.Listener
	bootB := func() error {
		b.node = newNode("b")
		if err := b.node.Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
			gotMu.Lock()
			got = append(got, string(m.Payload))
			gotMu.Unlock()
			return nil
		})); err != nil {
			return err
		}
		l, err := securechannel.Listen(b.node, "listener", cfgB, &securechannel.ListenOptions{HandshakeTimeout: time.Hour})
		if err != nil {
			return err
		}
		lB = l
		if _, err := os.Stat(sessB); err == nil {
			if _, err := l.RestoreSession(sessB); err != nil {
				return err
			}
		}
		return online(b)
	}
	stopB := func() error {
		offline(b)
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		err := b.node.Drain(dctx)
		dcancel()
		if err != nil {
			return err
		}
		for _, ch := range lB.Channels() {
			if err := ch.SaveSession(sessB); err != nil {
				return err
			}
		}
		_ = lB.Close()
		return b.node.Close()
	}

	// A: the sender.
	a := &chaosDev{name: "a", outbox: filepath.Join(dir, "a-outbox")}
	a.node = newNode("a")
	if err := online(a); err != nil {
		t.Fatal(err)
	}
	if err := bootB(); err != nil {
		t.Fatal(err)
	}

	// Faults, from now on: the handshake runs through them too.
	fctx, fstop := context.WithCancel(ctx)
	var fwg sync.WaitGroup
	fwg.Add(2)
	go func() {
		defer fwg.Done()
		hubtest.ProxyFaults(fctx, px, rnd, 80*time.Millisecond, 15*time.Millisecond)
	}()
	go func() {
		defer fwg.Done()
		if _, err := hb.Restarts(fctx, rnd, 150*time.Millisecond, 800*time.Millisecond); err != nil {
			t.Error(err)
		}
	}()

	routeA, err := a.tr.Route("inbox-b", "inbox-a")
	if err != nil {
		t.Fatal(err)
	}
	chA, err := securechannel.Dial(ctx, a.node, append(routeA, wire.Local("listener")), cfgA)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if err := chA.SaveSession(sessA); err != nil {
		t.Fatal(err)
	}

	// A's sender and the restarts of both devices share aMu (A's node and channel) and bMu.
	var aMu, bMu sync.Mutex
	var aRestarts, bRestarts, aLinks, bLinks int
	sendErrs := 0
	sent := 0
	var swg sync.WaitGroup
	rctx, rstop := context.WithCancel(ctx)
	swg.Add(3)
	go func() { // A sends
		defer swg.Done()
		for ctx.Err() == nil {
			aMu.Lock()
			done := sent >= n
			aMu.Unlock()
			if done {
				return
			}
			aMu.Lock()
			node, ch := a.node, chA
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			err := node.Send(sctx, wire.TransportMessage{
				OnwardRoute: wire.Route{ch.Address(), wire.Local("app")},
				Payload:     fmt.Appendf(nil, "msg %04d", sent),
			})
			scancel()
			if err == nil {
				sent++
			}
			aMu.Unlock()
			if err != nil {
				sendErrs++
				time.Sleep(time.Duration(1+rnd(10)) * time.Millisecond)
				continue
			}
			if rnd(8) == 0 {
				time.Sleep(time.Duration(rnd(20)) * time.Millisecond)
			}
		}
	}()
	go func() { // A's link and process restarts
		defer swg.Done()
		for rctx.Err() == nil {
			if core.Sleep(rctx, time.Duration(100+rnd(700))*time.Millisecond) != nil {
				return
			}
			if rnd(2) == 0 { // only the link: races with A's sends
				aLinks++
				offline(a)
				if err := online(a); err != nil {
					t.Errorf("A online: %v", err)
					return
				}
				continue
			}
			aMu.Lock()
			offline(a)
			{ // the process restarts
				aRestarts++
				if err := chA.SaveSession(sessA); err != nil {
					t.Error(err)
				}
				_ = a.node.Close()
				a.node = newNode("a")
				c, err := securechannel.RestoreSession(a.node, cfgA, sessA)
				if err != nil {
					t.Errorf("restore A: %v", err)
					aMu.Unlock()
					return
				}
				chA = c
			}
			if err := online(a); err != nil {
				t.Errorf("A online: %v", err)
				aMu.Unlock()
				return
			}
			aMu.Unlock()
		}
	}()
	go func() { // B's link and process restarts
		defer swg.Done()
		for rctx.Err() == nil {
			if core.Sleep(rctx, time.Duration(100+rnd(700))*time.Millisecond) != nil {
				return
			}
			bMu.Lock()
			if rnd(2) == 0 {
				bRestarts++
				if err := stopB(); err != nil {
					t.Errorf("stop B: %v", err)
					bMu.Unlock()
					return
				}
				if err := bootB(); err != nil {
					t.Errorf("boot B: %v", err)
					bMu.Unlock()
					return
				}
			} else {
				bLinks++
				offline(b)
				if err := online(b); err != nil {
					t.Errorf("B online: %v", err)
					bMu.Unlock()
					return
				}
			}
			bMu.Unlock()
		}
	}()
	// Until A sent everything, then a little more chaos, then calm.
	for {
		aMu.Lock()
		done := sent >= n
		aMu.Unlock()
		if done || ctx.Err() != nil || t.Failed() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = core.Sleep(ctx, time.Duration(rnd(500))*time.Millisecond)
	rstop()
	fstop()
	fwg.Wait()
	swg.Wait()
	check := func(final bool) (bool, string) {
		gotMu.Lock()
		defer gotMu.Unlock()
		for i, m := range got {
			if want := fmt.Sprintf("msg %04d", i); m != want {
				return false, fmt.Sprintf("B's message %d is %q, want %q (neighbours %q)", i, m, want, got[max(i-3, 0):min(i+4, len(got))])
			}
		}
		if len(got) != n {
			return false, fmt.Sprintf("B got %d of %d messages", len(got), n)
		}
		return true, ""
	}
	for {
		ok, why := check(false)
		if ok {
			break
		}
		if len(why) > 0 && why[0:3] == "B's" || ctx.Err() != nil || t.Failed() {
			var stA client.PublisherStats
			if a.tr != nil { // nil when A's last restart failed
				stA, _ = a.tr.PublisherStats("inbox-b")
			}
			t.Errorf("%s; A: %d restarts, %d link restarts, %d send errors; B: %d restarts, %d link restarts; A's publisher %+v; B's channel stats %v",
				why, aRestarts, aLinks, sendErrs, bRestarts, bLinks, stA, chStats(lB))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a late duplicate would show by now
	if ok, why := check(true); !ok && !t.Failed() {
		t.Error(why)
	}
	t.Logf("A: %d restarts, %d link restarts, %d send errors; B: %d restarts, %d link restarts; channel %v",
		aRestarts, aLinks, sendErrs, bRestarts, bLinks, chStats(lB))
	offline(a)
	offline(b)
	_ = lB.Close()
	_ = chA.Close()
	_ = a.node.Close()
	_ = b.node.Close()
}

func chStats(l *securechannel.Listener) string {
	s := ""
	for _, c := range l.Channels() {
		s += fmt.Sprintf("%+v ", c.Stats())
	}
	return s
}
