package hub_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestPullOfMessageTooLargeForTheRoute: a message of the hub's largest size fits a pull
// reply along a return route of up to about 500 bytes (see hub.MaxFrameMessageSize) and
// no longer. A pull along a longer one is answered, under each pull protocol, with an
// error that says the message does not fit one frame with that route (not with a reply too
// large to send, nor with silence); the same pull along a short route gets the message.
func TestPullOfMessageTooLargeForTheRoute(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := isolatedHub(t, b)
	defer h.Close()
	c := hubtest.Dial(t, addr)
	s := c.Create("largest")
	if conf := c.Push(s, 1, make([]byte, h.MaxMessageSize())); conf.Status != wire.StatusOK {
		t.Fatalf("push of %d bytes: status %d", h.MaxMessageSize(), conf.Status)
	}
	const want = "does not fit in one frame with this route"
	short := c.Self
	c.Self = append(short.Clone(), wire.Local(strings.Repeat("p", 1000)))
	c.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: 2, Limit: 1})
	if reason := c.ExpectError(); !strings.Contains(reason, want) {
		t.Errorf("%s along a long route: error %q, want one that says the message %s", wire.ProtocolPull, reason, want)
	}
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 3, Limit: 1})
	if reason := c.ExpectRequestError(wire.ProtocolPullWait, 3); !strings.Contains(reason, want) {
		t.Errorf("%s along a long route: error %q, want one that says the message %s", wire.ProtocolPullWait, reason, want)
	}
	c.Send(s.Route, wire.ProtocolPullBatch, wire.PullBatchRequest{RequestID: 4, Limit: 1, MaxBytes: 1 << 20})
	if reason := c.ExpectRequestError(wire.ProtocolPullBatch, 4); !strings.Contains(reason, want) {
		t.Errorf("%s along a long route: error %q, want one that says the message %s", wire.ProtocolPullBatch, reason, want)
	}
	for i, self := range []wire.Route{short, append(short.Clone(), wire.Local(strings.Repeat("p", 300)))} {
		c.Self = self
		if pr := c.Pull(s, uint64(5+i), 0, 1); len(pr.Messages) != 1 || len(pr.Messages[0].Data) != h.MaxMessageSize() {
			t.Fatalf("pull along a route of %d bytes: %d messages, want the one of %d bytes", self.Size(), len(pr.Messages), h.MaxMessageSize())
		}
	}
}
