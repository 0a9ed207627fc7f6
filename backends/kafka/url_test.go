package kafka

import (
	"context"
	"errors"
	"math"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

func TestParseURL(t *testing.T) {
	u, err := url.Parse("kafka://h1:9092,h2:9093?prefix=app.&replication=3&max_partitions=64&max_message_size=1000&fetch_max_bytes=2048&close_timeout=3s&client_id=hub&topic.retention.ms=-1")
	if err != nil {
		t.Fatal(err)
	}
	seeds, o, kopts, err := ParseURL(u)
	if err != nil {
		t.Fatalf("ParseURL: %v", err)
	}
	if len(seeds) != 2 || seeds[0] != "h1:9092" || seeds[1] != "h2:9093" {
		t.Errorf("seeds = %q", seeds)
	}
	want := Options{Prefix: "app.", ReplicationFactor: 3, MaxPartitions: 64, MaxMessageSize: 1000,
		FetchMaxBytes: 2048, CloseTimeout: 3 * time.Second}
	if o.Prefix != want.Prefix || o.ReplicationFactor != want.ReplicationFactor || o.MaxPartitions != want.MaxPartitions ||
		o.MaxMessageSize != want.MaxMessageSize || o.FetchMaxBytes != want.FetchMaxBytes || o.CloseTimeout != want.CloseTimeout {
		t.Errorf("options = %+v, want %+v", *o, want)
	}
	if o.TopicConfig["retention.ms"] != "-1" {
		t.Errorf("topic config = %v", o.TopicConfig)
	}
	if len(kopts) != 1 {
		t.Errorf("%d franz-go options, want 1 (client id)", len(kopts))
	}

	u, _ = url.Parse("kafka://user:pw@h:9092?sasl=scram-sha-512&tls=true")
	if _, _, kopts, err = ParseURL(u); err != nil || len(kopts) != 2 {
		t.Errorf("SASL+TLS URL: %d options, %v; want 2, nil", len(kopts), err)
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, raw := range []string{
		"bbolt://h:9092",
		"kafka://",
		"kafka://h",
		"kafka://h:9092/path",
		"kafka://h:9092?unknown=1",
		"kafka://h:9092?replication=-1",
		"kafka://h:9092?replication=x",
		"kafka://h:9092?max_partitions=1&max_partitions=2",
		"kafka://h:9092?close_timeout=soon",
		"kafka://h:9092?sasl=kerberos",
		"kafka://user:pw@h:9092",
		"kafka://h:9092?sasl=plain",
		"kafka://h:9092?tls_insecure_skip_verify=true",
		"kafka://h:9092?tls=maybe",
		// Values each parameter's parser takes but Options refuses: ParseURL says so
		// itself, as its doc promises, not only Dial once it has built a client.
		"kafka://h:9092?max_partitions=5000",
		"kafka://h:9092?prefix=bad%20prefix",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			continue // not a URL at all: core.Open reports it
		}
		if _, _, _, err := ParseURL(u); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("ParseURL(%q) = %v; want core.ErrInvalidOption", raw, err)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := (*Options)(nil).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Prefix != DefaultPrefix || o.ReplicationFactor != -1 || o.MaxMessageSize != DefaultMaxMessageSize ||
		o.MaxPartitions != DefaultMaxPartitions || o.FetchMaxBytes != DefaultFetchMaxBytes || o.CloseTimeout != DefaultCloseTimeout {
		t.Errorf("defaults = %+v", o)
	}
	for _, bad := range []Options{{Prefix: "bad prefix"}, {ReplicationFactor: -2}, {MaxPartitions: core.MaxPartitions + 1}, {MaxMessageSize: -1}} {
		if _, err := bad.withDefaults(); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Options %+v: %v; want core.ErrInvalidOption", bad, err)
		}
	}
}

func TestDecodeCommitted(t *testing.T) {
	for _, c := range []struct {
		at   int64
		meta string
		want uint64
		ok   bool
	}{
		{-1, "", 0, false},
		{-1, "sluice:5", 0, false},
		{0, "", 0, true},
		{42, "", 42, true},
		{42, "sluice:42", 42, true},
		{42, "sluice:43", 42, true}, // disagreeing metadata: the offset wins
		{math.MaxInt64, "sluice:18446744073709551614", 1<<64 - 2, true},
		{math.MaxInt64, "sluice:junk", math.MaxInt64, true},
		{7, "other tool", 7, true},
	} {
		got, ok := decodeCommitted(c.at, c.meta)
		if got != c.want || ok != c.ok {
			t.Errorf("decodeCommitted(%d, %q) = %d, %v; want %d, %v", c.at, c.meta, got, ok, c.want, c.ok)
		}
	}
}

// FuzzDecodeCommitted feeds committed offsets and metadata as a broker (or another tool)
// may return them: decoding never panics, a negative offset is never an index, and the
// index equals the offset unless the offset is MaxInt64.
func FuzzDecodeCommitted(f *testing.F) {
	f.Add(int64(-1), "")
	f.Add(int64(0), "sluice:0")
	f.Add(int64(math.MaxInt64), "sluice:"+strconv.FormatUint(math.MaxUint64, 10))
	f.Add(int64(12), "sluice:-3")
	f.Add(int64(12), "sluice:99999999999999999999999")
	f.Fuzz(func(t *testing.T, at int64, meta string) {
		v, ok := decodeCommitted(at, meta)
		if at < 0 {
			if ok {
				t.Fatalf("decodeCommitted(%d, %q) = %d, true; a negative offset is no index", at, meta, v)
			}
			return
		}
		if !ok {
			t.Fatalf("decodeCommitted(%d, %q) is not found", at, meta)
		}
		if at != math.MaxInt64 && v != uint64(at) {
			t.Fatalf("decodeCommitted(%d, %q) = %d; want the offset", at, meta, v)
		}
		if v < uint64(at) {
			t.Fatalf("decodeCommitted(%d, %q) = %d, below the offset", at, meta, v)
		}
	})
}

// FuzzParseURL checks that any URL either parses into valid-looking options or fails
// with core.ErrInvalidOption, and never panics.
func FuzzParseURL(f *testing.F) {
	f.Add("kafka://h1:9092,h2:9093?prefix=a.&replication=3")
	f.Add("kafka://u:p@h:1?sasl=plain&tls=true&tls_server_name=x")
	f.Add("kafka://h:1?topic.cleanup.policy=compact&close_timeout=1s")
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		seeds, _, _, err := ParseURL(u)
		if err != nil {
			if !errors.Is(err, core.ErrInvalidOption) {
				t.Fatalf("ParseURL(%q) = %v; want core.ErrInvalidOption", raw, err)
			}
			return
		}
		if len(seeds) == 0 {
			t.Fatalf("ParseURL(%q) succeeded without seeds", raw)
		}
	})
}

// TestDialUnreachable checks that a cluster that does not answer fails Dial with
// core.ErrUnavailable or the context's error, without leaving the client open.
func TestDialUnreachable(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens there
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := Dial(ctx, []string{addr}, nil)
	if !errors.Is(err, core.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial(%s) with nothing listening: %v; want core.ErrUnavailable or context.DeadlineExceeded", addr, err)
	}
	t.Logf("Dial error: %v", err)
}
