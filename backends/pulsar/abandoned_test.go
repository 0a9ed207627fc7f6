package pulsar

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// lastIDGoroutines returns the stacks of the goroutines waiting in pulsar-client-go's
// GetLastMessageID.
func lastIDGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "getLastMessageID") {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseAfterAbandonedLastMessageID: store A keeps a reader of a stream (a Fetch that
// caught up), store B deletes the stream, and A's next Fetch must find out where the
// partition ends. It used to ask the kept reader (GetLastMessageID, on a goroutine that
// Close waited for): that reader reconnects to its deleted topic, the question waits for it
// without limit, and A's Close blocked for more than a minute (here, with or without the
// Fetch's ctx ending first). A's Close must return and leave no GetLastMessageID running.
// The waits are guards against those hangs, not timing asserts.
func TestCloseAfterAbandonedLastMessageID(t *testing.T) {
	for _, giveUp := range []struct {
		name string
		ctx  time.Duration // of the Fetch
	}{{"ctx ends", ownAppendWait / 2}, {"no answer", time.Minute}} {
		t.Run(giveUp.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			a, err := openStore(t, ctx, "prefix=readers-")
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					a.Close()
				}
			}()
			b := readerStore(t, ctx)
			stream, idx := readerCacheStream(t, a, ctx, 2)
			got, err := a.Fetch(ctx, stream, 0, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			checkFetched(t, got, idx, 0, 2)
			if err := b.DeleteStream(ctx, stream); err != nil {
				t.Fatal(err)
			}
			fctx, fcancel := context.WithTimeout(ctx, giveUp.ctx)
			_, err = a.Fetch(fctx, stream, 0, idx[1]+1, 10)
			fcancel()
			t.Logf("store A's Fetch after B deleted the stream: %v", err)
			// A Close that waited for the abandoned GetLastMessageID would never return: a
			// guard against that hang, not a timing assertion.
			done := make(chan struct{})
			go func() { a.Close(); close(done) }()
			select {
			case <-done:
				closed = true
			case <-time.After(time.Minute):
				closed = true // leaked: Close blocks
				t.Fatalf("store A's Close has not returned a minute after it started (goroutines in GetLastMessageID: %d)", len(lastIDGoroutines()))
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(lastIDGoroutines()) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("10s after Close, GetLastMessageID still runs:\n%s", strings.Join(lastIDGoroutines(), "\n\n"))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
