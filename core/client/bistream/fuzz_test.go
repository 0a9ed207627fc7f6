package bistream

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/core"
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

// FuzzParseSenderAddress feeds arbitrary local addresses, as they arrive in the onward
// routes of network messages (the node's fallback parses every unknown one), to
// ParseSenderAddress: what it accepts names valid streams and is exactly the SenderAddress
// of those streams, so that one sender never has two addresses.
func FuzzParseSenderAddress(f *testing.F) {
	for _, s := range []string{
		SenderAddress("orders", "replies"), SenderAddress("orders", ""), "bistream/", "bistream//r",
		"bistream/a/b/c", "bistream/a", "bistream/a\xff/b", "Bistream/a/b", "stream.s.0", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		to, ret, ok := ParseSenderAddress(addr)
		if !ok {
			if to != "" || ret != "" {
				t.Fatalf("ParseSenderAddress(%q) = %q, %q, false: want zero values when not ok", addr, to, ret)
			}
			return
		}
		if err := core.ValidateStreamName(to); err != nil {
			t.Fatalf("ParseSenderAddress(%q) accepted destination %q: %v", addr, to, err)
		}
		if ret != "" && core.ValidateStreamName(ret) != nil {
			t.Fatalf("ParseSenderAddress(%q) accepted return stream %q", addr, ret)
		}
		if back := SenderAddress(to, ret); back != addr {
			t.Fatalf("ParseSenderAddress(%q) = %q, %q, whose address is %q", addr, to, ret, back)
		}
	})
}
