package wire

import (
	"errors"
	"math"
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
	for _, kind := range pullReplyKinds(onward, ret) {
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

// TestPeekPushBatchRequestChecksCount checks that PeekPushBatchRequest refuses a message
// count that the remaining bytes cannot hold (each message takes at least one byte), so a
// receiver never sizes anything by it.
func TestPeekPushBatchRequestChecksCount(t *testing.T) {
	for _, in := range [][]byte{
		{0x01, 0x01},                         // one message, no bytes for it
		{0x01, 0x03, 0x00, 0x00},             // three messages, two bytes
		{0x01, 0xff, 0xff, 0xff, 0xff, 0x0f}, // 2^32-1 messages
	} {
		if id, n, err := PeekPushBatchRequest(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("PeekPushBatchRequest(% x) = %d, %d, %v; want ErrMalformed", in, id, n, err)
		}
	}
	id, n, err := PeekPushBatchRequest(Encode(PushBatchRequest{RequestID: 9, Messages: [][]byte{nil, []byte("ab")}}))
	if id != 9 || n != 2 || err != nil {
		t.Fatalf("PeekPushBatchRequest of a valid request = %d, %d, %v; want 9, 2, nil", id, n, err)
	}
}

// TestPushBatchConfirmFitsExactly checks PushBatchConfirmFits against the size of the
// longest confirm it stands for (every index at its longest encoding), at the byte.
func TestPushBatchConfirmFitsExactly(t *testing.T) {
	for _, id := range []uint64{0, 300, math.MaxUint64} {
		for _, n := range []int{0, 1, 127, 128, 1000} {
			idx := make([]uint64, n)
			for i := range idx {
				idx[i] = math.MaxUint64
			}
			size := PayloadSize(ProtocolPushBatch, PushBatchConfirm{RequestID: id, Status: StatusOK, Indexes: idx})
			if !PushBatchConfirmFits(size, id, n) {
				t.Errorf("id %d, %d messages: the confirm takes %d bytes and does not fit in %d", id, n, size, size)
			}
			if PushBatchConfirmFits(size-1, id, n) {
				t.Errorf("id %d, %d messages: the confirm takes %d bytes and fits in %d", id, n, size, size-1)
			}
		}
	}
}

// TestIsExtension checks that only names in the sluice_ namespace are extensions.
func TestIsExtension(t *testing.T) {
	for p, want := range map[string]bool{
		ProtocolPullWait: true, ProtocolRequestError: true, "sluice_future": true,
		ProtocolPush: false, ProtocolError: false, "sluice": false, "sluicex_pull": false, "": false,
	} {
		if got := IsExtension(p); got != want {
			t.Errorf("IsExtension(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestBasePayloadProtocolMustBeUTF8 checks that a protocol name that is no known one is
// still checked as a string.
func TestBasePayloadProtocolMustBeUTF8(t *testing.T) {
	_, err := DecodeBasePayload([]byte{0x02, 0xc3, 0x28, 0x00})
	var de *DecodeError
	if !errors.As(err, &de) || !strings.Contains(de.Reason, "UTF-8") || de.Offset != 0 {
		t.Fatalf("protocol name of invalid UTF-8: err = %v, want a UTF-8 DecodeError at offset 0", err)
	}
}

// TestDecodeErrorOffsets checks that a value refused for what it holds is reported at the
// offset where it starts.
func TestDecodeErrorOffsets(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		decode func([]byte) (Encoder, error)
		offset int
	}{
		{"invalid utf-8", []byte{0x07, 0x02, 0xc3, 0x28}, dec(DecodeStreamInfoRequest), 1},
		{"unknown status", []byte{0x81, 0x01, 0x02, 0x00}, dec(DecodePushConfirm), 2},
		{"optional flag 2", []byte{0x01, 0x00, 0x02}, dec(DecodeIndexReply), 2},
		{"bool 2", []byte{0x81, 0x01, 0x02, 0x00}, dec(DecodePullBatchPart), 2},
		{"address type 256", []byte{0x01, 0x02, 0x00, 0x00, 0x80, 0x02, 0x00, 0x00, 0x00}, dec(DecodeTransportMessage), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.decode(tt.in)
			var de *DecodeError
			if !errors.As(err, &de) || de.Offset != tt.offset {
				t.Fatalf("err = %v, want a DecodeError at offset %d", err, tt.offset)
			}
		})
	}
}

// TestReadArrayLenClampsMinItemSize checks that a minimum item size below 1 counts as 1: a
// count is still checked against the bytes left.
func TestReadArrayLenClampsMinItemSize(t *testing.T) {
	for _, min := range []int{0, -1} {
		r := NewReader([]byte{0x02, 0xaa, 0xbb}, "T")
		if n := r.ReadArrayLen(min); n != 2 || r.Err() != nil {
			t.Errorf("ReadArrayLen(%d) of 2 items in 2 bytes = %d, %v; want 2, nil", min, n, r.Err())
		}
		r = NewReader([]byte{0x03, 0xaa, 0xbb}, "T")
		if n := r.ReadArrayLen(min); n != 0 || !errors.Is(r.Err(), ErrMalformed) {
			t.Errorf("ReadArrayLen(%d) of 3 items in 2 bytes = %d, %v; want 0, ErrMalformed", min, n, r.Err())
		}
	}
}
