package tcp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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
// sentHTTP. It must never panic, consume nothing that reading the first frame then reads,
// ask for no byte beyond the first frame (a peer that sent one frame and waits for its reply
// must not wait for ever), call HTTP only what starts with a request start and whose third
// byte is not the version, and never call HTTP a frame that decodes.
func FuzzSentHTTP(f *testing.F) {
	m := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("stream")}, Payload: []byte("x")}
	good, _ := wire.AppendFrame(nil, m)
	f.Add(good)
	for _, s := range httpRequestStarts {
		f.Add([]byte(s + "/ HTTP/1.1\r\nHost: x\r\n\r\n"))
		f.Add([]byte(s[:len(s)-1]))
	}
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 1, 'G'})
	f.Add([]byte{0, 3, 'G', 'E', 'T'})
	f.Add([]byte("GE"))
	f.Fuzz(func(t *testing.T, in []byte) {
		// The bytes that reading the first frame waits for: its header, then its body.
		frameLen, whole := len(in), false
		if len(in) >= wire.FrameHeaderLen {
			n := wire.FrameHeaderLen + int(binary.BigEndian.Uint16(in))
			frameLen, whole = min(len(in), n), len(in) >= n
		}
		r := &frameOnlyReader{b: in[:frameLen]}
		br := bufio.NewReaderSize(r, readBufferSize)
		got := sentHTTP(br)
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
		for _, s := range httpRequestStarts {
			start = start || bytes.HasPrefix(in, []byte(s))
		}
		if !start {
			t.Fatalf("% x taken for HTTP without a request start", in)
		}
		if body, _, err := readFrame(bytes.NewReader(in), make([]byte, 2)); err == nil {
			if _, err := wire.DecodeTransportMessage(body); err == nil {
				t.Fatalf("% x taken for HTTP although its first frame decodes", in)
			}
		}
	})
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
