package bistream_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/client/bistream"
	"github.com/sluicehq/sluice/core/wire"
)

// TestPublishDuringRetirementIsNotDropped: a send that took a stream's publisher just before
// a send to another stream began to retire it (WithMaxPublishers) publishes while the
// retirement waits for what was published before. The retirement's Flush does not wait for
// that message, and the publisher's Close gives it only the close timeout: when the hub
// does not confirm it by then, the send that returned nil must not have lost it. Here the
// message is published while the publisher pauses after a refusal (so it is not sent
// before the refused message is given up, which ends the retirement's wait) and the link
// drops everything until the retirement has closed the publisher.
func TestPublishDuringRetirementIsNotDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const limit = 100 // the hub refuses larger messages (push confirm with status ERROR)
	mem, px, node, cli := refusingHubBehindProxy(t, limit)
	// The pause after a refusal (the backoff) leaves time to set the scene; the close
	// timeout is what a retirement's Close gives a message published during its wait.
	pause := client.Backoff{Min: 3 * time.Second, Max: 3 * time.Second, Factor: 1}
	tr, err := bistream.New(node, cli, bistream.WithMaxPublishers(1),
		bistream.WithPublisherOptions(client.WithMaxRejections(1), client.WithBackoff(pause),
			client.WithRequestTimeout(time.Second), client.WithCloseTimeout(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	send := func(to, payload string) error {
		r, err := tr.Route(to, "")
		if err != nil {
			return err
		}
		return node.Send(ctx, wire.TransportMessage{OnwardRoute: append(r, wire.Local("w")), Payload: []byte(payload)})
	}
	if err := send("a", "first"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := send("a", string(make([]byte, 2*limit))); err != nil { // accepted; the hub refuses it
		t.Fatal(err)
	}
	waitFor(t, "the refusal", func() bool { st, _ := tr.PublisherStats("a"); return st.Refused == 1 })

	var (
		once     sync.Once
		other    = make(chan error, 1)
		armed    bool
		flushing = make(chan struct{}) // closed when a's publisher first retires
		retiring sync.Once
	)
	bistream.SetRetireHook(tr, func(stream string) {
		if stream == "a" {
			retiring.Do(func() { close(flushing) })
		}
	})
	bistream.SetPublishHook(tr, func(stream string) {
		if stream != "a" || !armed {
			return
		}
		once.Do(func() {
			// This send holds a's publisher. The link now drops everything, and a send to
			// "b" retires a's publisher, whose Flush waits for the refused message.
			px.SetBlackhole(true)
			go func() { other <- send("b", "other") }() // owned here: received below
			// Not t.Fatal: this is not the test's goroutine. "second" must be published
			// after the retirement's Flush took what it waits for (else that Flush waits
			// for "second", which the black hole holds until the retirement ends): from
			// the hook, which runs just before the Flush, the retirement goroutine does
			// not wait for anything before it does.
			select {
			case <-flushing:
			case <-ctx.Done():
				t.Error("a's publisher never began to retire")
				return
			}
			time.Sleep(50 * time.Millisecond) // lets the retirement's Flush start waiting
		})
	})
	armed = true
	sent := make(chan error, 1)
	go func() { sent <- send("a", "second") }() // owned here: received below
	// The refused message is given up when the pause ends; the retirement then closes a's
	// publisher, giving "second" the close timeout, during which the link drops it.
	waitFor(t, "a's publisher retired", func() bool { return tr.Stats().Retired >= 1 })
	px.SetBlackhole(false)
	if err := <-sent; err != nil {
		t.Fatalf(`the send of "second": %v`, err)
	}
	if err := <-other; err != nil {
		t.Fatalf(`the send to "b": %v`, err)
	}
	_ = tr.Flush(ctx) // reports the refused message; waits for the rest
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := mem.Fetch(ctx, "a", 0, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		env, err := bistream.DecodeEnvelope(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(env.Message.Payload))
	}
	if len(got) < 2 || got[0] != "first" || got[len(got)-1] != "second" {
		t.Fatalf(`stream a holds %q; want "first" and then "second", which a send accepted while the publisher was being retired`, got)
	}
}

// TestFlushAfterCloseReportsUnconfirmed: Flush returns nil only when every message published
// so far was confirmed. Close gave up on a message the hub never confirmed, so a Flush after
// it must say so (an error matching core.ErrClosed), not return nil.
func TestFlushAfterCloseReportsUnconfirmed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, tr, send := offlineDevice(t, bistream.WithPublisherOptions(client.WithCloseTimeout(0)))
	if err := send(ctx, "a"); err != nil { // accepted; never confirmed
		t.Fatal(err)
	}
	if err := tr.Close(); err == nil {
		t.Fatal("Close with an unconfirmed message returned nil")
	}
	if err := tr.Flush(ctx); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Flush after a Close that left a message unconfirmed = %v, want an error matching core.ErrClosed", err)
	}
}

// TestSkipPolicyDoesNotSkipCutShortDeliveries: a subscription fails the handling of a
// message only when its delivery was cut short by a stop (here the device's node closed
// under a running Transport), so that the message comes again after the restart. An error
// policy of Skip among the consumer options must not turn that into a skip: the position
// must not be saved past the messages the closed node never took.
func TestSkipPolicyDoesNotSkipCutShortDeliveries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	th := startHub(t)
	th.preload(ctx, "inbox-x")
	d := newDevice(t, "x")
	fast := client.Backoff{Min: time.Millisecond, Max: time.Millisecond, Factor: 1}
	d.online(th.addr, bistream.WithConsumerOptions(client.WithErrorPolicy(client.Skip), client.WithHandlerRetries(1, fast)))
	waitFor(t, "the subscription to start", func() bool { _, ok := d.sub.Position(); return ok })
	if err := d.node.Close(); err != nil { // the node stops before the Transport
		t.Fatal(err)
	}
	if _, err := th.store.Append(ctx, "inbox-x", 0, [][]byte{envelope("app", "m0"), envelope("app", "m1")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription to try the messages", func() bool {
		st := d.sub.Stats().Consumer
		return st.Received >= 2 || st.HandlerErrors > 0
	})
	d.offline()
	if i, err := th.store.GetIndex(ctx, "device-x", "inbox-x", 0); err == nil && i > 0 {
		t.Fatalf("position %d saved past messages whose delivery the closed node cut short", i)
	} else if err != nil && !errors.Is(err, core.ErrIndexNotFound) {
		t.Fatal(err)
	}
}
