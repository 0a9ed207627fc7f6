package pulsar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/sluicehq/sluice/core"
)

// idleReaderOf returns the reader of the one idle reader of the store, failing if there is
// not exactly one.
func idleReaderOf(t *testing.T, s *Store) pulsar.Reader {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.idle) != 1 {
		t.Fatalf("%d idle readers, want 1", len(s.idle))
	}
	return s.idle[0].r
}

// readerStore opens a store for the reader cache tests; it is closed when the test ends.
func readerStore(t *testing.T, ctx context.Context) *Store {
	t.Helper()
	s, err := openStore(t, ctx, "prefix=readers-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readerCacheStream creates a stream of one partition holding n messages "m00", "m01", ...
// and returns it and their indexes.
func readerCacheStream(t *testing.T, s *Store, ctx context.Context, n int) (string, []uint64) {
	t.Helper()
	stream := readerStream(t, s, ctx)
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "m%02d", i)
	}
	idx, err := s.Append(ctx, stream, 0, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return stream, idx
}

// readerStream creates a new stream "readers-..." of one partition, deleted when t ends.
func readerStream(t *testing.T, s *Store, ctx context.Context) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	stream := "readers-" + hex.EncodeToString(b)
	if _, err := s.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DeleteStream(context.Background(), stream) })
	return stream
}

func checkFetched(t *testing.T, got []core.Message, idx []uint64, first, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("fetched %d messages, want %d (from message %d)", len(got), n, first)
	}
	for k, m := range got {
		if want := fmt.Sprintf("m%02d", first+k); m.Index != idx[first+k] || string(m.Data) != want {
			t.Fatalf("message %d = (%d, %q), want (%d, %q)", k, m.Index, m.Data, idx[first+k], want)
		}
	}
}

// TestFetchReusesReader checks the reader cache: a Fetch that continues where the last one
// stopped, or re-reads part of what it returned (the hub sends only what fits a frame),
// takes the idle reader instead of creating one, and gets its own copies of the messages.
func TestFetchReusesReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := readerStore(t, ctx)
	stream, idx := readerCacheStream(t, s, ctx, 20)

	got, err := s.Fetch(ctx, stream, 0, idx[0], 10)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 0, 10)
	r := idleReaderOf(t, s)
	// The caller owns what Fetch returned: scribbling on it changes no later Fetch.
	for _, m := range got {
		copy(m.Data, "XXX")
	}

	// Re-read from inside the last page (messages 6..9 are replayed), then continue.
	got, err = s.Fetch(ctx, stream, 0, idx[6], 8)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 6, 8)
	if idleReaderOf(t, s) != r {
		t.Fatal("a Fetch from inside the last page created a reader")
	}
	// A replay that ends inside the kept messages leaves the position where it was.
	got, err = s.Fetch(ctx, stream, 0, idx[7], 3)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 7, 3)
	// Continue from the position (message 14) to the end; caught up afterwards.
	got, err = s.Fetch(ctx, stream, 0, idx[14], 100)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 14, 6)
	if idleReaderOf(t, s) != r {
		t.Fatal("a sequential Fetch created a reader")
	}
	if got, err := s.Fetch(ctx, stream, 0, idx[19]+1, 100); err != nil || len(got) != 0 {
		t.Fatalf("Fetch past the end: %d messages, %v; want none", len(got), err)
	}

	// Messages appended after the reader learned the end are found: Fetch asks the broker
	// again when it reaches the end it knew.
	more, err := s.Append(ctx, stream, 0, [][]byte{[]byte("m20"), []byte("m21")})
	if err != nil {
		t.Fatal(err)
	}
	idx = append(idx, more...)
	got, err = s.Fetch(ctx, stream, 0, idx[19]+1, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 20, 2)
	if idleReaderOf(t, s) != r {
		t.Fatal("a sequential Fetch after an append created a reader")
	}

	// A Fetch from before the kept messages needs a new reader, and reads correctly.
	got, err = s.Fetch(ctx, stream, 0, idx[1], 3)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 1, 3)
	s.mu.Lock()
	n := len(s.idle)
	s.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d idle readers after a Fetch from an earlier index, want 2", n)
	}
}

// TestFetchKnownEndAcrossAppends checks that a reader that learned where the partition
// ended finds the messages appended since: a Fetch returns what it knows to exist, and the
// next one asks the broker again.
func TestFetchKnownEndAcrossAppends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := readerStore(t, ctx)
	stream, idx := readerCacheStream(t, s, ctx, 5)
	// The reader learns that the partition ends after message 4.
	got, err := s.Fetch(ctx, stream, 0, idx[0], 2)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 0, 2)
	msgs := make([][]byte, 5)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "m%02d", 5+i)
	}
	more, err := s.Append(ctx, stream, 0, msgs)
	if err != nil {
		t.Fatal(err)
	}
	idx = append(idx, more...)
	got, err = s.Fetch(ctx, stream, 0, idx[2], 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		t.Fatal("Fetch from message 2 returned nothing")
	}
	// However the pages fall, paging from here returns messages 2..9 and then nothing.
	all := got
	for {
		got, err = s.Fetch(ctx, stream, 0, all[len(all)-1].Index+1, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		all = append(all, got...)
	}
	checkFetched(t, all, idx, 2, 8)
}

// lastIDCounter counts the admin API's lastMessageId requests: the Store's questions of
// where a partition ends.
type lastIDCounter struct {
	base  http.RoundTripper
	calls atomic.Int32
}

func (c *lastIDCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/lastMessageId") {
		c.calls.Add(1)
	}
	return c.base.RoundTrip(r)
}

// TestFetchOwnAppendsWithoutRoundTrip checks that a Fetch reads what the store appended
// itself without asking the broker where the partition ends, and that it still finds what
// another writer appended after that (then asking the broker).
func TestFetchOwnAppendsWithoutRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := readerStore(t, ctx)
	stream, idx := readerCacheStream(t, s, ctx, 3)
	got, err := s.Fetch(ctx, stream, 0, idx[0], 100)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 0, 3)
	idleReaderOf(t, s)
	counter := &lastIDCounter{base: http.DefaultTransport}
	s.admin.hc = &http.Client{Transport: counter} // no call in flight

	more, err := s.Append(ctx, stream, 0, [][]byte{[]byte("m03"), []byte("m04")})
	if err != nil {
		t.Fatal(err)
	}
	idx = append(idx, more...)
	got, err = s.Fetch(ctx, stream, 0, idx[3], 100)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, got, idx, 3, 2)
	if counter.calls.Load() != 0 {
		t.Fatalf("fetching the store's own appends asked the broker for the last message id %d times, want 0", counter.calls.Load())
	}

	// Another writer (a second store on the same topics) appends: the first store's Fetch
	// reaches past what it appended itself and asks the broker.
	other := readerStore(t, ctx)
	theirs, err := other.Append(ctx, stream, 0, [][]byte{[]byte("m05"), []byte("m06")})
	if err != nil {
		t.Fatal(err)
	}
	idx = append(idx, theirs...)
	var all []core.Message
	for from := idx[5]; ; {
		got, err := s.Fetch(ctx, stream, 0, from, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		all = append(all, got...)
		from = got[len(got)-1].Index + 1
	}
	checkFetched(t, all, idx, 5, 2)
	if counter.calls.Load() == 0 {
		t.Fatal("the other writer's messages were found without asking the broker: the test proves nothing")
	}
}
