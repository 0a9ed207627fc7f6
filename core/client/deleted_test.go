package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// TestPublisherStreamDeletedWhileConnected: a stream deleted while a publisher's session is
// up makes the hub refuse its pushes (status ERROR), which end no session. The publisher
// must not retry them on that session forever: a publisher of partition 0 creates the
// stream again, as a new session does, and delivers the message; a publisher of partition 1
// fails for good with ErrStreamNotFound, as it does when the stream is missing at the start.
// A publisher of plain Ockam stream_push requests (WithMaxBatch(1)) asks the hub whether
// the stream exists too, and creates it again.
func TestPublisherStreamDeletedWhileConnected(t *testing.T) {
	for _, tc := range []struct {
		part, maxBatch int
	}{{0, client.DefaultMaxBatch}, {1, client.DefaultMaxBatch}, {0, 1}} {
		part := tc.part
		h := startHub(t)
		const stream = "deleted"
		createStream(t, h.Addr, stream, 2)
		c := dial(t, h.Addr)
		p := newPublisher(t, c, stream, client.WithPartition(part), client.WithMaxBatch(tc.maxBatch), client.WithBackoff(fastBackoff), client.WithCloseTimeout(0))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a guard, not a timing assertion
		defer cancel()
		if _, err := p.PublishSync(ctx, []byte("a")); err != nil {
			t.Fatal(err)
		}
		if err := h.Store.(core.StreamDeleter).DeleteStream(ctx, stream); err != nil {
			t.Fatal(err)
		}
		_, err := p.PublishSync(ctx, []byte("b"))
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("partition %d: the message to the deleted stream was neither delivered nor failed (stats %+v)", part, p.Stats())
		case part == 0 && err != nil:
			t.Fatalf("partition 0: PublishSync after the stream was deleted = %v, want it created again", err)
		case part == 0:
			if got := fetchData(t, h.Store, stream, 0); !slices.Equal(got, []string{"b"}) {
				t.Fatalf("partition 0 of the stream created again holds %q", got)
			}
		case !errors.Is(err, core.ErrStreamNotFound):
			t.Fatalf("partition %d: PublishSync after the stream was deleted = %v, want ErrStreamNotFound", part, err)
		}
	}
}
