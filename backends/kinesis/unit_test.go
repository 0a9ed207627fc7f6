package kinesis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	_ "github.com/sluicehq/sluice/backends/memory" // index=memory:// in TestOpenParameters
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestMapErr checks, without Kinesis, which sentinel each class of SDK error maps to: each
// mapped error keeps the SDK error in its chain and matches exactly the sentinel of its
// class (nil: none).
func TestMapErr(t *testing.T) {
	sentinels := []error{core.ErrStreamNotFound, core.ErrInvalidArgument, core.ErrUnavailable, core.ErrClosed, core.ErrInvalidOption}
	for _, c := range []struct {
		err  error
		want error
	}{
		{&types.ResourceNotFoundException{}, core.ErrStreamNotFound},
		{&types.InvalidArgumentException{}, core.ErrInvalidArgument},
		{&types.ValidationException{}, core.ErrInvalidArgument},
		{&types.ProvisionedThroughputExceededException{}, core.ErrUnavailable},
		{&types.LimitExceededException{}, core.ErrUnavailable},
		{&types.KMSThrottlingException{}, core.ErrUnavailable},
		{&types.InternalFailureException{}, core.ErrUnavailable},
		{&smithy.GenericAPIError{Code: "ServiceUnavailable", Fault: smithy.FaultServer}, core.ErrUnavailable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, core.ErrUnavailable},
		{&smithy.GenericAPIError{Code: "AccessDeniedException", Fault: smithy.FaultClient}, core.ErrInvalidOption},
		{&types.AccessDeniedException{}, core.ErrInvalidOption},
		{&types.KMSAccessDeniedException{}, core.ErrInvalidOption},
		{&smithy.GenericAPIError{Code: "UnrecognizedClientException", Fault: smithy.FaultClient}, core.ErrInvalidOption},
		{&smithy.GenericAPIError{Code: "ExpiredTokenException", Fault: smithy.FaultClient}, core.ErrInvalidOption},
		{&types.ExpiredIteratorException{}, core.ErrUnavailable},
		{fmt.Errorf("wrapped: %w", core.ErrStreamNotFound), core.ErrStreamNotFound},
		{context.Canceled, nil},
		{errors.New("something else"), nil},
	} {
		got := mapErr("append", "s", c.err)
		if !errors.Is(got, c.err) {
			t.Errorf("mapErr(%v) = %v: the SDK error is not in the chain", c.err, got)
		}
		for _, sen := range sentinels {
			if errors.Is(got, sen) != (sen == c.want) {
				t.Errorf("mapErr(%v) = %v: matches %v is %v, want %v", c.err, got, sen, errors.Is(got, sen), sen == c.want)
			}
		}
	}
}

// TestMapErrAuth: AWS's failures to authenticate or authorize a request, as the SDK returns
// them (a modeled exception, or a generic API error with the code, wrapped in the operation
// error), match core.ErrInvalidOption, keep the SDK error, and say what to check: the
// credentials and the region, or the IAM policy with the actions the backend calls. No key
// appears in the message.
func TestMapErrAuth(t *testing.T) {
	authn := []string{"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
		"MissingAuthenticationTokenException", "MissingAuthenticationToken", "IncompleteSignature", "InvalidClientTokenId",
		"SignatureDoesNotMatch"}
	expired := []string{"ExpiredTokenException", "ExpiredToken", "RequestExpired"}
	authz := []string{"AccessDeniedException", "AccessDenied"}
	type tc struct {
		err  error
		want []string // in the message
	}
	var cases []tc
	wrap := func(api error) error {
		return &smithy.OperationError{ServiceID: "Kinesis", OperationName: "PutRecord", Err: fmt.Errorf("https response error StatusCode: 400: %w", api)}
	}
	for _, c := range authn {
		cases = append(cases, tc{wrap(&smithy.GenericAPIError{Code: c, Message: "The security token included in the request is invalid.", Fault: smithy.FaultClient}),
			[]string{"authentication failed", "AWS_ACCESS_KEY_ID", "region", "clock"}})
	}
	for _, c := range expired {
		cases = append(cases, tc{wrap(&smithy.GenericAPIError{Code: c, Fault: smithy.FaultClient}),
			[]string{"authentication failed", "refresh the credentials", "clock"}})
	}
	for _, c := range authz {
		cases = append(cases, tc{wrap(&smithy.GenericAPIError{Code: c, Message: "User: arn:aws:iam::123456789012:user/u is not authorized", Fault: smithy.FaultClient}),
			[]string{"authorization failed", "IAM policy", "kinesis:PutRecord", "kinesis:GetRecords", "kinesis:ListStreams", "region"}})
	}
	cases = append(cases,
		tc{wrap(&types.AccessDeniedException{Message: aws.String("denied")}), []string{"authorization failed", "kinesis:CreateStream"}},
		tc{wrap(&types.KMSAccessDeniedException{Message: aws.String("denied")}), []string{"KMS key", "kms:GenerateDataKey", "kms:Decrypt"}},
	)
	for _, c := range cases {
		got := mapErr("append", "s", c.err)
		if !errors.Is(got, core.ErrInvalidOption) || !errors.Is(got, c.err) {
			t.Errorf("mapErr(%v) = %v; want core.ErrInvalidOption with the SDK error in the chain", c.err, got)
		}
		if errors.Is(got, core.ErrUnavailable) || retryable(c.err) {
			t.Errorf("mapErr(%v) = %v: an authentication or authorization failure is not retryable", c.err, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got.Error(), w) {
				t.Errorf("mapErr(%v) = %q; want it to say %q", c.err, got, w)
			}
		}
	}
	// Client errors that are not about credentials keep their mapping.
	for _, err := range []error{&types.ResourceInUseException{}, &smithy.GenericAPIError{Code: "SerializationException", Fault: smithy.FaultClient}} {
		if got := mapErr("append", "s", err); errors.Is(got, core.ErrInvalidOption) {
			t.Errorf("mapErr(%v) = %v; not an authentication failure", err, got)
		}
	}
}

