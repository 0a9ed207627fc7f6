package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// TestConsumerPullAnswered: WithConsumerPullAnswered reports each answered pull with its
// number of messages, before the handler sees them, and 0 once the stream has no more.
func TestConsumerPullAnswered(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "answered")
	for _, m := range []string{"a", "b"} {
		if _, err := p.PublishSync(t.Context(), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var events []string
	add := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	empty := make(chan struct{})
	var once sync.Once
	cons, err := client.NewConsumer(c, "answered", func(_ context.Context, m core.Message) error {
		add(string(m.Data))
		return nil
	}, client.WithPullWait(10*time.Millisecond), client.WithConsumerPullAnswered(func(n int) {
		add(fmt.Sprintf("pull %d", n))
		if n == 0 {
			once.Do(func() { close(empty) })
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, cons)
	<-empty
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := strings.Join(events[:min(4, len(events))], ", "), "pull 2, a, b, pull 0"; got != want {
		t.Errorf("events %q, want %q first", got, want)
	}
	if _, err := client.NewConsumer(c, "answered", func(context.Context, core.Message) error { return nil }, client.WithConsumerPullAnswered(nil)); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("WithConsumerPullAnswered(nil): err %v, want core.ErrInvalidOption", err)
	}
}

// TestConsumerPollsWithoutPullWait: with WithPullWait(0) the hub answers a pull of an idle
// stream at once, and the consumer pauses the backoff's Min between empty pulls instead of
// sending the next at once; it still gets what is published later.
func TestConsumerPollsWithoutPullWait(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "polled")
	var empty atomic.Int64
	got := make(chan string, 1)
	cons, err := client.NewConsumer(c, "polled", func(_ context.Context, m core.Message) error {
		got <- string(m.Data)
		return nil
	}, client.WithPullWait(0), client.WithConsumerBackoff(client.Backoff{Min: 100 * time.Millisecond, Max: time.Second, Factor: 2}),
		client.WithConsumerPullAnswered(func(n int) {
			if n == 0 {
				empty.Add(1)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, cons)
	waitFor(t, "an empty pull", func() bool { return empty.Load() > 0 })
	start := empty.Load()
	time.Sleep(time.Second)
	// 100ms between empty pulls: about 10 in the second, fewer on a slow machine. Without
	// the pause a consumer makes hundreds or thousands.
	if n := empty.Load() - start; n > 50 {
		t.Fatalf("%d empty pulls in a second with WithPullWait(0) and a backoff Min of 100ms: the consumer does not pause between them", n)
	}
	if _, err := p.PublishSync(t.Context(), []byte("late")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "late" {
			t.Fatalf("handled %q, want \"late\"", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a message published to a polled stream was not handled within 10s; stats %+v", cons.Stats())
	}
}
