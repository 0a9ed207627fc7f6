package client_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// refusingHub is a fake hub on a node: it refuses (status ERROR) every push request that
// holds the message "bad", counting the refusals of requests that hold it alone and of
// batches, and confirms the others, except that it holds the first request it receives
// without an answer. When it first refuses "bad" it answers that held request with an
// `error` reply, which ends the publisher's session: the publisher opens another and sends
// every unconfirmed message again. Its stream service answers stream_create and
// sluice_stream_open (the stream exists, one partition).
type refusingHub struct {
	node     *routing.Node
	mu       sync.Mutex
	alone    int // refusals of requests holding "bad" alone
	batches  int // refusals of requests holding "bad" and other messages
	held     *routing.Message
	holdNext bool
	first    chan struct{} // closed when the first request is held
	creates  chan struct{} // stream_create waits for it (nil: answered at once)
}

func newRefusingHub(t *testing.T, holdCreates bool) *refusingHub {
	t.Helper()
	h := &refusingHub{node: fakeNode(t), holdNext: true, first: make(chan struct{})}
	if holdCreates {
		h.creates = make(chan struct{})
	}
	if err := h.node.Register("stream", routing.WorkerFunc(h.stream)); err != nil {
		t.Fatal(err)
	}
	if err := h.node.Register("fake.s", routing.WorkerFunc(h.push)); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *refusingHub) stream(ctx context.Context, m *routing.Message) error {
	h.mu.Lock()
	wait := h.creates
	h.mu.Unlock()
	if bp, err := wire.DecodeBasePayload(m.Payload); err == nil && bp.Protocol == wire.ProtocolCreate && wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return answerStreamService(ctx, h.node, m)
}

// releaseCreates lets the held stream_create requests, and later ones, be answered.
func (h *refusingHub) releaseCreates() {
	h.mu.Lock()
	close(h.creates)
	h.creates = nil
	h.mu.Unlock()
}

func (h *refusingHub) push(ctx context.Context, m *routing.Message) error {
	bp, err := wire.DecodeBasePayload(m.Payload)
	if err != nil {
		return err
	}
	req, err := wire.DecodePushBatchRequest(bp.Data)
	if err != nil {
		return err
	}
	bad := slices.ContainsFunc(req.Messages, func(d []byte) bool { return string(d) == "bad" })
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !bad && h.holdNext:
		h.holdNext = false
		h.held = m
		close(h.first)
	case !bad:
		fakeReply(ctx, h.node, m, wire.ProtocolPushBatch, confirmAll(req))
	default:
		if len(req.Messages) == 1 {
			h.alone++
		} else {
			h.batches++
		}
		fakeReply(ctx, h.node, m, wire.ProtocolPushBatch, wire.PushBatchConfirm{RequestID: req.RequestID, Status: wire.StatusError})
		if h.held != nil { // the refusal first, then the end of the session
			fakeReply(ctx, h.node, h.held, wire.ProtocolError, wire.Error{Reason: "test: session ends"})
			h.held = nil
		}
	}
	return nil
}

func (h *refusingHub) refusals() (alone, batches int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.alone, h.batches
}

// TestMaxRejectionsExactAfterSessionFailure: WithMaxRejections(n) gives up on a message
// once the hub refused n requests that held it alone. A refused batch counts for none of
// its messages, which are then each sent alone: so the hub refuses the message n times
// alone, and at most once in a batch. That holds also when the session fails after a
// refusal and the publisher sends every unconfirmed message again:
//
//   - "alone": "bad" was refused alone, then the session fails while "a", published before
//     it, is unconfirmed. The next session must not send "bad" again in a batch behind "a"
//     (its refusals are used up with n 1).
//   - "batch": "bad" was refused in the batch ["bad", "c"], then the session fails while
//     the batch ["a1", "a2"] before it is unconfirmed. The next session must send "bad"
//     alone, not in a batch again because the messages before it used up the requests
//     the publisher sends with one message each.
//
// Every other message is delivered; "bad"'s Ack and Flush report ErrGaveUp.
func TestMaxRejectionsExactAfterSessionFailure(t *testing.T) {
	for _, tc := range []struct {
		name          string
		maxRejections int
		msgs          []string // published in this order
		batched       bool     // all published before the session is up, in batches of 2
		wantBatches   int      // refusals of batches holding "bad"
	}{
		{name: "alone/1", maxRejections: 1, msgs: []string{"a", "bad"}},
		{name: "alone/2", maxRejections: 2, msgs: []string{"a", "bad"}},
		{name: "batch/1", maxRejections: 1, msgs: []string{"a1", "a2", "bad", "c"}, batched: true, wantBatches: 1},
		{name: "batch/2", maxRejections: 2, msgs: []string{"a1", "a2", "bad", "c"}, batched: true, wantBatches: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newRefusingHub(t, tc.batched)
			c, err := client.New(h.node, wire.Route{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a guard, not a timing assertion
			defer cancel()
			opts := []client.PublisherOption{client.WithMaxRejections(tc.maxRejections), client.WithBackoff(fastBackoff),
				client.WithRequestTimeout(time.Hour), client.WithCloseTimeout(0)}
			if tc.batched {
				opts = append(opts, client.WithMaxBatch(2))
			}
			p := newPublisher(t, c, "s", opts...)
			acks := map[string]*client.Ack{}
			for _, m := range tc.msgs {
				a, err := p.Publish(ctx, []byte(m))
				if err != nil {
					t.Fatal(err)
				}
				acks[m] = a
				if !tc.batched && m == "a" {
					select {
					case <-h.first: // "a" is in flight alone
					case <-ctx.Done():
						t.Fatal("the hub did not receive the first message")
					}
				}
			}
			if tc.batched {
				h.releaseCreates()
			}
			if err := p.Flush(ctx); !errors.Is(err, client.ErrGaveUp) {
				t.Fatalf("Flush = %v, want ErrGaveUp", err)
			}
			for m, a := range acks {
				_, err := a.Wait(ctx)
				if m == "bad" && !errors.Is(err, client.ErrGaveUp) || m != "bad" && err != nil {
					t.Errorf("Ack of %q = %v", m, err)
				}
			}
			alone, batches := h.refusals()
			if alone != tc.maxRejections || batches != tc.wantBatches {
				t.Fatalf("the hub refused \"bad\" %d times alone and %d times in a batch, want %d and %d (WithMaxRejections(%d)); stats %+v",
					alone, batches, tc.maxRejections, tc.wantBatches, tc.maxRejections, p.Stats())
			}
		})
	}
}
