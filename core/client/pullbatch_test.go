package client_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// TestPullBatchReplyBounded: a hub (a fake one on the client's own node) answers a pull that
// asks for at most 64 KiB with 400 "more" parts of 60000 bytes each. The consumer must not
// buffer them all: it fails the session with ErrProtocol once the parts exceed what the
// request allows, hands nothing of that reply to its handler, and reconnects.
func TestPullBatchReplyBounded(t *testing.T) {
	node := fakeNode(t)
	const parts, size, maxBytes = 400, 60000, 64 << 10
	registerFakeStreamService(t, node)
	if err := node.Register("fake.s", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, err := wire.DecodePullBatchRequest(bp.Data)
		if err != nil || req.Index > 0 {
			fakeReply(ctx, node, m, wire.ProtocolPullBatch, wire.PullBatchPart{RequestID: req.RequestID})
			return nil
		}
		for i := range parts {
			fakeReply(ctx, node, m, wire.ProtocolPullBatch, wire.PullBatchPart{RequestID: req.RequestID, More: i < parts-1,
				Messages: []wire.StreamMessage{{Index: uint64(i), Data: make([]byte, size)}}})
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	c := fakeClient(t, node)
	var handled atomic.Int64
	var mu sync.Mutex
	var sessionErr error
	cons, err := client.NewConsumer(c, "s", func(_ context.Context, m core.Message) error { handled.Add(int64(len(m.Data))); return nil },
		client.WithPullMaxBytes(maxBytes), client.WithPullWait(100*time.Millisecond),
		client.WithConsumerSessionErrors(func(err error) {
			mu.Lock()
			if sessionErr == nil {
				sessionErr = err
			}
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return sessionErr
	}
	waitFor(t, "a session error or a handled message", func() bool { return failed() != nil || handled.Load() > 0 })
	_ = stop()
	if n := handled.Load(); n > 0 {
		t.Fatalf("a pull asking for at most %d bytes buffered and handed over %d bytes (session error: %v)", maxBytes, n, failed())
	}
	if err := failed(); !errors.Is(err, client.ErrProtocol) || !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("session error %v, want ErrProtocol and core.ErrUnavailable", err)
	}
}
