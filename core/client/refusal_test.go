package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub"
)

// refusingStore fails the append of the message "bad" while refuse is not 0 (counting it
// down; below 0 it fails every time), once sent reports that the publisher sent its three
// messages, so that the refusal reaches the publisher while "after" is in flight. It holds
// the first append of "after" until release is closed, so that "after" is still in flight
// when the publisher handles the refusal.
type refusingStore struct {
	core.Storage
	refuse  atomic.Int64
	sent    func() bool
	release chan struct{}
	held    atomic.Bool
}

func (s *refusingStore) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	for _, m := range msgs {
		switch string(m) {
		case "bad":
			for i := 0; !s.sent(); i++ { // bounded: the publisher sends all three at once
				if i == 30_000 {
					return nil, errors.New("test: the publisher did not send its three messages")
				}
				time.Sleep(time.Millisecond)
			}
			if n := s.refuse.Load(); n != 0 {
				s.refuse.Add(-1)
				return nil, fmt.Errorf("%w: test: injected append failure", core.ErrUnavailable)
			}
		case "after":
			if s.held.CompareAndSwap(false, true) {
				select {
				case <-s.release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
	}
	return s.Storage.Append(ctx, stream, partition, msgs)
}

// TestRefusedRequestRetriedAlone checks that a push request the hub refuses (status ERROR)
// is sent again alone: the session goes on, the requests in flight beside it are not sent
// again (each neighbour is stored once), the refused message is stored once the hub takes
// it, or given up on after WithMaxRejections refusals, and a message published after the
// refusal is not sent before it.
func TestRefusedRequestRetriedAlone(t *testing.T) {
	for _, tc := range []struct {
		name          string
		refuse        int64 // refusals of "bad" before the backend stores it; -1: always
		maxRejections int
		want          []string // the stream afterwards
	}{
		{"transient", 1, 0, []string{"before", "after", "bad", "later"}},
		{"permanent", -1, 2, []string{"before", "after", "later"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, err := memory.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			var pub atomic.Pointer[client.Publisher]
			st := &refusingStore{Storage: mem, release: make(chan struct{}), sent: func() bool {
				p := pub.Load()
				return p != nil && p.Stats().Sent >= 3
			}}
			st.refuse.Store(tc.refuse)
			// One request per backend append: only the request holding "bad" fails.
			h := startHubOn(t, &core.Backend{Storage: st, Index: mem}, hub.WithMaxBatch(1, 1<<20))
			c := dial(t, h.Addr)
			refusals := make(chan error, 100)
			p := newPublisher(t, c, "refusal", client.WithMaxBatch(1), client.WithBackoff(fastBackoff),
				client.WithMaxRejections(tc.maxRejections),
				client.WithPublisherSessionErrors(func(err error) {
					select {
					case refusals <- err:
					default:
					}
				}))
			pub.Store(p)
			ctx := t.Context()
			var acks []*client.Ack
			for _, m := range []string{"before", "bad", "after"} {
				a, err := p.Publish(ctx, []byte(m))
				if err != nil {
					t.Fatal(err)
				}
				acks = append(acks, a)
			}
			select {
			case err := <-refusals:
				if !errors.Is(err, client.ErrRejected) || errors.Is(err, core.ErrUnavailable) {
					t.Fatalf("first error reported = %v, want a refusal (ErrRejected, not ErrUnavailable)", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no refusal reported within 30s")
			}
			a, err := p.Publish(ctx, []byte("later"))
			if err != nil {
				t.Fatal(err)
			}
			acks = append(acks, a)
			close(st.release) // "after" was in flight all along; the hub stores it now
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			for i, a := range acks {
				_, err := a.Wait(wctx)
				switch {
				case i == 1 && tc.refuse < 0:
					if !errors.Is(err, client.ErrGaveUp) {
						t.Errorf("ack of the message always refused = %v, want ErrGaveUp", err)
					}
				case err != nil:
					t.Errorf("ack of message %d: %v", i, err)
				}
			}
			msgs, err := mem.Fetch(ctx, "refusal", 0, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range msgs {
				got = append(got, string(m.Data))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("stream holds %q, want %q: each neighbour once, in order", got, tc.want)
			}
			// "bad" is sent again once: stored, or refused for the second time; nothing else
			// is sent twice.
			wantRefused := uint64(1)
			if tc.refuse < 0 {
				wantRefused = 2
			}
			st2 := p.Stats()
			if st2.Retried != 0 || st2.Reconnects != 0 || st2.Refused != wantRefused || st2.Resent != 1 || st2.Sent != 5 {
				t.Errorf("stats %+v; want no session failure or reconnect, Refused %d, Resent 1, Sent 5 (only the refused message again)", st2, wantRefused)
			}
			if tc.refuse < 0 && st2.GaveUp != 1 {
				t.Errorf("stats %+v; want GaveUp 1", st2)
			}
		})
	}
}
