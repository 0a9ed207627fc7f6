package tcp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
)

// FuzzReadFrame feeds arbitrary bytes to the connection read path (frame reader + message
// decoder): it must never panic, every frame it returns has the length its header announced,
// and every message it accepts re-encodes to the same frame.
func FuzzReadFrame(f *testing.F) {
	m := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("stream")}, ReturnRoute: wire.Route{wire.Local("0123456789abcdef0123456789abcdef")},
		Payload: wire.EncodePayload(wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("test-a-b")})}
	good, _ := wire.AppendFrame(nil, m)
	f.Add(good)
	f.Add(append(append([]byte(nil), good...), good...))
	f.Add(good[:len(good)-1])
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 5}) // a header and nothing more: cut short, not a clean end
	f.Add([]byte{0xff, 0xff, 1})
	f.Add([]byte{0, 3, 1, 0, 0})
	// Frames of pooledFrameMin bytes and more are read into pooled buffers: the mutator
	// rarely grows an input that far, so seed them (a large frame, then a smaller large one
	// read into the buffer the first left in the pool, then a small one).
	large := func(n int) []byte {
		m := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("p")}, Payload: bytes.Repeat([]byte{0xa5}, n)}
		b, _ := wire.AppendFrame(nil, m)
		return b
	}
	// Routes at wire.MaxRouteLen addresses and one above it (framed by hand: AppendFrame
	// refuses the second).
	for _, n := range []int{wire.MaxRouteLen, wire.MaxRouteLen + 1} {
		body := wire.TransportMessage{ReturnRoute: make(wire.Route, n)}.Append(nil)
		f.Add(append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...))
	}
	f.Add(large(pooledFrameMin + 100))
	f.Add(append(append(append(large(2*pooledFrameMin), large(pooledFrameMin)...), good...), 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var hdr [2]byte
		for {
			before := r.Len()
			body, pooled, err := readFrame(r, hdr[:])
			if err != nil {
				if errors.Is(err, io.EOF) && before != 0 {
					t.Fatalf("io.EOF with %d unread bytes", before)
				}
				return
			}
			if len(body) == 0 || int(binary.BigEndian.Uint16(in[len(in)-before:])) != len(body) {
				t.Fatalf("frame body of %d bytes does not match its header", len(body))
			}
			msg, err := wire.DecodeTransportMessage(body)
			if err != nil {
				return // the connection would be closed
			}
			again, err := wire.AppendFrame(nil, msg)
			if err != nil || !bytes.Equal(again[2:], body) {
				t.Fatalf("accepted message does not re-encode to its frame: %v", err)
			}
			if (pooled != nil) != (len(body) >= pooledFrameMin) {
				t.Fatalf("%d-byte frame: pooled %v, want pooled from %d bytes", len(body), pooled != nil, pooledFrameMin)
			}
			if pooled != nil {
				putFrame(pooled) // the next large frame may be read into it
			}
		}
	})
}

// FuzzSentHTTP feeds arbitrary first bytes of an accepted connection to the HTTP check,
// sentHTTP: see checkFirstBytes.
func FuzzSentHTTP(f *testing.F) {
	addFirstBytes(f)
	for _, s := range httpRequestStarts {
		f.Add([]byte(s + "/ HTTP/1.1\r\nHost: x\r\n\r\n"))
		f.Add([]byte(s[:len(s)-1]))
	}
	f.Add([]byte("GE"))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkFirstBytes(t, in, httpRequestStarts[:], sentHTTP)
	})
}

// FuzzAnsweredHTTP feeds arbitrary first bytes of a dialled connection to its HTTP check,
// answeredHTTP: see checkFirstBytes. The status line it returns must be a start of the
// bytes, with no line end, of at most maxStatusLine bytes.
func FuzzAnsweredHTTP(f *testing.F) {
	addFirstBytes(f)
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\n"))
	f.Add([]byte("HTTP"))
	f.Add([]byte("HT"))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkFirstBytes(t, in, []string{httpResponseStart}, func(br *bufio.Reader) bool {
			status, ok := answeredHTTP(br)
			if !ok && status != "" {
				t.Fatalf("% x: no HTTP, but status line %q", in, status)
			}
			if ok && (!bytes.HasPrefix(in, []byte(status)) || len(status) > maxStatusLine || strings.ContainsAny(status, "\r\n")) {
				t.Fatalf("% x: status line %q, want a start of it, with no line end, of at most %d bytes", in, status, maxStatusLine)
			}
			return ok
		})
	})
}

// addFirstBytes adds the seeds of a check of a connection's first bytes: a frame, and
// frames too short to be messages.
func addFirstBytes(f *testing.F) {
	m := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("stream")}, Payload: []byte("x")}
	good, _ := wire.AppendFrame(nil, m)
	f.Add(good)
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 1, 'G'})
	f.Add([]byte{0, 3, 'G', 'E', 'T'})
}

// checkFirstBytes runs isHTTP, a check of the first bytes of a connection, on in. It must
// never panic, consume nothing that reading the first frame then reads, ask for no byte
// beyond the first frame (a peer that sent one frame and waits for its reply must not wait
// for ever), call HTTP only what starts with one of starts and whose third byte is not the
// version, and never call HTTP a frame that decodes.
func checkFirstBytes(t *testing.T, in []byte, starts []string, isHTTP func(*bufio.Reader) bool) {
	t.Helper()
	// The bytes that reading the first frame waits for: its header, then its body.
	frameLen, whole := len(in), false
	if len(in) >= wire.FrameHeaderLen {
		n := wire.FrameHeaderLen + int(binary.BigEndian.Uint16(in))
		frameLen, whole = min(len(in), n), len(in) >= n
	}
	r := &frameOnlyReader{b: in[:frameLen]}
	br := bufio.NewReaderSize(r, readBufferSize)
	got := isHTTP(br)
	if whole && r.past {
		t.Fatalf("the check of % x waited for a byte beyond the first frame", in)
	}
	if rest, _ := io.ReadAll(br); !bytes.Equal(rest, in[:frameLen]) {
		t.Fatalf("after the check the connection reads % x, want % x", rest, in[:frameLen])
	}
	if !got {
		return
	}
	if len(in) > wire.FrameHeaderLen && in[wire.FrameHeaderLen] == wire.Version {
		t.Fatalf("% x taken for HTTP although its third byte is the version", in)
	}
	start := false
	for _, s := range starts {
		start = start || bytes.HasPrefix(in, []byte(s))
	}
	if !start {
		t.Fatalf("% x taken for HTTP without one of %q at its start", in, starts)
	}
	if body, _, err := readFrame(bytes.NewReader(in), make([]byte, 2)); err == nil {
		if _, err := wire.DecodeTransportMessage(body); err == nil {
			t.Fatalf("% x taken for HTTP although its first frame decodes", in)
		}
	}
}

// frameOnlyReader hands out b one byte per Read, as a slow peer would, then io.EOF, and
// records in past that it was asked for a byte beyond b: one the peer may never send.
type frameOnlyReader struct {
	b    []byte
	past bool
}

func (r *frameOnlyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		r.past = true
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0], r.b = r.b[0], r.b[1:]
	return 1, nil
}
