package pulsar

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// fakeService listens on loopback and runs serve on every connection it accepts, until the
// test ends. It counts the connections still open.
type fakeService struct {
	ln   net.Listener
	mu   sync.Mutex
	open int
}

func newFakeService(t *testing.T, serve func(net.Conn)) *fakeService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeService{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.open++
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { f.mu.Lock(); f.open--; f.mu.Unlock() }()
				defer c.Close()
				stop := context.AfterFunc(t.Context(), func() { c.Close() })
				defer stop()
				serve(c)
			}()
		}
	}()
	return f
}

func (f *fakeService) openConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

// silent reads what the client sends and never answers, as a port that does not speak
// Pulsar's protocol may.
func silent(c net.Conn) { io.Copy(io.Discard, c) }

// checkGoroutines returns the stacks of the goroutines that Open's service check started
// and that still run.
func checkGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, ".pingService") || strings.Contains(g, "pulsar-client-go/pulsar.(*client).TopicPartitions") {
			out = append(out, g)
		}
	}
	return out
}

// TestServiceCheckEndsWithClose: a service check given up (here, its ctx ended while a port
// that does not answer kept it waiting) leaves nothing running once the Store is closed: no
// goroutine of the check, and its connection closed. It used to leave the lookup of
// pulsar-client-go running on its own goroutine, which nothing could stop, until the
// client's operation timeout (30 s), retrying on new connections after Close. The waits are
// bounds, far below that timeout, not timing asserts.
func TestServiceCheckEndsWithClose(t *testing.T) {
	f := newFakeService(t, silent)
	s, err := openURL("pulsar://" + f.ln.Addr().String() + "?admin=http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = s.pingService(ctx, serviceCheckTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("pingService on a port that does not answer, ctx ending first: %v, want context.DeadlineExceeded", err)
	}
	s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, conns := checkGoroutines(), f.openConns()
		if len(left) == 0 && conns == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after Close, %d connections to the service are open and %d goroutines of the service check run:\n%s",
				conns, len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeBroker answers the check as a broker would: CONNECTED (after a PING, which the
// check must answer), then the lookup's response, or the refusal given.
func fakeBroker(refuseConnect, failLookup *checkCommandErr) func(net.Conn) {
	return func(c net.Conn) {
		if typ, _, err := readCheckCommand(c); err != nil || typ != cmdConnect {
			return
		}
		if refuseConnect != nil {
			e := pbVarint(nil, 1, 0)
			e = pbVarint(e, 2, refuseConnect.code)
			c.Write(checkFrame(cmdError, pbBytes(e, 3, []byte(refuseConnect.msg))))
			return
		}
		c.Write(checkFrame(cmdPing, nil))
		if typ, _, err := readCheckCommand(c); err != nil || typ != cmdPong {
			return
		}
		c.Write(checkFrame(cmdConnected, pbBytes(nil, 1, []byte("Pulsar Server"))))
		typ, req, err := readCheckCommand(c)
		if err != nil || typ != cmdPartitionedMetadata {
			return
		}
		res := pbVarint(nil, 2, req.varints[2])
		if failLookup != nil {
			res = pbVarint(res, 3, 1)
			res = pbVarint(res, 4, failLookup.code)
			res = pbBytes(res, 5, []byte(failLookup.msg))
		} else {
			res = pbVarint(res, 1, 0)
		}
		c.Write(checkFrame(cmdPartitionedMetadataResponse, res))
		io.Copy(io.Discard, c)
	}
}

// TestServiceCheckAnswers: the check passes on a service that answers its handshake and
// lookup as a broker does, and fails at once (not at serviceCheckTimeout), naming the
// service URL, on one that answers another protocol (an HTTP server: the admin port) or
// refuses; a refusal of the (absent) credentials matches core.ErrInvalidOption.
func TestServiceCheckAnswers(t *testing.T) {
	http400 := func(c net.Conn) {
		c.Read(make([]byte, 512))
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
	}
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		want  error // nil: the check passes
		says  string
	}{
		{"broker", fakeBroker(nil, nil), nil, ""},
		{"http", http400, core.ErrUnavailable, "not Pulsar's binary protocol"},
		{"closes", func(net.Conn) {}, core.ErrUnavailable, ""}, // EOF, or a reset: it did not read what was sent
		{"lookup fails", fakeBroker(nil, &checkCommandErr{code: 6, msg: "Namespace bundle is not ready"}), core.ErrUnavailable, "not ready"},
		{"authentication", fakeBroker(&checkCommandErr{code: serverAuthenticationError, msg: "Authentication required"}, nil), core.ErrInvalidOption, "Authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeService(t, tc.serve)
			service := "pulsar://" + f.ln.Addr().String()
			s, err := openURL(service + "?admin=http://127.0.0.1:1")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// A bound above serviceCheckTimeout: a failure must come from the answer.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = s.pingService(ctx, serviceCheckTimeout)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("pingService: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), service) ||
				!strings.Contains(err.Error(), tc.says) {
				t.Fatalf("pingService: %v; want %v naming %s and saying %q", err, tc.want, service, tc.says)
			}
			t.Log(err)
		})
	}
}

