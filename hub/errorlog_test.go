package hub_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// brokenStore is a memory store whose CreateStream, Fetch and GetIndex fail while broken is
// set, like a broker that went away.
type brokenStore struct {
	*memory.Store
	broken atomic.Bool
}

var errBroken = core.ErrUnavailable

func (s *brokenStore) CreateStream(ctx context.Context, name string, n int) (int, error) {
	if s.broken.Load() {
		return 0, errBroken
	}
	return s.Store.CreateStream(ctx, name, n)
}

func (s *brokenStore) Fetch(ctx context.Context, name string, p int, from uint64, limit int) ([]core.Message, error) {
	if s.broken.Load() {
		return nil, errBroken
	}
	return s.Store.Fetch(ctx, name, p, from, limit)
}

func (s *brokenStore) GetIndex(ctx context.Context, clientID, name string, p int) (uint64, error) {
	if s.broken.Load() {
		return 0, errBroken
	}
	return s.Store.GetIndex(ctx, clientID, name, p)
}

// TestBackendFailureLoggedOnce checks that a request failed by the backend is one log line
// at Warn or above (where the hub called the backend, naming the stream), not a second one
// for the error reply it causes: during an outage every client retries, and each retry
// would otherwise cost two lines. A request the hub cannot read is still a Warn line of
// its own, as nothing else logs it.
func TestBackendFailureLoggedOnce(t *testing.T) {
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &brokenStore{Store: m}
	var logs hubtest.LogBuffer
	_, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: s}, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := hubtest.Dial(t, addr)
	st := c.Create("outage")
	s.broken.Store(true)

	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("outage-2")})
	c.ExpectError()
	c.Send(st.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 2, Limit: 1})
	c.ExpectRequestError(wire.ProtocolPullWait, 2)
	index := wire.Route{wire.Local(hub.IndexAddress)}
	c.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: 3, ClientID: "c", StreamName: "outage"})
	if r := c.Expect(wire.ProtocolIndexGet); r.Protocol != wire.ProtocolIndexGet {
		t.Fatalf("index get reply %+v", r)
	}
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "c", StreamName: "outage"})
	c.ExpectError()

	text := logs.String()
	for want, n := range map[string]int{
		`level=ERROR msg="create stream failed" stream=outage-2`: 1,
		`level=WARN msg="fetch failed" stream=outage`:            1,
		`level=ERROR msg="get index failed" client_id=c`:         2, // sluice_index_get, stream_index
	} {
		if got := strings.Count(text, want); got != n {
			t.Errorf("%d lines %s, want %d", got, want, n)
		}
	}
	if n := strings.Count(text, "level=WARN") + strings.Count(text, "level=ERROR"); n != 4 {
		t.Errorf("%d lines at Warn or above for 4 requests failed by the backend, want one each:\n%s", n, text)
	}
	if strings.Contains(text, "error reply") || strings.Contains(text, "index get failed") {
		t.Errorf("a failure already logged where the backend failed is logged again:\n%s", text)
	}

	// A request the hub cannot read is logged by its error reply.
	c.SendPayload(index, []byte{0xff})
	c.ExpectError()
	if !strings.Contains(logs.String(), `level=WARN msg="error reply"`) {
		t.Errorf("an undecodable request was not logged at Warn:\n%s", logs.String())
	}
}
