package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// TestConsumerStreamDeletedAndCreatedAgain: a stream deleted (through the backend, as a
// tool or another hub does) while a consumer reads it, then created again with new
// messages from index 0. The consumer's next pull is refused (the stream is gone); it must
// forget its in-memory position and read the new stream from its beginning: with a client
// id from the saved index, which the deletion removed (memory and bbolt implement
// core.IndexDeleter), so from the start index; without one from the start index. Before the
// fix it went on from its old position and skipped the new stream's first messages.
//
// The consumer's session error handler holds the consumer until the test has created the
// stream again, so that the consumer does not create it first (which would be as good, but
// is not what this test is about).
func TestConsumerStreamDeletedAndCreatedAgain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bbolt    bool
		clientID string
	}{
		{"memory/client_id", false, "reader"},
		{"bbolt/client_id", true, "reader"},
		{"memory/no_client_id", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h *testHub
			if tc.bbolt {
				h = startBboltHub(t)
			} else {
				h = startHub(t)
			}
			const stream = "recreated"
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
			defer cancel()
			store := h.Store
			appendData := func(prefix string, n int) {
				t.Helper()
				var msgs [][]byte
				for i := range n {
					msgs = append(msgs, fmt.Appendf(nil, "%s-%d", prefix, i))
				}
				if _, err := store.Append(ctx, stream, 0, msgs); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := store.CreateStream(ctx, stream, 1); err != nil {
				t.Fatal(err)
			}
			appendData("old", 3)

			var mu sync.Mutex
			var got []string
			handled := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
			sessionErrs := make(chan error, 1)
			release := make(chan struct{})
			var releaseOnce sync.Once
			releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
			opts := []client.ConsumerOption{
				client.WithConsumerBackoff(fastBackoff), client.WithPullWait(50 * time.Millisecond),
				client.WithConsumerSessionErrors(func(err error) {
					select {
					case sessionErrs <- err: // the first failure: wait for the test
						<-release
					default:
					}
				}),
			}
			if tc.clientID != "" {
				opts = append(opts, client.WithClientID(tc.clientID))
			}
			cons, err := client.NewConsumer(dial(t, h.Addr), stream, func(_ context.Context, m core.Message) error {
				mu.Lock()
				got = append(got, string(m.Data))
				mu.Unlock()
				return nil
			}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			stop := runConsumer(t, cons)
			t.Cleanup(releaseAll) // runs before runConsumer's cleanup, which waits for Run
			waitFor(t, "the old messages handled", func() bool { return len(handled()) == 3 })
			if tc.clientID != "" {
				waitFor(t, "index 3 saved", func() bool {
					i, err := h.Store.(core.IndexStorage).GetIndex(ctx, tc.clientID, stream, 0)
					return err == nil && i == 3
				})
			}

			if err := store.(core.StreamDeleter).DeleteStream(ctx, stream); err != nil {
				t.Fatal(err)
			}
			var sessionErr error
			select {
			case sessionErr = <-sessionErrs: // the consumer's pull of the deleted stream failed
			case <-ctx.Done():
				t.Fatalf("the consumer never noticed the deleted stream (stats %+v)", cons.Stats())
			}
			if _, err := store.CreateStream(ctx, stream, 1); err != nil {
				t.Fatal(err)
			}
			appendData("new", 5)
			releaseAll()

			waitFor(t, "new-4 handled", func() bool { h := handled(); return len(h) > 0 && h[len(h)-1] == "new-4" })
			want := []string{"old-0", "old-1", "old-2", "new-0", "new-1", "new-2", "new-3", "new-4"}
			if h := handled(); !slices.Equal(h, want) {
				t.Fatalf("handled %q, want %q: the consumer did not read the stream created again from index 0", h, want)
			}
			if !errors.Is(sessionErr, core.ErrStreamNotFound) {
				t.Errorf("the session error after the deletion = %v, want one matching ErrStreamNotFound", sessionErr)
			}
			if pos, ok := cons.Position(); !ok || pos != 5 {
				t.Errorf("Position = %d, %v; want 5, true", pos, ok)
			}
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			if tc.clientID != "" {
				if i, err := h.Store.(core.IndexStorage).GetIndex(ctx, tc.clientID, stream, 0); err != nil || i != 5 {
					t.Errorf("saved index after Run = %d, %v; want 5", i, err)
				}
			}
		})
	}
}

