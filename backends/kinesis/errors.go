package kinesis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
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
		expired  *types.ExpiredIteratorException
	)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("kinesis: %s %q: %w", op, stream, err)
	case errors.Is(err, core.ErrStreamNotFound), errors.Is(err, core.ErrInvalidArgument):
		return err
	case errors.As(err, &notFound):
		return fmt.Errorf("kinesis: %s %q: %w: %w", op, stream, core.ErrStreamNotFound, err)
	case isCredsErr(err):
		// No request was sent: the SDK found no credentials to sign it with.
		return fmt.Errorf("kinesis: %s %q: %w: %w (%s)", op, stream, core.ErrInvalidOption, err, credsHint)
	case isAuthErr(err):
		// Not retryable: the same credentials and policies fail again. core.ErrInvalidOption,
		// as the Kafka and Pulsar backends map theirs: what must change is the configuration
		// (the credentials, the region, or the IAM policy of the identity).
		return fmt.Errorf("kinesis: %s %q: %w: %w (%s)", op, stream, core.ErrInvalidOption, err, authHint(err))
	case errors.As(err, &invalid), errors.As(err, &valid):
		return fmt.Errorf("kinesis: %s %q: %w: %w", op, stream, core.ErrInvalidArgument, err)
	case op == "create" && errors.As(err, &limit):
		// Not a shard's throughput: the account's shard quota (which retrying does not
		// lift) or its rate of CreateStream and DeleteStream calls.
		return fmt.Errorf("kinesis: %s %q: the account's shard quota, or its limit of stream creations and deletions at a time, is reached (delete unused streams, ask for fewer partitions, or raise the Kinesis shard quota): %w: %w", op, stream, core.ErrUnavailable, err)
	case errors.As(err, &expired):
		// An iterator older than Kinesis's five minutes (a Fetch that a long throttling
		// backoff held up): a call made again makes a new one.
		return fmt.Errorf("kinesis: %s %q: the shard iterator expired: %w: %w", op, stream, core.ErrUnavailable, err)
	case isThrottle(err):
		return fmt.Errorf("kinesis: %s %q: still throttled after retries (shard write limit is 1 MiB/s or 1000 records/s, reads 2 MiB/s or 5 calls/s): %w: %w", op, stream, core.ErrUnavailable, err)
	case retryable(err):
		return fmt.Errorf("kinesis: %s %q: %w: %w", op, stream, core.ErrUnavailable, err)
	}
	return fmt.Errorf("kinesis: %s %q: %w", op, stream, err)
}

// Error codes of AWS's failures to authenticate a request (the credentials, their signature
// or their session) and to authorize it (the identity's IAM policy, or the stream's KMS key).
var (
	authnCodes = []string{"UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
		"SignatureDoesNotMatch", "IncompleteSignature", "IncompleteSignatureException", "MissingAuthenticationToken",
		"MissingAuthenticationTokenException", "ExpiredToken", "ExpiredTokenException", "RequestExpired", "AuthFailure"}
	authzCodes = []string{"AccessDeniedException", "AccessDenied", "NotAuthorized", "UnauthorizedOperation",
		"KMSAccessDeniedException"}
)

// actions are the Kinesis API actions the backend calls: an IAM policy must allow them on
// the streams (arn:aws:kinesis:REGION:ACCOUNT:stream/PREFIX*), and ListStreams, which Open
// calls, on all of them ("*").
const actions = "kinesis:ListStreams, kinesis:CreateStream, kinesis:DescribeStreamSummary, kinesis:ListShards, " +
	"kinesis:PutRecord, kinesis:GetShardIterator, kinesis:GetRecords and kinesis:DeleteStream"

// authCode returns the error code of err when it is an AWS authentication (authn true) or
// authorization failure, and "" otherwise.
func authCode(err error) (code string, authn bool) {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return "", false
	}
	code = api.ErrorCode()
	switch {
	case slices.Contains(authnCodes, code):
		return code, true
	case slices.Contains(authzCodes, code):
		return code, false
	}
	return "", false
}

// isAuthErr reports whether err is a failure to authenticate or authorize a request.
func isAuthErr(err error) bool {
	code, _ := authCode(err)
	return code != ""
}

// authHint says what to check after an error isAuthErr accepted. It names no credential.
func authHint(err error) string {
	code, authn := authCode(err)
	switch {
	case code == "KMSAccessDeniedException":
		return "authorization failed: the stream is encrypted with a KMS key that the identity may not use: " +
			"allow it kms:GenerateDataKey (writes) and kms:Decrypt (reads) on that key"
	case code == "RequestExpired" || code == "ExpiredToken" || code == "ExpiredTokenException":
		return "authentication failed: the credentials' session token has expired, or the request's signing time " +
			"is too far from AWS's clock: refresh the credentials (a new session, or the SSO login) and check this host's clock"
	case authn:
		return "authentication failed: AWS does not accept the credentials: check the access key id and secret key " +
			"that the AWS SDK's default chain finds (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, " +
			"the shared credentials file, the instance or task role), that the key is active, that this host's " +
			"clock is right (a signature is valid for minutes), and that the region in kinesis://REGION (or " +
			"AWS_REGION) is the stream's and is enabled for the account"
	}
	return "authorization failed: the IAM policy of the identity does not allow this call: the backend needs " + actions +
		" on its streams (and ListStreams on \"*\"); also check the region in kinesis://REGION and that no SCP or " +
		"stream resource policy denies it"
}

// credsError is a failure to find or refresh the credentials that sign a request (no
// request was sent). [markCredentials] puts it in the chain of every call's error.
type credsError struct{ err error }

func (e *credsError) Error() string { return "no AWS credentials: " + e.err.Error() }
func (e *credsError) Unwrap() error { return e.err }

// markedCreds is a credentials provider whose failures are credsErrors.
type markedCreds struct{ aws.CredentialsProvider }

func (m markedCreds) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		err = &credsError{err}
	}
	return c, err
}

// IsCredentialsProvider and ProviderSources answer for the provider marked, as the SDK asks.
func (m markedCreds) IsCredentialsProvider(target aws.CredentialsProvider) bool {
	return aws.IsCredentialsProvider(m.CredentialsProvider, target)
}

func (m markedCreds) ProviderSources() []aws.CredentialSource {
	if s, ok := m.CredentialsProvider.(aws.CredentialProviderSource); ok {
		return s.ProviderSources()
	}
	return nil
}

// markCredentials is given to every Kinesis call: it marks the failures of the client's
// credentials provider for that call only (the caller's client is not changed). A client
// without one sends unsigned requests, which AWS refuses: isAuthErr handles those.
func markCredentials(o *kinesis.Options) {
	if o.Credentials != nil {
		o.Credentials = markedCreds{o.Credentials}
	}
}

// isCredsErr reports whether err is a failure to find or refresh credentials.
func isCredsErr(err error) bool {
	var ce *credsError
	return errors.As(err, &ce)
}

// credsHint says where credentials come from. It names no credential.
const credsHint = "the AWS SDK's default chain found no credentials, or could not refresh them: set " +
	"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE " +
	"naming a profile of the shared config and credentials files (for an SSO profile, log in again), or run " +
	"where an instance or task role is available; the kinesis:// URL carries no credentials, but with " +
	"endpoint= (kinesis-mock, LocalStack) placeholder ones are used when none are configured"

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
	if isCredsErr(err) {
		return false // the credential providers retry what they fetch themselves
	}
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
