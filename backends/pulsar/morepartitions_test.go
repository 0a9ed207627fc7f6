package pulsar

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// TestPartitionsAddedElsewhere: a Store remembers a stream's partition count; when another
// Store (or pulsar-admin topics update-partitioned-topic) gave the stream more partitions, an
// Append or Fetch of a partition beyond the remembered count asks the admin API again
// instead of refusing it with core.ErrInvalidArgument for as long as the Store lives. A
// partition beyond the new count is still refused. The fake admin API says 2 partitions,
// then 4. The calls' contexts are short: the client reaches no broker, and only the
// validation matters.
func TestPartitionsAddedElsewhere(t *testing.T) {
	srv := httptest.NewServer(&fakeAdmin{partitions: []int{2, 4}})
	t.Cleanup(srv.Close)
	s := quickTimeoutStore(t, srv.URL)
	if n, err := s.Partitions(t.Context(), "s"); err != nil || n != 2 {
		t.Fatalf("Partitions = %d, %v; want 2", n, err)
	}
	for name, call := range map[string]func(ctx context.Context, p int) error{
		"Append": func(ctx context.Context, p int) error {
			_, err := s.Append(ctx, "s", p, [][]byte{[]byte("m")})
			return err
		},
		"Fetch": func(ctx context.Context, p int) error { _, err := s.Fetch(ctx, "s", p, 0, 10); return err },
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := call(ctx, 3)
		cancel()
		if errors.Is(err, core.ErrInvalidArgument) {
			t.Errorf("%s of partition 3, added by another Store: %v; want it accepted", name, err)
		}
		if err := call(t.Context(), 4); !errors.Is(err, core.ErrInvalidArgument) {
			t.Errorf("%s of partition 4 of 4: %v; want core.ErrInvalidArgument", name, err)
		}
	}
	if n, err := s.Partitions(t.Context(), "s"); err != nil || n != 4 {
		t.Errorf("Partitions after the calls = %d, %v; want 4", n, err)
	}
}
