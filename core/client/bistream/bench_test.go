package bistream_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// benchChunk is how many messages each path delivers before the other takes its turn.
const benchChunk = 1000

// BenchmarkEncryptedVsPlain measures what end-to-end encryption costs: the same traffic
// (b.N application messages of one size from device A to device B) through one in-process
// hub on bbolt over loopback TCP, in two ways:
//
//   - plain: A's client.Publisher pushes each message to B's stream "plain-b", and B's
//     client.Consumer reads them (long poll, position saved on the hub after each batch);
//   - encrypted: A sends each message into an established Noise XX secure channel whose route
//     to B goes through the bi-directional stream transport, so the hub stores one envelope
//     of ciphertext per message in "inbox-b"; B's subscription (the same kind of consumer)
//     delivers it to B's end of the channel, which decrypts it and hands it to B's
//     application worker.
//
// Each device has one client (one TCP connection) that both paths share, and a single
// goroutine of A sends, so a path's rate is what one sender reaches with the default
// publisher window and consumer pull limit. A message counts as delivered when B's handler
// (plain) or application worker (encrypted) has it; a path's time for a chunk runs from the
// first send until B has received the whole chunk. The paths alternate in chunks of
// benchChunk messages within one run, each pair in the opposite order of the previous one, so
// a change in the machine's load affects both alike.
// It reports each path's delivered msg/s over the whole run, their ratio enc/plain (the goal
// is at least 0.9 at 1 KiB and 0.7 at 64 B), enc/plain-median, the median of the ratios of
// adjacent chunks, which is less sensitive to a load that changes within the run,
// enc-stored-B/msg, the size of one encrypted message as the hub stores it, and (on Unix)
// plain-cpu-µs/msg and enc-cpu-µs/msg, the CPU time the whole process (hub, both devices,
// garbage collector) spent per message on each path. The handshake
// is done before the timer starts; its CPU time is BenchmarkHandshakeXX and
// BenchmarkHandshakeIK in package securechannel.
func BenchmarkEncryptedVsPlain(b *testing.B) {
	benchSizes(b, func(b *testing.B, e *benchEnv, msg []byte) {
		compare(b, msg, "plain", e.runPlain, e.runEncrypted)
		b.ReportMetric(float64(e.storedSize(b)), "enc-stored-B/msg")
	})
}

// BenchmarkEncryptedVsTransport splits the cost that BenchmarkEncryptedVsPlain measures: both
// of its paths go through the bi-directional stream transport, so the hub stores one envelope
// per message in B's inbox either way, and only the encrypted one goes through the secure
// channel. The transport path sends each message unencrypted to B's application worker on the
// same route the channel uses (A's sender for "inbox-b", B's subscription), so enc/transport
// is the cost of the channel alone: sealing, opening, its header and replay window. It
// reports transport-msg/s, enc-msg/s, enc/transport, enc/transport-median and (on Unix) the
// CPU time per message of each path, like BenchmarkEncryptedVsPlain.
func BenchmarkEncryptedVsTransport(b *testing.B) {
	benchSizes(b, func(b *testing.B, e *benchEnv, msg []byte) {
		compare(b, msg, "transport", e.runTransport, e.runEncrypted)
	})
}

