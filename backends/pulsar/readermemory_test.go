package pulsar

import (
	"fmt"
	"testing"
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
