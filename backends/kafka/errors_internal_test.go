package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/core"
)

// sentinels are the core errors mapErr chooses from; each mapped error must match exactly
// the one it is meant to.
var sentinels = []error{core.ErrStreamNotFound, core.ErrIndexNotFound, core.ErrClosed, core.ErrInvalidArgument,
	core.ErrMessageTooLarge, core.ErrUnavailable, core.ErrInvalidOption}

// TestMapErr checks the mapping of franz-go, broker and network errors to core sentinels
// without a broker: every error keeps the original in its chain and matches exactly the
// sentinel of its class (nil: none).
func TestMapErr(t *testing.T) {
	s := &Store{}
	for _, c := range []struct {
		err  error
		want error
	}{
		{kgo.ErrClientClosed, core.ErrClosed},
		{kerr.UnknownTopicOrPartition, core.ErrStreamNotFound},
		{kerr.UnknownTopicID, core.ErrStreamNotFound},
		{kerr.MessageTooLarge, core.ErrMessageTooLarge},
		{kerr.RecordListTooLarge, core.ErrMessageTooLarge},
		{kerr.InvalidTopicException, core.ErrInvalidArgument},
		{kerr.InvalidPartitions, core.ErrInvalidArgument},
		{kerr.InvalidReplicationFactor, core.ErrInvalidArgument},
		{kerr.InvalidConfig, core.ErrInvalidArgument},
		{kerr.PolicyViolation, core.ErrInvalidArgument},
		{kerr.NotEnoughReplicas, core.ErrUnavailable},
		{kerr.NotEnoughReplicasAfterAppend, core.ErrUnavailable},
		{kerr.CoordinatorNotAvailable, core.ErrUnavailable},
		{kerr.ThrottlingQuotaExceeded, core.ErrUnavailable},
		{kerr.LeaderNotAvailable, core.ErrUnavailable}, // retriable
		{kgo.ErrRecordTimeout, core.ErrUnavailable},
		{kgo.ErrRecordRetries, core.ErrUnavailable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, core.ErrUnavailable},
		{&kgo.ErrFirstReadEOF{}, core.ErrUnavailable},
		{fmt.Errorf("read: %w", io.EOF), core.ErrUnavailable},
		{io.ErrUnexpectedEOF, core.ErrUnavailable},
		{syscall.ECONNREFUSED, core.ErrUnavailable},
		{syscall.ECONNRESET, core.ErrUnavailable},
		{syscall.EPIPE, core.ErrUnavailable},
		{net.ErrClosed, core.ErrUnavailable},
		{fmt.Errorf("%w: x", core.ErrIndexNotFound), core.ErrIndexNotFound}, // already mapped
		{fmt.Errorf("%w: x", core.ErrStreamNotFound), core.ErrStreamNotFound},
		{kerr.TopicAuthorizationFailed, core.ErrInvalidOption},
		{kerr.GroupAuthorizationFailed, core.ErrInvalidOption},
		{kerr.ClusterAuthorizationFailed, core.ErrInvalidOption},
		{kerr.TransactionalIDAuthorizationFailed, core.ErrInvalidOption},
		{kerr.SaslAuthenticationFailed, core.ErrInvalidOption},
		{fmt.Errorf("%w: Authentication failed: Invalid username or password", kerr.SaslAuthenticationFailed), core.ErrInvalidOption}, // as franz-go returns it
		{kerr.UnsupportedSaslMechanism, core.ErrInvalidOption},
		{kerr.IllegalSaslState, core.ErrInvalidOption},
		{kerr.InvalidRecord, nil}, // no class: passed on as is
		{errors.New("something else"), nil},
	} {
		got := s.mapErr(context.Background(), "append", "s", c.err)
		if !errors.Is(got, c.err) {
			t.Errorf("mapErr(%v) = %v: the original error is not in the chain", c.err, got)
		}
		for _, sen := range sentinels {
			if errors.Is(got, sen) != (sen == c.want) {
				t.Errorf("mapErr(%v) = %v: matches %v is %v, want %v", c.err, got, sen, errors.Is(got, sen), sen == c.want)
			}
		}
	}
	if err := s.mapErr(context.Background(), "append", "s", nil); err != nil {
		t.Errorf("mapErr(nil) = %v", err)
	}
}

