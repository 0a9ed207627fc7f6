package kinesis

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// stuckKinesis answers CreateStream and DeleteStream, and DescribeStreamSummary with status
// (a stream that never becomes ACTIVE, or is never deleted).
func stuckKinesis(t *testing.T, status string) *Store {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		switch target := r.Header.Get("X-Amz-Target"); {
		case strings.HasSuffix(target, ".CreateStream"), strings.HasSuffix(target, ".DeleteStream"):
			_, _ = w.Write([]byte(`{}`))
		case strings.HasSuffix(target, ".DescribeStreamSummary"):
			_, _ = w.Write([]byte(`{"StreamDescriptionSummary":{"StreamName":"sluice-s","StreamARN":"arn:aws:kinesis:us-east-1:1:stream/sluice-s",` +
				`"StreamStatus":"` + status + `","RetentionPeriodHours":24,"StreamCreationTimestamp":1,"EnhancedMonitoring":[],"OpenShardCount":1}}`))
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	return fakeStore(t, h, &Options{ActiveTimeout: 100 * time.Millisecond, MaxRetries: -1})
}

// TestWaitTimeoutIsUnavailable: a stream that does not become ACTIVE (CreateStream), or is
// not deleted (DeleteStream), within Options.ActiveTimeout fails with core.ErrUnavailable,
// not with an error matching context.DeadlineExceeded: the caller's context has not ended,
// and a caller that reads DeadlineExceeded as its own deadline would give up instead of
// trying again.
func TestWaitTimeoutIsUnavailable(t *testing.T) {
	for _, c := range []struct {
		name, status string
		call         func(*Store) error
	}{
		{"CreateStream", "CREATING", func(s *Store) error { _, err := s.CreateStream(t.Context(), "s", 1); return err }},
		{"DeleteStream", "DELETING", func(s *Store) error { return s.DeleteStream(t.Context(), "s") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call(stuckKinesis(t, c.status))
			if !errors.Is(err, core.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				t.Fatalf("stream still %s after ActiveTimeout: %v; want core.ErrUnavailable, not a context error", c.status, err)
			}
		})
	}
}

// TestWaitHonoursCallerContext: a CreateStream whose own context ends while it waits for
// ACTIVE returns an error matching the context's.
func TestWaitHonoursCallerContext(t *testing.T) {
	s := stuckKinesis(t, "CREATING")
	s.opts.ActiveTimeout = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := s.CreateStream(ctx, "s", 1)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("CreateStream whose context expired while waiting: %v; want context.DeadlineExceeded", err)
	}
}
