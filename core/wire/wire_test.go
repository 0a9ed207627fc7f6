package wire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// localAddr32 is a 32-hex-character local address, like the ones Ockam generates.
const localAddr32 = "0123456789abcdef0123456789abcdef"

// TestGoldenStreamCreate spells out, byte by byte, a stream_create for "test-a-b" sent from a
// 32-hex-character local address to the local address "stream".
func TestGoldenStreamCreate(t *testing.T) {
	want := []byte{
		0x01, // TransportMessage version 1

		0x01,                         // onward_route: 1 address
		0x00,                         //   type 0 (local)
		0x06,                         //   value length 6
		's', 't', 'r', 'e', 'a', 'm', //     "stream"

		0x01, // return_route: 1 address
		0x00, //   type 0 (local)
		0x20, //   value length 32
		'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
		'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',

		0x19, // payload length 25 (BasePayload)
		0x0d, //   protocol length 13
		's', 't', 'r', 'e', 'a', 'm', '_', 'c', 'r', 'e', 'a', 't', 'e',
		0x0a, //   data length 10 (CreateStreamRequest)
		0x01, //     stream_name: optional present
		0x08, //     string length 8
		't', 'e', 's', 't', '-', 'a', '-', 'b',
	}
	if len(want) != 71 {
		t.Fatalf("hand-written golden message is %d bytes, want 71", len(want))
	}
	msg := TransportMessage{
		OnwardRoute: Route{Local("stream")},
		ReturnRoute: Route{Local(localAddr32)},
		Payload:     EncodePayload(ProtocolCreate, CreateStreamRequest{StreamName: Some("test-a-b")}),
	}
	if got := msg.Size(); got != 71 {
		t.Errorf("Size() = %d, want 71", got)
	}
	got := msg.Append(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding mismatch\n got % x\nwant % x", got, want)
	}

	// And back: decode the hand-written bytes level by level.
	dm, err := DecodeTransportMessage(want)
	if err != nil {
		t.Fatal(err)
	}
	if !dm.OnwardRoute.Equal(msg.OnwardRoute) || !dm.ReturnRoute.Equal(msg.ReturnRoute) {
		t.Fatalf("routes: got %v, want %v", dm, msg)
	}
	bp, err := DecodeBasePayload(dm.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if bp.Protocol != ProtocolCreate {
		t.Fatalf("protocol %q", bp.Protocol)
	}
	req, err := DecodeCreateStreamRequest(bp.Data)
	if err != nil {
		t.Fatal(err)
	}
	if req.StreamName != Some("test-a-b") {
		t.Fatalf("stream name %v", req.StreamName)
	}

	// With the TCP frame header.
	frame, err := AppendFrame(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frame[:2], []byte{0x00, 71}) || !bytes.Equal(frame[2:], want) {
		t.Fatalf("frame % x", frame)
	}
}

// TestGoldenPayloads checks every payload type against bytes written by hand from the
// schemas in docs/protocol.md.
func TestGoldenPayloads(t *testing.T) {
	tests := []struct {
		name   string
		v      Encoder
		want   []byte
		decode func([]byte) (Encoder, error)
	}{
		{"CreateStreamRequest/none", CreateStreamRequest{}, []byte{0x00}, dec(DecodeCreateStreamRequest)},
		{"CreateStreamPartitionedRequest", CreateStreamPartitionedRequest{StreamName: Some("s"), Partitions: 4},
			[]byte{0x01, 0x01, 's', 0x04}, dec(DecodeCreateStreamPartitionedRequest)},
		{"CreateStreamPartitionedRequest/none", CreateStreamPartitionedRequest{Partitions: 200},
			[]byte{0x00, 0xc8, 0x01}, dec(DecodeCreateStreamPartitionedRequest)},
		{"Init", Init{StreamName: "abc"}, []byte{0x03, 'a', 'b', 'c'}, dec(DecodeInit)},
		{"InitPartitioned", InitPartitioned{StreamName: "s", Partition: 2}, []byte{0x01, 's', 0x02}, dec(DecodeInitPartitioned)},
		{"PushRequest", PushRequest{RequestID: 300, Data: []byte("hi")},
			[]byte{0xac, 0x02, 0x02, 'h', 'i'}, dec(DecodePushRequest)},
		{"PushConfirm/ok", PushConfirm{RequestID: 1, Status: StatusOK, Index: 0}, []byte{0x01, 0x00, 0x00}, dec(DecodePushConfirm)},
		{"PushConfirm/error", PushConfirm{RequestID: 127, Status: StatusError, Index: 128},
			[]byte{0x7f, 0x01, 0x80, 0x01}, dec(DecodePushConfirm)},
		{"PullRequest", PullRequest{RequestID: 5, Index: 16384, Limit: 10},
			[]byte{0x05, 0x80, 0x80, 0x01, 0x0a}, dec(DecodePullRequest)},
		{"PullResponse/empty", PullResponse{RequestID: 3}, []byte{0x03, 0x00}, dec(DecodePullResponse)},
		{"PullResponse", PullResponse{RequestID: 7, Messages: []StreamMessage{{0, []byte("a")}, {128, []byte("bc")}}},
			[]byte{0x07, 0x02, 0x00, 0x01, 'a', 0x80, 0x01, 0x02, 'b', 'c'}, dec(DecodePullResponse)},
		{"IndexRequest/get", IndexRequest{Op: IndexGet, ClientID: "c1", StreamName: "s"},
			[]byte{0x00, 0x02, 'c', '1', 0x01, 's'}, dec(DecodeIndexRequest)},
		{"IndexRequest/save", IndexRequest{Op: IndexSave, ClientID: "c1", StreamName: "s", Index: 5},
			[]byte{0x01, 0x02, 'c', '1', 0x01, 's', 0x05}, dec(DecodeIndexRequest)},
		{"IndexResponse/none", IndexResponse{ClientID: "c1", StreamName: "s"},
			[]byte{0x02, 'c', '1', 0x01, 's', 0x00}, dec(DecodeIndexResponse)},
		{"IndexResponse/some", IndexResponse{ClientID: "c1", StreamName: "s", Index: Some[uint64](129)},
			[]byte{0x02, 'c', '1', 0x01, 's', 0x01, 0x81, 0x01}, dec(DecodeIndexResponse)},
		{"IndexRequestPartitioned/get", IndexRequestPartitioned{Op: IndexGet, ClientID: "c", StreamName: "s", Partition: 3},
			[]byte{0x00, 0x01, 'c', 0x01, 's', 0x03}, dec(DecodeIndexRequestPartitioned)},
		{"IndexRequestPartitioned/save", IndexRequestPartitioned{Op: IndexSave, ClientID: "c", StreamName: "s", Partition: 3, Index: 9},
			[]byte{0x01, 0x01, 'c', 0x01, 's', 0x03, 0x09}, dec(DecodeIndexRequestPartitioned)},
		{"IndexResponsePartitioned", IndexResponsePartitioned{ClientID: "c", StreamName: "s", Partition: 1, Index: Some[uint64](0)},
			[]byte{0x01, 'c', 0x01, 's', 0x01, 0x01, 0x00}, dec(DecodeIndexResponsePartitioned)},
		{"Error", Error{Reason: "bad"}, []byte{0x03, 'b', 'a', 'd'}, dec(DecodeErrorPayload)},
		{"Binary", Binary{Data: []byte{0xff}}, []byte{0x01, 0xff}, dec(DecodeBinary)},
		{"PullWaitRequest", PullWaitRequest{RequestID: 1, Index: 2, Limit: 3, WaitMS: 1000},
			[]byte{0x01, 0x02, 0x03, 0xe8, 0x07}, dec(DecodePullWaitRequest)},
		{"PullBatchRequest", PullBatchRequest{RequestID: 1, Index: 2, Limit: 3, WaitMS: 1000, MaxBytes: 65536},
			[]byte{0x01, 0x02, 0x03, 0xe8, 0x07, 0x80, 0x80, 0x04}, dec(DecodePullBatchRequest)},
		{"PullBatchPart/more", PullBatchPart{RequestID: 1, More: true, Messages: []StreamMessage{{Index: 5, Data: []byte("hi")}}},
			[]byte{0x01, 0x01, 0x01, 0x05, 0x02, 'h', 'i'}, dec(DecodePullBatchPart)},
		{"PullBatchPart/last", PullBatchPart{RequestID: 1, Messages: []StreamMessage{}},
			[]byte{0x01, 0x00, 0x00}, dec(DecodePullBatchPart)},
		{"PushBatchRequest", PushBatchRequest{RequestID: 9, Messages: [][]byte{[]byte("a"), {}}},
			[]byte{0x09, 0x02, 0x01, 'a', 0x00}, dec(DecodePushBatchRequest)},
		{"PushBatchConfirm", PushBatchConfirm{RequestID: 9, Status: StatusOK, Indexes: []uint64{1, 300}},
			[]byte{0x09, 0x00, 0x02, 0x01, 0xac, 0x02}, dec(DecodePushBatchConfirm)},
		{"IndexSaveRequest", IndexSaveRequest{RequestID: 1, ClientID: "c", StreamName: "s", Partition: 0, Index: 10},
			[]byte{0x01, 0x01, 'c', 0x01, 's', 0x00, 0x0a}, dec(DecodeIndexSaveRequest)},
		{"IndexGetRequest", IndexGetRequest{RequestID: 2, ClientID: "c", StreamName: "s", Partition: 1},
			[]byte{0x02, 0x01, 'c', 0x01, 's', 0x01}, dec(DecodeIndexGetRequest)},
		{"IndexReply/none", IndexReply{RequestID: 2, Status: StatusOK}, []byte{0x02, 0x00, 0x00}, dec(DecodeIndexReply)},
		{"IndexReply/some", IndexReply{RequestID: 2, Status: StatusOK, Index: Some[uint64](10)},
			[]byte{0x02, 0x00, 0x01, 0x0a}, dec(DecodeIndexReply)},
		{"StreamInfoRequest", StreamInfoRequest{RequestID: 3, StreamName: "s"}, []byte{0x03, 0x01, 's'}, dec(DecodeStreamInfoRequest)},
		{"StreamInfoReply/some", StreamInfoReply{RequestID: 3, Status: StatusOK, Partitions: Some[uint64](4)},
			[]byte{0x03, 0x00, 0x01, 0x04, 0x00}, dec(DecodeStreamInfoReply)},
		{"StreamInfoReply/none", StreamInfoReply{RequestID: 3, Status: StatusOK}, []byte{0x03, 0x00, 0x00, 0x00}, dec(DecodeStreamInfoReply)},
		{"StreamInfoReply/error", StreamInfoReply{RequestID: 3, Status: StatusError, Reason: "x"},
			[]byte{0x03, 0x01, 0x00, 0x01, 'x'}, dec(DecodeStreamInfoReply)},
		{"StreamOpenRequest", StreamOpenRequest{RequestID: 3, StreamName: "s"}, []byte{0x03, 0x01, 's'}, dec(DecodeStreamOpenRequest)},
		{"StreamOpenReply/partition", StreamOpenReply{RequestID: 3, Status: StatusOK, Partitions: Some[uint64](4), Partition: 2},
			[]byte{0x03, 0x00, 0x01, 0x04, 0x02, 0x00}, dec(DecodeStreamOpenReply)},
		{"StreamOpenReply/large", StreamOpenReply{RequestID: 300, Status: StatusOK, Partitions: Some[uint64](200), Partition: 199},
			[]byte{0xac, 0x02, 0x00, 0x01, 0xc8, 0x01, 0xc7, 0x01, 0x00}, dec(DecodeStreamOpenReply)},
		{"StreamOpenReply/none", StreamOpenReply{RequestID: 3, Status: StatusOK}, []byte{0x03, 0x00, 0x00, 0x00, 0x00}, dec(DecodeStreamOpenReply)},
		{"StreamOpenReply/error", StreamOpenReply{RequestID: 3, Status: StatusError, Reason: "x"},
			[]byte{0x03, 0x01, 0x00, 0x00, 0x01, 'x'}, dec(DecodeStreamOpenReply)},
		{"RequestError", RequestError{RequestID: 5, Protocol: "sluice_x", Reason: "bad"},
			[]byte{0x05, 0x08, 's', 'l', 'u', 'i', 'c', 'e', '_', 'x', 0x03, 'b', 'a', 'd'}, dec(DecodeRequestError)},
		{"BasePayload", BasePayload{Protocol: "binary", Data: []byte{0x01, 0x07}},
			[]byte{0x06, 'b', 'i', 'n', 'a', 'r', 'y', 0x02, 0x01, 0x07}, dec(DecodeBasePayload)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.Size(); got != len(tt.want) {
				t.Errorf("Size() = %d, want %d", got, len(tt.want))
			}
			if got := Encode(tt.v); !bytes.Equal(got, tt.want) {
				t.Fatalf("Encode = % x, want % x", got, tt.want)
			}
			// Append appends: existing bytes stay.
			if got := tt.v.Append([]byte{0xee}); !bytes.Equal(got, append([]byte{0xee}, tt.want...)) {
				t.Fatalf("Append to prefix = % x", got)
			}
			got, err := tt.decode(tt.want)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !equalEncoders(got, tt.v) {
				t.Fatalf("decode = %#v, want %#v", got, tt.v)
			}
			// Strict: a trailing byte is an error, and so is every truncation.
			if _, err := tt.decode(append(append([]byte(nil), tt.want...), 0x00)); !errors.Is(err, ErrMalformed) {
				t.Errorf("trailing byte: err = %v, want ErrMalformed", err)
			}
			for n := 0; n < len(tt.want); n++ {
				if _, err := tt.decode(tt.want[:n]); !errors.Is(err, ErrMalformed) {
					t.Errorf("truncated to %d bytes: err = %v, want ErrMalformed", n, err)
				}
			}
		})
	}
}

