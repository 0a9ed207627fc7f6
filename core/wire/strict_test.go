package wire

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestReaderFirstErrorSticks checks that a Reader reports the first problem it met: a
// caller's own check after a decode error (Fail) does not replace it.
func TestReaderFirstErrorSticks(t *testing.T) {
	r := NewReader([]byte{0x80}, "T")
	r.ReadUint() // truncated
	r.Fail("semantic check", errors.New("later"))
	var de *DecodeError
	if !errors.As(r.Err(), &de) || !strings.Contains(de.Reason, "truncated uint") || de.Offset != 0 || de.Err != nil {
		t.Fatalf("Err = %#v, want the first error: truncated uint at offset 0", r.Err())
	}
	if err := r.Finish(); err != de {
		t.Fatalf("Finish = %v, want the first error %v", err, de)
	}
}

// TestAddressEqualComparesType checks that addresses with the same value but different
// types differ: a local worker "x" is not the TCP peer "x".
func TestAddressEqualComparesType(t *testing.T) {
	if Local("127.0.0.1:4000").Equal(TCP("127.0.0.1:4000")) {
		t.Fatal("Local(v).Equal(TCP(v)) = true")
	}
	if (Route{Local("a"), Local("b")}).Equal(Route{Local("a"), TCP("b")}) {
		t.Fatal("routes differing by one address type are Equal")
	}
	if !Local("a").Equal(Address{Type: AddressLocal, Value: []byte("a")}) {
		t.Fatal("equal addresses are not Equal")
	}
}

// TestVersionErrorOffset checks that an unsupported version is reported at the version
// byte, offset 0.
func TestVersionErrorOffset(t *testing.T) {
	b := TransportMessage{OnwardRoute: Route{Local("a")}}.Append(nil)
	b[0] = 2
	_, err := DecodeTransportMessage(b)
	var de *DecodeError
	if !errors.As(err, &de) || de.Offset != 0 || !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("err = %v, want an ErrUnsupportedVersion DecodeError at offset 0", err)
	}
}

// TestFitPullCountPrefixGrowth checks FitPullResponse and FitPullBatchPart where the 128th
// message makes the message count's varint one byte longer: the message that fills the
// frame to the byte must account for that byte.
func TestFitPullCountPrefixGrowth(t *testing.T) {
	onward := Route{Local(localAddr32)}
	ret := Route{Local("stream.s.0")}
	budget := FramePayloadBudget(onward, ret)
	lead := make([]StreamMessage, 127)
	leadBytes := 0
	for i := range lead {
		lead[i] = StreamMessage{Index: uint64(i), Data: []byte("x")}
		leadBytes += lead[i].Size()
	}
	for _, kind := range []struct {
		name   string
		fit    func(msgs []StreamMessage) int
		encode func(msgs []StreamMessage) []byte
	}{
		{"PullResponse",
			func(msgs []StreamMessage) int { return FitPullResponse(onward, ret, ProtocolPull, 7, msgs) },
			func(msgs []StreamMessage) []byte {
				return EncodePayload(ProtocolPull, PullResponse{RequestID: 7, Messages: msgs})
			}},
		{"PullBatchPart",
			func(msgs []StreamMessage) int { return FitPullBatchPart(onward, ret, 7, msgs) },
			func(msgs []StreamMessage) []byte {
				return EncodePayload(ProtocolPullBatch, PullBatchPart{RequestID: 7, Messages: msgs})
			}},
	} {
		hit := false
		for dataLen := budget - leadBytes - 40; dataLen <= budget-leadBytes; dataLen++ {
			msgs := append(slices.Clone(lead), StreamMessage{Index: 1000, Data: make([]byte, dataLen)})
			size := TransportMessage{OnwardRoute: onward, ReturnRoute: ret, Payload: kind.encode(msgs)}.Size()
			want := len(lead)
			if size <= MaxFrame {
				want = len(msgs)
			}
			hit = hit || size == MaxFrame+1
			if got := kind.fit(msgs); got != want {
				t.Fatalf("%s: 127 small messages and one of %d bytes (reply %d bytes): fit %d, want %d", kind.name, dataLen, size, got, want)
			}
		}
		if !hit {
			t.Fatalf("%s: the sizes tried never reached one byte over the frame", kind.name)
		}
	}
}
