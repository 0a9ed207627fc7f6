package tcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/wire"
)

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu      sync.Mutex
	recs    []slog.Record
	changed chan struct{} // signalled after each record
}

func newLogRecorder() *logRecorder { return &logRecorder{changed: make(chan struct{}, 1)} }

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return nil
}

// logged returns the messages of the records at level and above whose "remote" attribute
// (or "last_remote", in a rate-limited line) is remote.
func (l *logRecorder) logged(level slog.Level, remote string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var msgs []string
	for _, r := range l.recs {
		if r.Level < level {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if (a.Key == "remote" || a.Key == "last_remote") && a.Value.String() == remote {
				msgs = append(msgs, r.Message)
				return false
			}
			return true
		})
	}
	return msgs
}

// warnings returns the messages of the warnings (and errors) about remote.
func (l *logRecorder) warnings(remote string) []string { return l.logged(slog.LevelWarn, remote) }

// awaitClosed waits until the transport logged that it closes the connection from remote
// (at Debug for a normal close, at Warn with the reason otherwise): after that it logs
// nothing more about it.
func (l *logRecorder) awaitClosed(t *testing.T, remote string) {
	t.Helper()
	timeout := time.After(guard)
	for {
		if slices.Contains(l.logged(slog.LevelDebug, remote), "tcp: closing connection") {
			return
		}
		select {
		case <-l.changed:
		case <-timeout:
			t.Fatalf("the connection from %s was not closed", remote)
		}
	}
}

// TestHTTPRequestRefused: a connection whose first bytes are an HTTP request gets one
// warning saying what the port speaks, with the client's address, a fixed 400 reply that
// repeats nothing of the request, and is closed; the other connections are served on.
func TestHTTPRequestRefused(t *testing.T) {
	logs := newLogRecorder()
	server := newSide(t, WithLogger(slog.New(logs)))
	// A warning for every refusal here (TestWarningsRateLimited checks the limit).
	server.tr.limits.SetInterval(0)
	addr := server.listen(t)
	good := dialRaw(t, addr)
	echoVia(good, "before")
	const marker = "req-marker" // in each request; never in a reply
	for _, req := range []string{
		"GET /" + marker + " HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
		"POST /" + marker + " HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
		"HEAD /" + marker + " HTTP/1.0\r\n\r\n",
		"PUT /" + marker + " HTTP/1.1\r\nHost: h\r\n\r\n",
		"DELETE /" + marker + " HTTP/1.1\r\nHost: h\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: " + marker + "\r\n\r\n",
		"PATCH /" + marker + " HTTP/1.1\r\nHost: h\r\n\r\n",
		"CONNECT " + marker + ":443 HTTP/1.1\r\nHost: h\r\n\r\n",
		"TRACE /" + marker + " HTTP/1.1\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + marker,
	} {
		name, _, _ := strings.Cut(req, " ")
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr)
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			reply, err := io.ReadAll(c) // to the server's close
			if err != nil {
				t.Fatalf("reading the reply: %v (after %q)", err, reply)
			}
			if !strings.HasPrefix(string(reply), "HTTP/1.1 400 Bad Request\r\n") || !strings.HasSuffix(string(reply), httpHint+"\n") {
				t.Fatalf("reply %q, want a 400 with the hint", reply)
			}
			if strings.Contains(string(reply), marker) {
				t.Fatalf("reply %q repeats the request", reply)
			}
			c.Close()
			logs.awaitClosed(t, c.LocalAddr().String())
			w := logs.warnings(c.LocalAddr().String())
			if len(w) != 1 || !strings.Contains(w[0], "not HTTP") || !strings.Contains(w[0], "-metrics-addr") {
				t.Fatalf("warnings for the connection: %q, want one saying the port is not HTTP", w)
			}
			echoVia(good, name)
		})
	}
}

