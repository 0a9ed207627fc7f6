package hubtest

import (
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// GateAddress is the local address at which NewGate registers a Gate on the hub's node.
// Clients send their stream service requests through it with
// client.WithStreamService(hubtest.GateAddress).
const GateAddress = "gate"

// Gate is a worker in front of a hub's stream service. It counts the requests by protocol
// and, before it forwards one to the stream service, runs the function set with SetBefore,
// which may answer the request itself (it returns true): the request is then not forwarded.
// A test uses it to see which requests a client sent, or to act between two of them (delete
// a stream, answer as an older hub would).
type Gate struct {
	node   *routing.Node
	mu     sync.Mutex
	counts map[string]int
	before func(ctx context.Context, msg *routing.Message, protocol string) (answered bool)
}

// NewGate registers a Gate at GateAddress on h's node, unregistered when the test ends.
func NewGate(t testing.TB, h *hub.Hub) *Gate {
	t.Helper()
	g := &Gate{node: h.Node(), counts: map[string]int{}}
	if err := g.node.Register(GateAddress, g); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.node.Unregister(GateAddress) })
	return g
}

// HandleMessage counts msg, runs the SetBefore function, and forwards msg to the stream
// service unless that answered it.
func (g *Gate) HandleMessage(ctx context.Context, msg *routing.Message) error {
	bp, err := wire.DecodeBasePayload(msg.Payload)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.counts[bp.Protocol]++
	before := g.before
	g.mu.Unlock()
	if before != nil && before(ctx, msg, bp.Protocol) {
		return nil
	}
	return g.node.Send(ctx, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(hub.StreamAddress)}, ReturnRoute: msg.ReturnRoute, Payload: msg.Payload})
}

// SetBefore makes the gate run before on every request before it forwards it (nil: none).
func (g *Gate) SetBefore(before func(ctx context.Context, msg *routing.Message, protocol string) (answered bool)) {
	g.mu.Lock()
	g.before = before
	g.mu.Unlock()
}

// Count returns how many requests of the given protocols the gate received.
func (g *Gate) Count(protocols ...string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, p := range protocols {
		n += g.counts[p]
	}
	return n
}

// Counts returns the number of requests received so far, by protocol.
func (g *Gate) Counts() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.counts)
}
