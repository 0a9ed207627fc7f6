package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// holdingHub is a fake hub on a node that holds every push request, unanswered, until
// release; from then on it confirms each request, except that it refuses (status ERROR)
// those holding a message that starts with "bad". got receives every message it receives.
type holdingHub struct {
	node     *routing.Node
	got      chan string
	mu       sync.Mutex
	held     []*routing.Message
	released bool
}

func newHoldingHub(t *testing.T) *holdingHub {
	t.Helper()
	h := &holdingHub{node: fakeNode(t), got: make(chan string, 100)}
	if err := h.node.Register("stream", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		return answerStreamService(ctx, h.node, m)
	})); err != nil {
		t.Fatal(err)
	}
	if err := h.node.Register("fake.s", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		req, err := decodePush(m)
		if err != nil {
			return err
		}
		for _, d := range req.Messages {
			select {
			case h.got <- string(d):
			default:
			}
		}
		h.mu.Lock()
		if !h.released {
			h.held = append(h.held, m)
			h.mu.Unlock()
			return nil
		}
		h.mu.Unlock()
		h.answer(ctx, m)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.release) // a test that fails early lets its publishers close
	return h
}

func decodePush(m *routing.Message) (wire.PushBatchRequest, error) {
	bp, err := wire.DecodeBasePayload(m.Payload)
	if err != nil {
		return wire.PushBatchRequest{}, err
	}
	return wire.DecodePushBatchRequest(bp.Data)
}

func (h *holdingHub) answer(ctx context.Context, m *routing.Message) {
	req, err := decodePush(m)
	if err != nil {
		return
	}
	for _, d := range req.Messages {
		if strings.HasPrefix(string(d), "bad") {
			fakeReply(ctx, h.node, m, wire.ProtocolPushBatch, wire.PushBatchConfirm{RequestID: req.RequestID, Status: wire.StatusError})
			return
		}
	}
	fakeReply(ctx, h.node, m, wire.ProtocolPushBatch, confirmAll(req))
}

// release answers the requests held so far, and the later ones as they come.
func (h *holdingHub) release() {
	h.mu.Lock()
	h.released = true
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, m := range held {
		h.answer(context.Background(), m)
	}
}

// TestClientCloseClosesAtOnce: Client.Close closes its publishers all at once, not one
// after another (each waits up to its close timeout for its confirms, so one after another
// a hub that does not answer would make Close take that many close timeouts). A fake hub
// holds every publisher's message unconfirmed and the close timeouts are an hour: no
// publisher's Close can end before the hub answers, and the hub answers only once every
// publisher is closing (Publish says ErrClosed). Then it confirms two messages and refuses
// two, which the publishers give up on (WithMaxRejections(1)): Close returns when every
// publisher has closed (every Ack complete), with their errors joined, each naming its
// publisher's stream.
func TestClientCloseClosesAtOnce(t *testing.T) {
	const n = 4
	h := newHoldingHub(t)
	c, err := client.New(h.node, wire.Route{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a guard, not a timing assertion
	defer cancel()
	var (
		pubs []*client.Publisher
		acks []*client.Ack
	)
	for i := range n {
		p, err := client.NewPublisher(ctx, c, fmt.Sprintf("s%d", i), client.WithCloseTimeout(time.Hour), client.WithRequestTimeout(time.Hour),
			client.WithMaxRejections(1), client.WithBackoff(fastBackoff))
		if err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf("m%d", i)
		if i < 2 {
			data = fmt.Sprintf("bad%d", i)
		}
		a, err := p.Publish(ctx, []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		pubs, acks = append(pubs, p), append(acks, a)
	}
	for range n { // every message is in flight, held by the hub
		select {
		case <-h.got:
		case <-ctx.Done():
			t.Fatal("the hub did not receive every message")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	done, stop := context.WithCancel(context.Background())
	stop() // Publish with an ended context queues nothing: it says whether the publisher is closing
	closing := func(p *client.Publisher) bool {
		_, err := p.Publish(done, []byte("probe"))
		return errors.Is(err, core.ErrClosed)
	}
	waitFor(t, "every publisher closing while none can have finished (Client.Close closes them one after another?)", func() bool {
		for _, p := range pubs {
			if !closing(p) {
				return false
			}
		}
		return true
	})
	h.release()
	err = <-closed
	for i, a := range acks {
		select {
		case <-a.Done():
		default:
			t.Errorf("the Ack of publisher %d is not complete when Client.Close returned: its Close had not ended", i)
			continue
		}
		_, aerr := a.Wait(ctx)
		if i < 2 && !errors.Is(aerr, client.ErrGaveUp) || i >= 2 && aerr != nil {
			t.Errorf("Ack of publisher %d = %v", i, aerr)
		}
	}
	if !errors.Is(err, client.ErrGaveUp) {
		t.Fatalf("Client.Close = %v, want the publishers' errors (ErrGaveUp)", err)
	}
	for i := range n {
		named := strings.Contains(err.Error(), fmt.Sprintf("close publisher to %q", fmt.Sprintf("s%d", i)))
		if named != (i < 2) {
			t.Errorf("Client.Close = %v: names publisher to s%d: %v, want %v", err, i, named, i < 2)
		}
	}
}