// TestHTTPRequestToRefusedHook: with a refused hook, a connection that sent an HTTP request
// is handed to the hook (its remote address and ErrHTTPRequest) before the client has the
// reply, and the transport logs it at Debug, not Warn: the hook's owner warns instead.
func TestHTTPRequestToRefusedHook(t *testing.T) {
	logs := newLogRecorder()
	var mu sync.Mutex
	var got []string
	server := newSide(t, WithLogger(slog.New(logs)), WithRefusedHook(func(remote string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if !errors.Is(err, ErrHTTPRequest) {
			t.Errorf("refused hook: err %v, want ErrHTTPRequest", err)
		}
		got = append(got, remote)
	}))
	addr := server.listen(t)
	c := dialRaw(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(reply), "HTTP/1.1 400 Bad Request\r\n") {
		t.Fatalf("reply %q, %v; want a 400", reply, err)
	}
	mu.Lock()
	hooked := slices.Clone(got)
	mu.Unlock()
	if want := c.LocalAddr().String(); len(hooked) != 1 || hooked[0] != want {
		t.Fatalf("the hook had %q when the client had the reply, want [%s]", hooked, want)
	}
	c.Close()
	logs.awaitClosed(t, c.LocalAddr().String())
	if w := logs.warnings(c.LocalAddr().String()); len(w) != 0 {
		t.Fatalf("warnings %q, want none: the hook's owner warns", w)
	}
	if d := logs.logged(slog.LevelDebug, c.LocalAddr().String()); !slices.ContainsFunc(d, func(m string) bool { return strings.Contains(m, "HTTP request") }) {
		t.Fatalf("logged %q, want the HTTP request at Debug", d)
	}
}

// TestAlmostHTTPIsAFrame: bytes that only look like the start of an HTTP request (a method
// without its space, in lower case, another HTTP/2 preface) are read as a frame, as
// before: no reply, and the warning is about the frame.
func TestAlmostHTTPIsAFrame(t *testing.T) {
	logs := newLogRecorder()
	server := newSide(t, WithLogger(slog.New(logs)))
	server.tr.limits.SetInterval(0) // a warning for each connection closed for its frame
	addr := server.listen(t)
	for _, req := range []string{
		"GETS / HTTP/1.1\r\n\r\n",
		"get / HTTP/1.1\r\n\r\n",
		"POSTS / HTTP/1.1\r\n\r\n",
		"CONNECTED x HTTP/1.1\r\n\r\n",
		"PRI * HTTP/1.1\r\n\r\n",
	} {
		c := dialRaw(t, addr)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		must(t, c.Conn.(*net.TCPConn).CloseWrite()) // the frame is cut short
		if reply, err := io.ReadAll(c); len(reply) != 0 {
			t.Fatalf("%q: reply %q, %v; want none", req, reply, err)
		}
		logs.awaitClosed(t, c.LocalAddr().String())
		w := logs.warnings(c.LocalAddr().String())
		if len(w) != 1 || w[0] != "tcp: closing connection" {
			t.Fatalf("%q: warnings %q, want the connection closed for its frame", req, w)
		}
	}
}

// TestHTTPClientSeesBadRequest: what an HTTP client (curl, a browser) shows is a 400 whose
// body says what the port speaks.
func TestHTTPClientSeesBadRequest(t *testing.T) {
	server := newSide(t)
	addr := server.listen(t)
	hc := &http.Client{Timeout: guard, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + addr + "/debug/vars")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || string(body) != httpHint+"\n" {
		t.Fatalf("HTTP client got %s %q", resp.Status, body)
	}
}

