package pulsar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

func TestIndexMapping(t *testing.T) {
	ids := [][2]int64{{0, 0}, {0, 1}, {0, MaxEntryID}, {1, 0}, {1, 5}, {7, 49999}, {8, 0}, {MaxLedgerID, 0}, {MaxLedgerID, MaxEntryID}}
	var prev uint64
	for i, le := range ids {
		idx, err := toIndex(pulsar.NewMessageID(le[0], le[1], -1, 3))
		if err != nil {
			t.Fatalf("toIndex(%d:%d): %v", le[0], le[1], err)
		}
		if i > 0 && idx <= prev {
			t.Errorf("toIndex(%d:%d) = %d, not above the previous id's %d", le[0], le[1], idx, prev)
		}
		prev = idx
		back := fromIndex(idx, 3)
		if back.LedgerID() != le[0] || back.EntryID() != le[1] || back.PartitionIdx() != 3 || back.BatchIdx() != -1 {
			t.Errorf("fromIndex(toIndex(%d:%d)) = %v", le[0], le[1], back)
		}
	}
	if idx, _ := toIndex(pulsar.NewMessageID(MaxLedgerID, MaxEntryID, -1, 0)); idx != math.MaxUint64 {
		t.Errorf("largest id maps to %d, want MaxUint64", idx)
	}
}

func TestIndexMappingRejects(t *testing.T) {
	for _, id := range []pulsar.MessageID{
		pulsar.NewMessageID(MaxLedgerID+1, 0, -1, 0),
		pulsar.NewMessageID(0, MaxEntryID+1, -1, 0),
		pulsar.NewMessageID(-1, 0, -1, 0),
		pulsar.NewMessageID(3, -1, -1, 0),
		pulsar.NewMessageID(3, 4, 1, 0), // second message of a batch
	} {
		if _, err := toIndex(id); !errors.Is(err, ErrIndexOutOfRange) {
			t.Errorf("toIndex(%v) error = %v, want ErrIndexOutOfRange", id, err)
		}
	}
}

func TestEndIndex(t *testing.T) {
	if _, ok, err := endIndex(pulsar.NewMessageID(5, -1, -1, 0)); ok || err != nil {
		t.Errorf("endIndex(5:-1) = ok %v, err %v; want empty", ok, err)
	}
	if _, ok, err := endIndex(pulsar.NewMessageID(-1, -1, -1, 0)); ok || err != nil {
		t.Errorf("endIndex(-1:-1) = ok %v, err %v; want empty", ok, err)
	}
	end, ok, err := endIndex(pulsar.NewMessageID(5, 9, -1, 0))
	if !ok || err != nil || end != 5<<EntryBits|10 {
		t.Errorf("endIndex(5:9) = %d, %v, %v; want %d", end, ok, err, uint64(5<<EntryBits|10))
	}
}

func TestIndexRecordRoundTrip(t *testing.T) {
	for _, r := range []indexRecord{
		{ClientID: "c", Stream: "s", Partition: 0, Index: 0},
		{ClientID: "device-ö-1", Stream: "a.b_c-d", Partition: core.MaxPartitions - 1, Index: math.MaxUint64},
		{Stream: "a.b_c-d", Forget: true},
	} {
		got, err := decodeIndexRecord(encodeIndexRecord(r))
		if err != nil || got != r {
			t.Errorf("decode(encode(%+v)) = %+v, %v", r, got, err)
		}
	}
}

func TestIndexRecordRejects(t *testing.T) {
	good := encodeIndexRecord(indexRecord{ClientID: "c", Stream: "s", Partition: 1, Index: 9})
	cases := map[string][]byte{
		"empty":             nil,
		"version":           append([]byte{2}, good[1:]...),
		"truncated":         good[:len(good)-1],
		"trailing":          append(bytes.Clone(good), 0),
		"bad stream":        encodeIndexRecord(indexRecord{ClientID: "c", Stream: "a/b", Index: 1}),
		"no client":         encodeIndexRecord(indexRecord{ClientID: "", Stream: "s", Index: 1}),
		"partition":         encodeIndexRecord(indexRecord{ClientID: "c", Stream: "s", Partition: core.MaxPartitions, Index: 1}),
		"long length":       {1, 0xff, 0xff, 0xff, 0xff, 0x0f, 'c'},
		"version 3":         append([]byte{3}, good[1:]...),
		"forget with a key": append([]byte{indexRecordForget}, good[1:]...),
		"forget trailing":   append(encodeIndexRecord(indexRecord{Stream: "s", Forget: true}), 0),
		"forget truncated":  {indexRecordForget, 2, 's'},
		"forget bad stream": encodeIndexRecord(indexRecord{Stream: "a/b", Forget: true}),
		"forget no stream":  {indexRecordForget, 0},
	}
	for name, b := range cases {
		if _, err := decodeIndexRecord(b); !errors.Is(err, errBadIndexRecord) {
			t.Errorf("%s: decode error = %v, want errBadIndexRecord", name, err)
		}
	}
}

