package hubtest

import (
	"bytes"
	"sync"
)

// LogBuffer collects what loggers write, concurrently, for a test to read: a hub's, a
// client's or a device's slog handler writes to it while the test checks String.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
