package kinesis

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/core"
)

// mapErr is the one place Kinesis errors become core sentinels; the SDK error stays in the
// chain for errors.As.
func mapErr(op, stream string, err error) error {
	var (
		notFound *types.ResourceNotFoundException
		invalid  *types.InvalidArgumentException
		valid    *types.ValidationException
		limit    *types.LimitExceededException
	)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("kinesis: %s %q: %w", op, stream, err)
	case errors.Is(err, core.ErrStreamNotFound), errors.Is(err, core.ErrInvalidArgument):
		return err
	case errors.As(err, &notFound):
		return fmt.Errorf("kinesis: %s %q: %w: %w", op, stream, core.ErrStreamNotFound, err)
	case errors.As(err, &invalid), errors.As(err, &valid):
		return fmt.Errorf("kinesis: %s %q: %w: %w", op, stream, core.ErrInvalidArgument, err)
	case op == "create" && errors.As(err, &limit):
		// Not a shard's throughput: the account's shard quota (which retrying does not
		// lift) or its rate of CreateStream and DeleteStream calls.
		return fmt.Errorf("kinesis: %s %q: the account's shard quota, or its limit of stream creations and deletions at a time, is reached (delete unused streams, ask for fewer partitions, or raise the Kinesis shard quota): %w: %w", op, stream, core.ErrUnavailable, err)
	case isThrottle(err):
		return fmt.Errorf("kinesis: %s %q: still throttled after retries (shard write limit is 1 MiB/s or 1000 records/s, reads 2 MiB/s or 5 calls/s): %w: %w", op, stream, core.ErrUnavailable, err)
	case retryable(err):
		return fmt.Errorf("kinesis: %s %q: %w: %w", op, stream, core.ErrUnavailable, err)
	}
	return fmt.Errorf("kinesis: %s %q: %w", op, stream, err)
}

// isThrottle reports whether err is Kinesis throttling.
func isThrottle(err error) bool {
	var (
		pt *types.ProvisionedThroughputExceededException
		le *types.LimitExceededException
		kt *types.KMSThrottlingException
	)
	return errors.As(err, &pt) || errors.As(err, &le) || errors.As(err, &kt)
}

// retryable reports whether a call that failed with err may succeed if tried again:
// throttling, server-side failures and network errors.
func retryable(err error) bool {
	if isThrottle(err) {
		return true
	}
	var (
		internal *types.InternalFailureException
		netErr   net.Error
		api      smithy.APIError
	)
	if errors.As(err, &internal) || errors.As(err, &netErr) {
		return true
	}
	if errors.As(err, &api) && api.ErrorFault() == smithy.FaultServer {
		return true
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err).Bool()
}
