package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/securechannel"
	"github.com/sluicehq/sluice/core/wire"
)

// E2EEncrypted is the workload that measures what end-to-end encryption costs: delivered
// messages per second from device A to device B through the hub, plain and through a Noise
// secure channel over the bi-directional stream transport.
const E2EEncrypted = "e2e-encrypted"

// Paths of the [E2EEncrypted] workload, both through the hub.
const (
	PathPlain     = "plain"
	PathEncrypted = "encrypted"
)

// workloadPaths returns the paths a workload is measured on, for a target with or without a
// native client.
func workloadPaths(w string, native bool) []string {
	if w == E2EEncrypted {
		return []string{PathPlain, PathEncrypted}
	}
	if native {
		return []string{PathHub, PathRaw, PathNative}
	}
	return []string{PathHub, PathRaw}
}

// device is one side of the E2EEncrypted workload: a client of the hub (with its node) and a
// bi-directional stream transport on that node.
type device struct {
	cl *client.Client
	tr *bistream.Transport
}

// newDevice dials the hub; with transport it also starts a bistream transport on its node.
func (e *env) newDevice(transport bool) (*device, error) {
	cl, err := client.Dial(e.addr, client.WithDialTimeout(requestTimeout))
	if err != nil {
		return nil, fmt.Errorf("dial hub: %w", err)
	}
	d := &device{cl: cl}
	if transport {
		// The same request timeouts as the plain path's publisher and consumer: with the
		// default one, a broker slowed down by the earlier workloads (kinesis-mock) made
		// the transport's publisher time out and resend its whole window, again and again.
		d.tr, err = bistream.New(cl.Node(), cl, bistream.WithLogger(discard),
			bistream.WithPublisherOptions(client.WithRequestTimeout(requestTimeout)),
			bistream.WithConsumerOptions(client.WithConsumerRequestTimeout(requestTimeout)))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("bistream transport: %w", err), cl.Close())
		}
	}
	return d, nil
}

// close stops the transport (its subscriptions and publishers), then the client and node.
func (d *device) close() {
	if d.tr != nil {
		_ = d.tr.Close()
	}
	_ = d.cl.Close()
}

// tally counts the distinct messages delivered, by the sequence number sendFor writes into
// their first 8 bytes, and lets a caller wait for a count. Delivery is at least once: on the
// plain path a message can arrive twice (its publisher sent it again after a lost confirm, or
// the consumer read it again after a reconnect), where the secure channel drops such a
// duplicate itself. So that both paths count the same thing, a message counts once, at its
// first arrival, and dups counts the other arrivals.
type tally struct {
	mu   sync.Mutex
	seen []uint64      // bit s set: sequence number s arrived
	sent atomic.Uint64 // the highest sequence number sendFor has sent
	n    int           // distinct messages delivered
	dups int           // messages delivered again
	bad  error         // the first message that was not sent as it arrived
	grew chan struct{} // closed and replaced on every add
}

func newTally() *tally { return &tally{grew: make(chan struct{})} }

// sending records that sendFor is about to send sequence number seq, the highest so far.
func (t *tally) sending(seq uint64) {
	t.sent.Store(seq)
}

// add counts one delivered message m, where messages of want bytes were sent.
func (t *tally) add(m []byte, want int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() {
		close(t.grew)
		t.grew = make(chan struct{})
	}()
	if len(m) != want {
		t.fail(fmt.Errorf("B received a %d-byte message, want %d", len(m), want))
		return
	}
	seq := binary.BigEndian.Uint64(m)
	if sent := t.sent.Load(); seq > sent {
		t.fail(fmt.Errorf("B received sequence number %d, above the highest sent (%d)", seq, sent))
		return
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if w >= uint64(len(t.seen)) {
		t.seen = append(t.seen, make([]uint64, w+1-uint64(len(t.seen)))...)
	}
	if t.seen[w]&bit != 0 {
		t.dups++
		return
	}
	t.seen[w] |= bit
	t.n++
}

func (t *tally) fail(err error) {
	if t.bad == nil {
		t.bad = err
	}
}

// duplicates returns how many messages arrived more than once (each extra arrival counts).
func (t *tally) duplicates() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dups
}

// wait returns once n distinct messages were delivered, or an error when ctx ends first or a
// message arrived that was not sent as it arrived.
func (t *tally) wait(ctx context.Context, n int) error {
	for {
		t.mu.Lock()
		got, dups, bad, grew := t.n, t.dups, t.bad, t.grew
		t.mu.Unlock()
		if bad != nil {
			return bad
		}
		if got >= n {
			return nil
		}
		select {
		case <-grew:
		case <-ctx.Done():
			if dups > 0 {
				return fmt.Errorf("B received %d of %d messages (and %d duplicates): %w", got, n, dups, ctx.Err())
			}
			return fmt.Errorf("B received %d of %d messages: %w", got, n, ctx.Err())
		}
	}
}

