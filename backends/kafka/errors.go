package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/core"
)

// mapErr is the one place that turns franz-go and broker errors into core sentinels. The
// original error stays in the chain (errors.As finds the *kerr.Error); ctx is the call's
// context, whose cancellation cause says whether Close cancelled the call.
func (s *Store) mapErr(ctx context.Context, op, stream string, err error) error {
	if err == nil {
		return nil
	}
	what := "kafka: " + op
	if stream != "" {
		what = fmt.Sprintf("kafka: %s %q", op, stream)
	}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, core.ErrClosed) {
			return fmt.Errorf("%s: %w: cancelled by Close: %w", what, core.ErrClosed, err)
		}
		if !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("%s: %w: %w", what, ctx.Err(), err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	var sentinel error
	switch {
	case errors.Is(err, core.ErrStreamNotFound), errors.Is(err, core.ErrIndexNotFound),
		errors.Is(err, core.ErrClosed), errors.Is(err, core.ErrInvalidArgument),
		errors.Is(err, core.ErrMessageTooLarge), errors.Is(err, core.ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err) // already mapped
	case errors.Is(err, kgo.ErrClientClosed):
		sentinel = core.ErrClosed
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		sentinel = core.ErrStreamNotFound
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		sentinel = core.ErrMessageTooLarge
	case errors.Is(err, kerr.InvalidTopicException), errors.Is(err, kerr.InvalidPartitions),
		errors.Is(err, kerr.InvalidReplicationFactor), errors.Is(err, kerr.InvalidConfig),
		errors.Is(err, kerr.PolicyViolation):
		sentinel = core.ErrInvalidArgument
	case isConnErr(err), kerr.IsRetriable(err),
		errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries),
		errors.Is(err, kerr.NotEnoughReplicas), errors.Is(err, kerr.NotEnoughReplicasAfterAppend),
		errors.Is(err, kerr.CoordinatorNotAvailable), errors.Is(err, kerr.NotCoordinator),
		errors.Is(err, kerr.CoordinatorLoadInProgress), errors.Is(err, kerr.ThrottlingQuotaExceeded):
		sentinel = core.ErrUnavailable
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, sentinel, err)
}

// isConnErr reports whether err is a failure to reach or talk to a broker.
func isConnErr(err error) bool {
	var ne net.Error
	var fe *kgo.ErrFirstReadEOF
	return errors.As(err, &ne) || errors.As(err, &fe) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
