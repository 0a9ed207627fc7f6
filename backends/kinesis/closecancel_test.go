package kinesis

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// TestCallCancelledByCloseIsClosed: a call that Close cancels (after its grace period) fails
// with an error matching core.ErrClosed, as the contract's "After Close every method returns
// core.ErrClosed" and Kafka's calls do, not with a bare context.Canceled that a caller takes
// for its own cancellation. The fake endpoint holds every request until it is cancelled;
// the test cancels the calls as Close does when its grace period has passed.
func TestCallCancelledByCloseIsClosed(t *testing.T) {
	ctx := t.Context()
	for name, call := range map[string]func(*Store) error{
		"CreateStream": func(s *Store) error { _, err := s.CreateStream(ctx, "s", 1); return err },
		"Partitions":   func(s *Store) error { _, err := s.Partitions(ctx, "s"); return err },
		"Append":       func(s *Store) error { _, err := s.Append(ctx, "s", 0, [][]byte{[]byte("m")}); return err },
		"Fetch":        func(s *Store) error { _, err := s.Fetch(ctx, "s", 0, 0, 10); return err },
		"DeleteStream": func(s *Store) error { return s.DeleteStream(ctx, "s") },
	} {
		t.Run(name, func(t *testing.T) {
			held, release := make(chan struct{}, 1), make(chan struct{})
			s := fakeStore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case held <- struct{}{}:
				default:
				}
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}), &Options{MaxRetries: -1})
			defer close(release)
			errc := make(chan error, 1)
			go func() { errc <- call(s) }()
			<-held // the call is in flight
			s.calls.Cancel()
			err := <-errc
			if !errors.Is(err, core.ErrClosed) || !errors.Is(err, context.Canceled) {
				t.Errorf("%s cancelled by Close: %v; want core.ErrClosed (and context.Canceled)", name, err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}
