package client_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/client"
)

// TestBatchCappedToWhatTheHubConfirms: a publisher allowed batches larger than the hub can
// confirm in one frame (its confirm carries an index per message) sends a long queue of tiny
// messages in batches the hub takes (at most wire.MaxPushBatch of a frame): none is refused.
// The queue is built while the hub is out of reach, so the
// session that comes back finds all of it ready at once.
func TestBatchCappedToWhatTheHubConfirms(t *testing.T) {
	const n = 20_000 // 1-byte messages: some 30,000 fit in a request's bytes
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr())
	p := newPublisher(t, c, "tiny", client.WithMaxBatch(n), client.WithWindow(n),
		client.WithRequestTimeout(200*time.Millisecond), client.WithBackoff(fastBackoff))
	ctx := t.Context()
	if _, err := p.PublishSync(ctx, []byte{0}); err != nil { // the session is up
		t.Fatal(err)
	}
	px.Pause()
	acks := make([]*client.Ack, n)
	for i := range acks {
		a, err := p.Publish(ctx, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		acks[i] = a
	}
	waitFor(t, "a request timeout", func() bool { return p.Stats().Timeouts > 0 })
	px.Resume()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for i, a := range acks {
		if _, err := a.Wait(ctx); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if st := p.Stats(); st.Refused != 0 {
		t.Errorf("the hub refused %d messages: stats %+v", st.Refused, st)
	}
}

// TestConnPushManyTinyMessages: Conn.Push (the remote backend's append) of more tiny
// messages than one confirm can hold sends them in requests the hub takes, and returns an
// index for each, in order.
func TestConnPushManyTinyMessages(t *testing.T) {
	const n = 20_000
	h := startHub(t)
	c := dial(t, h.Addr)
	ctx := t.Context()
	conn := openWithStream(t, c, "tiny")
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = []byte{byte(i)}
	}
	idx, err := conn.Push(ctx, "tiny", 0, msgs)
	if err != nil {
		t.Fatalf("Push of %d 1-byte messages: %v", n, err)
	}
	for i, x := range idx {
		if x != uint64(i) {
			t.Fatalf("index %d of %d is %d, want %d", i, len(idx), x, i)
		}
	}
	if len(idx) != n {
		t.Fatalf("Push returned %d indexes for %d messages", len(idx), n)
	}
}
