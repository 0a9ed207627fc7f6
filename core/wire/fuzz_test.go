package wire

import (
	"bytes"
	"testing"
)

// fuzzDecoder checks, for any input, that decode never panics and that every input it
// accepts is canonical: re-encoding the value gives back exactly the input, and Size
// agrees. decode(encode(x)) == x follows: the re-encoding is the input itself, which decodes
// to x. (Decoding it again and comparing the values with reflect.DeepEqual checked nothing
// more, and the comparison costs milliseconds on the large message arrays the mutator
// grows, 15 times the decode: it slowed the fuzzer, and above all its minimization of such
// inputs. Routes no longer grow that large: they are capped at MaxRouteLen addresses.)
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
	})
}

func FuzzTransportMessage(f *testing.F) {
	seeds := []Encoder{
		TransportMessage{OnwardRoute: Route{Local("stream")}, ReturnRoute: Route{Local(localAddr32)},
			Payload: EncodePayload(ProtocolCreate, CreateStreamRequest{StreamName: Some("test-a-b")})},
		TransportMessage{OnwardRoute: Route{TCP("127.0.0.1:4000"), Local("a")}, Payload: []byte{}},
		TransportMessage{},
		// At the route cap and one above it, in each route.
		TransportMessage{OnwardRoute: hops(MaxRouteLen), ReturnRoute: make(Route, MaxRouteLen), Payload: []byte{}},
		TransportMessage{OnwardRoute: hops(MaxRouteLen + 1), Payload: []byte{}},
		TransportMessage{OnwardRoute: Route{Local("a")}, ReturnRoute: make(Route, MaxRouteLen+1), Payload: []byte{}},
	}
	// Messages whose bytes come from Ockam's own tests (see ockam_test.go).
	for _, v := range ockamTransportVectors {
		seeds = append(seeds, v.want)
	}
	fuzzDecoder(f, DecodeTransportMessage, seeds...)
}

func FuzzRoute(f *testing.F) {
	fuzzDecoder(f, DecodeRoute, Route{Local("a"), TCP("h:1"), {Type: 7, Value: []byte{0}}, {Type: 200, Value: []byte("x")}}, Route{},
		hops(MaxRouteLen), hops(MaxRouteLen+1), make(Route, MaxRouteLen), make(Route, MaxRouteLen+1))
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

func FuzzStreamOpenRequest(f *testing.F) {
	fuzzDecoder(f, DecodeStreamOpenRequest, StreamOpenRequest{3, "s"}, StreamOpenRequest{1 << 40, "orders"})
}

func FuzzStreamOpenReply(f *testing.F) {
	fuzzDecoder(f, DecodeStreamOpenReply, StreamOpenReply{3, StatusOK, Some[uint64](4), 2, ""},
		StreamOpenReply{300, StatusOK, Some[uint64](200), 199, ""},
		StreamOpenReply{3, StatusOK, None[uint64](), 0, ""}, StreamOpenReply{3, StatusError, None[uint64](), 0, "backend down"})
}

func FuzzRequestError(f *testing.F) {
	fuzzDecoder(f, DecodeRequestError, RequestError{5, ProtocolPullWait, "fetch failed"})
}

// FuzzPullBatchPartHeader checks, for any input, that PullBatchPartHeader never panics,
// that what it accepts starts with the canonical encoding of its request id and More flag,
// and that it agrees with DecodePullBatchPart on every input that decodes.
func FuzzPullBatchPartHeader(f *testing.F) {
	for _, p := range []PullBatchPart{
		{1, true, []StreamMessage{{5, []byte("hi")}, {7, nil}}},
		{1 << 40, false, nil},
		{0, false, []StreamMessage{}},
	} {
		b := Encode(p)
		f.Add(b)
		for n := range len(b) {
			f.Add(b[:n])
		}
	}
	f.Add([]byte{0x01, 0x02})                                                       // More is neither 0 nor 1
	f.Add([]byte{0x80, 0x00, 0x01})                                                 // overlong request id
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00}) // overflows
	f.Fuzz(func(t *testing.T, in []byte) {
		id, more, ok := PullBatchPartHeader(in)
		if p, err := DecodePullBatchPart(in); err == nil {
			if !ok || id != p.RequestID || more != p.More {
				t.Fatalf("PullBatchPartHeader = %d, %v, %v; DecodePullBatchPart = %d, %v", id, more, ok, p.RequestID, p.More)
			}
		}
		if !ok {
			return
		}
		if head := AppendBool(AppendUint(nil, id), more); !bytes.HasPrefix(in, head) {
			t.Fatalf("accepted header %d, %v of % x, which does not start with its encoding % x", id, more, in, head)
		}
	})
}

// FuzzRequestIDOf checks, for any input, that RequestIDOf never panics, that what it
// accepts starts with the canonical encoding of the id, and that it agrees with the
// decoders of extension requests and replies on every input they accept.
func FuzzRequestIDOf(f *testing.F) {
	for _, v := range []Encoder{
		PushBatchRequest{9, [][]byte{[]byte("a"), {}}},
		PullBatchRequest{1 << 40, 2, 3, 1000, 1 << 20},
		RequestError{5, ProtocolPullWait, "fetch failed"},
		IndexReply{2, StatusOK, Some[uint64](10)},
	} {
		b := Encode(v)
		f.Add(b)
		for n := range len(b) {
			f.Add(b[:n])
		}
	}
	f.Add([]byte{0x80, 0x00})                                                 // overlong
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}) // overflows
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // max uint64
	decoders := []struct {
		name string
		id   func([]byte) (uint64, error)
	}{
		{"PushBatchRequest", func(b []byte) (uint64, error) { v, err := DecodePushBatchRequest(b); return v.RequestID, err }},
		{"PullBatchRequest", func(b []byte) (uint64, error) { v, err := DecodePullBatchRequest(b); return v.RequestID, err }},
		{"PullBatchPart", func(b []byte) (uint64, error) { v, err := DecodePullBatchPart(b); return v.RequestID, err }},
		{"RequestError", func(b []byte) (uint64, error) { v, err := DecodeRequestError(b); return v.RequestID, err }},
		{"IndexReply", func(b []byte) (uint64, error) { v, err := DecodeIndexReply(b); return v.RequestID, err }},
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		id, ok := RequestIDOf(in)
		for _, d := range decoders {
			if want, err := d.id(in); err == nil && (!ok || id != want) {
				t.Fatalf("RequestIDOf = %d, %v; Decode%s gives request id %d", id, ok, d.name, want)
			}
		}
		if !ok {
			return
		}
		if head := AppendUint(nil, id); !bytes.HasPrefix(in, head) {
			t.Fatalf("accepted id %d of % x, which does not start with its encoding % x", id, in, head)
		}
	})
}

// FuzzPeekPushBatchRequest checks that PeekPushBatchRequest never panics and agrees with
// DecodePushBatchRequest on every request that decodes.
func FuzzPeekPushBatchRequest(f *testing.F) {
	f.Add(PushBatchRequest{9, [][]byte{[]byte("a"), {}}}.Append(nil))
	f.Add(PushBatchRequest{1 << 40, make([][]byte, 300)}.Append(nil))
	f.Add([]byte{7, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, n, perr := PeekPushBatchRequest(b)
		req, err := DecodePushBatchRequest(b)
		if err != nil {
			return
		}
		if perr != nil || id != req.RequestID || n != len(req.Messages) {
			t.Fatalf("PeekPushBatchRequest = %d, %d, %v; the request decodes with id %d and %d messages", id, n, perr, req.RequestID, len(req.Messages))
		}
	})
}
