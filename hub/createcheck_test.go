package hub_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// reportedCreate is a backend whose CreateStream creates the stream but reports partitions
// partitions (a broken backend when that is not what it created), and counts its calls.
type reportedCreate struct {
	core.Storage
	partitions int
	calls      atomic.Int32
}

func (s *reportedCreate) CreateStream(ctx context.Context, name string, n int) (int, error) {
	s.calls.Add(1)
	if _, err := s.Storage.CreateStream(ctx, name, n); err != nil {
		return 0, err
	}
	return s.partitions, nil
}

// TestCreateValidatesNameBeforeBackend checks that the hub refuses a stream_create with an
// invalid stream name itself, without asking the backend (which may not check names as
// core does), and counts only the creates that succeed in Metrics.Creates.
func TestCreateValidatesNameBeforeBackend(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	s := &reportedCreate{Storage: mem.Storage, partitions: 1}
	h, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: mem.Index}, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("no spaces/here")})
	c.ExpectError()
	if n := s.calls.Load(); n != 0 {
		t.Fatalf("the backend's CreateStream was called %d times for an invalid name, want 0", n)
	}
	if m := h.Metrics(); m.Creates != 0 {
		t.Fatalf("Metrics.Creates = %d after a refused create, want 0", m.Creates)
	}
	c.Create("fine")
	if m := h.Metrics(); m.Creates != 1 {
		t.Fatalf("Metrics.Creates = %d after one create, want 1", m.Creates)
	}
}

// TestCreateRefusesZeroPartitions checks that a backend reporting a stream of no partitions
// gets the client an error reply, not silence (no Init to send).
func TestCreateRefusesZeroPartitions(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	s := &reportedCreate{Storage: mem.Storage, partitions: 0}
	_, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: mem.Index}, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("empty")})
	c.ExpectError()
}