// sendFor calls send with messages of size from one goroutine for cfg.Duration, after one
// warm-up message that must arrive before the clock starts, and returns the delivered
// throughput: distinct messages over the time from the first timed send until B has them
// all, and the duplicates that arrived meanwhile. Each message is one of Batch random ones
// (see payloads), copied, with its sequence number (the warm-up's is 0) in the first 8 bytes
// so that t can tell a duplicate from the next message; send may keep it.
func sendFor(ctx context.Context, cfg Config, size int, t *tally, send func(msg []byte) error) (Sample, error) {
	if err := send(make([]byte, size)); err != nil {
		return Sample{}, fmt.Errorf("warm-up send: %w", err)
	}
	if err := t.wait(ctx, 1); err != nil {
		return Sample{}, fmt.Errorf("warm-up: %w", err)
	}
	msgs := payloads(size, cfg.Batch)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	n := 1
	for time.Now().Before(deadline) {
		m := append(make([]byte, 0, size), msgs[n%len(msgs)]...)
		binary.BigEndian.PutUint64(m, uint64(n))
		t.sending(uint64(n))
		if err := send(m); err != nil {
			return Sample{}, fmt.Errorf("send: %w", err)
		}
		n++
	}
	if err := t.wait(ctx, n); err != nil {
		return Sample{}, err
	}
	s := throughput(n-1, size, time.Since(start))
	s.Duplicates = t.duplicates()
	return s, nil
}

// plainThroughput is the baseline of E2EEncrypted: A's client.Publisher pushes messages of
// size to a stream that B's long-polling client.Consumer reads, for cfg.Duration.
func (e *env) plainThroughput(ctx context.Context, cfg Config, size int) (Sample, error) {
	a, err := e.newDevice(false)
	if err != nil {
		return Sample{}, err
	}
	defer a.close()
	b, err := e.newDevice(false)
	if err != nil {
		return Sample{}, err
	}
	defer b.close()
	stream := e.stream(fmt.Sprintf("plain-%d", size))
	pub, err := client.NewPublisher(ctx, a.cl, stream, client.WithRequestTimeout(requestTimeout))
	if err != nil {
		return Sample{}, fmt.Errorf("publisher: %w", err)
	}
	defer pub.Close()
	got := newTally()
	cons, err := client.NewConsumer(b.cl, stream, func(_ context.Context, m core.Message) error {
		got.add(m.Data, size)
		return nil
	}, client.WithClientID(stream), client.WithConsumerRequestTimeout(requestTimeout))
	if err != nil {
		return Sample{}, fmt.Errorf("consumer: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var consErr firstErr
	consDone := make(chan struct{})
	go func() { // owned by plainThroughput: stop and cons.Close end it
		defer close(consDone)
		if err := cons.Run(runCtx); err != nil && runCtx.Err() == nil {
			consErr.set(fmt.Errorf("consumer: %w", err))
			stop() // ends the wait for the messages
		}
	}()
	defer func() {
		_ = cons.Close()
		stop()
		<-consDone
	}()
	s, err := sendFor(runCtx, cfg, size, got, func(msg []byte) error {
		_, err := pub.Publish(runCtx, msg)
		return err
	})
	if cerr := consErr.get(); cerr != nil {
		return Sample{}, cerr
	}
	return s, err
}

// encryptedThroughput sends messages of size from A to B for cfg.Duration through an
// established Noise XX secure channel whose route goes through the bi-directional stream
// transport, so the hub stores ciphertext envelopes in B's inbox; a message counts when B's
// application worker, behind its end of the channel, has it. The handshake is not measured.
func (e *env) encryptedThroughput(ctx context.Context, cfg Config, size int) (Sample, error) {
	a, err := e.newDevice(true)
	if err != nil {
		return Sample{}, err
	}
	defer a.close()
	b, err := e.newDevice(true)
	if err != nil {
		return Sample{}, err
	}
	defer b.close()
	idA, err := securechannel.GenerateIdentity()
	if err != nil {
		return Sample{}, fmt.Errorf("identity: %w", err)
	}
	idB, err := securechannel.GenerateIdentity()
	if err != nil {
		return Sample{}, fmt.Errorf("identity: %w", err)
	}
	l, err := securechannel.Listen(b.cl.Node(), "listener",
		securechannel.Config{Identity: idB, Trust: securechannel.TrustKeys(idA.PublicKey())}, nil)
	if err != nil {
		return Sample{}, fmt.Errorf("listen: %w", err)
	}
	defer l.Close()
	got := newTally()
	if err := b.cl.Node().Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		got.add(m.Payload, size)
		return nil
	})); err != nil {
		return Sample{}, fmt.Errorf("register worker: %w", err)
	}
	inboxA := e.stream(fmt.Sprintf("inbox-a-%d", size))
	inboxB := e.stream(fmt.Sprintf("inbox-b-%d", size))
	if _, err := b.tr.Subscribe(inboxB, inboxB); err != nil {
		return Sample{}, fmt.Errorf("subscribe: %w", err)
	}
	if _, err := a.tr.Subscribe(inboxA, inboxA); err != nil {
		return Sample{}, fmt.Errorf("subscribe: %w", err)
	}
	route, err := a.tr.Route(inboxB, inboxA)
	if err != nil {
		return Sample{}, fmt.Errorf("route: %w", err)
	}
	ch, err := securechannel.Dial(ctx, a.cl.Node(), append(route, wire.Local("listener")),
		securechannel.Config{Identity: idA, Trust: securechannel.TrustKeys(idB.PublicKey())})
	if err != nil {
		return Sample{}, fmt.Errorf("secure channel: %w", err)
	}
	defer ch.Close()
	onward := wire.Route{ch.Address(), wire.Local("app")}
	node := a.cl.Node()
	return sendFor(ctx, cfg, size, got, func(msg []byte) error {
		return node.Send(ctx, wire.TransportMessage{OnwardRoute: onward, Payload: msg})
	})
}
