package pulsar

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// read makes c look as if it had returned n messages of size bytes each.
func read(c *idleReader, n, size int) *idleReader {
	c.read, c.readBytes = n, n*size
	return c
}

// checkIdleBytes checks that the store's count of its idle readers' bytes is their sum and
// within Options.MaxReaderBytes.
func checkIdleBytes(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := 0
	for _, c := range s.idle {
		sum += c.bytes
	}
	if s.idleBytes != sum || sum > s.opts.MaxReaderBytes {
		t.Errorf("idle readers hold %d bytes, counted %d; want the count equal and at most MaxReaderBytes = %d",
			sum, s.idleBytes, s.opts.MaxReaderBytes)
	}
}

// TestIdleReadersBoundedInBytes checks, without a broker, the Store-wide bound on what idle
// readers hold: 64 idle readers of 5 MiB messages (a queue of one message each, the least
// there is) would hold 320 MiB; the least recently used are closed until the rest fit in
// MaxReaderBytes (64 MiB by default).
func TestIdleReadersBoundedInBytes(t *testing.T) {
	s := offlineStore(t, "")
	const size = 5 << 20
	var readers []*fakeReader
	for i := range maxIdleReaders {
		c, r := idle(fmt.Sprint("t", i), 3)
		c.queue = 1
		s.putReader(read(c, 2, size))
		readers = append(readers, r)
	}
	checkIdleBytes(t, s)
	keep := DefaultMaxReaderBytes / size
	if n := len(s.idle); n != keep {
		t.Errorf("%d idle readers of %d-byte messages, want %d (MaxReaderBytes / message size)", n, size, keep)
	}
	waitSDK(t, s)
	for i, r := range readers {
		if want := i < len(readers)-keep; r.closed.Load() != want {
			t.Errorf("idle reader %d (of %d, least recently used first): closed %v, want %v", i, len(readers), !want, want)
		}
	}

	// Taking and dropping readers gives their bytes back.
	if c := s.takeReader(fmt.Sprint("t", maxIdleReaders-1), 3); c == nil {
		t.Fatal("the most recently used idle reader was not kept")
	}
	checkIdleBytes(t, s)
	s.dropReaders(func(topic string) bool { return topic == fmt.Sprint("t", maxIdleReaders-2) })
	checkIdleBytes(t, s)
	if s.idleBytes != (keep-2)*size {
		t.Errorf("idle readers count %d bytes after one was taken and one dropped, want %d", s.idleBytes, (keep-2)*size)
	}
}

// TestReaderQueueSizedByMessages checks, without a broker, how a reader's receive queue is
// sized: pulsar-client-go's default (1000) for a topic never read and for small messages;
// for large ones, what fits in a 16th of MaxReaderBytes. A first reader whose default queue
// holds far more than that is closed, not kept, so that it evicts no other idle reader.
func TestReaderQueueSizedByMessages(t *testing.T) {
	s := offlineStore(t, "")
	small, smallR := idle("small", 3)
	small.queue = s.queueFor("small")
	s.putReader(read(small, 100, 1<<10))
	if small.queue != readerQueueSize || s.queueFor("small") != readerQueueSize || smallR.closed.Load() {
		t.Errorf("1 KiB messages: first queue %d, next queue %d, first closed %v; want %d, %d, kept",
			small.queue, s.queueFor("small"), smallR.closed.Load(), readerQueueSize, readerQueueSize)
	}

	big, bigR := idle("big", 3)
	big.queue = s.queueFor("big")
	s.putReader(read(big, 10, 64<<10))
	waitSDK(t, s)
	if !bigR.closed.Load() || len(s.idle) != 1 {
		t.Errorf("a reader with a queue of %d messages of 64 KiB: closed %v, %d idle readers; want it closed, the other kept",
			big.queue, bigR.closed.Load(), len(s.idle))
	}
	if q, want := s.queueFor("big"), 64; q != want { // 4 MiB, a 16th of the default bound
		t.Errorf("queue of the next reader of 64 KiB messages = %d, want %d", q, want)
	}
	mid, _ := idle("mid", 3)
	mid.queue = s.queueFor("mid")
	s.putReader(read(mid, 100, 4<<10))
	if q := s.queueFor("mid"); q != readerQueueSize {
		t.Errorf("queue of the next reader of 4 KiB messages = %d, want %d", q, readerQueueSize)
	}
	huge, hugeR := idle("huge", 3)
	huge.queue = 1
	s.putReader(read(huge, 1, DefaultMaxMessageSize))
	if s.queueFor("huge") != 1 || hugeR.closed.Load() {
		t.Errorf("messages of %d bytes: next queue %d, reader with a queue of 1 closed %v; want 1, kept",
			DefaultMaxMessageSize, s.queueFor("huge"), hugeR.closed.Load())
	}
	checkIdleBytes(t, s)

	// A smaller MaxReaderBytes makes smaller queues of the same messages.
	o := offlineStore(t, fmt.Sprint("max_reader_bytes=", 64<<10*queueShares))
	c, _ := idle("small", 3)
	c.queue = o.queueFor("small")
	o.putReader(read(c, 100, 1<<10))
	if q := o.queueFor("small"); q != 64 {
		t.Errorf("max_reader_bytes=%d: queue for 1 KiB messages = %d, want 64", o.opts.MaxReaderBytes, q)
	}
}

// TestFetchLargeMessagesSmallQueue checks on the broker that Fetch reads correctly through
// readers whose queues were sized for large messages (two messages here), and that the
// first reader of the partition, created with the default queue of 1000 messages of 64 KiB,
// is not kept.
func TestFetchLargeMessagesSmallQueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const size = 64 << 10
	s, err := openStore(t, ctx, fmt.Sprint("prefix=readers-&max_reader_bytes=", 2*size*queueShares))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	stream := readerStream(t, s, ctx)
	msgs := make([][]byte, 12)
	for i := range msgs {
		msgs[i] = bytes.Repeat([]byte{byte('a' + i)}, size)
	}
	idx, err := s.Append(ctx, stream, 0, msgs)
	if err != nil {
		t.Fatal(err)
	}
	check := func(from, limit int) {
		t.Helper()
		got, err := s.Fetch(ctx, stream, 0, idx[from], limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != limit {
			t.Fatalf("Fetch from message %d fetched %d messages, want %d", from, len(got), limit)
		}
		for k, m := range got {
			if m.Index != idx[from+k] || !bytes.Equal(m.Data, msgs[from+k]) {
				t.Fatalf("message %d fetched with index %d and %d bytes starting %q, want index %d", from+k, m.Index, len(m.Data), m.Data[:1], idx[from+k])
			}
		}
	}
	check(0, 3)
	s.mu.Lock()
	n := len(s.idle)
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d idle readers after the first Fetch of 64 KiB messages; want its reader (queue 1000) closed", n)
	}
	check(3, 3)
	r := idleReaderOf(t, s)
	if q := s.idle[0].queue; q != 2 {
		t.Errorf("queue of the second reader = %d, want 2 (128 KiB of 64 KiB messages)", q)
	}
	check(6, 4) // more than the queue holds
	check(10, 2)
	if idleReaderOf(t, s) != r {
		t.Error("a sequential Fetch created a reader")
	}
	checkIdleBytes(t, s)
}
