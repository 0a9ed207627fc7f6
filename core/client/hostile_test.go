package client_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// longRoute returns a route to the fake worker "fake.s", padded so that the frame payload
// budget of a request along it, from a session's reply address, is at least budget bytes
// and as close to it as padding allows.
func longRoute(budget int) wire.Route {
	self := wire.Route{wire.Local(routing.NewAddress())}
	for pad := wire.MaxFrame; pad > 0; pad-- {
		r := wire.Route{wire.Local("fake.s"), wire.Local(strings.Repeat("p", pad))}
		if wire.FramePayloadBudget(r, self) >= budget {
			return r
		}
	}
	panic("no route has so small a budget")
}

// TestConnPushRouteTooLongForAConfirm: a hub (a fake one on the client's own node) that
// hands out a route so long that no push confirm fits a frame along it makes Conn.Push fail
// with an error, instead of sending empty batches forever.
func TestConnPushRouteTooLongForAConfirm(t *testing.T) {
	node := fakeNode(t)
	// Room for a small message, but less than the publisher's margin for a confirm.
	route := longRoute(280)
	if self := (wire.Route{wire.Local(routing.NewAddress())}); wire.MaxPushBatch(wire.FramePayloadBudget(route, self)-256) != 0 {
		t.Fatal("the route leaves room for a confirm")
	}
	if err := node.Register("stream", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, err := wire.DecodeStreamOpenRequest(bp.Data)
		if err != nil {
			return err
		}
		rep := wire.StreamOpenReply{RequestID: req.RequestID, Status: wire.StatusOK, Partitions: wire.Some(uint64(1))}
		return node.Send(ctx, wire.TransportMessage{OnwardRoute: m.ReturnRoute.Clone(), ReturnRoute: route.Clone(), Payload: wire.EncodePayload(wire.ProtocolStreamOpen, rep)})
	})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	var requests atomic.Int64
	if err := node.Register("fake.s", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, err := wire.DecodePushBatchRequest(bp.Data)
		if err != nil {
			return err
		}
		if requests.Add(1) > 100 {
			cancel() // Push is looping: stop it
		}
		fakeReply(ctx, node, m, wire.ProtocolPushBatch, confirmAll(req))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	c := fakeClient(t, node)
	conn, err := c.Open(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if n, ok, err := conn.OpenStream(ctx, "s"); err != nil || !ok || n != 1 {
		t.Fatalf("OpenStream = %d, %v, %v", n, ok, err)
	}
	idx, err := conn.Push(ctx, "s", 0, [][]byte{[]byte("m")})
	if errors.Is(err, context.Canceled) || requests.Load() > 1 {
		t.Fatalf("Push = %v, %v after %d requests: it kept sending", idx, err, requests.Load())
	}
	if err == nil && len(idx) != 1 {
		t.Fatalf("Push = %v, nil: want one index", idx)
	}
}
