package bistream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// stuckSender is a routing.Sender that takes nothing until its ctx ends: it reports that
// it was entered, then returns ctx.Err(), as a delivery cut short by a stop does.
type stuckSender struct{ entered chan struct{} }

func (s stuckSender) Send(ctx context.Context, _ wire.TransportMessage) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestDeliveryCutShortByCloseComesAgain: a delivery that the stop cuts short is not
// skipped: the subscription does not save its position past the message, and the device
// gets it after its restart. (Nothing else is pending that could hold the position back.)
func TestDeliveryCutShortByCloseComesAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	th.preload(ctx, "inbox-x", envelope("app", "m0"))
	d := newDevice(t, "x")
	stuck := stuckSender{entered: make(chan struct{}, 1)}
	if err := d.node.RegisterSender("app", stuck); err != nil {
		t.Fatal(err)
	}
	d.online(th.addr)
	select {
	case <-stuck.entered:
	case <-ctx.Done():
		t.Fatal("m0 was never delivered")
	}
	d.offline() // cuts the delivery of m0 short
	if i, err := th.store.GetIndex(ctx, "device-x", "inbox-x", 0); err == nil && i > 0 {
		t.Fatalf("position %d saved past m0, whose delivery the stop cut short", i)
	} else if err != nil && !errors.Is(err, core.ErrIndexNotFound) {
		t.Fatal(err)
	}
	if err := d.node.Unregister("app"); err != nil {
		t.Fatal(err)
	}
	var got inbox
	if err := d.node.Register("app", routing.WorkerFunc(func(_ context.Context, m *routing.Message) error {
		got.add(string(m.Payload))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	d.online(th.addr)
	waitFor(t, "m0 after the restart", func() bool { return len(got.get()) > 0 })
	if g := got.get(); g[0] != "m0" {
		t.Fatalf("got %q after the restart, want m0", g)
	}
}

// TestCloseStopsSubscriptions: when Transport.Close returns, its subscriptions have
// stopped.
func TestCloseStopsSubscriptions(t *testing.T) {
	th := startHub(t)
	d := newDevice(t, "x")
	d.online(th.addr)
	sub := d.sub
	defer sub.Close() // idempotent; only does something if Close left it running
	waitFor(t, "the subscription's position", func() bool { _, ok := sub.Position(); return ok })
	_ = d.tr.Close() // the client stays open: only the transport stops the subscription
	select {
	case <-sub.Done():
	default:
		t.Fatal("a subscription is still running after Transport.Close returned")
	}
	d.offline()
}

// TestFlushIncludesOutboxesNotReopenedYet: after a restart with more outboxes than
// WithMaxPublishers allows, Flush returns nil only once the messages of every outbox, also
// those still waiting to be reopened, are on the hub.
func TestFlushIncludesOutboxesNotReopenedYet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const streams = 4
	dir := t.TempDir()
	pubOpts := bistream.WithPublisherOptions(client.WithCloseTimeout(50*time.Millisecond), client.WithBackoff(fastBackoff))
	_, _, tr, send := offlineDevice(t, bistream.WithOutboxDir(dir), bistream.WithMaxPublishers(streams), pubOpts)
	for i := range streams {
		if err := send(ctx, fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = tr.Close() // unconfirmed: every outbox stays

	th := startHub(t)
	d := newDevice(t, "x")
	d.online(th.addr, bistream.WithOutboxDir(dir), bistream.WithMaxPublishers(1))
	if err := d.tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range streams {
		msgs, err := th.store.Fetch(ctx, fmt.Sprint("s", i), 0, 0, 10)
		if err != nil && !errors.Is(err, core.ErrStreamNotFound) {
			t.Fatal(err)
		}
		if len(msgs) != 1 {
			t.Errorf("Flush returned nil, but stream s%d holds %d messages, want the one from its outbox", i, len(msgs))
		}
	}
}
