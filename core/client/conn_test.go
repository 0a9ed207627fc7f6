package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

func TestConn(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	ctx := t.Context()
	conn, err := c.Open(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if n, err := conn.CreateStream(ctx, "parts", 3); err != nil || n != 3 {
		t.Fatalf("CreateStream(3) = %d, %v; want 3", n, err)
	}
	if n, err := conn.CreateStream(ctx, "parts", 1); err != nil || n != 3 {
		t.Fatalf("CreateStream(1) of a 3-partition stream = %d, %v; want 3 (the existing count)", n, err)
	}
	idx, err := conn.Push(ctx, "parts", 2, [][]byte{[]byte("a"), []byte("b")})
	if err != nil || len(idx) != 2 || idx[1] <= idx[0] {
		t.Fatalf("Push = %v, %v", idx, err)
	}
	if _, err := conn.Push(ctx, "parts", 3, [][]byte{[]byte("x")}); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("Push to partition 3 of 3 = %v, want ErrInvalidArgument", err)
	}
	if _, err := conn.Push(ctx, "unknown", 0, [][]byte{[]byte("x")}); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Push to a stream this Conn did not create = %v, want ErrStreamNotFound", err)
	}
	msgs, err := conn.Pull(ctx, "parts", 2, idx[1], 10, 0)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "b" {
		t.Fatalf("Pull from %d = %v, %v; want [b]", idx[1], msgs, err)
	}
	// A long poll returns as soon as a message arrives.
	done := make(chan []core.Message, 1)
	go func() {
		m, err := conn.Pull(ctx, "parts", 0, 0, 10, 10*time.Second)
		if err != nil {
			t.Errorf("long-poll Pull: %v", err)
		}
		done <- m
	}()
	if _, err := conn.Push(ctx, "parts", 0, [][]byte{[]byte("late")}); err != nil {
		t.Fatal(err)
	}
	if m := <-done; len(m) != 1 || string(m[0].Data) != "late" {
		t.Fatalf("long-poll Pull = %v, want [late]", m)
	}

	if _, err := conn.GetIndex(ctx, "me", "parts", 2); !errors.Is(err, core.ErrIndexNotFound) {
		t.Fatalf("GetIndex before any save = %v, want ErrIndexNotFound", err)
	}
	if v, err := conn.SaveIndex(ctx, "me", "parts", 2, 5); err != nil || v != 5 {
		t.Fatalf("SaveIndex(5) = %d, %v", v, err)
	}
	if v, err := conn.SaveIndex(ctx, "me", "parts", 2, 3); err != nil || v != 5 {
		t.Fatalf("SaveIndex(3) after 5 = %d, %v; want 5 (monotonic)", v, err)
	}
	if v, err := conn.GetIndex(ctx, "me", "parts", 2); err != nil || v != 5 {
		t.Fatalf("GetIndex = %d, %v; want 5", v, err)
	}
	if conn.Err() != nil {
		t.Fatalf("Err = %v on a working Conn", conn.Err())
	}
	conn.Close()
	if _, err := conn.GetIndex(ctx, "me", "parts", 2); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("GetIndex after Close = %v, want ErrClosed", err)
	}
}

// failPartition fails every Fetch of one partition while fail is set.
type failPartition struct {
	core.Storage
	partition int
	fail      atomic.Bool
}

func (f *failPartition) Fetch(ctx context.Context, s string, p int, from uint64, limit int) ([]core.Message, error) {
	if p == f.partition && f.fail.Load() {
		return nil, fmt.Errorf("%w: test: injected fetch failure", core.ErrUnavailable)
	}
	return f.Storage.Fetch(ctx, s, p, from, limit)
}

func (f *failPartition) Partitions(ctx context.Context, s string) (int, error) {
	return f.Storage.(core.PartitionCounter).Partitions(ctx, s)
}

// TestConnRequestFailsAlone checks that a request the hub refuses by number fails alone: the
// Conn, and a request waiting on it, go on.
func TestConnRequestFailsAlone(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &failPartition{Storage: s, partition: 1}
	h := startHubOn(t, &core.Backend{Storage: f, Index: s})
	c := dial(t, h.Addr)
	ctx := t.Context()
	conn, err := c.Open(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if _, exists, err := conn.StreamInfo(ctx, "alone"); err != nil || exists {
		t.Fatalf("StreamInfo of a missing stream = %v, %v; want not found", exists, err)
	}
	if n, err := conn.CreateStream(ctx, "alone", 2); err != nil || n != 2 {
		t.Fatalf("CreateStream(2) = %d, %v", n, err)
	}
	if n, exists, err := conn.StreamInfo(ctx, "alone"); err != nil || !exists || n != 2 {
		t.Fatalf("StreamInfo = %d, %v, %v; want 2 partitions", n, exists, err)
	}
	// An invalid name: status ERROR with a reason, for that request only.
	if _, _, err := conn.StreamInfo(ctx, "bad name/x"); !errors.Is(err, client.ErrRejected) || !strings.Contains(err.Error(), "bad name/x") {
		t.Fatalf("StreamInfo of an invalid name = %v, want ErrRejected naming it", err)
	}

	// A long poll waits on partition 0 while a pull of partition 1 fails.
	done := make(chan error, 1)
	go func() {
		m, err := conn.Pull(ctx, "alone", 0, 0, 10, 10*time.Second)
		if err == nil && (len(m) != 1 || string(m[0].Data) != "late") {
			err = fmt.Errorf("got %v, want [late]", m)
		}
		done <- err
	}()
	f.fail.Store(true)
	_, err = conn.Pull(ctx, "alone", 1, 0, 10, time.Second)
	if !errors.Is(err, client.ErrRejected) || !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), "injected fetch failure") {
		t.Fatalf("Pull of the failing partition = %v, want ErrRejected and ErrUnavailable with the reason", err)
	}
	if conn.Err() != nil {
		t.Fatalf("Conn failed with the request: %v", conn.Err())
	}
	if _, err := conn.Push(ctx, "alone", 0, [][]byte{[]byte("late")}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("long poll waiting while another request failed: %v", err)
	}
}

