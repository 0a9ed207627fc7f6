package hub_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestPartitionRouteSurvivesRestart checks that a client may keep pushing to the route of a
// partition it learned from an Init after the hub restarted, without creating the stream
// again: the new hub creates the partition worker on first use because the backend has
// that partition.
func TestPartitionRouteSurvivesRestart(t *testing.T) {
	const guard = 20 * time.Second // bounds blocking steps; not a timing assertion
	b := openMemory(t)
	defer b.Close()
	ctx := context.Background()

	h1, err := hub.New(b, hub.WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	a, err := h1.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := a.String()

	node, err := routing.NewNode(routing.WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	tr, err := tcp.New(node)
	if err != nil {
		t.Fatal(err)
	}
	inbox := make(chan *routing.Message, 16)
	if err := node.Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		inbox <- m
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	send := func(onward wire.Route, payload []byte) {
		t.Helper()
		if err := node.Send(ctx, wire.TransportMessage{OnwardRoute: onward, ReturnRoute: wire.Route{wire.Local("app")}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(protocol string) (wire.BasePayload, wire.Route) {
		t.Helper()
		select {
		case m := <-inbox:
			bp, err := wire.DecodeBasePayload(m.Payload)
			if err != nil || bp.Protocol != protocol {
				t.Fatalf("reply %q (%v), want %q", bp.Protocol, err, protocol)
			}
			return bp, m.ReturnRoute
		case <-time.After(guard):
			t.Fatalf("no %s reply", protocol)
		}
		return wire.BasePayload{}, nil
	}

	send(wire.Route{wire.TCP(addr), wire.Local(hub.StreamAddress)}, wire.EncodePayload(wire.ProtocolCreatePartitioned,
		wire.CreateStreamPartitionedRequest{StreamName: wire.Some("restart"), Partitions: 2}))
	var route wire.Route
	var conn wire.Address // the client's connection to the first hub
	for range 2 {
		bp, ret := recv(wire.ProtocolCreatePartitioned)
		in, err := wire.DecodeInitPartitioned(bp.Data)
		if err != nil {
			t.Fatal(err)
		}
		if in.Partition == 1 {
			conn, route = ret[0], tr.StableRoute(ret)
		}
	}
	if len(route) == 0 || route[0].Type != wire.AddressTCP {
		t.Fatalf("stable route to partition 1 = %v", route)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	select { // the client saw its connection close: the next send dials the new hub
	case <-tr.Done(conn):
	case <-time.After(guard):
		t.Fatal("the client's connection outlived the hub")
	}

	// A new hub on the same backend and address, which never saw the stream created.
	h2, err := hub.New(b, hub.WithLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	for deadline := time.Now().Add(guard); ; time.Sleep(10 * time.Millisecond) {
		if _, err = h2.Listen(addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	send(route, wire.EncodePayload(wire.ProtocolPush, wire.PushRequest{RequestID: 7, Data: []byte("after restart")}))
	bp, _ := recv(wire.ProtocolPush)
	c, err := wire.DecodePushConfirm(bp.Data)
	if err != nil || c.RequestID != 7 || c.Status != wire.StatusOK {
		t.Fatalf("push after restart: %+v, %v", c, err)
	}
	msgs, err := b.Storage.Fetch(ctx, "restart", 1, c.Index, 10)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "after restart" {
		t.Fatalf("Fetch partition 1 = %v, %v", msgs, err)
	}

	// Only partitions the backend has get a worker.
	for _, missing := range []string{"stream.restart.2", "stream.never-created.0", "stream.restart"} {
		err := h2.Node().Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(missing)}, ReturnRoute: wire.Route{wire.Local("app")},
			Payload: wire.EncodePayload(wire.ProtocolPush, wire.PushRequest{RequestID: 8, Data: []byte("x")})})
		if !errors.Is(err, routing.ErrNoRoute) {
			t.Errorf("send to %s = %v, want ErrNoRoute", missing, err)
		}
	}
}

// TestPublisherAcrossPlannedRestart checks that a publisher that gives up on refused
// messages (client.WithMaxRejections) loses none across a planned hub restart: a push that
// reaches the hub while it drains is not taken (not refused), so the publisher resends it
// to the restarted hub instead of counting it. Both request kinds are covered: plain Ockam
// stream_push (WithMaxBatch(1)) and sluice_push_batch.
func TestPublisherAcrossPlannedRestart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBatch int
	}{{"stream_push", 1}, {"sluice_push_batch", client.DefaultMaxBatch}} {
		t.Run(tc.name, func(t *testing.T) {
			const guard = 30 * time.Second // bounds blocking steps; not a timing assertion
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			g, b := newGated(t)
			h1, err := hub.New(b, hub.WithLogger(quietLogger))
			if err != nil {
				t.Fatal(err)
			}
			defer h1.Close()
			a, err := h1.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, err := client.Dial(a.String(), client.WithLogger(quietLogger))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fast := client.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond, Factor: 2}
			p, err := client.NewPublisher(ctx, c, "planned", client.WithMaxBatch(tc.maxBatch), client.WithMaxRejections(1), client.WithBackoff(fast))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()

			// The session is established: a push from now on reaches the hub at once.
			warm, err := p.Publish(ctx, []byte("warm-up"))
			if err != nil {
				t.Fatal(err)
			}
			<-g.started
			g.release <- struct{}{}
			if _, err := warm.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			// Another device's push keeps the hub draining while the publisher pushes.
			other := hubtest.Dial(t, a.String())
			other.Send(other.Create("planned").Route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("other")})
			<-g.started
			shut := make(chan error, 1)
			go func() { shut <- h1.Shutdown(context.Background()) }()
			for !hub.PushesClosed(h1, "planned", 0) {
				time.Sleep(time.Millisecond)
			}
			late, err := p.Publish(ctx, []byte("late"))
			if err != nil {
				t.Fatal(err)
			}
			for m := h1.Metrics(); m.Errors+m.PushErrors == 0; m = h1.Metrics() { // late answered
				if ctx.Err() != nil {
					t.Fatal("the draining hub never answered the publisher's push")
				}
				time.Sleep(time.Millisecond)
			}
			g.release <- struct{}{}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}

			h2, err := hub.New(&core.Backend{Storage: g.Storage, Index: b.Index}, hub.WithLogger(quietLogger))
			if err != nil {
				t.Fatal(err)
			}
			defer h2.Close()
			if _, err := h2.Listen(a.String()); err != nil {
				t.Fatal(err)
			}
			if _, err := late.Wait(ctx); err != nil {
				t.Fatalf("message pushed while the hub drained: %v (stats %+v)", err, p.Stats())
			}
			if st := p.Stats(); st.GaveUp != 0 {
				t.Fatalf("stats %+v, want nothing given up", st)
			}
		})
	}
}
