package tcp

import (
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
