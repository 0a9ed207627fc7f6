package client

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// doneSpy is a context that reports the first call of its Done method: Flush calls it only
// once it has looked at the queue and is about to wait.
type doneSpy struct {
	context.Context
	once   sync.Once
	called chan struct{}
}

func (c *doneSpy) Done() <-chan struct{} {
	c.once.Do(func() { close(c.called) })
	return c.Context.Done()
}

// failedWhileWriting is a publisher p of partition 1 of a stream that does not exist, which
// failed for good while a Publish was writing its message to the outbox: the test holds
// that write with its write transaction until release; published receives the Publish's
// result.
type failedWhileWriting struct {
	ctx       context.Context
	p         *Publisher
	release   func() error // rolls the transaction back (once; the test's end does if not)
	published chan publishResult
}

type publishResult struct {
	ack *Ack
	err error
}

// failWhileWriting sets up a failedWhileWriting. A fake hub on the client's node holds its
// sluice_stream_open answer ("no such stream") until the Publish is inside the outbox
// write; it returns once the run loop has ended.
func failWhileWriting(t *testing.T, opts ...PublisherOption) failedWhileWriting {
	t.Helper()
	node, err := routing.NewNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	asked, answer := make(chan struct{}, 1), make(chan struct{})
	if err := node.Register(DefaultStreamService, routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, err := wire.DecodeBasePayload(m.Payload)
		if err != nil || bp.Protocol != wire.ProtocolStreamOpen {
			return err
		}
		req, err := wire.DecodeStreamOpenRequest(bp.Data)
		if err != nil {
			return err
		}
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-answer:
		case <-ctx.Done():
			return ctx.Err()
		}
		reply := wire.StreamOpenReply{RequestID: req.RequestID, Status: wire.StatusOK} // no partitions: no such stream
		return node.Send(ctx, wire.TransportMessage{OnwardRoute: m.ReturnRoute.Clone(), ReturnRoute: wire.Route{wire.Local(DefaultStreamService)},
			Payload: wire.EncodePayload(wire.ProtocolStreamOpen, reply)})
	})); err != nil {
		t.Fatal(err)
	}
	c, err := New(node, wire.Route{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a guard, not a timing assertion
	t.Cleanup(cancel)
	p, err := NewPublisher(ctx, c, "absent", append([]PublisherOption{WithPartition(1),
		WithOutbox(filepath.Join(t.TempDir(), "outbox.db")), WithRequestTimeout(time.Hour)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	select {
	case <-asked: // the run loop waits for the answer
	case <-ctx.Done():
		t.Fatal("the publisher did not ask for its partition")
	}
	tx, err := p.ob.db.Begin(true) // the outbox write of the Publish below waits for it
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() (err error) {
		once.Do(func() { err = tx.Rollback() })
		return err
	}
	t.Cleanup(func() { _ = release() }) // before p.Close, whose closing of the outbox waits for it
	published := make(chan publishResult, 1)
	go func() {
		a, err := p.Publish(ctx, []byte("m"))
		published <- publishResult{a, err}
	}()
	for queued := false; !queued; { // the Publish has queued its entry: it is in the outbox write
		p.mu.Lock()
		queued = len(p.queue) == 1
		p.mu.Unlock()
		if !queued {
			time.Sleep(time.Millisecond)
		}
	}
	close(answer)
	select {
	case <-p.stopped: // failed for good: the run loop has ended
	case <-ctx.Done():
		t.Fatal("the publisher did not fail")
	}
	return failedWhileWriting{ctx: ctx, p: p, release: release, published: published}
}

// flushWaiting starts a Flush of p and returns once it found the message not done and
// waits; the Flush's result arrives on the channel.
func flushWaiting(ctx context.Context, p *Publisher) <-chan error {
	spy := &doneSpy{Context: ctx, called: make(chan struct{})}
	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(spy) }()
	<-spy.called
	return flushed
}

// TestFlushOfFailedPublisherReportsItsError: a publisher of partition 1 whose stream does
// not exist fails for good while a Publish is still writing its message to the outbox. A
// Flush waiting for that message must return the publisher's error (matching
// core.ErrStreamNotFound), not a bare core.ErrClosed as if the user had closed the
// publisher: the run loop has stopped, but the message is not done until its Publish fails
// it. The Flush starts after the publisher failed; the outbox write is let go only once the
// Flush waits.
func TestFlushOfFailedPublisherReportsItsError(t *testing.T) {
	f := failWhileWriting(t)
	flushed := flushWaiting(f.ctx, f.p)
	if err := f.release(); err != nil {
		t.Fatal(err)
	}
	err := <-flushed
	if !errors.Is(err, core.ErrStreamNotFound) || errors.Is(err, core.ErrClosed) {
		t.Fatalf("Flush of a publisher that failed for good = %v, want its error (core.ErrStreamNotFound), not core.ErrClosed", err)
	}
	r := <-f.published
	if r.err != nil {
		t.Fatalf("Publish = %v; want an Ack that reports the failure", r.err)
	}
	if _, err := r.ack.Wait(f.ctx); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Ack = %v, want core.ErrStreamNotFound", err)
	}
	if err := f.p.Flush(f.ctx); err != nil {
		t.Fatalf("a second Flush = %v, want nil: the failure was reported once", err)
	}
}

// TestFlushOfFailedPublisherEndsAtClose: a Flush waiting for the message of a publisher that
// failed for good, whose Publish is still writing it to the outbox, returns when the user
// closes the publisher (with an error matching core.ErrClosed: Close left the message
// unconfirmed), before that write ends. The Publish then marks the message failed while
// Close completes the Acks it left: Close must have taken them under the publisher's lock
// (-race fails it otherwise).
func TestFlushOfFailedPublisherEndsAtClose(t *testing.T) {
	f := failWhileWriting(t, WithCloseTimeout(0))
	flushed := flushWaiting(f.ctx, f.p)
	closed := make(chan error, 1)
	go func() { closed <- f.p.Close() }() // closing the outbox waits for the write
	err := <-flushed
	if !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Flush ended by Close = %v, want core.ErrClosed", err)
	}
	if err := f.release(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err == nil {
		t.Fatal("Close with a message left unconfirmed returned nil")
	}
	<-f.published
}