// stuckIndex is an index store whose GetIndex for client id "stuck" never returns (until
// its ctx ends): the hub never answers such a request.
type stuckIndex struct{ core.IndexStorage }

func (s stuckIndex) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if clientID == "stuck" {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return s.IndexStorage.GetIndex(ctx, clientID, stream, partition)
}

// TestTimeoutSparesSharedConnection checks that a request that times out fails only the
// session it was sent on: the publishers and Conns of the same Client share its TCP
// connection (as Kafka and NATS clients share one per broker), and a hub that is slow to
// answer one request must not cut them off.
func TestTimeoutSparesSharedConnection(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startHubOn(t, &core.Backend{Storage: s, Index: stuckIndex{s}})
	c := dial(t, h.Addr)
	ctx := t.Context()
	p := newPublisher(t, c, "shared", client.WithBackoff(fastBackoff))
	if _, err := p.PublishSync(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	other, err := c.Open(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	slow, err := c.Open(ctx, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.GetIndex(ctx, "stuck", "shared", 0); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("GetIndex the hub never answers = %v, want ErrTimeout", err)
	}
	if slow.Err() == nil {
		t.Fatal("the Conn whose request timed out still works")
	}
	if _, exists, err := other.StreamInfo(ctx, "shared"); err != nil || !exists {
		t.Fatalf("StreamInfo on another Conn of the client after the timeout = %v, %v (Conn error %v)", exists, err, other.Err())
	}
	if _, err := p.PublishSync(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Retried != 0 || st.Reconnects != 0 {
		t.Fatalf("publisher stats %+v: its session failed because another one timed out", st)
	}
}

// TestIdleTimeoutReplacesSilentConnection checks that a connection that stops delivering
// (here: one that lost bytes, and with them its framing) is closed by the idle timeout, which
// fails the sessions on it, and that the next session dials a new one.
func TestIdleTimeoutReplacesSilentConnection(t *testing.T) {
	h := startHub(t)
	px := newProxy(t, h.Addr)
	c := dial(t, px.Addr(), client.WithIdleTimeout(2*time.Second))
	ctx := t.Context()
	conn, err := c.Open(ctx, time.Minute) // only the idle timeout ends the request below
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.SaveIndex(ctx, "me", "s", 0, 1); err != nil {
		t.Fatal(err)
	}
	px.SetBlackhole(true)
	if _, err := conn.GetIndex(ctx, "me", "s", 0); !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("GetIndex through a black hole = %v, want ErrUnavailable (connection closed)", err)
	}
	px.SetBlackhole(false)
	waitFor(t, "the silent connection to close", func() bool { return px.Stats().Active == 0 })
	conn2, err := c.Open(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if v, err := conn2.GetIndex(ctx, "me", "s", 0); err != nil || v != 1 {
		t.Fatalf("GetIndex on a new session = %d, %v; want 1", v, err)
	}
	if st := px.Stats(); st.Accepted != 2 {
		t.Fatalf("proxy accepted %d connections, want 2 (a new one after the idle timeout)", st.Accepted)
	}
}

// TestConnPullManyFrames pulls more messages than fit in one frame with one Pull: the hub
// answers in several parts (sluice_pull_batch), which the Conn puts back together in order;
// interleaved pulls on the same Conn each get their own messages.
func TestConnPullManyFrames(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	ctx := t.Context()
	conn := openWithStream(t, c, "big")
	const n, size = 500, 1000 // about 8 frames
	batch := make([][]byte, n)
	for i := range batch {
		batch[i] = bytes.Repeat([]byte{byte(i)}, size)
	}
	if _, err := conn.Push(ctx, "big", 0, batch); err != nil {
		t.Fatal(err)
	}
	check := func(msgs []core.Message, from uint64, want int) {
		t.Helper()
		if len(msgs) != want {
			t.Errorf("Pull from %d: %d messages, want %d", from, len(msgs), want)
			return
		}
		for i, m := range msgs {
			if m.Index != from+uint64(i) || !bytes.Equal(m.Data, batch[m.Index]) {
				t.Errorf("Pull from %d: message %d has index %d or the wrong bytes", from, i, m.Index)
				return
			}
		}
	}
	var wg sync.WaitGroup
	for _, from := range []uint64{0, 100, 250} {
		wg.Go(func() {
			msgs, err := conn.Pull(ctx, "big", 0, from, n, 0)
			if err != nil {
				t.Errorf("Pull from %d: %v", from, err)
				return
			}
			check(msgs, from, n-int(from))
		})
	}
	wg.Wait()
}