// TestMapErrCreateLimit: LimitExceeded from CreateStream is the account's shard quota (or
// its rate of stream operations), not a shard's read or write throughput: the error must
// say so, not send the user to the throughput limits.
func TestMapErrCreateLimit(t *testing.T) {
	sdk := &types.LimitExceededException{Message: aws.String("Request would exceed the shard limit of 50")}
	got := mapErr("create", "s", sdk)
	if !errors.Is(got, sdk) || !errors.Is(got, core.ErrUnavailable) {
		t.Errorf("mapErr = %v; want core.ErrUnavailable with the SDK error in the chain", got)
	}
	if msg := got.Error(); strings.Contains(msg, "1 MiB/s") || !strings.Contains(msg, "shard quota") {
		t.Errorf("mapErr of LimitExceeded from CreateStream = %q; want it to name the shard quota, not the shard throughput", msg)
	}
}

// TestIsThrottle: throttling is told apart from other retryable errors, since waiting for a
// stream to become ACTIVE or to go away tolerates only throttling.
func TestIsThrottle(t *testing.T) {
	for _, err := range []error{&types.ProvisionedThroughputExceededException{}, &types.LimitExceededException{},
		fmt.Errorf("describe: %w", &types.KMSThrottlingException{})} {
		if !isThrottle(err) || !retryable(err) {
			t.Errorf("%T: isThrottle %v, retryable %v; want both", err, isThrottle(err), retryable(err))
		}
	}
	if err := (&types.InternalFailureException{}); isThrottle(err) {
		t.Errorf("%T is not throttling", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := (*Options)(nil).withDefaults()
	want := Options{Prefix: "sluice-", MaxRetries: 8, RetryBase: 50 * time.Millisecond, RetryMax: 2 * time.Second,
		ActiveTimeout: 2 * time.Minute, GetRecordsLimit: 1000}
	if o != want {
		t.Errorf("defaults = %+v, want %+v", o, want)
	}
	if o := (&Options{GetRecordsLimit: 10001}).withDefaults(); o.GetRecordsLimit != 1000 {
		t.Errorf("GetRecordsLimit 10001 became %d; want the default, 1000 (Kinesis allows at most 10000)", o.GetRecordsLimit)
	}
	if o := (&Options{GetRecordsLimit: 10000}).withDefaults(); o.GetRecordsLimit != 10000 {
		t.Errorf("GetRecordsLimit 10000 became %d", o.GetRecordsLimit)
	}
	if o := (&Options{MaxRetries: -1}).withDefaults(); o.MaxRetries != 0 {
		t.Errorf("MaxRetries -1 became %d; want 0 (no retries)", o.MaxRetries)
	}
	c := kinesis.New(kinesis.Options{Region: "us-east-1"})
	fits := strings.Repeat("p", 128-core.MaxStreamNameLen)
	if _, err := New(c, &Options{Prefix: fits}); err != nil {
		t.Errorf("New with a %d-character prefix: %v; a full stream name still fits 128 characters", len(fits), err)
	}
	if _, err := New(c, &Options{Prefix: fits + "x"}); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("New with a %d-character prefix: %v; want core.ErrInvalidOption", len(fits)+1, err)
	}
}

// TestRetry checks the retry loop: a retryable error is tried MaxRetries more times, another
// error is returned at once, and the backoff is capped by RetryMax (a base of an hour would
// otherwise never return).
func TestRetry(t *testing.T) {
	s := &Store{opts: (&Options{MaxRetries: 3, RetryBase: time.Hour, RetryMax: time.Millisecond}).withDefaults()}
	done := make(chan struct{})
	var calls int
	var err error
	go func() {
		defer close(done)
		err = s.retry(t.Context(), func() error { calls++; return &types.InternalFailureException{} })
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("retry did not return within a minute: the backoff is not capped by RetryMax")
	}
	var internal *types.InternalFailureException
	if !errors.As(err, &internal) || calls != 4 {
		t.Errorf("retry of a retryable error = %v after %d calls; want it after 4 (1 + MaxRetries 3)", err, calls)
	}
	calls = 0
	err = s.retry(t.Context(), func() error { calls++; return &types.ValidationException{} })
	if calls != 1 || err == nil {
		t.Errorf("retry of a non-retryable error = %v after %d calls; want it after 1", err, calls)
	}
}

func TestSeekMap(t *testing.T) {
	var m seekMap
	if _, ok := m.floor(5); ok {
		t.Fatal("floor on an empty map found an entry")
	}
	for _, f := range []uint64{10, 30, 20, 20} {
		m.add(f, fmt.Sprint("seq", f))
	}
	if len(m.entries) != 3 {
		t.Fatalf("%d entries after adding 10, 30, 20, 20; want 3", len(m.entries))
	}
	for _, c := range []struct {
		index uint64
		want  string
	}{{10, "seq10"}, {19, "seq10"}, {20, "seq20"}, {29, "seq20"}, {30, "seq30"}, {1 << 40, "seq30"}} {
		if e, ok := m.floor(c.index); !ok || e.seq != c.want {
			t.Errorf("floor(%d) = %+v, %v; want %s", c.index, e, ok, c.want)
		}
	}
	if _, ok := m.floor(9); ok {
		t.Error("floor(9) found an entry below the first")
	}
	// Thinning keeps the range: the first and the last entries stay.
	var big seekMap
	for i := range uint64(maxSeekEntries + 1) {
		big.add(i*10, fmt.Sprint(i*10))
	}
	if n := len(big.entries); n > maxSeekEntries/2+1 {
		t.Fatalf("%d entries after thinning; want at most %d", n, maxSeekEntries/2+1)
	}
	last := uint64(maxSeekEntries * 10)
	if e, ok := big.floor(last); !ok || e.first != last {
		t.Errorf("floor(%d) after thinning = %+v; want the last entry kept", last, e)
	}
	if e, ok := big.floor(0); !ok || e.first != 0 {
		t.Errorf("floor(0) after thinning = %+v; want the first entry kept", e)
	}
}

func TestIterCache(t *testing.T) {
	var c iterCache
	it := aws.String("it-5")
	c.put(5, it, []core.Message{{Index: 5}})
	if got, ahead, ok := c.take(5); !ok || got != it || len(ahead) != 1 {
		t.Fatalf("take(5) = %v, %v, %v", got, ahead, ok)
	}
	if _, _, ok := c.take(5); ok {
		t.Fatal("take(5) again found the entry: each one is handed out once")
	}
	c.put(6, it, nil)
	e := c.m[6]
	e.since = time.Now().Add(-iterTTL - time.Second)
	c.m[6] = e
	if _, _, ok := c.take(6); ok {
		t.Fatal("take of an iterator older than iterTTL succeeded")
	}
	// Beyond maxCachedIters the oldest entry goes.
	base := time.Now()
	for k := range uint64(maxCachedIters) {
		c.put(100+k, it, nil)
		e := c.m[100+k]
		e.since = base.Add(time.Duration(k) * time.Second)
		c.m[100+k] = e
	}
	c.put(1000, it, nil)
	if len(c.m) != maxCachedIters {
		t.Fatalf("%d cached iterators; want %d", len(c.m), maxCachedIters)
	}
	if _, ok := c.m[100]; ok {
		t.Error("the oldest iterator was kept")
	}
	if _, ok := c.m[1000]; !ok {
		t.Error("the newest iterator was not kept")
	}
}

// TestCloseStopsWriters checks that Close stops the partition writers and returns, without
// a request to Kinesis (the writer holds no append).
func TestCloseStopsWriters(t *testing.T) {
	s := offlineStore(t)
	part := &partition{shardID: "shardId-000000000000", key: "p0", dropped: make(chan struct{})}
	_, end, err := s.calls.Begin(context.Background()) // writers start inside an Append
	if err != nil {
		t.Fatal(err)
	}
	s.startWriter("s", 0, &streamState{name: "s", parts: []*partition{part}}, part)
	end()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close did not return within a minute: the writer was not stopped")
	}
	select {
	case <-part.exited:
	default:
		t.Fatal("Close returned with the partition writer still running")
	}
}

