package kinesis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// TestAppendAfterWriterExited covers an Append that passed its checks before Close and
// queues its request after the partition's writer drained its queue and returned: it must
// fail with core.ErrClosed at once, not wait until Close cancels it (or its ctx ends). The
// stream's state is cached, so no request reaches Kinesis.
func TestAppendAfterWriterExited(t *testing.T) {
	s := offlineStore(t)
	part := &partition{shardID: "shardId-000000000000", key: "p0"}
	st := &streamState{name: "s", parts: []*partition{part}}
	s.streams["s"] = st
	_, end, err := s.calls.Begin(context.Background()) // writers start inside an Append
	if err != nil {
		t.Fatal(err)
	}
	s.startWriter("s", 0, st, part)
	end()
	close(s.stop) // what Close does after refusing new calls; the calls in flight go on
	<-part.exited
	// Each Append chooses at random between queueing its request (there is room) and seeing
	// s.stop, so many runs take the queueing branch.
	for i := range 64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.Append(ctx, "s", 0, [][]byte{[]byte("m")})
		cancel()
		if !errors.Is(err, core.ErrClosed) {
			t.Fatalf("append %d after the writer exited: got %v, want core.ErrClosed", i, err)
		}
	}
	_ = s.calls.Shutdown(nil)
	s.calls.Wait(0)
}
