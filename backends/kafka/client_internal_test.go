package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/core"
)

// newClient builds a client (no I/O) on seeds that are never dialled.
func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers("127.0.0.1:1"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestClientOpts checks what ClientOpts promises: manual partitioner, acks from all
// in-sync replicas, no linger (franz-go's default lingers) and no compression.
func TestClientOpts(t *testing.T) {
	cl := newClient(t, ClientOpts()...)
	if got := fmt.Sprintf("%T", cl.OptValue(kgo.RecordPartitioner)); got != fmt.Sprintf("%T", kgo.ManualPartitioner()) {
		t.Errorf("partitioner %s; want the manual one", got)
	}
	if a, _ := cl.OptValue(kgo.RequiredAcks).(kgo.Acks); a != kgo.AllISRAcks() {
		t.Errorf("acks %v; want all in-sync replicas", a)
	}
	if l, _ := cl.OptValue(kgo.ProducerLinger).(time.Duration); l != 0 {
		t.Errorf("linger %s; want 0", l)
	}
	codecs, _ := cl.OptValue(kgo.ProducerBatchCompression).([]kgo.CompressionCodec)
	if len(codecs) != 1 || codecs[0] != kgo.NoCompression() {
		t.Errorf("compression %v; want none", codecs)
	}
}

// TestNewChecksClient checks, without a broker, that New refuses a client that would break
// the contract (any partitioner but the manual one, acks from the leader only).
func TestNewChecksClient(t *testing.T) {
	for name, opts := range map[string][]kgo.Opt{
		"default partitioner": {kgo.RequiredAcks(kgo.AllISRAcks())},
		"leader acks": {kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.LeaderAck()),
			kgo.DisableIdempotentWrite()},
		// Without idempotence, the client's retry of a produce request whose reply was lost
		// writes its records a second time, under offsets no Append reported.
		"no idempotence": append(ClientOpts(), kgo.DisableIdempotentWrite()),
	} {
		if _, err := New(t.Context(), newClient(t, opts...), nil); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("New with %s: %v; want core.ErrInvalidOption", name, err)
		}
	}
	if _, err := New(t.Context(), newClient(t, ClientOpts()...), nil); err != nil {
		t.Errorf("New with ClientOpts: %v", err)
	}
	// Dial's extra options come after ClientOpts and may undo them: refused before any I/O.
	if _, err := Dial(t.Context(), []string{"127.0.0.1:1"}, nil, kgo.DisableIdempotentWrite()); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("Dial with kgo.DisableIdempotentWrite: %v; want core.ErrInvalidOption", err)
	}
}

// TestCloseOwnsOnlyItsClient checks that Close closes the client of a Store that built it
// (Dial) and leaves a caller's client (New) open.
func TestCloseOwnsOnlyItsClient(t *testing.T) {
	callers := newClient(t, ClientOpts()...)
	s, err := New(t.Context(), callers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if callers.Context().Err() != nil {
		t.Error("Close of a Store from New closed the caller's client")
	}
	owned := newClient(t, ClientOpts()...)
	s, err = newStore(owned, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if owned.Context().Err() == nil {
		t.Error("Close of a Store that owns its client left the client open")
	}
}

// TestParseURLSecurity checks that the SASL mechanism and TLS settings of a URL reach the
// client options they name.
func TestParseURLSecurity(t *testing.T) {
	u, err := url.Parse("kafka://user:pw@h:9092?sasl=SCRAM-SHA-512&tls=true&tls_server_name=kafka.internal&tls_insecure_skip_verify=true")
	if err != nil {
		t.Fatal(err)
	}
	_, _, kopts, err := ParseURL(u)
	if err != nil {
		t.Fatalf("ParseURL: %v", err)
	}
	cl := newClient(t, kopts...)
	mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(mechs) != 1 || mechs[0].Name() != "SCRAM-SHA-512" {
		t.Errorf("SASL mechanisms %v; want SCRAM-SHA-512", mechs)
	}
	cfg, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config)
	if cfg == nil {
		t.Fatal("tls=true set no TLS config")
	}
	if cfg.ServerName != "kafka.internal" || !cfg.InsecureSkipVerify || cfg.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLS config: server name %q, insecure %v, min version %x; want kafka.internal, true, >= TLS 1.2",
			cfg.ServerName, cfg.InsecureSkipVerify, cfg.MinVersion)
	}
	for raw, want := range map[string]string{
		"kafka://u:p@h:9092?sasl=plain":         "PLAIN",
		"kafka://u:p@h:9092?sasl=scram-sha-256": "SCRAM-SHA-256",
	} {
		u, _ := url.Parse(raw)
		_, _, kopts, err := ParseURL(u)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", raw, err)
		}
		if mechs, _ := newClient(t, kopts...).OptValue(kgo.SASL).([]sasl.Mechanism); len(mechs) != 1 || mechs[0].Name() != want {
			t.Errorf("ParseURL(%q): SASL mechanisms %v; want %s", raw, mechs, want)
		}
	}
	// TLS parameters without tls=true are refused, not ignored.
	for _, raw := range []string{"kafka://h:9092?tls_server_name=x", "kafka://h:9092?tls=false&tls_insecure_skip_verify=true"} {
		u, _ := url.Parse(raw)
		if _, _, _, err := ParseURL(u); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("ParseURL(%q) = %v; want core.ErrInvalidOption", raw, err)
		}
	}
}

func TestOptionsRejectNegativeFetchMaxBytes(t *testing.T) {
	if _, err := (&Options{FetchMaxBytes: -1}).withDefaults(); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("FetchMaxBytes -1: %v; want core.ErrInvalidOption", err)
	}
}

// TestDialNoBroker: Dial to a port where no broker listens fails with ErrUnavailable and
// asks whether Kafka runs there.
func TestDialNoBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := Dial(ctx, []string{"127.0.0.1:1"}, nil)
	if err == nil {
		s.Close()
		t.Fatal("Dial to a port without a broker succeeded")
	}
	if !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), "is Kafka running at 127.0.0.1:1?") {
		t.Errorf("Dial to a port without a broker: %v; want ErrUnavailable asking whether Kafka runs there", err)
	}
}