// fakeKinesis answers ListStreams (what Open calls) and records the signing region.
type fakeKinesis struct {
	mu      sync.Mutex
	regions []string
}

func (f *fakeKinesis) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/kinesis/aws4_request, ...
	if _, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		if parts := strings.Split(cred, "/"); len(parts) > 2 {
			f.mu.Lock()
			f.regions = append(f.regions, parts[2])
			f.mu.Unlock()
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_, _ = w.Write([]byte(`{"StreamNames":[],"HasMoreStreams":false}`))
}

func (f *fakeKinesis) lastRegion() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.regions) == 0 {
		return ""
	}
	return f.regions[len(f.regions)-1]
}

// TestOpenParameters checks, against a fake endpoint that answers Open's check, that the URL's
// region, prefix and max_retries reach the Store, that closing the backend closes the
// index backend, and that the backend declares Persistent only with a persistent index
// backend.
func TestOpenParameters(t *testing.T) {
	dir := isolateAWSConfig(t)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	fake := &fakeKinesis{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ep := url.QueryEscape(srv.URL)

	b, err := core.Open(t.Context(), "kinesis://eu-west-1?endpoint="+ep+"&prefix=app-&max_retries=0&index=memory://")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := b.Storage.(*Store)
	if s.opts.Prefix != "app-" || s.opts.MaxRetries != 0 {
		t.Errorf("prefix=app-&max_retries=0: prefix %q, MaxRetries %d; want app-, 0 (no retries)", s.opts.Prefix, s.opts.MaxRetries)
	}
	if got := fake.lastRegion(); got != "eu-west-1" {
		t.Errorf("kinesis://eu-west-1 signed for region %q", got)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.Index.GetIndex(t.Context(), "c", "s", 0); !errors.Is(err, core.ErrClosed) {
		t.Errorf("GetIndex after Close = %v; want core.ErrClosed: closing the backend closes the index backend", err)
	}

	b, err = core.Open(t.Context(), "kinesis://?endpoint="+ep+"&index=memory://")
	if err != nil {
		t.Fatalf("Open without a region: %v", err)
	}
	defer b.Close()
	if got := fake.lastRegion(); got != "us-east-1" {
		t.Errorf("no region and no AWS_REGION: signed for region %q, want us-east-1", got)
	}
	if s := b.Storage.(*Store); s.opts.MaxRetries != 8 {
		t.Errorf("no max_retries: MaxRetries %d, want the default 8", s.opts.MaxRetries)
	}
	// Persistent promises that saved indexes survive a restart too: not in memory://.
	if b.Storage.Capabilities().Persistent {
		t.Error("index=memory://: the backend declares Persistent, but its saved indexes do not survive a restart")
	}
	b2, err := core.Open(t.Context(), "kinesis://?endpoint="+ep+"&index=bbolt://"+url.QueryEscape(filepath.Join(dir, "index")))
	if err != nil {
		t.Fatalf("Open with index=bbolt: %v", err)
	}
	defer b2.Close()
	if !b2.Storage.Capabilities().Persistent {
		t.Error("index=bbolt://: the backend does not declare Persistent")
	}
}

// TestOpenErrorsHideIndexPassword: the index= parameter names another backend, whose URL
// may carry a password (kafka://user:password@host:9092?sasl=plain). Open's errors are
// printed and logged: they must not show it, whether the index backend or the Kinesis URL
// is at fault.
func TestOpenErrorsHideIndexPassword(t *testing.T) {
	srv := httptest.NewServer(&fakeKinesis{})
	defer srv.Close()
	ep := url.QueryEscape(srv.URL)
	index := url.QueryEscape("memory://user:secret@?x=1") // refused by the memory backend
	for _, raw := range []string{
		"kinesis://us-east-1?endpoint=" + ep + "&index=" + index,
		"kinesis://us-east-1?endpoint=" + ep + "&index=" + index + "&bogus=1",
		"kinesis://us-east-1?endpoint=" + ep + "&index=" + index + "&prefix=a&prefix=b",
	} {
		b, err := core.Open(t.Context(), raw)
		if err == nil {
			b.Close()
			t.Fatalf("Open(%q) succeeded", raw)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open's error shows the index backend's password: %v", err)
		}
	}
}

// TestRecoveryNextIndex: the next index recovery learns from a window of records, oldest
// first, without a broker (TestRecoverAfterForeignNewestRecord does it on kinesis-mock).
func TestRecoveryNextIndex(t *testing.T) {
	rec := func(first uint64, n int) *kinesisRecord {
		recs, _ := packRecords(first, make([][]byte, n))
		return &kinesisRecord{Data: recs[0], SequenceNumber: aws.String(fmt.Sprint(first))}
	}
	corrupt := &kinesisRecord{Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 9, 0xff}}
	foreign := &kinesisRecord{Data: []byte("{}")}
	for _, tc := range []struct {
		name    string
		recs    []*kinesisRecord
		next    uint64
		suspect bool
	}{
		{"in order", []*kinesisRecord{rec(0, 3), rec(3, 2)}, 5, false},
		{"written twice by a retry", []*kinesisRecord{rec(0, 3), rec(3, 2), rec(3, 2)}, 5, false},
		{"another format last", []*kinesisRecord{rec(0, 3), foreign}, 3, false},
		{"corrupt last", []*kinesisRecord{rec(0, 3), corrupt}, 3, true},
		{"corrupt, then in order", []*kinesisRecord{rec(0, 3), corrupt, rec(20, 1)}, 21, false},
		{"lower last", []*kinesisRecord{rec(0, 3), rec(1, 1)}, 3, true},
		{"largest index", []*kinesisRecord{rec(0, 3), rec(math.MaxUint64, 1)}, 3, true},
		{"largest index only", []*kinesisRecord{rec(math.MaxUint64, 1)}, 0, true},
	} {
		var r recovery
		for _, x := range tc.recs {
			r.add(x)
		}
		if r.next != tc.next || (r.suspect != "") != tc.suspect {
			t.Errorf("%s: next %d, suspect %q; want next %d, suspect %v", tc.name, r.next, r.suspect, tc.next, tc.suspect)
		}
	}
}

// TestOpenRefusedCredentials: an endpoint that refuses the credentials at Open's check fails
// Open with an error matching core.ErrInvalidOption (not retryable, not ErrUnavailable) that
// keeps the SDK error, names the endpoint and says what to check, without the secret key.
func TestOpenRefusedCredentials(t *testing.T) {
	isolateAWSConfig(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-never-shown")
	for code, want := range map[string]string{
		"UnrecognizedClientException": "authentication failed",
		"AccessDeniedException":       "kinesis:ListStreams",
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-Errortype", code)
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"__type":%q,"message":"refused"}`, code)
		}))
		b, err := core.Open(t.Context(), "kinesis://eu-west-1?endpoint="+url.QueryEscape(srv.URL)+"&index=memory://")
		srv.Close()
		if err == nil {
			b.Close()
			t.Fatalf("%s: Open succeeded", code)
		}
		var api smithy.APIError
		if !errors.Is(err, core.ErrInvalidOption) || errors.Is(err, core.ErrUnavailable) || !errors.As(err, &api) || api.ErrorCode() != code ||
			!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), srv.URL) || strings.Contains(err.Error(), "secret-never-shown") {
			t.Errorf("%s: Open: %v; want core.ErrInvalidOption with the SDK error, naming the endpoint and saying %q", code, err, want)
		}
	}
}

// TestOpenMissingCredentials: with no credentials anywhere the AWS SDK's default chain looks
// (environment, shared files, container and instance roles), Open fails with an error
// matching core.ErrInvalidOption (a configuration fix, not retryable, not
// core.ErrUnavailable) that says what to set. Nothing is sent: there is nothing to sign with.
func TestOpenMissingCredentials(t *testing.T) {
	isolateAWSConfig(t)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // no instance role either, and no network
	b, err := core.Open(t.Context(), "kinesis://eu-west-1?index=memory://")
	if err == nil {
		b.Close()
		t.Fatal("Open without credentials succeeded")
	}
	if !errors.Is(err, core.ErrInvalidOption) || errors.Is(err, core.ErrUnavailable) {
		t.Errorf("Open without credentials: %v; want an error matching core.ErrInvalidOption, not core.ErrUnavailable", err)
	}
	for _, want := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "endpoint="} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open without credentials: %v; want it to say to set %s", err, want)
		}
	}
	t.Log(err)
}

// TestStoreMissingCredentials: on a caller's client whose credentials provider fails (no
// credentials, or a session that cannot be refreshed), every call of the Store fails with an
// error matching core.ErrInvalidOption that keeps the provider's error and says what to
// set, without sending a request.
func TestStoreMissingCredentials(t *testing.T) {
	var requests sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Store(r.Header.Get("X-Amz-Target"), true)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	noCreds := errors.New("no credentials here")
	c := kinesis.New(kinesis.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, noCreds
		}),
	})
	s, err := New(c, &Options{RetryBase: time.Millisecond, RetryMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"CreateStream": func() error { _, err := s.CreateStream(ctx, "s", 1); return err },
		"Partitions":   func() error { _, err := s.Partitions(ctx, "s"); return err },
		"Append":       func() error { _, err := s.Append(ctx, "s", 0, [][]byte{[]byte("m")}); return err },
		"Fetch":        func() error { _, err := s.Fetch(ctx, "s", 0, 0, 10); return err },
		"DeleteStream": func() error { return s.DeleteStream(ctx, "s") },
	} {
		err := call()
		if !errors.Is(err, core.ErrInvalidOption) || errors.Is(err, core.ErrUnavailable) || !errors.Is(err, noCreds) ||
			!strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
			t.Errorf("%s without credentials: %v; want core.ErrInvalidOption with the provider's error, saying what to set", name, err)
		}
	}
	requests.Range(func(k, _ any) bool { t.Errorf("a request was sent without credentials: %v", k); return true })
}

// putRecordFake answers PutRecord for shard shardId-000000000000 and counts the records.
type putRecordFake struct {
	mu   sync.Mutex
	puts int
}

func (f *putRecordFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.puts++
	n := f.puts
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".PutRecord") {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, `{"ShardId":"shardId-000000000000","SequenceNumber":"%d"}`, n)
}

func (f *putRecordFake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.puts
}

// fakeStore returns a Store of the fake Kinesis endpoint h (served by an httptest server)
// with opts; the test's cleanup closes both.
func fakeStore(t *testing.T, h http.Handler, opts *Options) *Store {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s, err := New(fakeEndpointClient(srv.URL), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// offlineStore returns a Store on a client with no endpoint and no credentials, for a test
// in which no request reaches Kinesis. Nothing closes it at the end of the test: the tests
// close it, or stop its calls, themselves.
func offlineStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(kinesis.New(kinesis.Options{Region: "us-east-1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// isolateAWSConfig points the AWS SDK's shared config and credentials files into a new
// empty directory, which it returns, and clears AWS_PROFILE for the test: what Open loads
// does not depend on the files and the profile of the user who runs the test.
func isolateAWSConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	return dir
}

// fakeEndpointClient returns a Kinesis client of the fake endpoint at url (an httptest
// server), with static credentials.
func fakeEndpointClient(url string) *kinesis.Client {
	return kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "k", SecretAccessKey: "s"}, nil
		})})
}

// TestAppendAtIndexLimit: a partition whose numbering reached the top of the index space
// (another writer's record ended near math.MaxUint64) hands out indexes up to
// math.MaxUint64-1, so that the next index a consumer saves fits a uint64, and then refuses
// appends with an error that says so, writing nothing: indexes never wrap to 0.
func TestAppendAtIndexLimit(t *testing.T) {
	fake := &putRecordFake{}
	s := fakeStore(t, fake, &Options{MaxRetries: -1})
	part := &partition{shardID: "shardId-000000000000", key: "p0", dropped: make(chan struct{}), recovered: true, next: math.MaxUint64 - 2}
	three := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	if first, err := s.write("s", 0, part, three); err == nil {
		t.Fatalf("3 messages from index %d: first index %d, no error; want an error: only 2 indexes are left", uint64(math.MaxUint64-2), first)
	} else if !strings.Contains(err.Error(), "no 3 indexes left") {
		t.Errorf("3 messages from index %d: %v; want an error saying no 3 indexes are left", uint64(math.MaxUint64-2), err)
	}
	if fake.count() != 0 || part.next != math.MaxUint64-2 {
		t.Fatalf("a refused append wrote %d records and moved the next index to %d", fake.count(), part.next)
	}
	first, err := s.write("s", 0, part, three[:2])
	if err != nil || first != math.MaxUint64-2 {
		t.Fatalf("2 messages from index %d: %d, %v", uint64(math.MaxUint64-2), first, err)
	}
	if _, err := s.write("s", 0, part, three[:1]); err == nil || part.next != math.MaxUint64 || fake.count() != 1 {
		t.Fatalf("1 message after index %d: %v, next index %d, %d records written; want an error, next %d, 1 record", uint64(math.MaxUint64-1), err, part.next, fake.count(), uint64(math.MaxUint64))
	}
}

// TestRetryBackoffBounded: the backoff between retries stays within (0, RetryMax] however
// many retries and however long RetryBase: RetryBase doubled 20 times used to overflow
// time.Duration (negative or 0), and rand.N panicked on it.
func TestRetryBackoffBounded(t *testing.T) {
	for _, o := range []Options{
		{RetryBase: 50 * time.Millisecond, RetryMax: 2 * time.Second},
		{RetryBase: 3 * time.Hour, RetryMax: time.Millisecond},
		{RetryBase: 1 << 44, RetryMax: 1 << 62},
		{RetryBase: math.MaxInt64, RetryMax: math.MaxInt64},
		{RetryBase: time.Second, RetryMax: time.Millisecond},
	} {
		o := o.withDefaults()
		prev := time.Duration(0)
		for attempt := range 100 {
			b := o.backoff(attempt)
			if b <= 0 || b > o.RetryMax || b < prev {
				t.Fatalf("RetryBase %v, RetryMax %v: backoff after attempt %d is %v (before: %v); want it in (0, RetryMax], never shorter", o.RetryBase, o.RetryMax, attempt, b, prev)
			}
			prev = b
		}
	}
	// And retry itself, past the twentieth retry.
	s := &Store{opts: (&Options{MaxRetries: 25, RetryBase: 3 * time.Hour, RetryMax: time.Millisecond}).withDefaults()}
	done := make(chan struct{})
	calls := 0
	go func() {
		defer close(done)
		_ = s.retry(t.Context(), func() error { calls++; return &types.InternalFailureException{} })
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("retry did not return within a minute")
	}
	if calls != 26 {
		t.Errorf("retry made %d calls, want 26 (1 + MaxRetries 25)", calls)
	}
}

// TestNewRefusesInvalidPrefix: a prefix with a character that Kinesis refuses in stream names
// (only ASCII letters, digits, '.', '_' and '-' are allowed) is refused by New with
// core.ErrInvalidOption, rather than making every CreateStream fail with a Kinesis
// ValidationException about a stream name the caller never wrote.
func TestNewRefusesInvalidPrefix(t *testing.T) {
	c := kinesis.New(kinesis.Options{Region: "us-east-1"})
	for _, p := range []string{"sluice/", "my prefix-", "é-", "a:b"} {
		if _, err := New(c, &Options{Prefix: p}); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("New with prefix %q: %v; want core.ErrInvalidOption naming the prefix", p, err)
		}
	}
	for _, p := range []string{"sluice-", "a.b_c-", "X9"} {
		if _, err := New(c, &Options{Prefix: p}); err != nil {
			t.Errorf("New with prefix %q: %v", p, err)
		}
	}
}

// TestInvalidArgumentsSayWhere: every call refuses an invalid argument with
// core.ErrInvalidArgument and an error that says it comes from this backend and which call
// (and stream) it was, as the errors of Kinesis do. No request reaches Kinesis: the stream's
// state is cached.
func TestInvalidArgumentsSayWhere(t *testing.T) {
	s := offlineStore(t)
	defer s.Close()
	s.streams["s"] = &streamState{name: "sluice-s", parts: []*partition{{shardID: "shardId-000000000000", key: "p0", dropped: make(chan struct{})}}}
	ctx := t.Context()
	m := [][]byte{[]byte("m")}
	for _, c := range []struct {
		want string // the error starts with it
		err  error
	}{
		{"kinesis: create stream: ", func() error { _, err := s.CreateStream(ctx, "a/b", 1); return err }()},
		{`kinesis: create stream "s": `, func() error { _, err := s.CreateStream(ctx, "s", 0); return err }()},
		{"kinesis: partitions: ", func() error { _, err := s.Partitions(ctx, ""); return err }()},
		{"kinesis: delete stream: ", s.DeleteStream(ctx, "a b")},
		{"kinesis: append: ", func() error { _, err := s.Append(ctx, "a/b", 0, m); return err }()},
		{`kinesis: append "s": `, func() error { _, err := s.Append(ctx, "s", 1, m); return err }()},
		{"kinesis: fetch: ", func() error { _, err := s.Fetch(ctx, "a/b", 0, 0, 1); return err }()},
		{`kinesis: fetch "s": `, func() error { _, err := s.Fetch(ctx, "s", 0, 0, -1); return err }()},
		{`kinesis: fetch "s": `, func() error { _, err := s.Fetch(ctx, "s", -1, 0, 1); return err }()},
	} {
		if !errors.Is(c.err, core.ErrInvalidArgument) || !strings.HasPrefix(fmt.Sprint(c.err), c.want) {
			t.Errorf("got %v; want core.ErrInvalidArgument, starting %q", c.err, c.want)
		}
	}
}

// TestCallErr: a public call's error as the caller reads it. A context error while the call's
// context is alive is the backend's own timeout (a dial timeout, the SDK's): core.ErrUnavailable,
// not the caller's context.DeadlineExceeded; one Close caused matches core.ErrClosed; the
// caller's own cancellation stays its context's error.
func TestCallErr(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}
	for _, err := range []error{dial, fmt.Errorf("kinesis: fetch %q: %w", "s", dial)} {
		got := callErr(context.Background(), err)
		if !errors.Is(got, core.ErrUnavailable) || errors.Is(got, context.DeadlineExceeded) {
			t.Errorf("callErr(live, %v) = %v; want core.ErrUnavailable, not DeadlineExceeded", err, got)
		}
		var op *net.OpError
		if !errors.As(got, &op) {
			t.Errorf("callErr(live, %v) = %v: the dial error is not in the chain", err, got)
		}
	}
	if got := callErr(context.Background(), core.ErrStreamNotFound); got != core.ErrStreamNotFound {
		t.Errorf("callErr(live, ErrStreamNotFound) = %v, want it unchanged", got)
	}
	closed, cancel := context.WithCancelCause(context.Background())
	cancel(core.ErrClosed)
	if got := callErr(closed, context.Canceled); !errors.Is(got, core.ErrClosed) || !errors.Is(got, context.Canceled) {
		t.Errorf("callErr(cancelled by Close, Canceled) = %v; want ErrClosed and Canceled", got)
	}
	mine, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	<-mine.Done()
	if got := callErr(mine, context.DeadlineExceeded); !errors.Is(got, context.DeadlineExceeded) || errors.Is(got, core.ErrUnavailable) {
		t.Errorf("callErr(the caller's deadline, DeadlineExceeded) = %v; want DeadlineExceeded", got)
	}
}

// TestOpenEndpointThatNeverAnswers: an endpoint that accepts connections and never answers
// (a wrong port, a stuck proxy) fails Open within serviceCheckTimeout even when the
// caller's ctx has no deadline, with an error matching core.ErrUnavailable and naming the
// endpoint, and never context.DeadlineExceeded, which is only the caller's. A caller's
// ctx that ends first fails Open with the caller's error.
func TestOpenEndpointThatNeverAnswers(t *testing.T) {
	isolateAWSConfig(t)
	addr := hubtest.SilentServer(t)
	prev := serviceCheckTimeout
	serviceCheckTimeout = 300 * time.Millisecond
	t.Cleanup(func() { serviceCheckTimeout = prev })
	rawURL := "kinesis://us-east-1?endpoint=http://" + addr + "&index=memory://"

	done := make(chan error, 1)
	go func() {
		b, err := core.Open(context.Background(), rawURL)
		if err == nil {
			b.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Open of an endpoint that never answers succeeded")
		}
		if !errors.Is(err, core.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "no answer within") {
			t.Errorf("Open: %v; want core.ErrUnavailable, not context.DeadlineExceeded, naming the endpoint and saying it did not answer", err)
		}
		t.Log(err)
	case <-time.After(time.Minute):
		t.Fatal("Open of an endpoint that never answers did not return within a minute; want it bounded by serviceCheckTimeout")
	}

	serviceCheckTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	b, err := core.Open(ctx, rawURL)
	if err == nil {
		b.Close()
		t.Fatal("Open with an expired ctx succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open whose ctx ended first: %v; want the caller's context.DeadlineExceeded", err)
	}
}
