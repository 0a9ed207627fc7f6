package hub_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestParkedPullsCappedPerConnection: one connection cannot park more long polls than
// WithMaxParkedPullsPerConnection, over all partitions, even with each partition far below
// WithMaxParkedPulls. One beyond is answered as one beyond the partition's cap is: at once,
// with no messages, counted in PullWaitsRefused. The cap is the connection's, not the hub's
// (another connection still parks), and a poll that is answered frees its place.
func TestParkedPullsCappedPerConnection(t *testing.T) {
	b := openBbolt(t)
	defer b.Close()
	h, addr := isolatedHub(t, b, hub.WithMaxParkedPullsPerConnection(3))
	defer h.Close()
	c := hubtest.Dial(t, addr)
	parts := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "capped-per-conn", 5)
	wait := func(c *hubtest.Conn, part int, id uint64) {
		c.Send(parts[part].Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: id, Index: 0, Limit: 1, WaitMS: 60_000})
	}
	parked := func(want uint64) {
		t.Helper()
		if !waitFor(20*time.Second, func() bool { return h.Metrics().PullWaits >= want }) {
			t.Fatalf("%d long polls parked, want %d", h.Metrics().PullWaits, want)
		}
	}
	for i := range 3 {
		wait(c, i, uint64(i+1))
	}
	parked(3)
	wait(c, 3, 4) // a fourth partition, where nothing is parked
	if pr := c.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 4 || len(pr.Messages) != 0 {
		t.Fatalf("reply to request %d with %d messages, want request 4 answered at once with none", pr.RequestID, len(pr.Messages))
	}
	if m := h.Metrics(); m.PullWaitsRefused != 1 || m.PullWaits != 3 {
		t.Fatalf("pull_waits_refused %d, pull_waits %d; want 1 and 3", m.PullWaitsRefused, m.PullWaits)
	}

	other := hubtest.Dial(t, addr)
	wait(other, 3, 1)
	parked(4)

	// A push answers c's poll on partition 0; c may park another one then.
	pusher := hubtest.Dial(t, addr)
	if pc := pusher.Push(parts[0], 1, []byte("x")); pc.Status != wire.StatusOK {
		t.Fatalf("push status %d", pc.Status)
	}
	if pr := c.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 1 || len(pr.Messages) != 1 {
		t.Fatalf("reply to request %d with %d messages, want request 1 with the message pushed", pr.RequestID, len(pr.Messages))
	}
	wait(c, 4, 5)
	parked(5)
	if m := h.Metrics(); m.PullWaitsRefused != 1 {
		t.Fatalf("pull_waits_refused %d, want 1 (the poll of another connection, or one after an answered poll, was refused)", m.PullWaitsRefused)
	}
}