// benchSizes runs measure at 64 B and 1 KiB, each on a fresh hub and pair of devices.
func benchSizes(b *testing.B, measure func(b *testing.B, e *benchEnv, msg []byte)) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"1KiB", 1024}} {
		b.Run(size.name, func(b *testing.B) {
			e := newBenchEnv(b, size.n)
			b.SetBytes(int64(size.n))
			measure(b, e, make([]byte, size.n))
			if err := e.err(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// runPath delivers n messages of msg on one path and returns the time it took.
type runPath func(b *testing.B, msg []byte, n int) time.Duration

// compare delivers b.N messages on each of two paths, base (reported under its name) and
// encrypted, alternating in chunks of benchChunk, each pair in the opposite order of the
// previous one, and reports both rates, their ratio over the whole run, the median of the
// ratios of adjacent chunks and (on Unix) the process's CPU time per message on each path.
func compare(b *testing.B, msg []byte, base string, runBase, runEnc runPath) {
	var tBase, tEnc time.Duration
	var cpu cpuMeter
	var ratios []float64 // per pair of adjacent chunks: encrypted rate / base rate
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(benchChunk, b.N-done)
		var p, c time.Duration
		if len(ratios)%2 == 0 {
			p = cpu.base.measure(func() time.Duration { return runBase(b, msg, n) })
			c = cpu.enc.measure(func() time.Duration { return runEnc(b, msg, n) })
		} else {
			c = cpu.enc.measure(func() time.Duration { return runEnc(b, msg, n) })
			p = cpu.base.measure(func() time.Duration { return runBase(b, msg, n) })
		}
		tBase += p
		tEnc += c
		ratios = append(ratios, p.Seconds()/c.Seconds())
		done += n
	}
	b.StopTimer()
	rBase := float64(b.N) / tBase.Seconds()
	rEnc := float64(b.N) / tEnc.Seconds()
	b.ReportMetric(rBase, base+"-msg/s")
	b.ReportMetric(rEnc, "enc-msg/s")
	b.ReportMetric(rEnc/rBase, "enc/"+base)
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "enc/"+base+"-median")
	if cpu.known() {
		b.ReportMetric(cpu.base.perMessage(b.N), base+"-cpu-µs/msg")
		b.ReportMetric(cpu.enc.perMessage(b.N), "enc-cpu-µs/msg")
	}
}

// cpuMeter adds up the CPU time the whole process (hub, both devices, garbage collector)
// spends while each of the two compared paths runs.
type cpuMeter struct{ base, enc cpuTotal }

func (m *cpuMeter) known() bool { return m.base.ok && m.enc.ok }

type cpuTotal struct {
	used time.Duration
	ok   bool
}

// measure runs run, adds the process CPU time it took to t and returns run's result.
func (t *cpuTotal) measure(run func() time.Duration) time.Duration {
	before, ok1 := processCPU()
	d := run()
	after, ok2 := processCPU()
	t.used += after - before
	t.ok = ok1 && ok2
	return d
}

// perMessage returns the CPU time per message, in µs, for n messages.
func (t *cpuTotal) perMessage(n int) float64 {
	return float64(t.used.Microseconds()) / float64(n)
}

// benchEnv is a hub, devices A and B, the plain publisher and consumer, the secure channel
// from A to B through streams, and B's workers for the messages that arrive through it and
// for those that come unencrypted through the same streams.
type benchEnv struct {
	nodeA     *routing.Node
	pub       *client.Publisher
	chA       *securechannel.SecureChannel
	toB       wire.Route // A's route to B's node through the streams (the channel's too)
	plain     *counter   // B's plain consumer
	enc       *counter   // B's application worker behind the channel
	transport *counter   // B's application worker for unencrypted messages through the streams
	size      int
	store     *bbolt.Store
	errMu     sync.Mutex
	handErr   error
}

func newBenchEnv(b *testing.B, size int) *benchEnv {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := bbolt.New(ctx, filepath.Join(b.TempDir(), "hub.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := hub.New(&core.Backend{Storage: s, Index: s})
	if err != nil {
		b.Fatal(err)
	}
	addr, err := h.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(sctx); err != nil {
			b.Errorf("hub shutdown: %v", err)
		}
		if err := s.Close(); err != nil {
			b.Errorf("close store: %v", err)
		}
	})

	e := &benchEnv{plain: newCounter(), enc: newCounter(), transport: newCounter(), size: size, store: s}
	cliA, trA := benchDevice(b, addr.String())
	cliB, trB := benchDevice(b, addr.String())
	e.nodeA = cliA.Node()
	nodeB := cliB.Node()

	// Plain: A's publisher to "plain-b", B's consumer of "plain-b".
	e.pub, err = client.NewPublisher(ctx, cliA, "plain-b")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.pub.Close() })
	cons, err := client.NewConsumer(cliB, "plain-b", func(_ context.Context, m core.Message) error {
		e.check(len(m.Data))
		e.plain.add()
		return nil
	}, client.WithClientID("bench-b"))
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	consDone := make(chan struct{})
	go func() { // owned by the benchmark: stopped by the cleanup below
		defer close(consDone)
		_ = cons.Run(runCtx)
	}()
	b.Cleanup(func() {
		_ = cons.Close()
		stop()
		<-consDone
	})

	// Encrypted: B's listener and application worker, both inboxes subscribed, then the
	// XX handshake through the streams.
	idA, idB := benchIdentity(b), benchIdentity(b)
	if _, err := securechannel.Listen(nodeB, "listener", securechannel.Config{Identity: idB, Trust: securechannel.TrustKeys(idA.PublicKey())}, nil); err != nil {
		b.Fatal(err)
	}
	for addr, c := range map[string]*counter{"app": e.enc, "app-transport": e.transport} {
		if err := nodeB.Register(addr, routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
			e.check(len(m.Payload))
			c.add()
			return nil
		})); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := trB.Subscribe("inbox-b", "device-b"); err != nil {
		b.Fatal(err)
	}
	if _, err := trA.Subscribe("inbox-a", "device-a"); err != nil {
		b.Fatal(err)
	}
	e.toB, err = trA.Route("inbox-b", "inbox-a")
	if err != nil {
		b.Fatal(err)
	}
	e.chA, err = securechannel.Dial(ctx, e.nodeA, append(e.toB[:len(e.toB):len(e.toB)], wire.Local("listener")),
		securechannel.Config{Identity: idA, Trust: securechannel.TrustKeys(idB.PublicKey())})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.chA.Close() })

	// Warm up both paths (connections, streams, consumers caught up) outside the timing.
	warm := make([]byte, size)
	e.runPlain(b, warm, 10)
	e.runEncrypted(b, warm, 10)
	e.runTransport(b, warm, 10)
	return e
}

