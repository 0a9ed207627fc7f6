package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/backends/kafka"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/conformance/brokers"
	"github.com/sluicehq/sluice/core"
)

// One broker per test binary, started on first use and stopped by TestMain.
var broker struct {
	once sync.Once
	k    *brokers.Kafka
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if broker.k != nil {
		if err := broker.k.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop kafka: %v\n", err)
		}
	}
	os.Exit(code)
}

// cluster returns the shared broker, starting it on first use; a broker that cannot start
// skips the test, or fails it under CI=true.
func cluster(tb testing.TB) *brokers.Kafka {
	tb.Helper()
	broker.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		broker.k, broker.err = brokers.StartKafka(ctx, os.Stderr)
	})
	if broker.err != nil {
		brokers.Unavailable(tb, "kafka", broker.err)
	}
	return broker.k
}

func harness(tb testing.TB) conformance.Harness {
	k := cluster(tb)
	return conformance.Harness{
		Open: func(ctx context.Context) (*core.Backend, error) {
			s, err := kafka.Dial(ctx, k.Brokers, &kafka.Options{Prefix: "sluicetest."})
			if err != nil {
				return nil, err
			}
			return &core.Backend{Storage: s, Index: s}, nil
		},
	}
}

func TestStorage(t *testing.T) { conformance.RunStorage(t, harness(t)) }

func TestIndexStorage(t *testing.T) { conformance.RunIndexStorage(t, harness(t)) }

func dial(t *testing.T) *kafka.Store {
	t.Helper()
	k := cluster(t)
	s, err := kafka.Dial(t.Context(), k.Brokers, &kafka.Options{Prefix: "sluicetest."})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func createStream(t *testing.T, s *kafka.Store, name string, partitions int) {
	t.Helper()
	if _, err := s.CreateStream(t.Context(), name, partitions); err != nil {
		t.Fatalf("CreateStream(%q): %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.DeleteStream(ctx, name); err != nil && !errors.Is(err, core.ErrClosed) {
			t.Errorf("DeleteStream(%q): %v", name, err)
		}
	})
}

