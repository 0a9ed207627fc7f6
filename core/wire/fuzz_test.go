package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// fuzzDecoder checks, for any input, that decode never panics and that every input it
// accepts is canonical: re-encoding the value gives back exactly the input, Size agrees, and
// decoding the re-encoding gives an equal value (decode(encode(x)) == x).
func fuzzDecoder[T Encoder](f *testing.F, decode func([]byte) (T, error), seeds ...Encoder) {
	for _, s := range seeds {
		b := Encode(s)
		f.Add(b)
		if len(b) > 0 {
			f.Add(b[:len(b)-1])
		}
		f.Add(append(b, 0))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := decode(in)
		if err != nil {
			return
		}
		if n := v.Size(); n != len(in) {
			t.Fatalf("Size() = %d for a %d-byte input", n, len(in))
		}
		out := Encode(v)
		if !bytes.Equal(out, in) {
			t.Fatalf("non-canonical: input % x re-encodes as % x", in, out)
		}
		v2, err := decode(out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("decode(encode(x)) = %#v, want %#v", v2, v)
		}
	})
}

func FuzzTransportMessage(f *testing.F) {
	fuzzDecoder(f, DecodeTransportMessage,
		TransportMessage{OnwardRoute: Route{Local("stream")}, ReturnRoute: Route{Local(localAddr32)},
			Payload: EncodePayload(ProtocolCreate, CreateStreamRequest{StreamName: Some("test-a-b")})},
		TransportMessage{OnwardRoute: Route{TCP("127.0.0.1:4000"), Local("a")}, Payload: []byte{}},
		TransportMessage{},
	)
}

func FuzzRoute(f *testing.F) {
	fuzzDecoder(f, DecodeRoute, Route{Local("a"), TCP("h:1"), {Type: 7, Value: []byte{0}}, {Type: 200, Value: []byte("x")}}, Route{})
}

func FuzzBasePayload(f *testing.F) {
	fuzzDecoder(f, DecodeBasePayload, BasePayload{Protocol: ProtocolPush, Data: Encode(PushRequest{1, []byte("x")})})
}

func FuzzCreateStreamRequest(f *testing.F) {
	fuzzDecoder(f, DecodeCreateStreamRequest, CreateStreamRequest{Some("s")}, CreateStreamRequest{})
}

func FuzzCreateStreamPartitionedRequest(f *testing.F) {
	fuzzDecoder(f, DecodeCreateStreamPartitionedRequest, CreateStreamPartitionedRequest{Some("s"), 3})
}

func FuzzInit(f *testing.F) { fuzzDecoder(f, DecodeInit, Init{"test-a-b"}) }

func FuzzInitPartitioned(f *testing.F) {
	fuzzDecoder(f, DecodeInitPartitioned, InitPartitioned{"s", 300})
}

func FuzzPushRequest(f *testing.F) {
	fuzzDecoder(f, DecodePushRequest, PushRequest{300, []byte("hello")}, PushRequest{})
}

func FuzzPushConfirm(f *testing.F) {
	fuzzDecoder(f, DecodePushConfirm, PushConfirm{1, StatusOK, 2}, PushConfirm{1, StatusError, 0})
}

func FuzzPullRequest(f *testing.F) { fuzzDecoder(f, DecodePullRequest, PullRequest{1, 1 << 40, 100}) }

func FuzzPullResponse(f *testing.F) {
	fuzzDecoder(f, DecodePullResponse, PullResponse{7, []StreamMessage{{0, []byte("a")}, {128, nil}}}, PullResponse{})
}

func FuzzIndexRequest(f *testing.F) {
	fuzzDecoder(f, DecodeIndexRequest, IndexRequest{IndexGet, "c", "s", 0}, IndexRequest{IndexSave, "c", "s", 9})
}

func FuzzIndexResponse(f *testing.F) {
	fuzzDecoder(f, DecodeIndexResponse, IndexResponse{"c", "s", Some[uint64](4)}, IndexResponse{"c", "s", None[uint64]()})
}

func FuzzIndexRequestPartitioned(f *testing.F) {
	fuzzDecoder(f, DecodeIndexRequestPartitioned, IndexRequestPartitioned{IndexSave, "c", "s", 1, 2}, IndexRequestPartitioned{IndexGet, "c", "s", 1, 0})
}

func FuzzIndexResponsePartitioned(f *testing.F) {
	fuzzDecoder(f, DecodeIndexResponsePartitioned, IndexResponsePartitioned{"c", "s", 1, Some[uint64](2)})
}

func FuzzErrorPayload(f *testing.F) { fuzzDecoder(f, DecodeErrorPayload, Error{"no such stream"}) }

func FuzzBinary(f *testing.F) { fuzzDecoder(f, DecodeBinary, Binary{[]byte{1, 2, 3}}) }

func FuzzPullWaitRequest(f *testing.F) {
	fuzzDecoder(f, DecodePullWaitRequest, PullWaitRequest{1, 2, 3, 1000})
}

func FuzzPullBatchRequest(f *testing.F) {
	fuzzDecoder(f, DecodePullBatchRequest, PullBatchRequest{1, 2, 3, 1000, 1 << 20})
}

func FuzzPullBatchPart(f *testing.F) {
	fuzzDecoder(f, DecodePullBatchPart, PullBatchPart{1, true, []StreamMessage{{5, []byte("hi")}, {7, nil}}},
		PullBatchPart{1, false, nil})
}

func FuzzPushBatchRequest(f *testing.F) {
	fuzzDecoder(f, DecodePushBatchRequest, PushBatchRequest{9, [][]byte{[]byte("a"), {}}})
}

func FuzzPushBatchConfirm(f *testing.F) {
	fuzzDecoder(f, DecodePushBatchConfirm, PushBatchConfirm{9, StatusOK, []uint64{1, 300}})
}

func FuzzIndexSaveRequest(f *testing.F) {
	fuzzDecoder(f, DecodeIndexSaveRequest, IndexSaveRequest{1, "c", "s", 0, 10})
}

func FuzzIndexGetRequest(f *testing.F) {
	fuzzDecoder(f, DecodeIndexGetRequest, IndexGetRequest{2, "c", "s", 1})
}

func FuzzIndexReply(f *testing.F) {
	fuzzDecoder(f, DecodeIndexReply, IndexReply{2, StatusOK, Some[uint64](10)}, IndexReply{2, StatusError, None[uint64]()})
}

func FuzzStreamInfoRequest(f *testing.F) {
	fuzzDecoder(f, DecodeStreamInfoRequest, StreamInfoRequest{3, "s"})
}

func FuzzStreamInfoReply(f *testing.F) {
	fuzzDecoder(f, DecodeStreamInfoReply, StreamInfoReply{3, StatusOK, Some[uint64](4), ""},
		StreamInfoReply{3, StatusOK, None[uint64](), ""}, StreamInfoReply{3, StatusError, None[uint64](), "backend down"})
}

func FuzzRequestError(f *testing.F) {
	fuzzDecoder(f, DecodeRequestError, RequestError{5, ProtocolPullWait, "fetch failed"})
}