// TestMapErrAuth: authentication and authorization failures say so and what to check (they
// used to come back as the bare broker error, matching no sentinel).
func TestMapErrAuth(t *testing.T) {
	s := &Store{}
	for _, err := range []error{kerr.SaslAuthenticationFailed, kerr.TopicAuthorizationFailed,
		kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed} {
		got := s.mapErr(context.Background(), "connect", "", err).Error()
		want := []string{"authorization failed", "ACLs", "user"}
		if errors.Is(err, kerr.SaslAuthenticationFailed) {
			want = []string{"authentication failed", "user and password", "sasl="}
		}
		for _, want := range want {
			if !strings.Contains(got, want) {
				t.Errorf("mapErr(%v) = %q: does not say %q", err, got, want)
			}
		}
	}
}

// TestMapErrContext checks the errors of a call whose context ended: Close's cancellation is
// core.ErrClosed, the caller's cancellation keeps the context's error, and the broker error
// stays in the chain either way.
func TestMapErrContext(t *testing.T) {
	s := &Store{}
	closed, cancel := context.WithCancelCause(context.Background())
	cancel(core.ErrClosed)
	got := s.mapErr(closed, "fetch", "s", kgo.ErrRecordTimeout)
	if !errors.Is(got, core.ErrClosed) || !errors.Is(got, kgo.ErrRecordTimeout) || errors.Is(got, core.ErrUnavailable) {
		t.Errorf("cancelled by Close: %v; want core.ErrClosed with the client error, not core.ErrUnavailable", got)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	got = s.mapErr(cancelled, "fetch", "s", kgo.ErrRecordTimeout)
	if !errors.Is(got, context.Canceled) || !errors.Is(got, kgo.ErrRecordTimeout) || errors.Is(got, core.ErrClosed) {
		t.Errorf("cancelled by the caller with a client error: %v; want context.Canceled and the client error", got)
	}
	got = s.mapErr(cancelled, "fetch", "s", context.Canceled)
	if !errors.Is(got, context.Canceled) || errors.Is(got, core.ErrClosed) {
		t.Errorf("cancelled by the caller: %v; want context.Canceled", got)
	}
}

// TestMapErrOwnTimeout: a context error while the call's context is alive is a timeout of
// the backend's own (a dial timeout, a bound of franz-go's): core.ErrUnavailable, and not
// context.DeadlineExceeded, which a caller would take for its own deadline and give up.
func TestMapErrOwnTimeout(t *testing.T) {
	s := &Store{}
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}
	for _, err := range []error{dial, fmt.Errorf("metadata: %w", context.DeadlineExceeded),
		fmt.Errorf("%w: %w", core.ErrUnavailable, context.DeadlineExceeded)} {
		got := s.mapErr(context.Background(), "fetch", "s", err)
		if !errors.Is(got, core.ErrUnavailable) || errors.Is(got, context.DeadlineExceeded) || errors.Is(got, context.Canceled) {
			t.Errorf("mapErr(%v) with a live context = %v; want core.ErrUnavailable, not a context error", err, got)
		}
	}
	var op *net.OpError
	if !errors.As(s.mapErr(context.Background(), "fetch", "s", dial), &op) || op != dial {
		t.Error("the dial error is no longer in the chain for errors.As")
	}
}

// TestRetryCoordinator checks that a group coordinator that is not ready is retried, any
// other error is returned at once, and a context that ends returns the last error.
func TestRetryCoordinator(t *testing.T) {
	notReady := []error{kerr.CoordinatorNotAvailable, kerr.CoordinatorLoadInProgress, kerr.NotCoordinator}
	calls := 0
	err := retryCoordinator(t.Context(), func() error {
		calls++
		if calls <= len(notReady) {
			return notReady[calls-1]
		}
		return nil
	})
	if err != nil || calls != len(notReady)+1 {
		t.Errorf("retryCoordinator = %v after %d calls; want nil after %d", err, calls, len(notReady)+1)
	}
	calls = 0
	err = retryCoordinator(t.Context(), func() error { calls++; return kerr.GroupAuthorizationFailed })
	if !errors.Is(err, kerr.GroupAuthorizationFailed) || calls != 1 {
		t.Errorf("retryCoordinator with another error = %v after %d calls; want it after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls = 0
	err = retryCoordinator(ctx, func() error { calls++; return kerr.CoordinatorLoadInProgress })
	if !errors.Is(err, kerr.CoordinatorLoadInProgress) || calls != 1 {
		t.Errorf("retryCoordinator with a cancelled context = %v after %d calls; want the last error after 1", err, calls)
	}
}