// FuzzReadCheckCommand: the check's decoder of the service's bytes never panics, and what
// it accepts re-encodes to a frame it reads back the same.
func FuzzReadCheckCommand(f *testing.F) {
	f.Add(checkFrame(cmdConnected, pbBytes(nil, 1, []byte("Pulsar Server"))))
	f.Add(checkFrame(cmdPartitionedMetadataResponse, pbVarint(pbVarint(nil, 1, 3), 2, 1)))
	f.Add(checkFrame(cmdError, pbBytes(pbVarint(pbVarint(nil, 1, 0), 2, 3), 3, []byte("Authentication required"))))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	f.Add([]byte{0, 0, 0, 5, 0, 0, 0, 9, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, body, err := readCheckCommand(bytes.NewReader(b))
		if err != nil {
			return
		}
		var enc []byte
		for k, v := range body.varints {
			enc = pbVarint(enc, int(k), v)
		}
		for k, v := range body.bytes {
			enc = pbBytes(enc, int(k), v)
		}
		if typ > 1<<20 || uint64(len(enc)) > maxCheckFrame/2 {
			return
		}
		typ2, body2, err := readCheckCommand(bytes.NewReader(checkFrame(int(typ), enc)))
		if err != nil || typ2 != typ || len(body2.varints) != len(body.varints) || len(body2.bytes) != len(body.bytes) {
			t.Fatalf("re-encoded command %d %v: read back %d %v, %v", typ, body, typ2, body2, err)
		}
	})
}

// TestOpenClientTimeouts: the client Open builds bounds its dials and its operations;
// pulsar-client-go's zero ConnectionTimeout would leave a dial to a host behind a firewall
// that drops it to the system's connect timeout, minutes, and everything waiting on it.
func TestOpenClientTimeouts(t *testing.T) {
	o := clientOptions("pulsar://127.0.0.1:6650")
	if o.URL != "pulsar://127.0.0.1:6650" || o.ConnectionTimeout != DefaultConnectionTimeout || o.OperationTimeout != DefaultOperationTimeout ||
		DefaultConnectionTimeout <= 0 || DefaultConnectionTimeout > DefaultOperationTimeout {
		t.Fatalf("client options %+v: want the URL, ConnectionTimeout %v and OperationTimeout %v (a dial bounded, and within an operation's bound)", o, DefaultConnectionTimeout, DefaultOperationTimeout)
	}
}

// TestServiceCheckTimeoutIsUnavailable: a service port that accepts the connection and never
// answers fails the check, when its own bound passes first, with core.ErrUnavailable naming
// the service URL, not with an error matching context.DeadlineExceeded: Open's caller,
// whose context has not ended, would take that for its own deadline. The bound is lowered
// from serviceCheckTimeout to keep the test short.
func TestServiceCheckTimeoutIsUnavailable(t *testing.T) {
	f := newFakeService(t, silent)
	s, err := openURL("pulsar://" + f.ln.Addr().String() + "?admin=http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.pingService(t.Context(), 200*time.Millisecond)
	if !errors.Is(err, core.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), s.serviceURL) {
		t.Errorf("check of a service port that never answers: %v; want core.ErrUnavailable naming %s, not context.DeadlineExceeded", err, s.serviceURL)
	}
}
