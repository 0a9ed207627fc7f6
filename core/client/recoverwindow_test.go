package client_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// TestRecoveredMessagesKeepTheWindow: a publisher keeps at most its window of messages in
// flight, also when it starts with more than that in its outbox (left there by publishers
// whose hub did not confirm them). It must not send every recovered message at once: on a
// slow hub the last of those requests would time out, and the publisher would resend all of
// them again. A fake hub holds its confirms until the test releases them; it may have
// received at most the window's messages meanwhile, and the publisher read only those from
// the outbox. Then everything is delivered in order.
func TestRecoveredMessagesKeepTheWindow(t *testing.T) {
	const window, n = 8, 40
	node := fakeNode(t)
	registerFakeStreamService(t, node)
	var (
		mu       sync.Mutex
		stored   [][]byte
		held     []func() // confirms of requests not answered yet
		hold     = true
		received = make(chan struct{}, n*10)
	)
	if err := node.Register("fake.s", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, _ := wire.DecodeBasePayload(m.Payload)
		req, err := wire.DecodePushBatchRequest(bp.Data)
		if err != nil {
			return err
		}
		c := wire.PushBatchConfirm{RequestID: req.RequestID, Status: wire.StatusOK}
		mu.Lock()
		for _, d := range req.Messages {
			c.Indexes = append(c.Indexes, uint64(len(stored)))
			stored = append(stored, append([]byte(nil), d...))
			received <- struct{}{}
		}
		ret := m.ReturnRoute.Clone()
		confirm := func() {
			_ = node.Send(context.Background(), wire.TransportMessage{OnwardRoute: ret, ReturnRoute: wire.Route{wire.Local("fake.s")}, Payload: wire.EncodePayload(wire.ProtocolPushBatch, c)})
		}
		if hold {
			held = append(held, confirm)
			mu.Unlock()
			return nil
		}
		mu.Unlock()
		confirm()
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	c := fakeClient(t, node)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
	defer cancel()
	path := filepath.Join(t.TempDir(), "outbox.db")

	// n messages in the outbox, none confirmed: a publisher with a window for all of them,
	// closed at once.
	p1, err := client.NewPublisher(ctx, c, "s", client.WithOutbox(path), client.WithWindow(n), client.WithCloseTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := p1.Publish(ctx, msg(0, uint32(i), 8)); err != nil {
			t.Fatal(err)
		}
	}
	for range n { // p1 sent them all (its window holds them)
		select {
		case <-received:
		case <-ctx.Done():
			t.Fatal("the hub did not receive the first publisher's messages")
		}
	}
	_ = p1.Close() // reports the unconfirmed messages, which stay in the outbox
	mu.Lock()
	stored, held = nil, nil // the hub lost what p1 sent (it never confirmed it)
	mu.Unlock()

	p2, err := client.NewPublisher(ctx, c, "s", client.WithOutbox(path), client.WithWindow(window), client.WithMaxBatch(4),
		client.WithRequestTimeout(time.Hour), client.WithBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if st := p2.Stats(); st.Recovered != n {
		t.Fatalf("Recovered = %d, want %d", st.Recovered, n)
	}
	for range window {
		select {
		case <-received:
		case <-ctx.Done():
			t.Fatalf("the hub received fewer than the window's %d messages", window)
		}
	}
	// With every confirm held, nothing more may be sent: watch for a while.
	select {
	case <-received:
		mu.Lock()
		got := len(stored)
		mu.Unlock()
		t.Fatalf("the hub received %d or more messages with none confirmed, more than the window of %d (stats %+v)", got, window, p2.Stats())
	case <-time.After(500 * time.Millisecond):
	}
	// Only the messages sent are read from the outbox: the others' bytes stay in the file.
	if loaded, inFile := client.MessagesInMemory(p2); loaded != window || inFile != n-window {
		t.Errorf("with the window's %d messages sent, %d messages are in memory and %d only in the outbox; want %d and %d", window, loaded, inFile, window, n-window)
	}
	mu.Lock()
	hold = false
	release := held
	held = nil
	mu.Unlock()
	for _, f := range release {
		f()
	}
	if err := p2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	oc := newOrderChecker()
	for _, d := range stored {
		oc.add(d)
	}
	oc.check(t)
	if got := oc.count(0); got != n {
		t.Fatalf("the stream holds %d of the %d messages in order", got, n)
	}
}
