package hub_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// lagging is a core.AsyncAppender that reads the messages of each AppendAsync only after
// the next one has started (or after a short quiet spell, for the last one): by then the
// hub has read further frames from the connection, so a frame buffer handed back to the
// transport before the backend was done with it would already hold other bytes.
type lagging struct {
	core.Storage
	calls chan lagCall
}

type lagCall struct {
	ctx    context.Context
	stream string
	part   int
	msgs   [][]byte
	done   func([]uint64, error)
}

func (l *lagging) AppendAsync(ctx context.Context, s string, p int, msgs [][]byte, done func([]uint64, error)) {
	l.calls <- lagCall{ctx, s, p, msgs, done}
}

// run stores the calls in start order, each one call late; it returns when stop is closed.
func (l *lagging) run(stop <-chan struct{}) {
	var held *lagCall
	store := func() {
		idx, err := l.Storage.Append(held.ctx, held.stream, held.part, held.msgs)
		held.done(idx, err)
		held = nil
	}
	for {
		var quiet <-chan time.Time
		if held != nil {
			quiet = time.After(5 * time.Millisecond)
		}
		select {
		case c := <-l.calls:
			if held != nil {
				store()
			}
			held = &c
		case <-quiet:
			store()
		case <-stop:
			return
		}
	}
}

// reuseMsg is message seq of publisher pub: 1 KiB whose every byte depends on both.
func reuseMsg(pub, seq int) []byte {
	m := make([]byte, 1024)
	for i := range m {
		m[i] = byte(seq*7 + pub*31 + i)
	}
	copy(m, fmt.Sprintf("%d-%08d|", pub, seq))
	return m
}

// TestPushedBytesOutliveFrameReuse pushes large batches (frames from the transport's buffer
// pool) from two publishers through a backend that reads each batch late, and checks that
// the stream holds every message with its exact bytes: the hub hands a frame's buffer back
// only after the backend is done with the messages in it.
func TestPushedBytesOutliveFrameReuse(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	l := &lagging{Storage: mem, calls: make(chan lagCall, 64)}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() { // owned by the test: stopped by the cleanup below
		defer close(stopped)
		l.run(stop)
	}()
	_, addr := hubtest.Start(t, &core.Backend{Storage: l, Index: mem})
	t.Cleanup(func() { close(stop); <-stopped }) // runs first: the hub is shut down after it

	const pubs, perPub = 2, 3000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for pub := range pubs {
		cl, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		p, err := client.NewPublisher(ctx, cl, "reuse")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.Close()
			for seq := range perPub {
				if _, err := p.Publish(ctx, reuseMsg(pub, seq)); err != nil {
					errs <- err
					return
				}
			}
			if err := p.Flush(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	next := make([]int, pubs) // next seq expected of each publisher
	var from uint64
	for {
		msgs, err := mem.Fetch(ctx, "reuse", 0, from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			var pub, seq int
			if _, err := fmt.Sscanf(string(m.Data[:11]), "%d-%08d", &pub, &seq); err != nil || pub < 0 || pub >= pubs {
				t.Fatalf("index %d: unreadable header %q", m.Index, m.Data[:11])
			}
			if !bytes.Equal(m.Data, reuseMsg(pub, seq)) {
				t.Fatalf("index %d: message %d of publisher %d has other bytes than were published", m.Index, seq, pub)
			}
			if seq != next[pub] {
				t.Fatalf("index %d: message %d of publisher %d, want %d", m.Index, seq, pub, next[pub])
			}
			next[pub]++
		}
		from = msgs[len(msgs)-1].Index + 1
	}
	for pub, n := range next {
		if n != perPub {
			t.Errorf("publisher %d: %d messages stored, want %d", pub, n, perPub)
		}
	}
}
