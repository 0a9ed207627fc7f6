package pulsar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/sluicehq/sluice/core"
)

// Tests that need no broker: the Store's pulsar.Client is never dialled (pulsar.NewClient
// does no I/O), the admin API is an httptest server, readers are fakes.

// offlineStore returns a Store whose client points at nothing, on the admin API at admin.
func offlineStore(t *testing.T, query string) *Store {
	t.Helper()
	s, err := openURL("pulsar://127.0.0.1:1?" + query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMapErrClasses checks the error classes TestMapErr leaves out: every mapped error
// matches exactly the sentinel of its class.
func TestMapErrClasses(t *testing.T) {
	s := offlineStore(t, "")
	_, invalidTopic := s.client.CreateProducer(pulsar.ProducerOptions{}) // no topic: fails before any I/O
	_, authErr := pulsar.NewClient(pulsar.ClientOptions{URL: "pulsar://127.0.0.1:1", Authentication: "not a provider"})
	var perr *pulsar.Error
	if !errors.As(invalidTopic, &perr) || perr.Result() != pulsar.InvalidTopicName || !errors.As(authErr, &perr) || perr.Result() != pulsar.AuthenticationError {
		t.Fatalf("could not make the client errors: %v, %v", invalidTopic, authErr)
	}
	sentinels := []error{core.ErrStreamNotFound, core.ErrIndexNotFound, core.ErrInvalidArgument, core.ErrMessageTooLarge,
		core.ErrClosed, core.ErrInvalidOption, core.ErrUnavailable}
	for _, c := range []struct {
		err  error
		want error
	}{
		{invalidTopic, core.ErrInvalidArgument},
		{authErr, core.ErrInvalidOption},
		{&adminError{Status: 400}, core.ErrInvalidArgument},
		{&adminError{Status: 412}, core.ErrInvalidArgument},
		{&adminError{Status: 401}, core.ErrInvalidOption},
		{&adminError{Status: 500}, core.ErrUnavailable},
		{&adminError{Status: 404, Reason: "Namespace not found"}, core.ErrInvalidOption}, // not the stream's
		{&adminError{Status: 404, Reason: "Topic not found"}, core.ErrStreamNotFound},
		{&adminError{Status: 404, Reason: "Topic persistent://tenant1/namespace1/s not found"}, core.ErrStreamNotFound},
		{&adminError{Status: 404, Reason: "Tenant does not exist"}, core.ErrInvalidOption},
		{fmt.Errorf("%w: x", core.ErrInvalidOption), core.ErrInvalidOption},
		{fmt.Errorf("%w: x", core.ErrIndexNotFound), core.ErrIndexNotFound},
		{fmt.Errorf("%w: ledger id", ErrIndexOutOfRange), nil}, // not retryable: no ErrUnavailable
	} {
		got := s.mapErr(t.Context(), "append", "s", c.err)
		if !errors.Is(got, c.err) {
			t.Errorf("mapErr(%v) = %v: the original error is not in the chain", c.err, got)
		}
		for _, sen := range sentinels {
			if errors.Is(got, sen) != (sen == c.want) {
				t.Errorf("mapErr(%v) = %v: matches %v is %v, want %v", c.err, got, sen, errors.Is(got, sen), sen == c.want)
			}
		}
	}
	// A call that Close cancelled reports core.ErrClosed, not its context's error.
	s.Close()
	if got := s.mapErr(t.Context(), "fetch", "s", context.Canceled); !errors.Is(got, core.ErrClosed) {
		t.Errorf("after Close, mapErr(context.Canceled) = %v; want core.ErrClosed", got)
	}
}

func TestOpenURLDefaultsAndChecks(t *testing.T) {
	s := offlineStore(t, "retention=infinite")
	if s.admin.base != "http://127.0.0.1:8080" {
		t.Errorf("default admin API %q; want the service host on port 8080", s.admin.base)
	}
	if !s.opts.InfiniteRetention {
		t.Error("retention=infinite did not set InfiniteRetention")
	}
	v6, err := openURL("pulsar://[::1]:1")
	if err != nil {
		t.Fatalf("an IPv6 service address: %v", err)
	}
	defer v6.Close()
	if v6.admin.base != "http://[::1]:8080" {
		t.Errorf("default admin API of pulsar://[::1]:1 is %q; want http://[::1]:8080", v6.admin.base)
	}
	if s := offlineStore(t, "admin=http://127.0.0.1:2/"); s.admin.base != "http://127.0.0.1:2" {
		t.Errorf("admin API %q; want it without the trailing slash", s.admin.base)
	}
	d, err := openURL("pulsar://127.0.0.1:1/")
	if err != nil {
		t.Errorf("a URL with the path \"/\": %v", err)
	} else {
		d.Close()
	}
	for name, o := range map[string]Options{
		"MaxPartitions":   {MaxPartitions: core.MaxPartitions + 1},
		"space in prefix": {TopicPrefix: "a b"},
		"slash in prefix": {TopicPrefix: "a/b"},
		"MaxMessageSize":  {MaxMessageSize: -1},
		"slash in tenant": {Tenant: "a/b"},
	} {
		if _, err := newStore(nil, false, "http://h:8080", &o); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("%s: %v; want core.ErrInvalidOption", name, err)
		}
	}
}

// batchID is a message id inside a batch.
type batchID struct {
	pulsar.MessageID
	size int32
}

func (b batchID) BatchIdx() int32  { return 0 }
func (b batchID) BatchSize() int32 { return b.size }

func TestIndexMappingRejectsBatch(t *testing.T) {
	id := batchID{pulsar.NewMessageID(3, 4, -1, 0), 2}
	if _, err := toIndex(id); !errors.Is(err, ErrIndexOutOfRange) {
		t.Errorf("toIndex of the first message of a batch of 2 = %v; want ErrIndexOutOfRange", err)
	}
	if _, err := toIndex(batchID{pulsar.NewMessageID(3, 4, -1, 0), 1}); err != nil {
		t.Errorf("toIndex of a batch of 1: %v", err)
	}
}

// fakeAdmin is the part of the admin REST API a Store uses, for one tenant/namespace.
type fakeAdmin struct {
	mu         sync.Mutex
	partitions []int // answers of the GETs of a topic's partitions, in turn (the last repeats; 0 is a 404)
	gets       int
	create     int // status of a PUT (0: 204)
	retention  map[string]int
	failSets   int      // retention POSTs still to fail with a 500
	deletes    []string // DELETE request URIs
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/partitions"):
		n := f.partitions[min(f.gets, len(f.partitions)-1)]
		f.gets++
		if n == 0 {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"reason":"Topic not found"}`))
			return
		}
		_, _ = fmt.Fprintf(w, `{"partitions":%d}`, n)
	case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/partitions"):
		if f.create != 0 {
			w.WriteHeader(f.create)
			_, _ = w.Write([]byte(`{"reason":"This topic already exists"}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/retention"):
		if f.failSets > 0 {
			f.failSets--
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"reason":"metadata store timeout"}`))
			return
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &f.retention); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete:
		f.deletes = append(f.deletes, r.URL.RequestURI())
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (f *fakeAdmin) retentionSet() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.retention
}

func adminStore(t *testing.T, f *fakeAdmin, query string) *Store {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return offlineStore(t, "admin="+srv.URL+"&"+query)
}

// TestCreateStreamAdmin checks CreateStream's use of the admin API: a new stream gets the
// infinite retention asked for, a stream created concurrently (409) is used, and a
// non-partitioned topic of that name is refused.
func TestCreateStreamAdmin(t *testing.T) {
	ctx := t.Context()
	f := &fakeAdmin{partitions: []int{0}}
	s := adminStore(t, f, "retention=infinite")
	if n, err := s.CreateStream(ctx, "new", 3); err != nil || n != 3 {
		t.Fatalf("CreateStream of a new stream = %d, %v; want 3", n, err)
	}
	if r := f.retentionSet(); r["retentionTimeInMinutes"] != -1 || r["retentionSizeInMB"] != -1 {
		t.Errorf("retention policy %v; want -1 (unlimited) for both time and size", r)
	}

	f = &fakeAdmin{partitions: []int{0, 5}, create: http.StatusConflict}
	s = adminStore(t, f, "")
	if n, err := s.CreateStream(ctx, "raced", 3); err != nil || n != 5 {
		t.Errorf("CreateStream of a stream created concurrently with 5 partitions = %d, %v; want 5", n, err)
	}
	if r := f.retentionSet(); r != nil {
		t.Errorf("retention set without retention=infinite: %v", r)
	}

	f = &fakeAdmin{partitions: []int{0}, create: http.StatusConflict}
	s = adminStore(t, f, "")
	if _, err := s.CreateStream(ctx, "plain", 3); !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("CreateStream over a non-partitioned topic: %v; want core.ErrInvalidArgument", err)
	}
}

// TestCreateStreamRetentionAfterFailure checks that retention=infinite is honoured for a
// stream whose first CreateStream created the topic but failed to set its retention: the
// CreateStream that the caller retries finds the topic and must set it then, not report
// success on a topic whose messages the broker may delete.
func TestCreateStreamRetentionAfterFailure(t *testing.T) {
	ctx := t.Context()
	f := &fakeAdmin{partitions: []int{0, 3}, failSets: 1}
	s := adminStore(t, f, "retention=infinite")
	if _, err := s.CreateStream(ctx, "half", 3); err == nil {
		t.Fatal("CreateStream whose retention could not be set succeeded")
	}
	if n, err := s.CreateStream(ctx, "half", 3); err != nil || n != 3 {
		t.Fatalf("CreateStream again = %d, %v; want 3", n, err)
	}
	if r := f.retentionSet(); r["retentionTimeInMinutes"] != -1 || r["retentionSizeInMB"] != -1 {
		t.Errorf("retention policy after CreateStream was retried: %v; want -1 (unlimited) for both time and size", r)
	}

	// A stream created concurrently by another Store, which then failed to set it.
	f = &fakeAdmin{partitions: []int{0, 5}, create: http.StatusConflict}
	s = adminStore(t, f, "retention=infinite")
	if n, err := s.CreateStream(ctx, "raced", 3); err != nil || n != 5 {
		t.Fatalf("CreateStream of a stream created concurrently = %d, %v; want 5", n, err)
	}
	if r := f.retentionSet(); r["retentionTimeInMinutes"] != -1 || r["retentionSizeInMB"] != -1 {
		t.Errorf("retention policy of a stream created concurrently: %v; want -1 (unlimited) for both time and size", r)
	}
}

// fakeReader is a pulsar.Reader whose Close is recorded; nothing else is called.
type fakeReader struct {
	pulsar.Reader
	closed atomic.Bool
}

func (r *fakeReader) Close() { r.closed.Store(true) }

func idle(topic string, next uint64, last ...core.Message) (*idleReader, *fakeReader) {
	r := &fakeReader{}
	return &idleReader{topic: topic, r: r, next: next, last: last}, r
}

// TestDeleteStreamAdmin checks that DeleteStream deletes the topic forcibly and closes the idle
// readers of every partition of the stream, and of no other stream.
func TestDeleteStreamAdmin(t *testing.T) {
	f := &fakeAdmin{partitions: []int{12, 0}} // the stream, then no index topic: no saved index to delete
	s := adminStore(t, f, "")
	var mine, others []*fakeReader
	for _, topic := range []string{s.partitionTopic("s", 0), s.partitionTopic("s", 1), s.partitionTopic("s", 11)} {
		c, r := idle(topic, 0)
		s.putReader(c)
		mine = append(mine, r)
	}
	for _, topic := range []string{s.partitionTopic("s2", 0), s.partitionTopic("t", 1)} {
		c, r := idle(topic, 0)
		s.putReader(c)
		others = append(others, r)
	}
	if err := s.DeleteStream(t.Context(), "s"); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	f.mu.Lock()
	deletes := f.deletes
	f.mu.Unlock()
	if len(deletes) != 1 || !strings.Contains(deletes[0], "force=true") {
		t.Errorf("DELETE requests %q; want one with force=true", deletes)
	}
	waitSDK(t, s) // readers are closed on goroutines of the store
	for i, r := range mine {
		if !r.closed.Load() {
			t.Errorf("idle reader %d of the deleted stream is still open", i)
		}
	}
	for i, r := range others {
		if r.closed.Load() {
			t.Errorf("idle reader %d of another stream was closed", i)
		}
	}
}

// TestIdleReaders checks the reader cache without a broker: which Fetch an idle reader
// serves, what it replays, what it keeps, its bound, and that Close closes it.
func TestIdleReaders(t *testing.T) {
	msg := func(i uint64, size int) core.Message { return core.Message{Index: i, Data: make([]byte, size)} }
	c, _ := idle("a", 5, msg(3, 1), msg(4, 1))
	for from, want := range map[uint64]bool{2: false, 3: true, 4: true, 5: true, 6: false} {
		if c.covers(from) != want {
			t.Errorf("covers(%d) = %v, want %v", from, !want, want)
		}
	}
	if got := c.replay(nil, 3, 1); len(got) != 1 || got[0].Index != 3 {
		t.Errorf("replay(3, limit 1) = %v; want message 3 only", got)
	}
	c.remember(nil)
	if len(c.last) != 2 {
		t.Errorf("remember(nil) left %d kept messages; want the 2 it had", len(c.last))
	}
	c.remember([]core.Message{msg(7, maxReplayBytes/2), msg(8, maxReplayBytes/2)})
	if len(c.last) != 2 || c.last[0].Index != 7 {
		t.Errorf("remember of exactly maxReplayBytes kept %d messages; want both", len(c.last))
	}

	s := offlineStore(t, "")
	a, _ := idle("a", 5)
	s.putReader(a)
	if got := s.takeReader("b", 5); got != nil {
		t.Fatalf("takeReader(b, 5) returned the idle reader of topic %s", got.topic)
	}
	if got := s.takeReader("a", 5); got != a {
		t.Fatalf("takeReader(a, 5) = %v; want the idle reader", got)
	}
	var readers []*fakeReader
	for i := range maxIdleReaders + 1 {
		c, r := idle(fmt.Sprint("t", i), 0)
		s.putReader(c)
		readers = append(readers, r)
	}
	if n := len(s.idle); n != maxIdleReaders {
		t.Errorf("%d idle readers; want at most %d", n, maxIdleReaders)
	}
	waitSDK(t, s) // readers are closed on goroutines of the store
	if !readers[0].closed.Load() || readers[1].closed.Load() {
		t.Errorf("beyond the bound: oldest closed %v, next closed %v; want only the oldest closed", readers[0].closed.Load(), readers[1].closed.Load())
	}
	s.Close()
	for i, r := range readers {
		if !r.closed.Load() {
			t.Errorf("idle reader %d still open after Close", i)
		}
	}
	late, r := idle("late", 0)
	s.putReader(late)
	waitSDK(t, s)
	if !r.closed.Load() || len(s.idle) != 0 {
		t.Errorf("a reader put after Close: closed %v, %d idle; want it closed, not kept", r.closed.Load(), len(s.idle))
	}
}

// TestProducerBookkeeping checks, without a broker, the eviction of the least recently used
// producer, that a receipt never moves the appended end back, and that a producer whose
// topic is gone is forgotten.
func TestProducerBookkeeping(t *testing.T) {
	s := offlineStore(t, "max_producers=1")
	ready := make(chan struct{})
	close(ready)
	old := &producerSlot{topic: "old", ready: ready, used: 1}
	recent := &producerSlot{topic: "recent", ready: ready, used: 2}
	s.producers = map[string]*producerSlot{"old": old, "recent": recent}
	s.mu.Lock()
	evicted := s.evictProducersLocked()
	s.mu.Unlock()
	if len(evicted) != 1 || evicted[0] != old || s.producers["recent"] != recent {
		t.Fatalf("evicted %v; want only the least recently used", evicted)
	}

	id := func(entry int64) pulsar.MessageID { return pulsar.NewMessageID(1, entry, -1, 0) }
	if _, err := s.receiptIndexes(recent, []receipt{{id: id(9)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.receiptIndexes(recent, []receipt{{id: id(4)}}); err != nil { // a late receipt
		t.Fatal(err)
	}
	if got, want := s.appendedEnd("recent"), uint64(1<<EntryBits|10); got != want {
		t.Errorf("appended end %d after receipts for entries 9 then 4; want %d", got, want)
	}
	_, end, err := s.calls.Begin(t.Context()) // receipts of an append arrive inside its call
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.receiptIndexes(recent, []receipt{{err: pulsar.ErrTopicNotfound}})
	end()
	if !errors.Is(err, pulsar.ErrTopicNotfound) {
		t.Fatalf("receipt error = %v", err)
	}
	s.mu.Lock()
	_, kept := s.producers["recent"]
	s.mu.Unlock()
	if kept {
		t.Error("the producer of a topic that is gone was kept")
	}
}

// keptReader is a pulsar.Reader kept by an earlier Fetch; it records its Close and any
// GetLastMessageID, which the Store must not call (it cannot be stopped).
type keptReader struct {
	pulsar.Reader
	closed, askedLastID atomic.Bool
}

func (r *keptReader) GetLastMessageID() (pulsar.MessageID, error) {
	r.askedLastID.Store(true)
	return nil, errors.New("GetLastMessageID called")
}

func (r *keptReader) Close() { r.closed.Store(true) }

// hangingLastID is an admin API whose lastMessageId does not answer until the request is
// given up, as a broker that lost the topic's ownership may; it reports each question on
// asked, and counts the ones in progress.
type hangingLastID struct {
	asked   chan struct{}
	running atomic.Int32
}

func (h *hangingLastID) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/lastMessageId") {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	h.running.Add(1)
	defer h.running.Add(-1)
	select {
	case h.asked <- struct{}{}:
	default:
	}
	<-r.Context().Done()
}

// TestFetchQuestionEndsWithFetch: a Fetch that asks where the partition ends (its kept
// reader is caught up) gives the question up when its context ends, or when Close cancels
// it, and leaves nothing running: Close returns, the question's request is gone, and the
// reader is closed. The question used to be the reader's GetLastMessageID on a goroutine
// that Close waited for; it took no context and could run until the operation timeout, or
// for ever while the reader reconnected. The waits are bounds, not timing asserts.
func TestFetchQuestionEndsWithFetch(t *testing.T) {
	for _, name := range []string{"context ended", "Close"} {
		t.Run(name, func(t *testing.T) {
			cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: "pulsar://127.0.0.1:1", Logger: pulsarlog.DefaultNopLogger()})
			if err != nil {
				t.Fatal(err)
			}
			h := &hangingLastID{asked: make(chan struct{}, 1)}
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			s, err := newStore(cl, true, srv.URL, &Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.rememberStream("s", 1)
			r := &keptReader{}
			s.putReader(&idleReader{topic: s.partitionTopic("s", 0), r: r, next: 7})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			fetched := make(chan error, 1)
			go func() { // owned by the test: ends with the Fetch, which the test waits for
				_, err := s.Fetch(ctx, "s", 0, 7, 10)
				fetched <- err
			}()
			select {
			case <-h.asked:
			case err := <-fetched:
				t.Fatalf("Fetch returned before it asked where the partition ends: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("the Fetch did not ask the admin API where the partition ends within a minute")
			}
			closed := make(chan struct{})
			if name == "context ended" {
				cancel()
			} else {
				go func() { s.Close(); close(closed) }()
			}
			var ferr error
			select {
			case ferr = <-fetched:
			case <-time.After(10 * time.Second):
				t.Fatal("the Fetch has not returned 10s after its question was given up")
			}
			want := context.Canceled
			if name == "Close" {
				want = core.ErrClosed
			}
			if !errors.Is(ferr, want) {
				t.Errorf("Fetch: %v, want %v", ferr, want)
			}
			if name == "context ended" {
				go func() { s.Close(); close(closed) }()
			}
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close has not returned 10s after the Fetch did")
			}
			deadline := time.Now().Add(10 * time.Second)
			for h.running.Load() > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the question's request still runs 10s after Close")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !r.closed.Load() || r.askedLastID.Load() {
				t.Errorf("reader closed %v, asked GetLastMessageID %v; want closed, never asked", r.closed.Load(), r.askedLastID.Load())
			}
		})
	}
}

// TestIndexWaitEndsWithContext: GetIndex, SaveIndex and DeleteIndexes take turns on the
// index topic; one that waits for its turn must give up when its ctx ends, or when Close
// cancels it, not wait for the call holding the turn (which may wait for the broker as long
// as its own ctx lets it: here, for ever). They used to wait on a mutex. No broker is
// needed: the turn is held by the test. The waits are guards against the hang, not timing
// asserts.
func TestIndexWaitEndsWithContext(t *testing.T) {
	ops := map[string]func(ctx context.Context, s *Store) error{
		"GetIndex": func(ctx context.Context, s *Store) error {
			_, err := s.GetIndex(ctx, "c", "s", 0)
			return err
		},
		"SaveIndex":     func(ctx context.Context, s *Store) error { return s.SaveIndex(ctx, "c", "s", 0, 1) },
		"DeleteIndexes": func(ctx context.Context, s *Store) error { return s.DeleteIndexes(ctx, "s") },
	}
	for name, op := range ops {
		for _, by := range []string{"ctx", "Close"} {
			t.Run(name+" ended by "+by, func(t *testing.T) {
				s, err := openURL("pulsar://127.0.0.1:1")
				if err != nil {
					t.Fatal(err)
				}
				if err := s.index.lock(t.Context()); err != nil { // the turn of a call that never ends
					t.Fatal(err)
				}
				defer s.index.unlock()
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				ended := make(chan error, 1)
				go func() { ended <- op(ctx, s) }() // owned by the test: ends with op
				waitBlockedIn(t, "(*Store)."+name)
				closed := make(chan struct{})
				want := context.Canceled
				if by == "ctx" {
					cancel()
				} else {
					want = core.ErrClosed
					go func() { s.Close(); close(closed) }()
				}
				select {
				case err := <-ended:
					if !errors.Is(err, want) {
						t.Errorf("%s waiting for its turn: %v; want %v", name, err, want)
					}
				case <-time.After(time.Minute):
					t.Fatalf("%s waiting for its turn has not returned a minute after it was ended by %s", name, by)
				}
				if by == "ctx" {
					go func() { s.Close(); close(closed) }()
				}
				select {
				case <-closed:
				case <-time.After(time.Minute):
					t.Fatal("Close has not returned a minute after it started")
				}
			})
		}
	}
}

// waitBlockedIn waits until a goroutine is blocked (in a select, a channel operation or a
// lock) inside the function named fn, failing the test after a minute.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			head, _, _ := strings.Cut(g, "\n")
			if strings.Contains(g, fn+"(") && (strings.Contains(head, "[select") || strings.Contains(head, "[chan") ||
				strings.Contains(head, "[sync.Mutex.Lock") || strings.Contains(head, "[semacquire")) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine blocked in %s within a minute", fn)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSDK waits until no goroutine of s.sdk (closing or creating a producer or reader)
// runs, failing the test after a minute: a guard, not a timing assert.
func waitSDK(t *testing.T, s *Store) {
	t.Helper()
	if !s.sdk.wait(time.Minute) {
		t.Fatal("the store's closing or creating of producers and readers still runs a minute later")
	}
}

// TestAppendWatchAsksAgain: an append whose receipts do not come asks the admin API every
// appendCheckWait whether its stream still exists, not once: here the stream is there at
// the first question and gone at the second, which fails the append with
// core.ErrStreamNotFound (a watch that asked once would wait for the send timeout).
func TestAppendWatchAsksAgain(t *testing.T) {
	f := &fakeAdmin{partitions: []int{1, 0}}
	s := adminStore(t, f, "")
	ctx, end, err := s.calls.Begin(t.Context()) // the append's call
	if err != nil {
		t.Fatal(err)
	}
	defer end()
	failed := make(chan error, 1)
	var w appendWatch
	w.start(s, ctx, "watched", func(err error) { failed <- err })
	defer w.stop()
	select {
	case err := <-failed:
		if !errors.Is(err, core.ErrStreamNotFound) {
			t.Fatalf("the watch failed the append with %v, want an error matching core.ErrStreamNotFound", err)
		}
	case <-time.After(time.Minute): // a guard against a hang, not a timing assertion
		f.mu.Lock()
		defer f.mu.Unlock()
		t.Fatalf("the append was not failed within a minute: the admin API was asked %d time(s)", f.gets)
	}
}