// TestFrameLengthsThatSpellHTTP: a frame whose length bytes are the first two letters of
// an HTTP method ("GE" = 18245 bytes, ...) is a frame: its third byte is the version.
func TestFrameLengthsThatSpellHTTP(t *testing.T) {
	logs := newLogRecorder()
	server := newSide(t, WithLogger(slog.New(logs)))
	addr := server.listen(t)
	for _, s := range httpRequestStarts {
		c := dialRaw(t, addr)
		size := int(binary.BigEndian.Uint16([]byte(s[:2])))
		m := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("inbox")}}
		m.Payload = make([]byte, size-m.Size()-2) // the payload's length prefix takes 3 bytes, not 1
		frame, err := wire.AppendFrame(nil, m)
		must(t, err)
		if string(frame[:2]) != s[:2] {
			t.Fatalf("frame starts %q, want %q", frame[:2], s[:2])
		}
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		if got := server.receive(t); len(got.Payload) != len(m.Payload) {
			t.Fatalf("frame of %d bytes starting %q: received a payload of %d bytes, want %d", size, s[:2], len(got.Payload), len(m.Payload))
		}
		if w := logs.warnings(c.LocalAddr().String()); len(w) != 0 {
			t.Fatalf("frame starting %q: warnings %q", s[:2], w)
		}
	}
}

// TestHTTPCheckWaitsForNoMoreThanAFrame: looking for an HTTP request never waits for a
// byte that reading the first frame would not wait for. With the timeouts off, a wait
// for more would last for ever: a first frame shorter than the longest request start is
// delivered at once, and short malformed frames close their connection at once.
func TestHTTPCheckWaitsForNoMoreThanAFrame(t *testing.T) {
	server := newSide(t, WithHandshakeTimeout(0), WithIdleTimeout(0))
	addr := server.listen(t)
	short, err := wire.AppendFrame(nil, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("inbox")}, Payload: []byte{}})
	must(t, err)
	longest := len(slices.MaxFunc(httpRequestStarts[:], func(a, b string) int { return len(a) - len(b) }))
	if len(short) >= longest {
		t.Fatalf("a %d-byte frame is not shorter than the longest request start (%d)", len(short), longest)
	}
	c := dialRaw(t, addr)
	if _, err := c.Write(short); err != nil {
		t.Fatal(err)
	}
	server.receive(t)
	for _, frame := range [][]byte{
		{0x00, 0x00},                // zero length
		{0x00, 0x01, 'G'},           // one byte, not the version
		{0x00, 0x03, 'G', 'E', 'T'}, // three bytes, not a message
	} {
		bad := dialRaw(t, addr)
		if _, err := bad.Write(frame); err != nil {
			t.Fatal(err)
		}
		bad.expectClosed()
	}
}

// TestHTTPOnlyAtTheStartOfAcceptedConnections: the check is for a client that dialled the
// wrong port, so it applies to the first bytes of an accepted connection only. An HTTP
// request after a frame, or from the peer of a dialled connection, is a malformed frame
// like any other: no HTTP reply goes out among the connection's frames.
func TestHTTPOnlyAtTheStartOfAcceptedConnections(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	t.Run("after a frame", func(t *testing.T) {
		logs := newLogRecorder()
		server := newSide(t, WithLogger(slog.New(logs)))
		c := dialRaw(t, server.listen(t))
		echoVia(c, "first")
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		must(t, c.Conn.(*net.TCPConn).CloseWrite())
		if reply, err := io.ReadAll(c); len(reply) != 0 {
			t.Fatalf("reply %q, %v; want none", reply, err)
		}
		logs.awaitClosed(t, c.LocalAddr().String())
		if w := logs.warnings(c.LocalAddr().String()); len(w) != 1 || w[0] != "tcp: closing connection" {
			t.Fatalf("warnings %q, want the connection closed for its frame", w)
		}
	})
	t.Run("dialled", func(t *testing.T) {
		nc := dialledBy(t, newSide(t))
		if _, err := io.WriteString(nc, req); err != nil {
			t.Fatal(err)
		}
		must(t, nc.(*net.TCPConn).CloseWrite())
		if rest, err := io.ReadAll(nc); len(rest) != 0 || err != nil {
			t.Fatalf("the client wrote %q, %v after the peer's HTTP request; want nothing, then its close", rest, err)
		}
	})
}

// TestHTTPCheckAllocatesNothingForAFrame: the check a connection's first frame goes
// through allocates nothing.
func TestHTTPCheckAllocatesNothingForAFrame(t *testing.T) {
	frame, err := wire.AppendFrame(nil, wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("stream")}, Payload: []byte("x")})
	must(t, err)
	r := bytes.NewReader(frame)
	br := bufio.NewReaderSize(r, readBufferSize)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(frame)
		br.Reset(r)
		if sentHTTP(br) {
			t.Fatal("a frame taken for HTTP")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per first frame, want 0", allocs)
	}
}

