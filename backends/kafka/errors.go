package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
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
		errors.Is(err, core.ErrMessageTooLarge), errors.Is(err, core.ErrUnavailable):
		return fmt.Errorf("%s: %w", what, core.OwnTimeout(err)) // already mapped
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// ctx has not ended: a timeout of the backend's own (a dial timeout, a bound of
		// franz-go's), not the caller's deadline, which a caller would give up on.
		return fmt.Errorf("%s: %w: %w", what, core.ErrUnavailable, core.OwnTimeout(err))
	case errors.Is(err, kgo.ErrClientClosed):
		sentinel = core.ErrClosed
	case isAuthErr(err):
		// Not retryable: the same credentials and ACLs fail again. core.ErrInvalidOption,
		// as the Pulsar backend maps its authentication and authorization errors: what
		// must change is the configuration (the URL's user, password and sasl=, or the
		// broker's ACLs for that user).
		return fmt.Errorf("%s: %w: %w (%s)", what, core.ErrInvalidOption, err, authHint(err))
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

// classified reports whether mapErr finds err a class of its own (a core sentinel, a context
// error or one it maps to a sentinel), as opposed to an error it passes on as it is.
func (s *Store) classified(err error) bool {
	mapped := s.mapErr(context.Background(), "", "", err)
	for _, sentinel := range []error{core.ErrStreamNotFound, core.ErrIndexNotFound, core.ErrClosed,
		core.ErrInvalidArgument, core.ErrMessageTooLarge, core.ErrUnavailable, core.ErrInvalidOption,
		context.Canceled, context.DeadlineExceeded} {
		if errors.Is(mapped, sentinel) {
			return true
		}
	}
	return false
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

// saslErrs are the failures to authenticate; authzErrs the missing authorizations (ACLs).
var (
	saslErrs  = []error{kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism, kerr.IllegalSaslState}
	authzErrs = []error{kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
		kerr.TransactionalIDAuthorizationFailed, kerr.DelegationTokenAuthorizationFailed}
)

// isAuthErr reports whether err is a failure to authenticate (SASL) or a missing
// authorization (ACL) on a topic, group, cluster or transactional id.
func isAuthErr(err error) bool {
	for _, e := range slices.Concat(saslErrs, authzErrs) {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// authHint says what to check after an error isAuthErr accepted.
func authHint(err error) string {
	for _, e := range saslErrs {
		if errors.Is(err, e) {
			return "authentication failed: check the user and password in the kafka:// URL, and that sasl= names a mechanism " +
				"that the broker's listener on that port enables (a listener without SASL refuses every mechanism: then drop the user and sasl=)"
		}
	}
	return "authorization failed: the broker's ACLs do not allow the URL's user this operation: grant it read and write on the " +
		"stream topics (and create, for CreateStream), read on the consumer group of saved indexes, or use another user"
}
