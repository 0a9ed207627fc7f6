package remote_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/backends/remote"
	"github.com/sluicehq/sluice/conformance"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// startHub runs an in-process hub on a memory backend on a loopback port.
func startHub(t testing.TB) string {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return startHubOn(t, s)
}

// startHubOn runs an in-process hub on s (closed at the end of the test).
func startHubOn(t testing.TB, s interface {
	core.Storage
	core.IndexStorage
}) string {
	t.Helper()
	h, err := hub.New(&core.Backend{Storage: s, Index: s}, hub.WithMaxPullWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		_ = s.Close()
	})
	return a.String()
}

func harness(addr string) conformance.Harness {
	return conformance.Harness{
		Open: func(ctx context.Context) (*core.Backend, error) {
			// The hub's backend outlives the remote store's Close, so the hub path is
			// persistent; memory's and bbolt's indexes are dense.
			return core.Open(ctx, "sluice://"+addr+"?dense=true&persistent=true&timeout=10s")
		},
		Appenders:           4,
		MessagesPerAppender: 100,
	}
}

// TestConformance runs the conformance suite through an in-process hub over loopback TCP,
// with the hub on the memory backend and on bbolt.
func TestConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) { runConformance(t, startHub(t)) })
	t.Run("bbolt", func(t *testing.T) {
		s, err := bbolt.New(t.Context(), filepath.Join(t.TempDir(), "hub.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		runConformance(t, startHubOn(t, s))
	})
}

func runConformance(t *testing.T, addr string) {
	res := conformance.Run(t.Context(), harness(addr), conformance.ReportFunc(func(r conformance.TestResult) {
		if !r.Leaf {
			return
		}
		switch r.Outcome {
		case conformance.Fail:
			t.Errorf("%s failed: %v", r.Name, r.Failures)
		case conformance.Skip:
			t.Logf("%s skipped: %s", r.Name, r.SkipReason)
		}
	}))
	t.Logf("conformance through the hub: %v", res)
	if res.Passed < 40 {
		t.Errorf("only %d conformance tests passed", res.Passed)
	}
}

func TestOpenURL(t *testing.T) {
	addr := startHub(t)
	ctx := t.Context()
	for _, bad := range []string{
		"sluice://",
		"sluice://127.0.0.1",
		"sluice://127.0.0.1:",
		"sluice://" + addr + "?dense=maybe",
		"sluice://" + addr + "?timeout=-1s",
		"sluice://" + addr + "?max_message_size=70000",
		"sluice://" + addr + "?max_partitions=5000",
		"sluice://" + addr + "?colour=blue",
		"sluice://" + addr + "?timeout=1s&timeout=2s",
		"sluice://admin:secret@" + addr,
	} {
		if b, err := core.Open(ctx, bad); !errors.Is(err, core.ErrInvalidOption) {
			if b != nil {
				_ = b.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrInvalidOption", bad, err)
		}
	}
	b, err := core.Open(ctx, "sluice://"+addr+"?max_message_size=1000&max_partitions=8")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	caps := b.Storage.Capabilities()
	if caps.Name != "remote" || caps.MaxMessageSize != 1000 || caps.MaxPartitions != 8 || caps.DenseIndex || caps.Persistent {
		t.Fatalf("capabilities = %v", caps)
	}
	if _, err := b.Storage.Append(ctx, "s", 0, [][]byte{make([]byte, 1001)}); !errors.Is(err, core.ErrMessageTooLarge) {
		t.Fatalf("Append of 1001 bytes with max_message_size=1000: %v", err)
	}
	b2, err := core.Open(ctx, "sluice://"+addr+"?persistent=true")
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if caps := b2.Storage.Capabilities(); !caps.Persistent || caps.DenseIndex {
		t.Fatalf("capabilities with persistent=true = %v", caps)
	}
}

func TestNewDefaultCapabilities(t *testing.T) {
	s, err := remote.New(t.Context(), startHub(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if caps := s.Capabilities(); caps.MaxPartitions != core.MaxPartitions || caps.MaxMessageSize != client.MaxMessageSize {
		t.Fatalf("default capabilities = %v; want MaxPartitions %d, MaxMessageSize %d", caps, core.MaxPartitions, client.MaxMessageSize)
	}
}

// TestNotUnavailable: errors the caller must not retry (a missing stream, a partition out of
// range) do not match ErrUnavailable.
func TestNotUnavailable(t *testing.T) {
	s, err := remote.New(t.Context(), startHub(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	_, err = s.Fetch(ctx, "absent", 0, 0, 10)
	if !errors.Is(err, core.ErrStreamNotFound) || errors.Is(err, core.ErrUnavailable) {
		t.Errorf("Fetch of a missing stream = %v; want ErrStreamNotFound, not ErrUnavailable", err)
	}
	if _, err := s.CreateStream(ctx, "one", 1); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, "one", 5, [][]byte{[]byte("m")})
	if !errors.Is(err, core.ErrInvalidArgument) || errors.Is(err, core.ErrUnavailable) {
		t.Errorf("Append to partition 5 of a 1-partition stream = %v; want ErrInvalidArgument, not ErrUnavailable", err)
	}
}

// TestHubDown checks that a hub that cannot be reached is reported as unavailable, not as
// an empty stream, and that the store recovers once the hub is back.
func TestHubDown(t *testing.T) {
	addr := startHub(t)
	px, err := faultproxy.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	s, err := remote.New(t.Context(), px.Addr(), &remote.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.CreateStream(ctx, "down", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "down", 0, [][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	px.SetRefuse(true)
	px.ResetAll()
	// A new Store must connect first: Append reports the refused connection as unavailable.
	s2, err := remote.New(ctx, px.Addr(), &remote.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Append(ctx, "down", 0, [][]byte{[]byte("b")}); !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("Append with the hub unreachable = %v; want ErrUnavailable", err)
	}
	msgs, err := s.Fetch(ctx, "down", 0, 0, 10)
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		// A call racing with the reset may still be answered on the old connection.
		time.Sleep(10 * time.Millisecond)
		msgs, err = s.Fetch(ctx, "down", 0, 0, 10)
	}
	if !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("Fetch with the hub unreachable = %v, %v; want ErrUnavailable", msgs, err)
	}
	px.SetRefuse(false)
	// A connection accepted just before refusing ended may still be reset: a call may fail
	// with ErrUnavailable before the store is back.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if msgs, err = s.Fetch(ctx, "down", 0, 0, 10); err == nil {
			break
		}
		if !errors.Is(err, core.ErrUnavailable) {
			t.Fatalf("Fetch while the hub comes back = %v", err)
		}
	}
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "a" {
		t.Fatalf("Fetch after the hub is back = %v, %v", msgs, err)
	}
}

// BenchmarkStorage runs the conformance benchmarks through a hub on bbolt over loopback
// TCP; compare with backends/bbolt's BenchmarkStorage for the cost of the hub path.
func BenchmarkStorage(b *testing.B) {
	s, err := bbolt.New(context.Background(), filepath.Join(b.TempDir(), "hub.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	conformance.BenchmarkStorage(b, harness(startHubOn(b, s)))
}

// TestStreamDeletedByAnotherStore checks that Append and Fetch of a stream that another
// Store deleted after this one learned its routes return ErrStreamNotFound, as every other
// backend does, without creating the stream again; and that the Store learns the partition
// count of a stream that another Store created again under the same name.
func TestStreamDeletedByAnotherStore(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := startHubOn(t, mem) // mem is the other Store: it deletes behind the hub's back
	s, err := remote.New(t.Context(), addr, &remote.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	const n = "deleted"
	if _, err := s.CreateStream(ctx, n, 3); err != nil {
		t.Fatal(err)
	}
	for p := range 3 {
		if _, err := s.Append(ctx, n, p, [][]byte{[]byte("before")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Fetch(ctx, n, p, 0, 10); err != nil { // the hub has a worker per partition
			t.Fatal(err)
		}
	}
	if err := mem.DeleteStream(ctx, n); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, n, 0, [][]byte{[]byte("after")})
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Append to a stream deleted by another Store = %v; want ErrStreamNotFound", err)
	}
	_, err = s.Fetch(ctx, n, 1, 0, 10)
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Fetch of a stream deleted by another Store = %v; want ErrStreamNotFound", err)
	}
	_, err = s.Append(ctx, n, 2, [][]byte{[]byte("after")})
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("second Append to a stream deleted by another Store = %v; want ErrStreamNotFound", err)
	}
	if _, err := mem.Partitions(ctx, n); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("after Append and Fetch of the deleted stream, the hub's backend reports Partitions = %v; want ErrStreamNotFound (not created again)", err)
	}

	// Created again by the other Store with more partitions: the Store learns the new count.
	if _, err := mem.CreateStream(ctx, n, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, n, 3, [][]byte{[]byte("more")}); err != nil {
		t.Errorf("Append to partition 3 of the stream created again with 4 partitions: %v", err)
	}
	if msgs, err := s.Fetch(ctx, n, 3, 0, 10); err != nil || len(msgs) != 1 || string(msgs[0].Data) != "more" {
		t.Errorf("Fetch of partition 3 of the stream created again = %v, %v; want the one message", msgs, err)
	}

	// Deleted and created again with fewer partitions while the Store knows 4: partition 3
	// no longer exists.
	if err := mem.DeleteStream(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.CreateStream(ctx, n, 1); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, n, 3, [][]byte{[]byte("again")})
	if !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("Append to partition 3 of the stream created again with 1 partition = %v; want ErrInvalidArgument", err)
	}
	_, err = s.Fetch(ctx, n, 3, 0, 10)
	if !errors.Is(err, core.ErrInvalidArgument) {
		t.Errorf("Fetch of partition 3 of the stream created again with 1 partition = %v; want ErrInvalidArgument", err)
	}
	idx, err := s.Append(ctx, n, 0, [][]byte{[]byte("again")})
	if err != nil {
		t.Fatalf("Append to the stream created again: %v", err)
	}
	msgs, err := s.Fetch(ctx, n, 0, 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].Index != idx[0] || string(msgs[0].Data) != "again" {
		t.Fatalf("Fetch of the stream created again = %v, %v; want only the message appended since", msgs, err)
	}
}

// TestStreamDeletedWhileWorkerRetired is TestStreamDeletedByAnotherStore when the
// partition's worker retired meanwhile: the request reaches a new worker.
func TestStreamDeletedWhileWorkerRetired(t *testing.T) {
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	h, err := hub.New(&core.Backend{Storage: mem, Index: mem}, hub.WithWorkerIdleTimeout(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := remote.New(t.Context(), a.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	const n = "retired"
	if _, err := s.CreateStream(ctx, n, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, n, 0, [][]byte{[]byte("before")}); err != nil {
		t.Fatal(err)
	}
	if err := mem.DeleteStream(ctx, n); err != nil {
		t.Fatal(err)
	}
	for i := 0; h.Metrics().PartitionWorkers > 0; i++ {
		if i == 1000 {
			t.Fatalf("the partition worker did not retire: %+v", h.Metrics())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = s.Append(ctx, n, 0, [][]byte{[]byte("after")})
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Append to a stream deleted by another Store, after its worker retired = %v; want ErrStreamNotFound", err)
	}
	_, err = s.Fetch(ctx, n, 0, 0, 10)
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Fetch of a stream deleted by another Store, after its worker retired = %v; want ErrStreamNotFound", err)
	}
	if _, err := mem.Partitions(ctx, n); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("the hub's backend reports Partitions = %v; want ErrStreamNotFound (not created again)", err)
	}
}

// TestHubOnRemoteServesStreamsCreatedElsewhere: a hub whose backend is a remote Store
// (sluice://) serves a stream created through the hub behind it, which it never saw created:
// it learns the stream's partition count from Store.Partitions.
func TestHubOnRemoteServesStreamsCreatedElsewhere(t *testing.T) {
	ctx := t.Context()
	back := startHub(t)
	st, err := remote.New(ctx, back, nil)
	if err != nil {
		t.Fatal(err)
	}
	front := startHubOn(t, st)
	open := func(addr string) *client.Conn {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conn, err := c.Open(ctx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	behind := open(back)
	if _, err := behind.CreateStream(ctx, "made-behind", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := behind.Push(ctx, "made-behind", 1, [][]byte{[]byte("hello")}); err != nil {
		t.Fatal(err)
	}

	conn := open(front)
	n, exists, err := conn.OpenStream(ctx, "made-behind")
	if err != nil || !exists || n != 2 {
		t.Fatalf("OpenStream through the front hub = %d, %v, %v; want 2 partitions", n, exists, err)
	}
	msgs, err := conn.Pull(ctx, "made-behind", 1, 0, 10, 0)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "hello" {
		t.Fatalf("Pull through the front hub = %v, %v; want the message pushed behind it", msgs, err)
	}
	if _, exists, err := conn.OpenStream(ctx, "never-made"); err != nil || exists {
		t.Fatalf("OpenStream of a missing stream through the front hub = %v, %v; want not found", exists, err)
	}
	if _, err := st.Partitions(ctx, "never-made"); !errors.Is(err, core.ErrStreamNotFound) {
		t.Fatalf("Partitions of a missing stream = %v, want ErrStreamNotFound", err)
	}
}

// openMustFail opens rawURL, which must fail (what says why it should), and returns the
// error.
func openMustFail(t *testing.T, rawURL, what string) error {
	t.Helper()
	b, err := core.Open(t.Context(), rawURL)
	if err == nil {
		_ = b.Close()
		t.Fatalf("Open(%s) %s succeeded", rawURL, what)
	}
	return err
}

// TestOpenURLUnreachable checks that opening a sluice:// URL where no hub listens fails
// (with core.ErrUnavailable, naming the address), as the other backends' URLs do when their
// broker is down, rather than opening a backend whose every call fails.
func TestOpenURLUnreachable(t *testing.T) {
	addr := hubtest.RefusedAddr(t) // nothing listens there
	err := openMustFail(t, "sluice://"+addr, "with no hub listening")
	if !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open(sluice://%s) = %v, want an error matching core.ErrUnavailable naming the address", addr, err)
	}
}

// TestOpenURLNotAHub checks that opening a sluice:// URL whose address is an HTTP server's
// (a hub's -metrics-addr, say) fails, saying so, rather than opening a backend whose every
// call fails: opening asks the hub something, not only connects.
func TestOpenURLNotAHub(t *testing.T) {
	addr := hubtest.HTTPServer(t)
	err := openMustFail(t, "sluice://"+addr+"?timeout=30s", "of an HTTP server")
	if !errors.Is(err, tcp.ErrHTTPServer) || !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("Open(sluice://%s) = %v, want an error matching tcp.ErrHTTPServer and core.ErrUnavailable", addr, err)
	}
}

// TestOpenURLSilentPort checks that opening a sluice:// URL whose address accepts
// connections but never answers fails once the URL's timeout passes, with core.ErrUnavailable,
// as a hub whose broker does not answer fails to start.
func TestOpenURLSilentPort(t *testing.T) {
	addr := hubtest.SilentServer(t)
	err := openMustFail(t, "sluice://"+addr+"?timeout=300ms", "of a port that never answers")
	if !errors.Is(err, core.ErrUnavailable) || !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("Open(sluice://%s) = %v, want an error matching core.ErrUnavailable and client.ErrTimeout", addr, err)
	}
}
