package pulsar

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/sluicehq/sluice/core"
)

// mapErr is the one place where errors of pulsar-client-go, the admin API and the network
// become core sentinels. It returns "pulsar: <op> <stream>: <sentinel>: <err>", keeping err
// in the chain for errors.As. ctx is the call's context (from calls.Begin once the call
// began; mapErr must run before the call ends it). When it has ended, the error is its
// error: core.ErrClosed when Close cancelled the call. Errors that already match a core
// sentinel only get the prefix. A store that is closed turns client "closed" errors into
// core.ErrClosed. A context error while ctx has not ended is a timeout of the backend's own
// (the HTTP client's Timeout, pulsar-client-go's operation timeout): core.ErrUnavailable,
// made not to match the context errors (see core.OwnTimeout).
func (s *Store) mapErr(ctx context.Context, op, stream string, err error) error {
	if err == nil {
		return nil
	}
	prefix := fmt.Sprintf("pulsar: %s %q", op, stream)
	if stream == "" {
		prefix = "pulsar: " + op
	}
	if ctx.Err() != nil {
		closed := errors.Is(context.Cause(ctx), core.ErrClosed)
		if errors.Is(err, ctx.Err()) && (!closed || errors.Is(err, core.ErrClosed)) {
			return fmt.Errorf("%s: %w", prefix, err)
		}
		return fmt.Errorf("%s: %w: %w", prefix, core.CallErr(ctx), err)
	}
	for _, sentinel := range []error{core.ErrStreamNotFound, core.ErrIndexNotFound, core.ErrInvalidArgument,
		core.ErrMessageTooLarge, core.ErrClosed, core.ErrInvalidOption, core.ErrUnavailable} {
		if errors.Is(err, sentinel) {
			return fmt.Errorf("%s: %w", prefix, core.OwnTimeout(err))
		}
	}
	if s.calls.Closed() {
		return fmt.Errorf("%s: %w: %w", prefix, core.ErrClosed, core.OwnTimeout(err))
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", prefix, core.ErrUnavailable, core.OwnTimeout(err))
	}
	if errors.Is(err, ErrIndexOutOfRange) {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	var sentinel error = core.ErrUnavailable
	var perr *pulsar.Error
	var aerr *adminError
	var nerr net.Error
	switch {
	case errors.As(err, &perr):
		switch perr.Result() {
		case pulsar.TopicNotFound:
			sentinel = core.ErrStreamNotFound
		case pulsar.MessageTooBig:
			sentinel = core.ErrMessageTooLarge
		case pulsar.InvalidTopicName, pulsar.InvalidMessage:
			sentinel = core.ErrInvalidArgument
		case pulsar.InvalidConfiguration, pulsar.InvalidURL, pulsar.AuthenticationError, pulsar.AuthorizationError:
			sentinel = core.ErrInvalidOption
		}
	case errors.As(err, &aerr):
		switch aerr.Status {
		case 404:
			sentinel = core.ErrStreamNotFound
			if missingNamespace(aerr) {
				// The Store's tenant or namespace, not the stream, is missing.
				return fmt.Errorf("%s: %w: namespace %s/%s does not exist: create it (pulsar-admin namespaces create %s/%s) or name another: %w",
					prefix, core.ErrInvalidOption, s.opts.Tenant, s.opts.Namespace, s.opts.Tenant, s.opts.Namespace, err)
			}
		case 400, 409, 412:
			sentinel = core.ErrInvalidArgument
		case 401, 403:
			sentinel = core.ErrInvalidOption
		}
	case errors.As(err, &nerr):
		sentinel = core.ErrUnavailable
	}
	return fmt.Errorf("%s: %w: %w", prefix, sentinel, err)
}
