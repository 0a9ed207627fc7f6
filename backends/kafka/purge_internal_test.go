package kafka

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// An append whose records the client still buffers when the Store purges its topic from the
// producer (as it does when a partition was added, on DeleteStream, and when another Store
// re-created the stream) fails, and must say that appending again may succeed
// (core.ErrUnavailable): it used to come back as franz-go's bare "topic purged while
// buffered", matching no sentinel. No broker is needed: the client's seed is never dialled
// successfully, so the records wait for the topic's metadata until the purge.
func TestAppendPurgedWhileBuffered(t *testing.T) {
	s, err := New(t.Context(), newClient(t, ClientOpts()...), &Options{CloseTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const stream = "purged"
	s.meta[s.Topic(stream)] = &topicMeta{leaders: []int32{0}} // as if looked up before
	res := make(chan error, 1)
	s.AppendAsync(t.Context(), stream, 0, [][]byte{[]byte("m")}, func(_ []uint64, err error) { res <- err })
	s.purge(s.Topic(stream)) // what DeleteStream, a grown partition and lostTopic do
	select {
	case err := <-res:
		if !errors.Is(err, core.ErrUnavailable) {
			t.Errorf("append purged while buffered: %v; want core.ErrUnavailable", err)
		}
		t.Logf("append purged while buffered: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no outcome a minute after the purge")
	}
}
