package faultproxy_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/transport/faultproxy"
)

// chunkDelayed reports whether a goroutine of the proxy is waiting out the delay of a chunk
// it read: pump itself blocked in a select (its other waits are in await or in a read).
func chunkDelayed() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.SplitN(g, "\n", 3)
		if len(lines) >= 2 && strings.Contains(lines[0], "[select") &&
			strings.Contains(lines[1], "faultproxy.(*Proxy).pump(") {
			return true
		}
	}
	return false
}

// TestResetCutsDelayShort checks that a link reset while it holds a chunk in its delay
// stops at once: it leaves the proxy (Active, and its place under WithMaxConns) without
// waiting out the delay, so that a new connection is accepted, as ResetAll promises.
func TestResetCutsDelayShort(t *testing.T) {
	p := newProxy(t, echoServer(t), faultproxy.WithDelay(time.Hour), faultproxy.WithMaxConns(1))
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("slow")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the chunk to be held in its delay", chunkDelayed)
	if n := p.ResetAll(); n != 1 {
		t.Fatalf("ResetAll reset %d links, want 1", n)
	}
	waitFor(t, "the reset link to leave the proxy", func() bool { return p.Stats().Active == 0 })
	p.SetDelay(0)
	roundTrip(t, dial(t, p.Addr()), []byte("next"))
	if st := p.Stats(); st.Refused != 0 {
		t.Fatalf("Refused = %d, want 0: the reset link still counted against WithMaxConns(1)", st.Refused)
	}
}
