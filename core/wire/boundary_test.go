package wire

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// TestFitPullExactBoundary checks FitPullResponse and FitPullBatchPart at the exact frame
// boundary: for every message size around the one that fills a frame to the byte, a
// message fits if and only if its reply encodes to at most MaxFrame bytes.
func TestFitPullExactBoundary(t *testing.T) {
	onward := Route{Local(localAddr32)}
	ret := Route{Local("stream.s.0")}
	budget := FramePayloadBudget(onward, ret)
	for _, kind := range pullReplyKinds(onward, ret) {
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

// hops returns a route of n distinct local addresses.
func hops(n int) Route {
	r := make(Route, n)
	for i := range r {
		r[i] = Local(fmt.Sprintf("hop%d", i))
	}
	return r
}

// TestMaxRouteLenDecode checks the decoders at the route cap: a route of exactly
// MaxRouteLen addresses decodes, in either route of a TransportMessage; one more is refused
// by its count, with an error that names the count and the limit.
func TestMaxRouteLenDecode(t *testing.T) {
	at, over := hops(MaxRouteLen), hops(MaxRouteLen+1)
	if d, err := DecodeRoute(at.Append(nil)); err != nil || !d.Equal(at) {
		t.Fatalf("DecodeRoute of %d addresses = %d addresses, %v; want it decoded", MaxRouteLen, len(d), err)
	}
	m := TransportMessage{OnwardRoute: at, ReturnRoute: at, Payload: []byte("x")}
	if d, err := DecodeTransportMessage(m.Append(nil)); err != nil || !d.OnwardRoute.Equal(at) || !d.ReturnRoute.Equal(at) {
		t.Fatalf("DecodeTransportMessage with two routes of %d addresses: %v", MaxRouteLen, err)
	}

	// Two-byte addresses: the densest route, the one the cap is for.
	empty := make(Route, MaxRouteLen+1)
	for _, c := range []struct {
		name   string
		in     []byte
		offset int // of the route's count
		decode func([]byte) error
	}{
		{"route", over.Append(nil), 0, func(b []byte) error { _, err := DecodeRoute(b); return err }},
		{"empty addresses", empty.Append(nil), 0, func(b []byte) error { _, err := DecodeRoute(b); return err }},
		{"onward route", TransportMessage{OnwardRoute: over, ReturnRoute: at}.Append(nil), 1,
			func(b []byte) error { _, err := DecodeTransportMessage(b); return err }},
		{"return route", TransportMessage{OnwardRoute: at, ReturnRoute: over}.Append(nil), 1 + at.Size(),
			func(b []byte) error { _, err := DecodeTransportMessage(b); return err }},
	} {
		err := c.decode(c.in)
		var de *DecodeError
		if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrRouteTooLong) {
			t.Fatalf("%s of %d addresses: err = %v, want a *DecodeError matching ErrMalformed and ErrRouteTooLong", c.name, MaxRouteLen+1, err)
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(MaxRouteLen+1)) || !strings.Contains(msg, fmt.Sprintf("limit of %d", MaxRouteLen)) {
			t.Errorf("%s: error %q does not name the count %d and the limit %d", c.name, msg, MaxRouteLen+1, MaxRouteLen)
		}
		if de.Offset != c.offset {
			t.Errorf("%s: error at offset %d, want %d (the route's count)", c.name, de.Offset, c.offset)
		}
	}
}

// TestMaxRouteLenEncode checks that the frame encoder refuses what the decoder refuses: a
// route of MaxRouteLen addresses is framed, one more in either route is refused with
// ErrRouteTooLong (and core.ErrInvalidArgument), not ErrFrameTooLarge, and dst is left as
// it was.
func TestMaxRouteLenEncode(t *testing.T) {
	at, over := hops(MaxRouteLen), hops(MaxRouteLen+1)
	ok := TransportMessage{OnwardRoute: at, ReturnRoute: at, Payload: []byte("x")}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate with routes of %d addresses: %v", MaxRouteLen, err)
	}
	frame, err := AppendFrame(nil, ok)
	if err != nil {
		t.Fatalf("AppendFrame with routes of %d addresses: %v", MaxRouteLen, err)
	}
	if _, err := DecodeTransportMessage(frame[FrameHeaderLen:]); err != nil {
		t.Fatalf("a framed message does not decode: %v", err)
	}
	for _, m := range []TransportMessage{
		{OnwardRoute: over, ReturnRoute: at},
		{OnwardRoute: at, ReturnRoute: over},
	} {
		if m.Size() > MaxFrame {
			t.Fatalf("test message of %d bytes is above MaxFrame: it would not test the route check alone", m.Size())
		}
		err := m.Validate()
		if !errors.Is(err, ErrRouteTooLong) || !errors.Is(err, core.ErrInvalidArgument) || errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("Validate with %d onward and %d return addresses: err = %v, want ErrRouteTooLong and core.ErrInvalidArgument", len(m.OnwardRoute), len(m.ReturnRoute), err)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(MaxRouteLen+1)) || !strings.Contains(err.Error(), fmt.Sprintf("limit is %d", MaxRouteLen)) {
			t.Errorf("error %q does not name the count and the limit", err)
		}
		dst := []byte("keep")
		got, err := AppendFrame(dst, m)
		if !errors.Is(err, ErrRouteTooLong) || string(got) != "keep" {
			t.Fatalf("AppendFrame with %d onward and %d return addresses = %q, %v; want dst unchanged and ErrRouteTooLong", len(m.OnwardRoute), len(m.ReturnRoute), got, err)
		}
	}
}

// TestMaxPushBatch: the OK confirm of a sluice_push_batch of MaxPushBatch(budget) messages
// fits in budget bytes of payload even with the longest request id and indexes, and that of
// one more message might not (PushBatchConfirmFits agrees with the encoding).
func TestMaxPushBatch(t *testing.T) {
	for _, budget := range []int{0, 5, 40, 100, 1000, 65_000, MaxFrame} {
		n := MaxPushBatch(budget)
		confirm := func(n int) []byte {
			idx := make([]uint64, n)
			for i := range idx {
				idx[i] = math.MaxUint64
			}
			return AppendPayload(nil, ProtocolPushBatch, PushBatchConfirm{RequestID: math.MaxUint64, Indexes: idx})
		}
		if n > 0 && len(confirm(n)) > budget {
			t.Errorf("budget %d: the confirm of MaxPushBatch = %d messages takes %d bytes", budget, n, len(confirm(n)))
		}
		if len(confirm(n+1)) <= budget {
			t.Errorf("budget %d: the confirm of %d messages, one more than MaxPushBatch, takes %d bytes: it fits", budget, n+1, len(confirm(n+1)))
		}
		if n > 0 && (!PushBatchConfirmFits(budget, math.MaxUint64, n) || PushBatchConfirmFits(budget, math.MaxUint64, n+1)) {
			t.Errorf("budget %d: PushBatchConfirmFits disagrees with MaxPushBatch = %d", budget, n)
		}
	}
	if n := MaxPushBatch(MaxFrame); n < 6000 {
		t.Errorf("MaxPushBatch(MaxFrame) = %d, want some 6,500", n)
	}
}

// pullReplyKind is a pull reply that carries stream messages: fit counts how many of msgs
// fit it in one frame on the routes, encode encodes it with msgs.
type pullReplyKind struct {
	name   string
	fit    func(msgs []StreamMessage) int
	encode func(msgs []StreamMessage) []byte
}

// pullReplyKinds returns the pull replies that carry messages from ret to onward.
func pullReplyKinds(onward, ret Route) []pullReplyKind {
	return []pullReplyKind{
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
	}
}
