package kinesis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sluicehq/sluice/core"
)

func init() { core.Register("kinesis", Open) }

// serviceCheckTimeout bounds Open's check that the service answers when ctx allows longer:
// it takes milliseconds on a healthy endpoint, and an endpoint that accepts connections and
// never answers (a wrong port, a stuck proxy) would hold Open for as long as ctx lasts. A
// variable for the tests.
var serviceCheckTimeout = 10 * time.Second

// Open opens a Store from a URL:
//
//	kinesis://REGION?endpoint=URL&prefix=P&index=INDEX_URL&max_retries=N
//
// REGION is the AWS region (default AWS_REGION, then us-east-1). Unknown parameters are
// refused. max_retries=0 disables the retries of throttled and failed calls (default 8). endpoint overrides the
// service endpoint (kinesis-mock, LocalStack). Credentials come from the standard AWS chain;
// with an endpoint, the EC2 metadata service is not asked, and without configured credentials
// placeholder ones are used (emulators check that requests are signed, not by whom). index is
// required: the backend URL that stores consumer indexes, since Kinesis has no store of its own
// (for example index=bbolt:///var/lib/sluice/kinesis-index; index=memory:// forgets them on
// restart). The index backend's package must be imported, as for any URL. Open checks that
// the service answers (a ListStreams call, within 10 seconds): an unreachable endpoint or
// rejected credentials fail here, with an error matching core.ErrUnavailable when the
// service cannot be reached or does not answer in time,
// and one matching core.ErrInvalidOption, saying what to check or set, when no credentials
// are found (without endpoint=), AWS refuses them, or the IAM policy does not allow the call.
func Open(ctx context.Context, u *url.URL) (*core.Backend, error) {
	if err := core.NoUserInfo(u); err != nil {
		return nil, fmt.Errorf("kinesis: %w (credentials come from the AWS SDK's default chain)", err)
	}
	q, err := core.URLParams(u)
	if err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	for k := range q {
		if k != "endpoint" && k != "prefix" && k != "index" && k != "max_retries" {
			return nil, fmt.Errorf("kinesis: %w: %q: unknown parameter %q (known: endpoint, prefix, index, max_retries)", core.ErrInvalidOption, core.RedactURL(u.String()), k)
		}
	}
	region := u.Host
	var lo []func(*config.LoadOptions) error
	if region != "" {
		lo = append(lo, config.WithRegion(region))
	}
	// Store.retry is the one retry loop (it sees throttling per call); the SDK's would multiply it.
	lo = append(lo, config.WithRetryMaxAttempts(1))
	endpoint := q["endpoint"]
	if endpoint != "" {
		// An emulator or a private endpoint: never fall back to the EC2 metadata service.
		lo = append(lo, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	indexURL := q["index"]
	if indexURL == "" {
		return nil, fmt.Errorf("kinesis: %w: %q has no index= parameter: Kinesis cannot store consumer indexes, so name a backend for them, e.g. index=bbolt:///var/lib/sluice/kinesis-index (or index=memory:// for tests)", core.ErrInvalidOption, core.RedactURL(u.String()))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("kinesis: %w: load AWS config: %w", core.ErrInvalidOption, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if endpoint != "" {
		if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
			cfg.Credentials = credentials.NewStaticCredentialsProvider("sluice", "sluice", "")
		}
	}
	client := kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	opts := &Options{Prefix: q["prefix"]}
	if v := q["max_retries"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("kinesis: %w: max_retries=%q is not a non-negative integer", core.ErrInvalidOption, v)
		}
		opts.MaxRetries = n
		if n == 0 {
			opts.MaxRetries = -1 // Options: 0 is the default, negative is none
		}
	}
	store, err := New(client, opts)
	if err != nil {
		return nil, err
	}
	// Fail now, as kafka:// does, rather than at the first request of a client.
	cctx, cancel := context.WithTimeout(ctx, serviceCheckTimeout)
	_, err = client.ListStreams(cctx, &kinesis.ListStreamsInput{Limit: aws.Int32(1)}, markCredentials)
	cancel()
	if err != nil {
		where := "the AWS endpoint of region " + cfg.Region
		if endpoint != "" {
			where = endpoint
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kinesis: connect to %s: %w", where, ctx.Err())
		}
		if errors.Is(cctx.Err(), context.DeadlineExceeded) { // cancel came after the deadline
			return nil, fmt.Errorf("kinesis: connect to %s: %w: no answer within %v: %w (is it a Kinesis endpoint? check endpoint=)", where, core.ErrUnavailable, serviceCheckTimeout, core.OwnTimeout(err))
		}
		if isCredsErr(err) {
			return nil, fmt.Errorf("kinesis: connect to %s: %w: %w (%s)", where, core.ErrInvalidOption, err, credsHint)
		}
		if isAuthErr(err) {
			return nil, fmt.Errorf("kinesis: connect to %s: %w: %w (%s)", where, core.ErrInvalidOption, err, authHint(err))
		}
		if retryable(err) {
			return nil, fmt.Errorf("kinesis: connect to %s: %w: %w (is the service running? check endpoint=)", where, core.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("kinesis: connect to %s: %w (check the region and the AWS credentials)", where, err)
	}
	idx, err := core.Open(ctx, indexURL)
	if err != nil {
		return nil, fmt.Errorf("kinesis: index store %q: %w", core.RedactURL(indexURL), err)
	}
	store.opts.Index = idx.Index // DeleteStream deletes the stream's indexes there too
	store.opts.VolatileIndex = idx.Storage != nil && !idx.Storage.Capabilities().Persistent
	ci := composedIndex{idx.Index, idx}
	if d, ok := idx.Index.(core.IndexDeleter); ok { // offer it as the index= store does
		return &core.Backend{Storage: store, Index: struct {
			composedIndex
			core.IndexDeleter
		}{ci, d}}, nil
	}
	return &core.Backend{Storage: store, Index: ci}, nil
}

// composedIndex is the IndexStorage of another backend, closed together with it.
type composedIndex struct {
	core.IndexStorage
	backend *core.Backend
}

func (c composedIndex) Close() error { return c.backend.Close() }
