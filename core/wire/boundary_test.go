package wire

import (
	"errors"
	"strings"
	"testing"
)

// TestFitPullExactBoundary checks FitPullResponse and FitPullBatchPart at the exact frame
// boundary: for every message size around the one that fills a frame to the byte, a
// message fits if and only if its reply encodes to at most MaxFrame bytes.
func TestFitPullExactBoundary(t *testing.T) {
	onward := Route{Local(localAddr32)}
	ret := Route{Local("stream.s.0")}
	budget := FramePayloadBudget(onward, ret)
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
		for _, lead := range []int{0, 1, 3} { // small messages before the one that may not fit
			hit := false
			for dataLen := budget - 60; dataLen <= budget; dataLen++ {
				msgs := make([]StreamMessage, 0, lead+1)
				for i := range lead {
					msgs = append(msgs, StreamMessage{Index: uint64(i), Data: []byte("x")})
				}
				msgs = append(msgs, StreamMessage{Index: 300, Data: make([]byte, dataLen-lead*4)})
				size := TransportMessage{OnwardRoute: onward, ReturnRoute: ret, Payload: kind.encode(msgs)}.Size()
				want := lead
				if size <= MaxFrame {
					want = lead + 1
				}
				hit = hit || size == MaxFrame || size == MaxFrame+1
				if got := kind.fit(msgs); got != want {
					t.Fatalf("%s: %d small messages and one of %d bytes (reply %d bytes): fit %d, want %d", kind.name, lead, dataLen-lead*4, size, got, want)
				}
			}
			if !hit {
				t.Fatalf("%s: the sizes tried never reached the frame boundary", kind.name)
			}
		}
	}
}

// TestRouteCountBound checks that a route whose address count cannot fit in the input
// (each address takes at least 2 bytes) is refused by its count, before addresses are
// allocated for it.
func TestRouteCountBound(t *testing.T) {
	for _, in := range [][]byte{
		{0x03, 0x00, 0x00, 0x00},       // 3 addresses in 3 bytes
		{0x02, 0x00, 0x00, 0x00},       // 2 in 3 bytes (the second would be truncated)
		{0x05, 0, 0, 0, 0, 0, 0, 0, 0}, // 5 in 8 bytes
	} {
		_, err := DecodeRoute(in)
		var de *DecodeError
		if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeRoute(% x): err = %v, want a *DecodeError matching ErrMalformed", in, err)
		}
		if !strings.Contains(de.Reason, "array count") {
			t.Errorf("DecodeRoute(% x): reason %q, want the address count refused", in, de.Reason)
		}
	}
}