func dec[T Encoder](f func([]byte) (T, error)) func([]byte) (Encoder, error) {
	return func(b []byte) (Encoder, error) {
		v, err := f(b)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
}

// equalEncoders compares by encoding: nil and empty byte slices are the same message.
func equalEncoders(a, b Encoder) bool {
	return reflect.TypeOf(a) == reflect.TypeOf(b) && bytes.Equal(Encode(a), Encode(b))
}

func TestUint(t *testing.T) {
	tests := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{300, []byte{0xac, 0x02}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{math.MaxUint32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{math.MaxUint64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, tt := range tests {
		got := AppendUint(nil, tt.v)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("AppendUint(%d) = % x, want % x", tt.v, got, tt.want)
		}
		if n := UintSize(tt.v); n != len(tt.want) {
			t.Errorf("UintSize(%d) = %d, want %d", tt.v, n, len(tt.want))
		}
		r := NewReader(tt.want, "uint")
		if v := r.ReadUint(); v != tt.v || r.Finish() != nil {
			t.Errorf("Uint(% x) = %d, %v", tt.want, v, r.Err())
		}
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		decode func([]byte) (Encoder, error)
		reason string
	}{
		{"overlong uint 0", []byte{0x80, 0x00, 0x00, 0x00}, dec(DecodePullRequest), "overlong"},
		{"overlong uint 1", []byte{0x81, 0x00, 0x00, 0x00}, dec(DecodePullRequest), "overlong"},
		{"uint overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0}, dec(DecodePullRequest), "overflows"},
		{"uint 11 bytes", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00}, dec(DecodePullRequest), "overflows"},
		{"truncated uint", []byte{0x80}, dec(DecodePullRequest), "truncated uint"},
		{"data longer than input", []byte{0x01, 0x05, 'a'}, dec(DecodePushRequest), "exceeds"},
		{"data length overflows int", []byte{0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, dec(DecodePushRequest), "exceeds"},
		{"optional flag 2", []byte{0x02, 0x01, 's'}, dec(DecodeCreateStreamRequest), "optional flag 2"},
		{"bool 2", []byte{0x01, 0x02, 0x00}, dec(DecodePullBatchPart), "more: bool 2"},
		{"invalid utf-8", []byte{0x02, 0xc3, 0x28}, dec(DecodeInit), "UTF-8"},
		{"unknown status", []byte{0x01, 0x02, 0x00}, dec(DecodePushConfirm), "unknown status 2"},
		{"unknown index tag", []byte{0x02, 0x01, 'c', 0x01, 's'}, dec(DecodeIndexRequest), "unknown index request tag 2"},
		{"array count too big", []byte{0x01, 0x03, 0x00, 0x00, 0x00}, dec(DecodePullResponse), "array count 3"},
		{"huge array count", []byte{0x01, 0xff, 0xff, 0xff, 0xff, 0x0f}, dec(DecodePushBatchRequest), "array count"},
		{"trailing bytes", []byte{0x01, 0x02, 0x03, 0x04}, dec(DecodePullRequest), "1 trailing byte"},
		// Strict decoding that the round trips above do not reach.
		{"partitioned index tag 2", []byte{0x02, 0x01, 'c', 0x01, 's', 0x00}, dec(DecodeIndexRequestPartitioned), "unknown index request tag 2"},
		{"push batch confirm status 2", []byte{0x01, 0x02, 0x00}, dec(DecodePushBatchConfirm), "unknown status 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.decode(tt.in)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want a *DecodeError matching ErrMalformed", err)
			}
			if !strings.Contains(de.Reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", de.Reason, tt.reason)
			}
		})
	}
}

func TestTransportMessageVersion(t *testing.T) {
	good := TransportMessage{OnwardRoute: Route{Local("a")}, Payload: []byte{1}}.Append(nil)
	bad := append([]byte(nil), good...)
	bad[0] = 2
	_, err := DecodeTransportMessage(bad)
	if !errors.Is(err, ErrUnsupportedVersion) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("version 2: err = %v, want ErrUnsupportedVersion and ErrMalformed", err)
	}
	if _, err := DecodeTransportMessage(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty input: err = %v", err)
	}
	if _, err := DecodeTransportMessage(good); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeAliasesAndClipsInput(t *testing.T) {
	in := Encode(PushRequest{RequestID: 1, Data: []byte("abc")})
	in = append(in, 'x')[:len(in)] // spare capacity behind the input
	p, err := DecodePushRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	if cap(p.Data) != len(p.Data) {
		t.Fatalf("cap(Data) = %d, want %d (clipped)", cap(p.Data), len(p.Data))
	}
	in[len(in)-1] = 'z' // documented: Data aliases the input
	if string(p.Data) != "abz" {
		t.Fatalf("Data = %q, want aliasing of input", p.Data)
	}
	// Empty data decodes as empty, non-nil.
	e, err := DecodePushRequest([]byte{0x01, 0x00})
	if err != nil || e.Data == nil || len(e.Data) != 0 {
		t.Fatalf("empty data: %#v, %v", e.Data, err)
	}
}

func TestFrameTooLarge(t *testing.T) {
	m := TransportMessage{OnwardRoute: Route{Local("stream")}, ReturnRoute: Route{Local(localAddr32)}}
	budget := FramePayloadBudget(m.OnwardRoute, m.ReturnRoute)
	m.Payload = make([]byte, budget)
	if m.Size() != MaxFrame {
		t.Fatalf("message with the full budget is %d bytes, want exactly %d", m.Size(), MaxFrame)
	}
	f, err := AppendFrame(nil, m)
	if err != nil || len(f) != MaxFrame+2 || f[0] != 0xff || f[1] != 0xff {
		t.Fatalf("max frame: len %d, err %v", len(f), err)
	}
	m.Payload = make([]byte, budget+1)
	dst := []byte{0xaa}
	out, err := AppendFrame(dst, m)
	if !errors.Is(err, ErrFrameTooLarge) || !errors.Is(err, core.ErrMessageTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge matching core.ErrMessageTooLarge", err)
	}
	if len(out) != 1 {
		t.Fatalf("AppendFrame wrote %d bytes on error", len(out)-1)
	}
}

func TestFramePayloadBudget(t *testing.T) {
	for _, routeLen := range []int{0, 1, 100, 1000, 60000, 65530, 70000} {
		onward := Route{Address{Type: AddressLocal, Value: make([]byte, routeLen)}}
		b := FramePayloadBudget(onward, nil)
		if b < 0 {
			if (TransportMessage{OnwardRoute: onward}).Size() <= MaxFrame {
				t.Errorf("route %d: budget %d but an empty payload fits", routeLen, b)
			}
			continue
		}
		fit := TransportMessage{OnwardRoute: onward, Payload: make([]byte, b)}
		over := TransportMessage{OnwardRoute: onward, Payload: make([]byte, b+1)}
		if fit.Size() > MaxFrame || over.Size() <= MaxFrame {
			t.Errorf("route %d: budget %d: fit %d, over %d", routeLen, b, fit.Size(), over.Size())
		}
	}
}

func TestFitPullResponse(t *testing.T) {
	onward := Route{Local(localAddr32), Local("x")}
	ret := Route{Local("stream_abc")}
	for _, kind := range []struct {
		name   string
		fit    func(msgs []StreamMessage) int
		encode func(msgs []StreamMessage) []byte
	}{
		{"PullResponse",
			func(msgs []StreamMessage) int { return FitPullResponse(onward, ret, ProtocolPull, 1<<40, msgs) },
			func(msgs []StreamMessage) []byte {
				return EncodePayload(ProtocolPull, PullResponse{RequestID: 1 << 40, Messages: msgs})
			}},
		{"PullBatchPart",
			func(msgs []StreamMessage) int { return FitPullBatchPart(onward, ret, 1<<40, msgs) },
			func(msgs []StreamMessage) []byte {
				return EncodePayload(ProtocolPullBatch, PullBatchPart{RequestID: 1 << 40, More: true, Messages: msgs})
			}},
	} {
		for _, dataLen := range []int{0, 1, 100, 127, 128, 1000, 16000, 30000, 65000, 70000} {
			msgs := make([]StreamMessage, 200)
			for i := range msgs {
				msgs[i] = StreamMessage{Index: uint64(1000 + i*1000), Data: make([]byte, dataLen)}
			}
			n := kind.fit(msgs)
			size := func(k int) int {
				return TransportMessage{OnwardRoute: onward, ReturnRoute: ret, Payload: kind.encode(msgs[:k])}.Size()
			}
			if n > 0 && size(n) > MaxFrame {
				t.Errorf("%s data %d: %d messages are %d bytes > MaxFrame", kind.name, dataLen, n, size(n))
			}
			if n < len(msgs) && size(n+1) <= MaxFrame {
				t.Errorf("%s data %d: %d messages fit but the fit said %d", kind.name, dataLen, n+1, n)
			}
		}
		if n := kind.fit(nil); n != 0 {
			t.Errorf("%s: no messages: %d", kind.name, n)
		}
	}
}

func TestRouteHelpers(t *testing.T) {
	r, err := ParseRoute("1#127.0.0.1:4000; 0#stream ;hub")
	if err != nil {
		t.Fatal(err)
	}
	want := Route{TCP("127.0.0.1:4000"), Local("stream"), Local("hub")}
	if !r.Equal(want) {
		t.Fatalf("ParseRoute = %v", r)
	}
	if s := r.String(); s != "1#127.0.0.1:4000 => 0#stream => 0#hub" {
		t.Fatalf("String = %q", s)
	}
	if r2, err := ParseRoute(r.String()); err != nil || !r2.Equal(r) {
		t.Fatalf("round trip %v %v", r2, err)
	}
	for _, bad := range []string{"", "x#y", "300#a", "1#"} {
		if _, err := ParseRoute(bad); err == nil {
			t.Errorf("ParseRoute(%q) succeeded", bad)
		}
	}
	p := r.Prepend(Local("me"))
	if len(p) != 4 || !p[0].Equal(Local("me")) || len(r) != 3 {
		t.Fatalf("Prepend = %v, r = %v", p, r)
	}
	c := r.Clone()
	c[0].Value[0] = 'X'
	if r[0].Value[0] == 'X' {
		t.Fatal("Clone aliases values")
	}
	// Address types are BARE uints (Ockam's Elixir encoding): 200 takes two bytes.
	if got := (Address{Type: 200, Value: []byte("x")}).Append(nil); !bytes.Equal(got, []byte{0xc8, 0x01, 0x01, 'x'}) {
		t.Fatalf("type 200 = % x", got)
	}
	if _, err := DecodeRoute([]byte{0x01, 0x80, 0x02, 0x00}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("type 256: %v", err)
	}
	enc := r.Append(nil)
	d, err := DecodeRoute(enc)
	if err != nil || !d.Equal(r) {
		t.Fatalf("DecodeRoute = %v, %v", d, err)
	}
}