func benchIdentity(b *testing.B) *securechannel.Identity {
	b.Helper()
	id, err := securechannel.GenerateIdentity()
	if err != nil {
		b.Fatal(err)
	}
	return id
}

// benchDevice dials the hub and starts a bi-directional stream transport on the client's
// node; both are closed when the benchmark ends.
func benchDevice(b *testing.B, addr string) (*client.Client, *bistream.Transport) {
	b.Helper()
	c, err := client.Dial(addr, client.WithDialTimeout(5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	tr, err := bistream.New(c.Node(), c)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := tr.Close(); err != nil {
			b.Errorf("close transport: %v", err)
		}
		if err := c.Close(); err != nil {
			b.Errorf("close client: %v", err)
		}
	})
	return c, tr
}

// runPlain publishes n plain messages and returns the time until B's consumer handled all.
func (e *benchEnv) runPlain(b *testing.B, msg []byte, n int) time.Duration {
	ctx := context.Background()
	reached := e.plain.expect(n)
	start := time.Now()
	for range n {
		if _, err := e.pub.Publish(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	e.wait(b, reached, "plain")
	return time.Since(start)
}

// runEncrypted sends n messages through the secure channel and returns the time until B's
// application worker received all.
func (e *benchEnv) runEncrypted(b *testing.B, msg []byte, n int) time.Duration {
	return e.runRoute(b, wire.Route{e.chA.Address(), wire.Local("app")}, e.enc, msg, n, "encrypted")
}

// runRoute sends n messages from A's node on onward and returns the time until received
// counts all of them.
func (e *benchEnv) runRoute(b *testing.B, onward wire.Route, received *counter, msg []byte, n int, path string) time.Duration {
	ctx := context.Background()
	reached := received.expect(n)
	start := time.Now()
	for range n {
		if err := e.nodeA.Send(ctx, wire.TransportMessage{OnwardRoute: onward, Payload: msg}); err != nil {
			b.Fatal(err)
		}
	}
	e.wait(b, reached, path)
	return time.Since(start)
}

// runTransport sends n unencrypted messages to B's "app-transport" worker through the
// streams, on the route the channel uses, and returns the time until the worker received all.
func (e *benchEnv) runTransport(b *testing.B, msg []byte, n int) time.Duration {
	return e.runRoute(b, append(e.toB[:len(e.toB):len(e.toB)], wire.Local("app-transport")), e.transport, msg, n, "transport")
}

// storedSize returns the size of the last message the hub stored in B's inbox: the
// envelope of one encrypted message (the plain path stores the message as it is).
func (e *benchEnv) storedSize(b *testing.B) int {
	ctx := context.Background()
	var from uint64
	var last []byte
	for {
		msgs, err := e.store.Fetch(ctx, "inbox-b", 0, from, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		last = msgs[len(msgs)-1].Data
		from = msgs[len(msgs)-1].Index + 1
	}
	if len(last) <= e.size {
		b.Fatalf("B's inbox holds a %d-byte message for %d-byte plaintexts: not an encrypted envelope", len(last), e.size)
	}
	return len(last)
}

func (e *benchEnv) wait(b *testing.B, reached <-chan struct{}, path string) {
	select {
	case <-reached:
	case <-time.After(time.Minute):
		b.Fatalf("%s: B did not receive the chunk within a minute", path)
	}
}

// check records a message of the wrong size (a handler must not call b.Fatal).
func (e *benchEnv) check(n int) {
	if n == e.size {
		return
	}
	e.errMu.Lock()
	if e.handErr == nil {
		e.handErr = fmt.Errorf("B received a %d-byte message, want %d", n, e.size)
	}
	e.errMu.Unlock()
}

func (e *benchEnv) err() error {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return e.handErr
}

// counter counts received messages and signals when a chunk is complete.
type counter struct {
	mu      sync.Mutex
	n       int
	target  int
	reached chan struct{} // closed when n reaches target; nil when nobody waits
}

func newCounter() *counter { return &counter{} }

// expect returns a channel that is closed once n more messages than so far were received.
func (c *counter) expect(n int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reached != nil {
		panic(errors.New("counter: expect while a chunk is outstanding"))
	}
	c.target = c.n + n
	ch := make(chan struct{})
	c.reached = ch
	return ch
}

func (c *counter) add() {
	c.mu.Lock()
	c.n++
	if c.reached != nil && c.n >= c.target {
		close(c.reached)
		c.reached = nil
	}
	c.mu.Unlock()
}