func FuzzDecodeIndexRecord(f *testing.F) {
	f.Add(encodeIndexRecord(indexRecord{ClientID: "c", Stream: "s", Partition: 1, Index: 9}))
	f.Add(encodeIndexRecord(indexRecord{ClientID: "device-ö-1", Stream: "a.b_c-d", Partition: 1023, Index: math.MaxUint64}))
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(encodeIndexRecord(indexRecord{Stream: "s", Forget: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeIndexRecord(b)
		if err != nil {
			return
		}
		if again := encodeIndexRecord(r); !bytes.Equal(again, b) {
			t.Fatalf("decode(%x) = %+v re-encodes to %x", b, r, again)
		}
	})
}

func TestOpenRejectsBadURLs(t *testing.T) {
	for _, u := range []string{
		"kafka://h:1",
		"pulsar://",
		"pulsar://127.0.0.1:1?colour=blue",
		"pulsar://127.0.0.1:1?tenant=a&tenant=b",
		"pulsar://127.0.0.1:1?max_message_size=-1",
		"pulsar://127.0.0.1:1?max_producers=0",
		"pulsar://127.0.0.1:1?max_reader_bytes=0",
		"pulsar://127.0.0.1:1?retention=forever",
		"pulsar://127.0.0.1:1?admin=ftp://127.0.0.1",
		"pulsar://127.0.0.1:1/extra",
		"pulsar://127.0.0.1:1?namespace=a/b",
		"pulsar://user:secret@127.0.0.1:1?admin=http://127.0.0.1:1",
	} {
		s, err := Open(context.Background(), u)
		if !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Open(%q) error = %v, want ErrInvalidOption", u, err)
		}
		if s != nil {
			s.Close()
		}
	}
}

func TestOpenOptions(t *testing.T) {
	s, err := openURL("pulsar://127.0.0.1:1?admin=http://127.0.0.1:2&tenant=t&namespace=n&prefix=p-&max_message_size=1000&max_partitions=8&max_producers=3&max_reader_bytes=4096")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := s.Capabilities()
	if c.MaxMessageSize != 1000 || c.MaxPartitions != 8 || c.DenseIndex || !c.Persistent || !c.NativeIndexStorage {
		t.Errorf("Capabilities() = %v", c)
	}
	if s.opts.MaxProducers != 3 {
		t.Errorf("max_producers=3 set MaxProducers %d", s.opts.MaxProducers)
	}
	if s.opts.MaxReaderBytes != 4096 {
		t.Errorf("max_reader_bytes=4096 set MaxReaderBytes %d", s.opts.MaxReaderBytes)
	}
	d, err := openURL("pulsar://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.opts.MaxProducers != DefaultMaxProducers {
		t.Errorf("default MaxProducers = %d, want %d", d.opts.MaxProducers, DefaultMaxProducers)
	}
	if d.opts.MaxReaderBytes != DefaultMaxReaderBytes {
		t.Errorf("default MaxReaderBytes = %d, want %d", d.opts.MaxReaderBytes, DefaultMaxReaderBytes)
	}
	if got, want := s.partitionTopic("s", 2), "persistent://t/n/p-s-partition-2"; got != want {
		t.Errorf("partitionTopic = %q, want %q", got, want)
	}
	if s.admin.base != "http://127.0.0.1:2" {
		t.Errorf("admin base = %q", s.admin.base)
	}
}

func TestNewNilClient(t *testing.T) {
	if _, err := New(context.Background(), nil, "http://h:8080", nil); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("New(nil client) error = %v, want ErrInvalidOption", err)
	}
}

func TestNewRejectsNegativeMaxProducers(t *testing.T) {
	if _, err := newStore(nil, false, "http://h:8080", &Options{MaxProducers: -1}); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("MaxProducers -1: error = %v, want ErrInvalidOption", err)
	}
	if _, err := newStore(nil, false, "http://h:8080", &Options{MaxReaderBytes: -1}); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("MaxReaderBytes -1: error = %v, want ErrInvalidOption", err)
	}
}

