package bistream

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
)

// FuzzDecodeEnvelope checks that DecodeEnvelope never panics, that every error matches
// wire.ErrMalformed, and that whatever decodes re-encodes to the same bytes (the encoding is
// canonical) and validates.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(sampleEnvelope().Append(nil))
	f.Add(Envelope{Message: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("w")}}}.Append(nil))
	f.Add(Envelope{ReturnStream: "s", Message: wire.TransportMessage{
		OnwardRoute: wire.Route{wire.Local("a"), wire.TCP("127.0.0.1:4000")},
		ReturnRoute: wire.Route{wire.Local("b")},
		Payload:     bytes.Repeat([]byte{0xff}, 300),
	}}.Append(nil))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 1, 1, 'r', 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("error does not match wire.ErrMalformed: %v", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decoded envelope does not validate: %v", err)
		}
		if got := e.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, got)
		}
		if e.Size() != len(b) {
			t.Fatalf("Size %d, encoded %d", e.Size(), len(b))
		}
	})
}