// TestRestart kills the broker (SIGKILL) and restarts it while appenders keep appending.
// Every Append either succeeds or returns an error; every index an Append reported must
// afterwards be fetchable with the bytes appended under it.
func TestRestart(t *testing.T) {
	k := cluster(t)
	if !k.CanRestart() {
		t.Skipf("the %s cluster at %s cannot be restarted by this test", k.Kind, k.Addr())
	}
	s := dial(t)
	name := fmt.Sprintf("restart-%d", time.Now().UnixNano())
	createStream(t, s, name, 2)

	type result struct {
		partition int
		index     uint64
		data      []byte
	}
	var (
		mu       sync.Mutex
		ok       []result
		failures int
		lastErr  error
		badErrs  []error // errors that are neither core.ErrUnavailable nor a context error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				p := w % 2
				batch := [][]byte{fmt.Appendf(nil, "w%d-%06d-a", w, seq), fmt.Appendf(nil, "w%d-%06d-b", w, seq)}
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				idx, err := s.Append(ctx, name, p, batch)
				cancel()
				mu.Lock()
				if err != nil {
					failures++
					lastErr = err
					if !errors.Is(err, core.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
						badErrs = append(badErrs, err)
					}
				} else {
					for i := range idx {
						ok = append(ok, result{p, idx[i], batch[i]})
					}
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	succeeded := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ok)
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for succeeded() < n {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("only %d of %d appends succeeded within 2 minutes (%d failed, last error: %v)", succeeded(), n, failures, lastErr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(200)
	before := succeeded()
	if err := k.Restart(t.Context()); err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("restart: %v", err)
	}
	waitFor(before + 400)
	close(stop)
	wg.Wait()
	t.Logf("%d messages appended, %d Appends failed (last error: %v), %d before the restart", len(ok), failures, lastErr, before)
	for _, err := range badErrs {
		t.Errorf("an Append during the restart failed with %v; want core.ErrUnavailable or a context error", err)
	}

	// Every reported index holds the reported bytes.
	stored := map[[2]uint64][]byte{}
	for p := range 2 {
		for from := uint64(0); ; {
			ms, err := s.Fetch(t.Context(), name, p, from, 500)
			if err != nil {
				t.Fatalf("Fetch(partition %d, from %d): %v", p, from, err)
			}
			if len(ms) == 0 {
				break
			}
			for _, m := range ms {
				stored[[2]uint64{uint64(p), m.Index}] = m.Data
			}
			from = ms[len(ms)-1].Index + 1
		}
	}
	seen := map[[2]uint64]bool{}
	for _, r := range ok {
		key := [2]uint64{uint64(r.partition), r.index}
		if seen[key] {
			t.Fatalf("index %d of partition %d was reported twice", r.index, r.partition)
		}
		seen[key] = true
		got, found := stored[key]
		if !found {
			t.Errorf("index %d of partition %d (%q) was reported by Append but is not fetchable after the restart", r.index, r.partition, r.data)
			continue
		}
		if !bytes.Equal(got, r.data) {
			t.Errorf("index %d of partition %d holds %q, Append reported it for %q", r.index, r.partition, got, r.data)
		}
	}
}

// TestIndexBeyondInt64 checks that a saved index above the largest Kafka offset survives
// the trip through the commit metadata, and that monotonicity holds across that boundary.
func TestIndexBeyondInt64(t *testing.T) {
	s := dial(t)
	name := fmt.Sprintf("bigindex-%d", time.Now().UnixNano())
	createStream(t, s, name, 1)
	ctx := t.Context()
	for _, v := range []uint64{1<<63 - 1, 1 << 63, 1<<64 - 2, 5} {
		if err := s.SaveIndex(ctx, "big", name, 0, v); err != nil {
			t.Fatalf("SaveIndex(%d): %v", v, err)
		}
	}
	got, err := s.GetIndex(ctx, "big", name, 0)
	if err != nil || got != 1<<64-2 {
		t.Fatalf("GetIndex = %d, %v; want %d", got, err, uint64(1<<64-2))
	}
}

// TestErrorsKeepBrokerError checks that a mapped error still carries the broker's error.
func TestErrorsKeepBrokerError(t *testing.T) {
	s := dial(t)
	err := s.DeleteStream(t.Context(), fmt.Sprintf("never-%d", time.Now().UnixNano()))
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("DeleteStream of a missing stream: %v; want core.ErrStreamNotFound", err)
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) || ke != kerr.UnknownTopicOrPartition {
		t.Errorf("DeleteStream of a missing stream: %v; want *kerr.Error UNKNOWN_TOPIC_OR_PARTITION in the chain", err)
	}
}

// TestNewRefusesClient checks that New refuses a client that would break the contract and
// does not close a caller's client.
func TestNewRefusesClient(t *testing.T) {
	k := cluster(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.New(t.Context(), cl, nil); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("New with the default (sticky) partitioner: %v; want core.ErrInvalidOption", err)
	}
	good, err := kgo.NewClient(append(kafka.ClientOpts(), kgo.SeedBrokers(k.Brokers...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	s, err := kafka.New(t.Context(), good, nil)
	if err != nil {
		t.Fatalf("New with ClientOpts: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := good.Ping(t.Context()); err != nil {
		t.Errorf("the caller's client no longer works after Store.Close: %v", err)
	}
}

func TestOpenURL(t *testing.T) {
	k := cluster(t)
	b, err := core.Open(t.Context(), "kafka://"+k.Addr()+"?prefix=sluicetest.&client_id=url-test")
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	if got := b.Storage.Capabilities().Name; got != "kafka" {
		t.Errorf("Capabilities().Name = %q", got)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestOpenURLSASLOnPlainListener: a URL with SASL credentials against a listener without
// SASL (the test broker's) fails Open with an error that says authentication failed and
// what to check, matching core.ErrInvalidOption, without the password; it used to be the
// broker's bare ILLEGAL_SASL_STATE. (The test broker has no SASL listener or ACLs, so wrong
// passwords and missing ACLs are covered by TestMapErr and TestMapErrAuth only.)
func TestOpenURLSASLOnPlainListener(t *testing.T) {
	k := cluster(t)
	b, err := core.Open(t.Context(), "kafka://sluice:s3cret-pw@"+k.Addr()+"?prefix=sluicetest.&sasl=plain")
	if err == nil {
		b.Close()
		t.Fatal("core.Open with SASL credentials on a listener without SASL succeeded")
	}
	t.Logf("%v", err)
	if !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "authentication failed") || !strings.Contains(err.Error(), "sasl=") {
		t.Errorf("core.Open: %v, want core.ErrInvalidOption saying authentication failed and what to check", err)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("core.Open: %v shows the password", err)
	}
}

// Kafka refuses a topic whose name differs from an existing one only by '.' and '_': a
// stream named so cannot be created, and the error says why, from the broker's own message,
// and what to do, matching core.ErrInvalidArgument.
func TestCreateStreamNameCollides(t *testing.T) {
	s := dial(t)
	base := fmt.Sprintf("collide-%d", time.Now().UnixNano())
	createStream(t, s, base+".a", 1)
	_, err := s.CreateStream(t.Context(), base+"_a", 1)
	if err == nil {
		_ = s.DeleteStream(t.Context(), base+"_a")
		t.Fatalf("CreateStream(%q) beside %q succeeded; this broker does not refuse colliding topics", base+"_a", base+".a")
	}
	if !errors.Is(err, core.ErrInvalidArgument) || !strings.Contains(err.Error(), "collides") || !strings.Contains(err.Error(), "'.' and '_'") {
		t.Errorf("CreateStream of a colliding name: %v; want core.ErrInvalidArgument with the broker's message and what to do", err)
	}
}
