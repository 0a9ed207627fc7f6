package kinesis_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	_ "github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/backends/kinesis"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/conformance/brokers"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// One kinesis-mock per test binary, started on first use (so that a binary that runs no
// broker test, such as a fuzz worker, starts none) and stopped by TestMain.
var (
	mock     sync.Once
	mockK    *brokers.Kinesis
	endpoint string
	region   string
	startErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if mockK != nil {
		if err := mockK.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop kinesis-mock: %v\n", err)
		}
	}
	os.Exit(code)
}

// startMock starts the shared kinesis-mock on first use and sets endpoint and region.
func startMock() {
	mock.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		mockK, startErr = brokers.StartKinesis(ctx, os.Stderr)
		if startErr == nil {
			endpoint, region = mockK.Endpoint, mockK.Region
		}
	})
}

// client returns an SDK client for the test endpoint, whose HTTP calls go through hc when set.
func client(t testing.TB, hc aws.HTTPClient) *awskinesis.Client {
	t.Helper()
	startMock()
	if startErr != nil {
		brokers.Unavailable(t, "kinesis-mock", startErr)
	}
	cfg := aws.Config{
		Region:           region,
		Credentials:      credentials.NewStaticCredentialsProvider("sluice", "sluice", ""),
		RetryMaxAttempts: 1,
	}
	if hc != nil {
		cfg.HTTPClient = hc
	}
	return awskinesis.NewFromConfig(cfg, func(o *awskinesis.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

// harness opens a kinesis Store with a bbolt file for consumer indexes (composed, as in
// production: Kinesis has no index store of its own).
func harness(t *testing.T) conformance.Harness {
	c := client(t, nil)
	dir := t.TempDir()
	return conformance.Harness{Open: func(ctx context.Context) (*core.Backend, error) {
		idx, err := core.Open(ctx, "bbolt://"+dir)
		if err != nil {
			return nil, err
		}
		s, err := kinesis.New(c, &kinesis.Options{Index: idx.Index})
		if err != nil {
			return nil, errors.Join(err, idx.Close())
		}
		return &core.Backend{Storage: s, Index: idx.Index}, nil
	}}
}

func TestConformance(t *testing.T) {
	h := harness(t)
	t.Run("Storage", func(t *testing.T) { conformance.RunStorage(t, h) })
	t.Run("IndexStorage", func(t *testing.T) { conformance.RunIndexStorage(t, h) })
}

func TestOpenURL(t *testing.T) {
	client(t, nil) // skips or fails when kinesis-mock is not running
	ctx := context.Background()
	b, err := core.Open(ctx, "kinesis://"+region+"?endpoint="+endpoint+"&prefix=url-&index=bbolt://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	name := fmt.Sprintf("open-url-%d", time.Now().UnixNano())
	if n, err := b.Storage.CreateStream(ctx, name, 2); err != nil || n != 2 {
		t.Fatalf("CreateStream = %d, %v", n, err)
	}
	deleted := false
	defer func() { // before b.Close: the account's shards are limited
		if deleted {
			return
		}
		if err := b.Storage.(core.StreamDeleter).DeleteStream(ctx, name); err != nil {
			t.Errorf("DeleteStream: %v", err)
		}
	}()
	idx, err := b.Storage.Append(ctx, name, 1, [][]byte{[]byte("via url")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Storage.Fetch(ctx, name, 1, idx[0], 10)
	if err != nil || len(got) != 1 || string(got[0].Data) != "via url" {
		t.Fatalf("Fetch = %v, %v", got, err)
	}
	if err := b.Index.SaveIndex(ctx, "c1", name, 1, idx[0]+1); err != nil {
		t.Fatal(err)
	}
	// The index= store (bbolt) can delete indexes: the composed backend offers it, and
	// DeleteStream deletes the stream's indexes there.
	if _, ok := b.Index.(core.IndexDeleter); !ok {
		t.Error("the IndexStorage of kinesis://...&index=bbolt://... does not implement core.IndexDeleter")
	}
	deleted = true
	if err := b.Storage.(core.StreamDeleter).DeleteStream(ctx, name); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if _, err := b.Index.GetIndex(ctx, "c1", name, 1); !errorsIs(err, core.ErrIndexNotFound) {
		t.Errorf("GetIndex after DeleteStream: %v, want ErrIndexNotFound", err)
	}
	if _, err := core.Open(ctx, "kinesis://"+region+"?endpoint="+endpoint+"&index=bbolt://"+t.TempDir()+"&max_retries=x"); !errorsIs(err, core.ErrInvalidOption) {
		t.Fatalf("bad max_retries: got %v, want ErrInvalidOption", err)
	}
	if _, err := core.Open(ctx, "kinesis://"+region+"?endpoint="+endpoint); !errorsIs(err, core.ErrInvalidOption) {
		t.Fatalf("no index=: got %v, want ErrInvalidOption", err)
	}
}

// faultyHTTP answers some calls with a throttling error without sending them, and lets some
// calls reach the server but replaces the reply with a 500 (an "ambiguous" failure: the write
// happened, the client does not know).
type faultyHTTP struct {
	next        aws.HTTPClient
	throttleN   atomic.Int64 // throttle the next N calls of the target operation
	ambiguousN  atomic.Int64 // send, then fail the next N calls of the target operation
	target      string       // "PutRecord" or "GetRecords"
	throttled   atomic.Int64
	ambiguous   atomic.Int64
	calls       atomic.Int64
	lastAttempt atomic.Int64 // unix nanos of the last call, to observe backoff gaps
	maxGap      atomic.Int64
}

func (f *faultyHTTP) Do(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	if op == f.target {
		now := time.Now().UnixNano()
		if prev := f.lastAttempt.Swap(now); prev != 0 && now-prev > f.maxGap.Load() {
			f.maxGap.Store(now - prev)
		}
		f.calls.Add(1)
		if f.throttleN.Add(-1) >= 0 {
			f.throttled.Add(1)
			return errorResponse(req, http.StatusBadRequest, "ProvisionedThroughputExceededException", "Rate exceeded for shard"), nil
		}
		if f.ambiguousN.Add(-1) >= 0 {
			resp, err := f.next.Do(req)
			if err != nil {
				return nil, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			f.ambiguous.Add(1)
			return errorResponse(req, http.StatusInternalServerError, "InternalFailure", "injected after the write"), nil
		}
	}
	return f.next.Do(req)
}

func errorResponse(req *http.Request, code int, typ, msg string) *http.Response {
	body := fmt.Sprintf(`{"__type":%q,"message":%q}`, typ, msg)
	return &http.Response{
		StatusCode: code, Status: http.StatusText(code), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amzn-Errortype": {typ}},
		Body:    io.NopCloser(strings.NewReader(body)),
		Request: req, ContentLength: int64(len(body)),
	}
}

// TestThrottlingRetriedWithoutLossOrDuplicates injects throttling and ambiguous failures into
// PutRecord and GetRecords: every append still returns, indexes stay unique and increasing, and
// a fetch returns every message exactly once with its reported index.
func TestThrottlingRetriedWithoutLossOrDuplicates(t *testing.T) {
	ctx := context.Background()
	put := &faultyHTTP{next: http.DefaultClient, target: "PutRecord"}
	get := &faultyHTTP{next: put, target: "GetRecords"}
	s := openStore(t, client(t, get), &kinesis.Options{RetryBase: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, MaxRetries: 10})
	name := newStream(t, ctx, s, "throttle-")

	want := map[uint64]string{}
	var last uint64
	for i := range 40 {
		if i%5 == 0 {
			put.throttleN.Store(3)
		}
		if i%7 == 3 {
			put.ambiguousN.Store(1) // the record is written, the reply says it failed: Append retries
		}
		msg := fmt.Sprintf("m-%03d", i)
		idx, err := s.Append(ctx, name, 0, [][]byte{[]byte(msg)})
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if len(want) > 0 && idx[0] <= last {
			t.Fatalf("Append %d got index %d, not above the previous %d", i, idx[0], last)
		}
		last = idx[0]
		want[idx[0]] = msg
	}
	if put.throttled.Load() == 0 || put.ambiguous.Load() == 0 {
		t.Fatalf("no faults injected (throttled %d, ambiguous %d)", put.throttled.Load(), put.ambiguous.Load())
	}
	get.throttleN.Store(4)
	var got []core.Message
	for from := uint64(0); ; {
		page, err := s.Fetch(ctx, name, 0, from, 7)
		if err != nil {
			t.Fatalf("Fetch(%d): %v", from, err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		from = page[len(page)-1].Index + 1
	}
	if get.throttled.Load() == 0 {
		t.Fatalf("no GetRecords throttling injected")
	}
	if len(got) != len(want) {
		t.Fatalf("fetched %d messages, appended %d (duplicates or losses)", len(got), len(want))
	}
	for i, m := range got {
		if want[m.Index] != string(m.Data) {
			t.Fatalf("message %d: index %d holds %q, Append reported %q", i, m.Index, m.Data, want[m.Index])
		}
		if i > 0 && m.Index <= got[i-1].Index {
			t.Fatalf("indexes not increasing: %d after %d", m.Index, got[i-1].Index)
		}
	}
	t.Logf("PutRecord: %d calls, %d throttled, %d ambiguous; GetRecords: %d throttled; largest gap between PutRecord attempts %s",
		put.calls.Load(), put.throttled.Load(), put.ambiguous.Load(), get.throttled.Load(), time.Duration(put.maxGap.Load()))

	// Throttling that persists is surfaced as ErrUnavailable, and burns no index twice.
	put.throttleN.Store(1 << 30)
	if _, err := s.Append(ctx, name, 0, [][]byte{[]byte("never")}); !errorsIs(err, core.ErrUnavailable) {
		t.Fatalf("persistent throttling: got %v, want ErrUnavailable", err)
	}
	put.throttleN.Store(0)
	idx, err := s.Append(ctx, name, 0, [][]byte{[]byte("after")})
	if err != nil || idx[0] <= last+1 {
		t.Fatalf("append after a failed one: index %v (%v), want above %d (the failed append's index is burned)", idx, err, last+1)
	}
}

// TestSeekAfterRestart reopens a store (losing its in-memory seek map) and fetches from the
// middle of a long partition: the timestamp search must find the right record.
func TestSeekAfterRestart(t *testing.T) {
	ctx := context.Background()
	c := client(t, nil)
	s1, name := newStreamToReopen(t, ctx, c, "seek-")
	var all []uint64
	for i := range 30 {
		idx, err := s1.Append(ctx, name, 0, [][]byte{[]byte(fmt.Sprintf("a-%d", i)), []byte(fmt.Sprintf("b-%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, idx...)
		time.Sleep(3 * time.Millisecond) // spread arrival timestamps so the search has work to do
	}
	s1.Close()
	s2 := openStore(t, c, nil)
	for _, k := range []int{0, 1, 17, 33, 58, 59} {
		got, err := s2.Fetch(ctx, name, 0, all[k], 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[0].Index != all[k] {
			t.Fatalf("Fetch(from=%d) after reopen = %v, want first index %d", all[k], got, all[k])
		}
		wantData := fmt.Sprintf("%c-%d", "ab"[k%2], k/2)
		if !bytes.Equal(got[0].Data, []byte(wantData)) {
			t.Fatalf("Fetch(from=%d) data %q, want %q", all[k], got[0].Data, wantData)
		}
	}
	// A reopened store continues after the last index.
	idx, err := s2.Append(ctx, name, 0, [][]byte{[]byte("next")})
	if err != nil || idx[0] <= all[len(all)-1] {
		t.Fatalf("append after reopen: %v, %v; want above %d", idx, err, all[len(all)-1])
	}
}

func BenchmarkStorage(b *testing.B) {
	c := client(b, nil)
	conformance.BenchmarkStorage(b, conformance.Harness{Open: func(ctx context.Context) (*core.Backend, error) {
		s, err := kinesis.New(c, nil)
		return &core.Backend{Storage: s}, err
	}})
}

// TestOpenUnreachable: a URL whose endpoint does not answer fails at Open, as kafka://
// does, not at the first request of a client.
func TestOpenUnreachable(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens there
	b, err := core.Open(context.Background(), "kinesis://us-east-1?endpoint=http://"+addr+"&index=bbolt://"+t.TempDir())
	if err == nil {
		b.Close()
		t.Fatal("Open of an endpoint where nothing listens succeeded")
	}
	if !errorsIs(err, core.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open error = %v, want ErrUnavailable naming %s", err, addr)
	}
}

// TestDeleteStopsWritersAndRecreates: DeleteStream stops the writer goroutine of every
// partition it appended to, and returns only once the stream is gone, so that the same name
// can be created again at once (Kinesis keeps a stream DELETING for a while).
func TestDeleteStopsWritersAndRecreates(t *testing.T) {
	s := openStore(t, client(t, nil), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	writers := func() int {
		buf := make([]byte, 1<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "kinesis.(*Store).writeLoop")
	}
	base := writers()
	name := fmt.Sprintf("delete-writers-%d", time.Now().UnixNano())
	for round := range 2 {
		if n, err := s.CreateStream(ctx, name, 3); err != nil || n != 3 {
			t.Fatalf("round %d: CreateStream = %d, %v; want 3 partitions", round, n, err)
		}
		for p := range 3 {
			if _, err := s.Append(ctx, name, p, [][]byte{[]byte("x")}); err != nil {
				t.Fatalf("round %d: Append: %v", round, err)
			}
		}
		if got := writers(); got != base+3 {
			t.Fatalf("round %d: %d partition writers running, want %d", round, got-base, 3)
		}
		if err := s.DeleteStream(ctx, name); err != nil {
			t.Fatalf("round %d: DeleteStream: %v", round, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for writers() != base {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d partition writers still running after DeleteStream", round, writers()-base)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestDeleteMissingKeepsRecreated: a DeleteStream of a stream already deleted reports
// ErrStreamNotFound and does nothing else. kinesis-mock, asked to delete a missing stream,
// still removes the name once its deletion delay (300ms in the test launcher) has passed,
// which took the stream created again meanwhile (the conformance suite's StreamDeleter
// subtest failed about half the time).
func TestDeleteMissingKeepsRecreated(t *testing.T) {
	c := client(t, nil)
	s := openStore(t, c, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("delete-missing-%d", time.Now().UnixNano())
	if _, err := s.CreateStream(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteStream(ctx, name); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if err := s.DeleteStream(ctx, name); !errorsIs(err, core.ErrStreamNotFound) {
		t.Fatalf("DeleteStream of the deleted stream: %v, want ErrStreamNotFound", err)
	}
	if _, err := s.CreateStream(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.DeleteStream(ctx, name); err != nil {
			t.Errorf("DeleteStream at the end: %v", err)
		}
	}()
	// Three times the mock's deletion delay: a removal it scheduled would have happened.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := s.Append(ctx, name, 0, [][]byte{[]byte("x")}); err != nil {
			t.Fatalf("Append to the stream created again: %v", err)
		}
	}
}

// TestOpenRejectsUnknownParameters: a misspelt parameter is an error, as for the other
// backends, not silently ignored.
func TestOpenRejectsUnknownParameters(t *testing.T) {
	for _, u := range []string{
		"kinesis://us-east-1?index=memory://&endpont=http://127.0.0.1:1",
		"kinesis://us-east-1?index=memory://&prefix=a&prefix=b",
		"kinesis://us-east-1?index=memory://&max_retries=-1",
		"kinesis://AKIA:secret@us-east-1?index=memory://&endpoint=http://127.0.0.1:1",
	} {
		if b, err := core.Open(context.Background(), u); !errorsIs(err, core.ErrInvalidOption) {
			if b != nil {
				b.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrInvalidOption", u, err)
		}
	}
}

// TestNegativeMaxRetriesMeansNone: Options.MaxRetries < 0 (max_retries=0 in a URL) returns
// the first throttling error instead of retrying (0 would mean the default, 8).
func TestNegativeMaxRetriesMeansNone(t *testing.T) {
	ctx := context.Background()
	put := &faultyHTTP{next: http.DefaultClient, target: "PutRecord"}
	s := openStore(t, client(t, put), &kinesis.Options{MaxRetries: -1})
	name := newStream(t, ctx, s, "noretry-")
	put.throttleN.Store(1)
	if _, err := s.Append(ctx, name, 0, [][]byte{[]byte("m")}); !errorsIs(err, core.ErrUnavailable) {
		t.Fatalf("Append while throttled, without retries: %v, want ErrUnavailable", err)
	}
	if n := put.calls.Load(); n != 1 {
		t.Fatalf("PutRecord called %d times, want 1 (no retry)", n)
	}
}

// expiredHTTP makes a stream look as it does once Kinesis's retention has deleted every
// record: GetRecords answers without records, and the stream was created two days ago
// (retention is 24 hours).
type expiredHTTP struct{ next aws.HTTPClient }

func (e expiredHTTP) Do(req *http.Request) (*http.Response, error) {
	resp, err := e.next.Do(req)
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	if err != nil || resp.StatusCode != http.StatusOK || (op != "GetRecords" && op != "DescribeStreamSummary") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	if op == "GetRecords" {
		m["Records"] = []any{}
		m["MillisBehindLatest"] = 0
	} else if sum, ok := m["StreamDescriptionSummary"].(map[string]any); ok {
		sum["StreamCreationTimestamp"] = float64(time.Now().Add(-48 * time.Hour).Unix())
		sum["RetentionPeriodHours"] = 24
	}
	if body, err = json.Marshal(m); err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Del("X-Amz-Crc32")
	return resp, nil
}

// TestIndexesNotReusedAfterRetention: a store appends 1000 messages (indexes 0..999) and
// closes; later, Kinesis's retention has deleted them all. A store opened then must not
// hand out indexes 0, 1, ... again: a consumer that saved index 1000 would skip the first
// 1000 new messages (Fetch from 1000 returns none of them), and the core contract says
// indexes are never reused within one life of a stream.
func TestIndexesNotReusedAfterRetention(t *testing.T) {
	ctx := t.Context()
	s1, name := newStreamToReopen(t, ctx, client(t, nil), "expired-")
	msgs := make([][]byte, 1000)
	for i := range msgs {
		msgs[i] = []byte{byte(i)}
	}
	idx, err := s1.Append(ctx, name, 0, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	last := idx[len(idx)-1]

	s2 := openStore(t, client(t, expiredHTTP{http.DefaultClient}), nil)
	got, err := s2.Append(ctx, name, 0, [][]byte{[]byte("after retention")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] <= last {
		t.Fatalf("Append after retention deleted every message got index %d; want above %d, the last index handed out before", got[0], last)
	}
}

// TestRecreatedStreamAboveSurvivingIndex: a consumer's saved index that survives the
// deletion of its stream (an index store that DeleteStream cannot clear, such as Kafka's, or
// a deletion by someone else while no Store runs) must not make it skip messages of the
// stream created again under the name: the new stream's indexes are above every index of the
// old one, so a Fetch from the saved index returns every new message.
func TestRecreatedStreamAboveSurvivingIndex(t *testing.T) {
	c := client(t, nil)
	for _, tc := range []struct {
		name   string
		delete func(ctx context.Context, s *kinesis.Store, stream string) error
	}{
		{"DeleteStream without an index deleter", func(ctx context.Context, s *kinesis.Store, stream string) error {
			return s.DeleteStream(ctx, stream)
		}},
		{"deleted by someone else", func(ctx context.Context, _ *kinesis.Store, stream string) error {
			name := aws.String("sluice-" + stream)
			if _, err := c.DeleteStream(ctx, &awskinesis.DeleteStreamInput{StreamName: name}); err != nil {
				return err
			}
			for {
				_, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: name})
				if err != nil {
					var nf *types.ResourceNotFoundException
					if errors.As(err, &nf) {
						return nil
					}
					return err
				}
				if err := core.Sleep(ctx, 50*time.Millisecond); err != nil {
					return err
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			stream := fmt.Sprintf("recreated-%d", time.Now().UnixNano())
			s1 := openStore(t, c, nil)
			if _, err := s1.CreateStream(ctx, stream, 1); err != nil {
				t.Fatal(err)
			}
			old, err := s1.Append(ctx, stream, 0, [][]byte{[]byte("old-0"), []byte("old-1"), []byte("old-2")})
			if err != nil {
				t.Fatal(err)
			}
			saved := old[2] + 1 // what the consumer that read them saved
			if err := tc.delete(ctx, s1, stream); err != nil {
				t.Fatalf("delete: %v", err)
			}
			s2 := openStore(t, c, nil) // a hub started again, or the same one
			if _, err := s2.CreateStream(ctx, stream, 1); err != nil {
				t.Fatal(err)
			}
			defer s2.DeleteStream(context.Background(), stream)
			idx, err := s2.Append(ctx, stream, 0, [][]byte{[]byte("new-0"), []byte("new-1"), []byte("new-2")})
			if err != nil {
				t.Fatal(err)
			}
			if idx[0] < saved {
				t.Errorf("the stream created again numbers its messages %v, below the index %d saved for the old one", idx, saved)
			}
			var got []string
			for len(got) < 3 {
				msgs, err := s2.Fetch(ctx, stream, 0, saved, 100)
				if err != nil {
					t.Fatalf("Fetch from the saved index %d: %v", saved, err)
				}
				if len(msgs) == 0 {
					break
				}
				for _, m := range msgs {
					got = append(got, string(m.Data))
				}
				saved = msgs[len(msgs)-1].Index + 1
			}
			if strings.Join(got, " ") != "new-0 new-1 new-2" {
				t.Fatalf("Fetch from the index saved for the old stream returned %q; want every message of the new one", got)
			}
		})
	}
}

// TestFetchSeekIgnoresOutOfOrderRecords: a record in Sluice's format that is not in index
// order (another writer's, or a corrupt one) and lies after the records it claims to sit
// among must not become a seek position: a Fetch from an index that the seek map then
// placed at that record skipped every message between (it read on from there, after them).
func TestFetchSeekIgnoresOutOfOrderRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		data func(first uint64) []byte
	}{
		{"lower index", func(first uint64) []byte { return append(binary.BigEndian.AppendUint64([]byte{1}, first), 1, 'x') }},
		{"corrupt", func(first uint64) []byte { return append(binary.BigEndian.AppendUint64([]byte{1}, first), 0xff) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c := client(t, nil)
			s := openStore(t, c, nil)
			stream := newStream(t, ctx, s, "seek-foreign-")
			var idx []uint64
			for r := range 2 { // two records of 10 messages
				got, err := s.Append(ctx, stream, 0, msgs(fmt.Sprintf("r%d-", r), 10))
				if err != nil {
					t.Fatal(err)
				}
				idx = append(idx, got...)
			}
			// After both, a record claiming to start at the 6th message.
			if _, err := c.PutRecord(ctx, &awskinesis.PutRecordInput{
				StreamName: aws.String("sluice-" + stream), Data: tc.data(idx[5]), PartitionKey: aws.String("someone-else"),
			}); err != nil {
				t.Fatal(err)
			}
			all, err := s.Fetch(ctx, stream, 0, 0, 100) // reads every record, the foreign one too
			if err != nil || len(all) != 20 {
				t.Fatalf("Fetch from 0 = %d messages, %v; want 20", len(all), err)
			}
			from := idx[6]
			got, err := s.Fetch(ctx, stream, 0, from, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 14 || got[0].Index != from {
				t.Fatalf("Fetch from %d (message 6) = %d messages; want the 14 from message 6 on", from, len(got))
			}
		})
	}
}

func msgs(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(prefix + strconv.Itoa(i))
	}
	return out
}

// seqOriginStream returns a client whose requests go through seqOriginHTTP (Kinesis's
// refusal of another stream's sequence numbers), a Store on it, a new one-partition stream
// named prefix+nanoseconds (deleted at the end of the test) and the indexes of the three
// messages "old-0".."old-2" appended to it.
func seqOriginStream(t *testing.T, ctx context.Context, prefix string) (*awskinesis.Client, *kinesis.Store, string, []uint64) {
	t.Helper()
	c := client(t, &seqOriginHTTP{next: http.DefaultClient, gen: map[string]int{}, seqs: map[string]string{}, its: map[string]string{}})
	s := openStore(t, c, nil)
	stream := newStream(t, ctx, s, prefix)
	old, err := s.Append(ctx, stream, 0, msgs("old-", 3))
	if err != nil {
		t.Fatal(err)
	}
	return c, s, stream, old
}

// TestStreamDeletedBySomeoneElse: a stream deleted behind the Store's back (by another hub or
// a tool) while the Store has its shards, sequence numbers and seek positions cached, then
// created again: the Store reports the deletion as core.ErrStreamNotFound, forgets what it
// cached, and serves the new stream: appends to it, and Fetches that return its messages.
// Kinesis refuses a sequence number of the old stream in GetShardIterator ("did not come
// from this stream"); kinesis-mock does not, so seqOriginHTTP does it: the Store used to
// seek the new stream at the old stream's positions, and Fetch failed.
func TestStreamDeletedBySomeoneElse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, s, stream, old := seqOriginStream(t, ctx, "deleted-else-")
	if got, err := s.Fetch(ctx, stream, 0, 0, 100); err != nil || len(got) != 3 {
		t.Fatalf("Fetch = %d, %v; want 3", len(got), err)
	}
	other := openStore(t, c, nil)
	if err := other.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, stream, 0, msgs("lost-", 1)); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Append to the deleted stream: %v; want core.ErrStreamNotFound", err)
	}
	if _, err := s.CreateStream(ctx, stream, 1); err != nil { // a hub creates it again
		t.Fatal(err)
	}
	idx, err := s.Append(ctx, stream, 0, msgs("new-", 3))
	if err != nil {
		t.Fatalf("Append to the stream created again: %v", err)
	}
	if idx[0] <= old[2] {
		t.Errorf("the stream created again numbers from %d, not above the old stream's %d", idx[0], old[2])
	}
	// From 0, from the index a consumer of the old stream saved, and from the new stream's.
	for _, from := range []uint64{0, old[2] + 1, idx[0], idx[1]} {
		got, err := s.Fetch(ctx, stream, 0, from, 100)
		if err != nil {
			t.Fatalf("Fetch from %d of the stream created again: %v", from, err)
		}
		var data []string
		for _, m := range got {
			data = append(data, string(m.Data))
		}
		want := []string{"new-0", "new-1", "new-2"}
		if from == idx[1] {
			want = want[1:]
		}
		if fmt.Sprint(data) != fmt.Sprint(want) {
			t.Errorf("Fetch from %d of the stream created again = %q; want %q", from, data, want)
		}
	}
}

// seqOriginHTTP refuses, as Kinesis does, a GetShardIterator at a sequence number that a
// stream of the same name handed out before it was deleted.
type seqOriginHTTP struct {
	next aws.HTTPClient
	mu   sync.Mutex
	gen  map[string]int    // stream name -> how many times it was deleted
	seqs map[string]string // sequence number -> "name/generation" it came from
	its  map[string]string // shard iterator -> "name/generation" it reads
}

func (h *seqOriginHTTP) Do(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	var in struct{ StreamName, StartingSequenceNumber, ShardIterator string }
	_ = json.Unmarshal(body, &in)
	h.mu.Lock()
	origin := fmt.Sprint(in.StreamName, "/", h.gen[in.StreamName])
	if op == "GetRecords" {
		origin = h.its[in.ShardIterator]
	}
	if op == "GetShardIterator" && in.StartingSequenceNumber != "" && h.seqs[in.StartingSequenceNumber] != origin {
		h.mu.Unlock()
		return errorResponse(req, http.StatusBadRequest, "InvalidArgumentException", "StartingSequenceNumber "+in.StartingSequenceNumber+" is invalid because it did not come from this stream."), nil
	}
	if op == "DeleteStream" {
		h.gen[in.StreamName]++
	}
	h.mu.Unlock()
	resp, err := h.next.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK || (op != "PutRecord" && op != "GetRecords" && op != "GetShardIterator") {
		return resp, err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	var got struct {
		SequenceNumber, ShardIterator, NextShardIterator string
		Records                                          []struct{ SequenceNumber string }
	}
	_ = json.Unmarshal(out, &got)
	h.mu.Lock()
	if got.SequenceNumber != "" {
		h.seqs[got.SequenceNumber] = origin
	}
	for _, r := range got.Records {
		h.seqs[r.SequenceNumber] = origin
	}
	for _, it := range []string{got.ShardIterator, got.NextShardIterator} {
		if it != "" {
			h.its[it] = origin
		}
	}
	h.mu.Unlock()
	return resp, nil
}

// TestStreamRecreatedBetweenCalls: someone else deletes a stream and creates it again
// between two calls of a Store that has its positions cached, so that the Store never sees
// it missing. Its first Fetch that seeks to a position of the old stream fails (Kinesis
// refuses the sequence number, as seqOriginHTTP does); the Store then forgets what it
// cached, and the next Fetch returns the new stream's messages (it used to fail until the
// Store was opened again).
func TestStreamRecreatedBetweenCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, s, stream, old := seqOriginStream(t, ctx, "recreated-between-")
	other := openStore(t, c, nil)
	if err := other.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	if _, err := other.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Append(ctx, stream, 0, msgs("new-", 2)); err != nil {
		t.Fatal(err)
	}
	from := old[2] + 1 // what a consumer of the old stream saved
	var data []string
	for attempt := 0; attempt < 2 && data == nil; attempt++ {
		got, err := s.Fetch(ctx, stream, 0, from, 100)
		if err != nil {
			t.Logf("Fetch %d from %d: %v", attempt, from, err)
			continue
		}
		data = []string{}
		for _, m := range got {
			data = append(data, string(m.Data))
		}
	}
	if fmt.Sprint(data) != "[new-0 new-1]" {
		t.Fatalf("Fetch from %d after the stream was created again = %q; want [new-0 new-1] at the latest on the second try", from, data)
	}
}
