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