// TestConsumerWithoutCreateRunAgainAfterDeletion: a consumer with WithoutCreate whose
// stream is deleted while it reads still ends Run with ErrStreamNotFound, and forgets its
// position; run again once the stream was created again with new messages, it reads them
// from index 0 (its saved index went with the stream), not from its old position. It learns
// that the stream is gone from a refused pull ("pull"), or, when its connection was lost
// meanwhile and it never saw one, from the hub's answer to the next session
// ("reconnect": the proxy holds every byte from before the deletion, then resets).
func TestConsumerWithoutCreateRunAgainAfterDeletion(t *testing.T) {
	for _, reconnect := range []bool{false, true} {
		name := map[bool]string{false: "pull", true: "reconnect"}[reconnect]
		t.Run(name, func(t *testing.T) {
			h := startHub(t)
			px := newProxy(t, h.Addr)
			const stream = "recreated"
			ctx := t.Context()
			store := h.Store
			if _, err := store.CreateStream(ctx, stream, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Append(ctx, stream, 0, [][]byte{[]byte("old-0"), []byte("old-1"), []byte("old-2")}); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var got []string
			handled := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
			wait := 50 * time.Millisecond
			if reconnect {
				wait = time.Second // the hub's maximum here: the pull stays parked while the proxy holds it
			}
			cons, err := client.NewConsumer(dial(t, px.Addr()), stream, func(_ context.Context, m core.Message) error {
				mu.Lock()
				got = append(got, string(m.Data))
				mu.Unlock()
				return nil
			}, client.WithoutCreate(), client.WithClientID("reader"), client.WithConsumerBackoff(fastBackoff), client.WithPullWait(wait))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- runUntilDone(t, cons) }() // ends when the stream is gone (or the guard)
			waitFor(t, "the old messages handled", func() bool { return len(handled()) == 3 })
			waitFor(t, "index 3 saved", func() bool {
				i, err := store.(core.IndexStorage).GetIndex(ctx, "reader", stream, 0)
				return err == nil && i == 3
			})
			if reconnect {
				px.Pause()
			}
			if err := store.(core.StreamDeleter).DeleteStream(ctx, stream); err != nil {
				t.Fatal(err)
			}
			if reconnect {
				if px.ResetAll() == 0 {
					t.Fatal("the proxy had no connection to reset")
				}
				px.Resume()
			}
			if err := <-done; !errors.Is(err, core.ErrStreamNotFound) {
				t.Fatalf("Run after the stream was deleted = %v, want ErrStreamNotFound", err)
			}
			if reconnect && cons.Stats().PullErrors == 0 {
				t.Fatalf("stats %+v: no failed pull: the consumer did not lose its connection", cons.Stats())
			}
			if pos, ok := cons.Position(); ok {
				t.Errorf("Position after Run ended on the deleted stream = %d, known; want it forgotten", pos)
			}
			if _, err := store.CreateStream(ctx, stream, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Append(ctx, stream, 0, [][]byte{[]byte("new-0"), []byte("new-1"), []byte("new-2"), []byte("new-3"), []byte("new-4")}); err != nil {
				t.Fatal(err)
			}
			stop := runConsumer(t, cons)
			waitFor(t, "new-4 handled", func() bool { h := handled(); return len(h) > 0 && h[len(h)-1] == "new-4" })
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("second Run = %v, want context.Canceled", err)
			}
			want := []string{"old-0", "old-1", "old-2", "new-0", "new-1", "new-2", "new-3", "new-4"}
			if h := handled(); !slices.Equal(h, want) {
				t.Fatalf("handled %q, want %q: the second Run did not read the stream created again from index 0", h, want)
			}
		})
	}
}