func TestMapErr(t *testing.T) {
	s, err := openURL("pulsar://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cases := []struct {
		err  error
		want error
	}{
		{pulsar.ErrTopicNotfound, core.ErrStreamNotFound},
		{pulsar.ErrMessageTooLarge, core.ErrMessageTooLarge},
		{pulsar.ErrSendTimeout, core.ErrUnavailable},
		{fmt.Errorf("wrapped: %w", pulsar.ErrSendQueueIsFull), core.ErrUnavailable},
		{&adminError{Status: 404}, core.ErrStreamNotFound},
		{&adminError{Status: 409}, core.ErrInvalidArgument},
		{&adminError{Status: 403}, core.ErrInvalidOption},
		{&adminError{Status: 503}, core.ErrUnavailable},
		{&url.Error{Op: "Get", URL: "http://x", Err: errors.New("connection refused")}, core.ErrUnavailable},
		{fmt.Errorf("%w: x", core.ErrInvalidArgument), core.ErrInvalidArgument},
	}
	for _, c := range cases {
		got := s.mapErr(t.Context(), "append", "s", c.err)
		if !errors.Is(got, c.want) || !errors.Is(got, c.err) {
			t.Errorf("mapErr(%v) = %v; want it to match %v and keep the original", c.err, got, c.want)
		}
	}
	// The call's context ended: its error, whatever err was; Close's cancellation is
	// core.ErrClosed.
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if got := s.mapErr(ended, "append", "s", context.Canceled); !errors.Is(got, context.Canceled) || errors.Is(got, core.ErrUnavailable) {
		t.Errorf("mapErr(context.Canceled) of a cancelled call = %v; want context.Canceled alone", got)
	}
	if got := s.mapErr(ended, "append", "s", pulsar.ErrSendTimeout); !errors.Is(got, context.Canceled) || !errors.Is(got, pulsar.ErrSendTimeout) {
		t.Errorf("mapErr(ErrSendTimeout) of a cancelled call = %v; want context.Canceled, keeping the original", got)
	}
	closed, cancelClosed := context.WithCancelCause(t.Context())
	cancelClosed(core.ErrClosed)
	if got := s.mapErr(closed, "append", "s", context.Canceled); !errors.Is(got, core.ErrClosed) || !errors.Is(got, context.Canceled) {
		t.Errorf("mapErr(context.Canceled) of a call Close cancelled = %v; want core.ErrClosed and context.Canceled", got)
	}
	// A context error while the call's context has not ended is the backend's own timeout.
	for _, own := range []error{context.DeadlineExceeded, errors.Join(context.DeadlineExceeded, errors.New("connection error"))} {
		if got := s.mapErr(t.Context(), "append", "s", own); !errors.Is(got, core.ErrUnavailable) || errors.Is(got, context.DeadlineExceeded) {
			t.Errorf("mapErr(%v) of a call whose context has not ended = %v; want core.ErrUnavailable, not context.DeadlineExceeded", own, got)
		}
	}
	var perr *pulsar.Error
	if !errors.As(s.mapErr(t.Context(), "append", "s", pulsar.ErrTopicNotfound), &perr) {
		t.Errorf("mapErr lost the *pulsar.Error")
	}
	s.Close()
	if got := s.mapErr(t.Context(), "append", "s", pulsar.ErrProducerClosed); !errors.Is(got, core.ErrClosed) {
		t.Errorf("after Close, mapErr(ErrProducerClosed) = %v, want ErrClosed", got)
	}
}

// TestOpenChecksAdmin: Open fails at once, with what to do, when the admin API does not
// answer or the namespace does not exist, and the admin check passes when it exists.
func TestOpenChecksAdmin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/admin/v2/namespaces/public/default" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"reason":"Namespace does not exist"}`))
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	s, err := openURL("pulsar://127.0.0.1:1?admin=" + srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ping(context.Background()); err != nil {
		t.Fatalf("admin check with an existing namespace: %v", err)
	}
	s.Close()
	if _, err := Open(context.Background(), "pulsar://127.0.0.1:1?namespace=nope&admin="+srv.URL); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "public/nope does not exist") {
		t.Fatalf("Open with a missing namespace: %v, want ErrInvalidOption saying it does not exist", err)
	}
	dead := "http://" + hubtest.RefusedAddr(t)
	if _, err := Open(context.Background(), "pulsar://127.0.0.1:1?admin="+dead); !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("Open with no admin API: %v, want ErrUnavailable naming %s", err, dead)
	}
}

// TestOpenChecksServicePort: with an admin API that answers, Open still fails, promptly and
// naming the service URL, when nothing listens on the service port (it used to succeed and
// let the first Append wait DefaultOperationTimeout). TestOpenChecksServiceOnBroker does
// the same against a real admin API.
func TestOpenChecksServicePort(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	service := "pulsar://" + hubtest.RefusedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound, not a timing assert
	defer cancel()
	s, err := Open(ctx, service+"?admin="+srv.URL)
	if err == nil {
		s.Close()
		t.Fatalf("Open with nothing on the service port succeeded")
	}
	if !errors.Is(err, core.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), service) {
		t.Fatalf("Open with nothing on the service port: %v, want ErrUnavailable (not the test's deadline) naming %s", err, service)
	}
}

// TestServiceAddrs: Open's service check dials what pulsar-client-go would, default port
// included.
func TestServiceAddrs(t *testing.T) {
	for in, want := range map[string]string{
		"pulsar://127.0.0.1:6651": "127.0.0.1:6651",
		"pulsar://broker":         "broker:6650",
		"pulsar://[::1]":          "[::1]:6650",
		"pulsar://[::1]:7000":     "[::1]:7000",
		"pulsar://a:1,b":          "a:1 b:6650",
	} {
		if got := strings.Join(serviceAddrs(in), " "); got != want {
			t.Errorf("serviceAddrs(%q) = %q, want %q", in, got, want)
		}
	}
}
