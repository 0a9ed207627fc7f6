package hub_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// countingFetch counts the messages the hub reads from the backend.
type countingFetch struct {
	core.Storage
	fetched atomic.Int64
}

func (c *countingFetch) Fetch(ctx context.Context, s string, p int, from uint64, limit int) ([]core.Message, error) {
	m, err := c.Storage.Fetch(ctx, s, p, from, limit)
	c.fetched.Add(int64(len(m)))
	return m, err
}

// TestPullReadsEachMessageOnce pages through large messages, each pull continuing where the
// previous reply ended (frames hold about 15 messages of 4 KiB): every message is delivered
// once, in order, and the hub reads each message from the backend once — messages fetched but
// not sent for lack of room in a frame serve the next pull.
func TestPullReadsEachMessageOnce(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cf := &countingFetch{Storage: s}
	_, addr := hubtest.Start(t, &core.Backend{Storage: cf, Index: s})
	c := hubtest.Dial(t, addr)
	st := c.Create("pages")
	const n = 200
	for i := range n {
		if pc := c.Push(st, uint64(i+1), bytes.Repeat([]byte{byte(i)}, 4096)); pc.Status != 0 {
			t.Fatalf("push %d: status %v", i, pc.Status)
		}
	}
	var next uint64
	for id := uint64(1); next < n; id++ {
		resp := c.Pull(st, id, next, 256)
		if len(resp.Messages) == 0 {
			t.Fatalf("pull from %d: empty before the end", next)
		}
		for _, m := range resp.Messages {
			if m.Index != next || len(m.Data) != 4096 || m.Data[0] != byte(next) {
				t.Fatalf("pull got index %d (%d bytes), want index %d", m.Index, len(m.Data), next)
			}
			next++
		}
	}
	if got := cf.fetched.Load(); got != n {
		t.Fatalf("the hub read %d messages from the backend to deliver %d; want each read once", got, n)
	}
}