// closeErr returns the "err" attribute of the warning that the connection to or from
// remote was closed, "" without one.
func (l *logRecorder) closeErr(remote string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Level < slog.LevelWarn || r.Message != "tcp: closing connection" {
			continue
		}
		var peer, err string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "remote", "last_remote":
				peer = a.Value.String()
			case "err", "last_err":
				err = a.Value.String()
			}
			return true
		})
		if peer == remote {
			return err
		}
	}
	return ""
}

// dialledBy makes client dial a listener of its own, sending it one frame, and returns the
// connection it accepted, its frame read; the test's cleanup closes it.
func dialledBy(t *testing.T, client *side) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	must(t, client.node.Send(context.Background(), wire.TransportMessage{
		OnwardRoute: wire.Route{wire.TCP(ln.Addr().String()), wire.Local("x")}, Payload: []byte("frame"),
	}))
	nc, err := ln.Accept()
	must(t, err)
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(guard))
	var hdr [2]byte
	if _, _, err := readFrame(nc, hdr[:]); err != nil {
		t.Fatalf("the client's frame: %v", err)
	}
	return nc
}

// TestHTTPAnswerToDialledConnection: a dialled connection whose peer answers with HTTP (an
// HTTP server: the address is wrong, say a hub's metrics address) is closed with a
// warning that says so and quotes the status line, not as a frame "HT" bytes long cut
// short; Watch gives that cause, matching ErrHTTPServer.
func TestHTTPAnswerToDialledConnection(t *testing.T) {
	const status = "HTTP/1.1 400 Bad Request"
	logs := newLogRecorder()
	s := newSide(t, WithLogger(slog.New(logs)))
	nc := dialledBy(t, s)
	peer := nc.LocalAddr().String()
	a, err := s.tr.Connect(context.Background(), peer) // the connection dialledBy opened
	must(t, err)
	done, cause := s.tr.Watch(a)
	if err := cause(); err != nil {
		t.Fatalf("cause of an open connection = %v, want nil", err)
	}
	if _, err := io.WriteString(nc, status+"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"); err != nil {
		t.Fatal(err)
	}
	must(t, nc.(*net.TCPConn).CloseWrite())
	logs.awaitClosed(t, peer)
	got := logs.closeErr(peer)
	if !strings.Contains(got, "HTTP server") || !strings.Contains(got, strconv.Quote(status)) {
		t.Fatalf("closed for %q; want it to say the peer is an HTTP server, quoting %q", got, status)
	}
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("Watch's channel not closed after the connection closed")
	}
	var he *HTTPServerError
	if err := cause(); !errors.Is(err, ErrHTTPServer) || !errors.As(err, &he) || he.Status != status || he.Remote != peer {
		t.Fatalf("Watch's cause = %#v, want an *HTTPServerError (ErrHTTPServer) from %s with status %q", err, peer, status)
	}
}

// Watch's cause is nil for a connection the peer closed normally, and for an address
// that has no open connection (whose channel is closed already).
func TestWatchNormalClose(t *testing.T) {
	s := newSide(t)
	nc := dialledBy(t, s)
	a, err := s.tr.Connect(context.Background(), nc.LocalAddr().String())
	must(t, err)
	done, cause := s.tr.Watch(a)
	must(t, nc.Close())
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("Watch's channel not closed after the peer closed the connection")
	}
	if err := cause(); err != nil {
		t.Fatalf("cause of a connection the peer closed = %v, want nil", err)
	}
	done, cause = s.tr.Watch(wire.Local("no-such-connection"))
	select {
	case <-done:
	default:
		t.Fatal("Watch of an unknown address: channel open, want it closed")
	}
	if err := cause(); err != nil {
		t.Fatalf("cause for an unknown address = %v, want nil", err)
	}
}
