package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// heldIndex is an IndexStorage whose GetIndex (with holdGet) or SaveIndex (with holdSave)
// does not answer until release is closed, whatever its ctx says: a hub whose index service
// does not answer. entered is closed when the first held call starts.
type heldIndex struct {
	core.IndexStorage
	holdGet, holdSave bool
	entered           chan struct{}
	release           chan struct{}
	once              sync.Once
}

func newHeldIndex(get, save bool) *heldIndex {
	return &heldIndex{holdGet: get, holdSave: save, entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldIndex) hold() {
	h.once.Do(func() { close(h.entered) })
	<-h.release
}

func (h *heldIndex) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if h.holdGet {
		h.hold()
	}
	return h.IndexStorage.GetIndex(ctx, clientID, stream, partition)
}

func (h *heldIndex) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	if h.holdSave {
		h.hold()
	}
	return h.IndexStorage.SaveIndex(ctx, clientID, stream, partition, index)
}

// startHeldIndexHub starts a hub on a memory backend whose index service is idx.
func startHeldIndexHub(t *testing.T, idx *heldIndex) *testHub {
	t.Helper()
	m, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	idx.IndexStorage = m
	return startHubOn(t, &core.Backend{Storage: m, Index: idx})
}

// closeReturns calls Close on cons and reports whether it returned before release is
// closed (the hub answers) or the test's bound.
func closeReturns(t *testing.T, cons *client.Consumer, release chan struct{}) bool {
	t.Helper()
	done := make(chan struct{})
	go func() { // owned by the test: ends when Close returns (at the latest after release)
		_ = cons.Close()
		close(done)
	}()
	bound := time.NewTimer(20 * time.Second)
	defer bound.Stop()
	select {
	case <-done:
		return true
	case <-bound.C:
		close(release) // let the hub answer, so that Close and the test can end
		<-done
		return false
	}
}

// TestConsumerCloseDuringIndexLookup: Close stops a consumer that waits for the hub's answer
// to its saved-index lookup; it does not wait for the hub to answer.
func TestConsumerCloseDuringIndexLookup(t *testing.T) {
	idx := newHeldIndex(true, false)
	h := startHeldIndexHub(t, idx)
	c := dial(t, h.Addr)
	cons, err := client.NewConsumer(c, "held-get", func(context.Context, core.Message) error { return nil },
		client.WithClientID("closer"), client.WithConsumerRequestTimeout(time.Hour), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(context.Background()) }() // owned by the test: ends with Close
	<-idx.entered
	released := false
	if !closeReturns(t, cons, idx.release) {
		released = true
		t.Error("Close waited for the hub to answer the saved-index lookup")
	}
	if err := <-errc; err != nil {
		t.Errorf("Run after Close = %v, want nil", err)
	}
	if !released {
		close(idx.release)
	}
}

// TestConsumerCloseWithSaveUnanswered: Close returns while the hub does not answer the save
// of the consumer's position: Run's final save is brief.
func TestConsumerCloseWithSaveUnanswered(t *testing.T) {
	idx := newHeldIndex(false, true)
	h := startHeldIndexHub(t, idx)
	c := dial(t, h.Addr)
	p := newPublisher(t, c, "held-save")
	if _, err := p.PublishSync(t.Context(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	cons, err := client.NewConsumer(c, "held-save", func(context.Context, core.Message) error { return nil },
		client.WithClientID("closer"), client.WithConsumerRequestTimeout(time.Hour), client.WithConsumerBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(context.Background()) }() // owned by the test: ends with Close
	<-idx.entered                                          // the message was handled; its position is being saved
	released := false
	if !closeReturns(t, cons, idx.release) {
		released = true
		t.Error("Close waited for the hub to answer the save of the position")
	}
	if err := <-errc; err != nil {
		t.Errorf("Run after Close = %v, want nil", err)
	}
	if !released {
		close(idx.release)
	}
}
