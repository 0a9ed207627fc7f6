package hub_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// TestBackendFailureLogs checks what an operator sees of requests failed by the backend. A
// failure is logged where the hub called the backend, naming the stream, and not a second
// time for the error reply it causes; and while a broker is down, when every client
// retries, each operation's failures are one line per interval that counts them, the others
// at Debug. A request the hub cannot read is still a Warn line of its own, as nothing else
// logs it.
func TestBackendFailureLogs(t *testing.T) {
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &brokenStore{Store: m}
	var logs hubtest.LogBuffer
	h, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: s}, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	hub.SetWarnEvery(h, time.Hour) // one line per operation in this test, however slow
	c := hubtest.Dial(t, addr)
	st := c.Create("outage")
	s.broken.Store(true)

	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("outage-2")})
	c.ExpectError()
	pull := func(id uint64) {
		c.Send(st.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: id, Limit: 1})
		c.ExpectRequestError(wire.ProtocolPullWait, id)
	}
	for id := range uint64(3) {
		pull(id)
	}
	index := wire.Route{wire.Local(hub.IndexAddress)}
	c.Send(index, wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: 3, ClientID: "c", StreamName: "outage"})
	if r := c.Expect(wire.ProtocolIndexGet); r.Protocol != wire.ProtocolIndexGet {
		t.Fatalf("index get reply %+v", r)
	}
	c.Send(index, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "c", StreamName: "outage"})
	c.ExpectError()

	text := logs.String()
	for _, want := range []string{
		`level=ERROR msg="create stream failed" stream=outage-2 partitions=1 err="sluice: unavailable" failures=1 `,
		`level=WARN msg="fetch failed" stream=outage partition=0 index=0 err="sluice: unavailable" failures=1 `,
		`level=ERROR msg="get index failed" client_id=c stream=outage partition=0 err="sluice: unavailable" failures=1 `,
	} {
		if n := strings.Count(text, want); n != 1 {
			t.Errorf("%d lines %s, want 1", n, want)
		}
	}
	if n := strings.Count(text, "level=WARN") + strings.Count(text, "level=ERROR"); n != 3 {
		t.Errorf("%d lines at Warn or above, want one per operation that failed (create, fetch, get index):\n%s", n, text)
	}
	if strings.Contains(text, "error repl") || strings.Contains(text, "index get failed") {
		t.Errorf("a failure already logged where the backend failed is logged again:\n%s", text)
	}

	// Once the interval has passed, the next line counts the failures not logged.
	hub.SetWarnEvery(h, 0)
	pull(4)
	if want := `level=WARN msg="fetch failed" stream=outage partition=0 index=0 err="sluice: unavailable" failures=3 `; !strings.Contains(logs.String(), want) {
		t.Errorf("no line %s after the interval:\n%s", want, logs.String())
	}

	// A request the hub cannot read is logged by its error reply, rate-limited as well: a
	// client that sends them in a loop costs a line per interval, which counts them.
	hub.SetWarnEvery(h, time.Hour)
	for range 3 {
		c.SendPayload(index, []byte{0xff})
		c.ExpectError()
	}
	if n := strings.Count(logs.String(), `level=WARN msg="error replies"`); n != 1 || !strings.Contains(logs.String(), " replies=1 ") {
		t.Errorf("3 undecodable requests were logged in %d lines at Warn, want 1, counting 1:\n%s", n, logs.String())
	}
}

// TestBackendFailureLogsAfterOutage: the failures held back at Debug while a broker is down
// are reported once the interval has passed, also when none follows (the broker came back):
// the lines at Warn count every failure, not just those logged before the outage ended.
// The failures still held back when the hub stops are counted by a line before it stops.
func TestBackendFailureLogsAfterOutage(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(map[bool]string{false: "interval ends", true: "hub stops"}[stop], func(t *testing.T) {
			testFailuresCounted(t, stop)
		})
	}
}

func testFailuresCounted(t *testing.T, stop bool) {
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &brokenStore{Store: m}
	var logs hubtest.LogBuffer
	h, addr := hubtest.Start(t, &core.Backend{Storage: s, Index: s}, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	// Long enough for the pulls below to fall in one interval, short for the test; an
	// hour when the hub's stop must count them.
	hub.SetWarnEvery(h, map[bool]time.Duration{false: 2 * time.Second, true: time.Hour}[stop])
	c := hubtest.Dial(t, addr)
	st := c.Create("outage")
	s.broken.Store(true)
	const pulls = 3
	for id := range uint64(pulls) {
		c.Send(st.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: id, Limit: 1})
		c.ExpectRequestError(wire.ProtocolPullWait, id)
	}
	s.broken.Store(false) // the broker is back: no failure follows
	if stop {
		if err := h.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	counted := func() int {
		n := 0
		for line := range strings.Lines(logs.String()) {
			if !strings.Contains(line, `level=WARN msg="fetch failed" `) {
				continue
			}
			_, v, _ := strings.Cut(line, " failures=")
			v, _, _ = strings.Cut(v, " ")
			f, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("line without a failure count: %s", line)
			}
			n += f
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); counted() != pulls; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the fetch failed lines count %d failures, want %d:\n%s", counted(), pulls, logs.String())
		}
	}
}
