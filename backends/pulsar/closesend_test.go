package pulsar

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// sendingProducer is a producer whose SendAsync waits for release, and which records a Close
// made while a SendAsync ran: pulsar-client-go's Close closes the channel that SendAsync
// sends on, and a send at that moment panics.
type sendingProducer struct {
	pulsar.Producer
	entered  chan struct{} // one value per SendAsync that started
	release  chan struct{}
	inSend   atomic.Int32
	sends    atomic.Int32
	closed   atomic.Bool
	overlaps atomic.Int32 // Closes made while a SendAsync ran
}

func (p *sendingProducer) SendAsync(_ context.Context, _ *pulsar.ProducerMessage, f func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	p.sends.Add(1)
	p.inSend.Add(1)
	p.entered <- struct{}{}
	<-p.release
	p.inSend.Add(-1)
	f(nil, nil, pulsar.ErrProducerClosed)
}

func (p *sendingProducer) Close() {
	if p.inSend.Load() > 0 {
		p.overlaps.Add(1)
	}
	p.closed.Store(true)
}

// TestCloseSlotWaitsForSendAsync: a producer the Store closes (a deleted stream, an eviction,
// Close) is not closed while an append hands it messages, and an append that comes once the
// closing started does not send to it.
func TestCloseSlotWaitsForSendAsync(t *testing.T) {
	s := offlineStore(t, "")
	const topic = "persistent://public/default/closing-partition-0"
	p := &sendingProducer{entered: make(chan struct{}, 4), release: make(chan struct{})}
	sl := &producerSlot{topic: topic, ready: make(chan struct{}), p: p}
	close(sl.ready)
	s.mu.Lock()
	s.producers[topic] = sl
	s.mu.Unlock()

	const guard = time.Minute // against a hang, not a timing assertion
	first := make(chan error, 1)
	go s.appendTopicAsync(t.Context(), "closing", 0, [][]byte{[]byte("m")}, func(_ []uint64, err error) { first <- err })
	select {
	case <-p.entered:
	case <-time.After(guard):
		t.Fatal("the append did not send")
	}
	closed := make(chan struct{})
	go func() { closeSlot(sl); close(closed) }()
	select {
	case <-closed:
		t.Error("closeSlot returned while an append's SendAsync ran")
	case <-time.After(200 * time.Millisecond):
	}
	close(p.release)
	select {
	case <-closed:
	case <-time.After(guard):
		t.Fatal("closeSlot did not return once the SendAsync ended")
	}
	if n := p.overlaps.Load(); n != 0 || !p.closed.Load() {
		t.Fatalf("Close made while SendAsync ran: %d times; closed: %v", n, p.closed.Load())
	}
	if err := <-first; !errors.Is(err, pulsar.ErrProducerClosed) {
		t.Fatalf("the first append: %v, want the producer's ErrProducerClosed", err)
	}
	// An append that took the slot before the Store forgot it and sends after closeSlot
	// started: put the slot back where such an append found it.
	s.mu.Lock()
	s.producers[topic] = sl
	s.mu.Unlock()
	sends := p.sends.Load()
	late := make(chan error, 1)
	s.appendTopicAsync(t.Context(), "closing", 0, [][]byte{[]byte("n")}, func(_ []uint64, err error) { late <- err })
	if err := <-late; !errors.Is(err, pulsar.ErrProducerClosed) {
		t.Errorf("an append to the closed producer: %v, want an error matching pulsar.ErrProducerClosed", err)
	}
	if p.sends.Load() != sends {
		t.Error("an append sent to a producer after its Close")
	}
}
