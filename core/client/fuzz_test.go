package client

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// FuzzSessionHandle feeds arbitrary reply payloads to a session's reply handler: it must
// never panic, and a waiting request gets at most the reply addressed to it.
func FuzzSessionHandle(f *testing.F) {
	for _, seed := range [][]byte{
		wire.EncodePayload(wire.ProtocolPushBatch, wire.PushBatchConfirm{RequestID: 1, Indexes: []uint64{1, 2}}),
		wire.EncodePayload(wire.ProtocolPush, wire.PushConfirm{RequestID: 1, Index: 9}),
		wire.EncodePayload(wire.ProtocolPullWait, wire.PullResponse{RequestID: 1, Messages: []wire.StreamMessage{{Index: 3, Data: []byte("x")}}}),
		wire.EncodePayload(wire.ProtocolIndexGet, wire.IndexReply{RequestID: 1, Index: wire.Some[uint64](4)}),
		wire.EncodePayload(wire.ProtocolCreate, wire.Init{StreamName: "s"}),
		wire.EncodePayload(wire.ProtocolCreatePartitioned, wire.InitPartitioned{StreamName: "s", Partition: 2}),
		wire.EncodePayload(wire.ProtocolError, wire.Error{Reason: "no"}),
		wire.EncodePayload(wire.ProtocolRequestError, wire.RequestError{RequestID: 1, Protocol: wire.ProtocolPullWait, Reason: "no"}),
		wire.EncodePayload(wire.ProtocolRequestError, wire.RequestError{RequestID: 1, Protocol: wire.ProtocolPushBatch, Reason: "no"}),
		wire.EncodePayload(wire.ProtocolStreamInfo, wire.StreamInfoReply{RequestID: 1, Partitions: wire.Some[uint64](2)}),
		wire.EncodePayload(wire.ProtocolPullBatch, wire.PullBatchPart{RequestID: 1, More: true, Messages: []wire.StreamMessage{{Index: 3, Data: []byte("x")}}}),
		wire.EncodePayload(wire.ProtocolPullBatch, wire.PullBatchPart{RequestID: 1, Messages: []wire.StreamMessage{{Index: 4, Data: []byte("y")}}}),
		{}, {0xff}, {0x05, 's', 't', 'r', 'e', 'a'},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var handled int
		s := &session{
			waiters:   map[waitKey]chan reply{},
			doneCh:    make(chan struct{}),
			stop:      make(chan struct{}),
			partInits: make(chan reply, 1),
			handler:   func(*session, string, []byte) { handled++ },
		}
		pull := make(chan reply, 1)
		s.waiters[waitKey{"pull", 1}] = pull
		s.expectBatch(waitKey{"pull", 1}, DefaultPullLimit, DefaultPullMaxBytes)
		create := make(chan reply, 1)
		s.creates = []chan reply{create}
		_ = s.handle(t.Context(), &routing.Message{TransportMessage: wire.TransportMessage{Payload: payload}})
		select {
		case r := <-pull:
			if id, ok := replyRequestID(r.data); !ok || id != 1 {
				t.Fatalf("pull waiter 1 got a reply for request %d (%v)", id, ok)
			}
		default:
		}
		if handled > 1 {
			t.Fatalf("handler called %d times for one reply", handled)
		}
	})
}

func FuzzReplyRequestID(f *testing.F) {
	f.Add([]byte{0x01})
	f.Add([]byte{0x80, 0x01})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ok := replyRequestID(b)
		if !ok {
			return
		}
		// A decoded id re-encodes to a prefix of the input (canonical LEB128).
		enc := wire.AppendUint(nil, id)
		if len(enc) > len(b) || string(enc) != string(b[:len(enc)]) {
			t.Fatalf("id %d from %x re-encodes to %x", id, b, enc)
		}
	})
}

// FuzzDecodePull feeds arbitrary pull replies, as a session hands them over from the
// network, to decodePull: a single-frame PullResponse (stream_pull, sluice_pull_wait), a
// sluice_pull_batch reply of one or two frames, or a sluice_error. It must never panic; a
// sluice_error is always an error; and what it accepts is every message of the frames, in
// order, with indexes of at least from and strictly increasing.
func FuzzDecodePull(f *testing.F) {
	msgs := []wire.StreamMessage{{Index: 3, Data: []byte("a")}, {Index: 7}}
	more := wire.PullBatchPart{RequestID: 1, More: true, Messages: msgs[:1]}.Append(nil)
	last := wire.PullBatchPart{RequestID: 1, Messages: msgs[1:]}.Append(nil)
	for _, seed := range []struct {
		kind        uint8
		from        uint64
		first, last []byte
	}{
		{0, 0, nil, wire.PullResponse{RequestID: 1, Messages: msgs}.Append(nil)},
		{0, 5, nil, wire.PullResponse{RequestID: 1, Messages: msgs}.Append(nil)}, // 3 < from
		{0, 0, nil, wire.PullResponse{RequestID: 1, Messages: []wire.StreamMessage{msgs[1], msgs[0]}}.Append(nil)},
		{0, 0, nil, wire.PullResponse{RequestID: 1}.Append(nil)},
		{1, 0, nil, wire.PullBatchPart{RequestID: 1, Messages: msgs}.Append(nil)},
		{2, 0, more, last},
		{2, 0, last, more}, // 7 then 3: out of order across frames
		{0, 0, nil, wire.PullResponse{RequestID: 1, Messages: []wire.StreamMessage{msgs[0], msgs[0]}}.Append(nil)}, // 3 twice
		{2, 0, more, wire.PullBatchPart{RequestID: 1, Messages: msgs[:1]}.Append(nil)},                             // 3 twice across frames
		{3, 0, nil, wire.RequestError{RequestID: 1, Protocol: wire.ProtocolPullBatch, Reason: "no"}.Append(nil)},
		{0, 0, nil, []byte{0x01, 0x05}}, // claims 5 messages
		{1, 0, []byte{0xff}, []byte{}},
	} {
		f.Add(seed.kind, seed.from, seed.first, seed.last)
	}
	f.Fuzz(func(t *testing.T, kind uint8, from uint64, first, last []byte) {
		r := reply{data: last}
		frames := [][]byte{last}
		switch kind % 4 {
		case 0:
			r.protocol = wire.ProtocolPullWait
		case 1:
			r.protocol = wire.ProtocolPullBatch
		case 2:
			r.protocol = wire.ProtocolPullBatch
			r.parts = [][]byte{first}
			frames = [][]byte{first, last}
		default:
			r.protocol = wire.ProtocolRequestError
		}
		out, err := decodePull(r, from)
		if r.protocol == wire.ProtocolRequestError {
			if err == nil {
				t.Fatalf("a sluice_error decoded as %d messages", len(out))
			}
			return
		}
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with %d messages", err, len(out))
			}
			return
		}
		var want []wire.StreamMessage
		for _, b := range frames {
			var m []wire.StreamMessage
			if r.protocol == wire.ProtocolPullBatch {
				p, err := wire.DecodePullBatchPart(b)
				if err != nil {
					t.Fatalf("accepted a frame that does not decode: %v", err)
				}
				m = p.Messages
			} else {
				p, err := wire.DecodePullResponse(b)
				if err != nil {
					t.Fatalf("accepted a frame that does not decode: %v", err)
				}
				m = p.Messages
			}
			want = append(want, m...)
		}
		if len(out) != len(want) {
			t.Fatalf("%d messages, the frames hold %d", len(out), len(want))
		}
		for i, m := range out {
			if m.Index != want[i].Index || string(m.Data) != string(want[i].Data) {
				t.Fatalf("message %d = {%d %x}, the frames hold {%d %x}", i, m.Index, m.Data, want[i].Index, want[i].Data)
			}
			if m.Index < from || i > 0 && m.Index <= out[i-1].Index {
				t.Fatalf("accepted index %d at position %d (pull from %d, previous %v)", m.Index, i, from, out[:i])
			}
		}
	})
}

// FuzzSessionReplies feeds a sequence of reply payloads to one session's reply handler, so
// that the parts of a sluice_pull_batch reply, replies for other requests and errors mix
// in any order. The input is records of [repeat-1 u8][length u8][payload]; a trailing
// partial record is one payload. The pull request 1 waits for a batch of at most one
// message and byte, which lets a hub's oversized reply (more than MaxFrame bytes of parts)
// be reached with a few repeated records. The waiter must get exactly one reply when the
// model expects one (a last part, a single-frame reply or an error for request 1, even
// with no part before it) and none otherwise, for request 1, carrying exactly the parts
// for request 1 received before it, in order; the parts kept never exceed what the
// request allows; and a delivered reply leaves nothing of the batch behind.
func FuzzSessionReplies(f *testing.F) {
	part := func(more bool, data string) []byte {
		return wire.EncodePayload(wire.ProtocolPullBatch, wire.PullBatchPart{RequestID: 1, More: more, Messages: []wire.StreamMessage{{Index: 1, Data: []byte(data)}}})
	}
	record := func(repeat int, payload []byte) []byte {
		return append([]byte{byte(repeat - 1), byte(len(payload))}, payload...)
	}
	big := part(true, strings.Repeat("x", 200))
	for _, seed := range [][]byte{
		slices.Concat(record(1, part(true, "a")), record(2, part(true, "b")), record(1, part(false, "c"))),
		slices.Concat(record(1, part(true, "a")), record(1, wire.EncodePayload(wire.ProtocolRequestError, wire.RequestError{RequestID: 1, Protocol: wire.ProtocolPullBatch, Reason: "no"}))),
		slices.Concat(record(1, part(true, "a")), record(1, wire.EncodePayload(wire.ProtocolError, wire.Error{Reason: "no"})), record(1, part(false, "b"))),
		slices.Concat(record(1, wire.EncodePayload(wire.ProtocolPullBatch, wire.PullBatchPart{RequestID: 2, More: true})), record(1, part(false, "a"))),
		slices.Concat(record(1, part(false, "a")), record(1, part(false, "b"))),
		slices.Concat(record(200, big), record(200, big), record(1, part(false, "z"))), // over the bound
	} {
		f.Add(seed)
	}
	const limit, maxBytes = 1, 1
	k := waitKey{"pull", 1}
	max := maxBatchParts(limit, maxBytes)
	f.Fuzz(func(t *testing.T, in []byte) {
		var payloads [][]byte
		for len(in) > 0 {
			if len(in) < 2 || int(in[1]) > len(in)-2 {
				payloads = append(payloads, in)
				break
			}
			p := in[2 : 2+int(in[1])]
			for range int(in[0]) + 1 {
				payloads = append(payloads, p)
			}
			in = in[2+len(p):]
		}
		s := &session{
			waiters:   map[waitKey]chan reply{},
			doneCh:    make(chan struct{}),
			stop:      make(chan struct{}),
			partInits: make(chan reply, 1),
			handler:   func(*session, string, []byte) {},
		}
		pull := make(chan reply, 1)
		s.waiters[k] = pull
		s.expectBatch(k, limit, maxBytes)

		// The model: the parts for request 1 the waiter should get, whether it still
		// waits (a reply for it, or an oversized batch, ends the wait), and whether the
		// wait ended with a reply (an oversized batch fails the session instead).
		var want [][]byte
		size, waiting, replied := 0, true, false
		for _, p := range payloads {
			_ = s.handle(t.Context(), &routing.Message{TransportMessage: wire.TransportMessage{Payload: p}})
			bp, err := wire.DecodeBasePayload(p)
			if err != nil || !waiting {
				continue
			}
			switch bp.Protocol {
			case wire.ProtocolPullBatch:
				if id, more, ok := wire.PullBatchPartHeader(bp.Data); ok && id == 1 {
					if !more {
						waiting, replied = false, true
					} else if size += len(bp.Data); size > max {
						want, waiting = nil, false
					} else {
						want = append(want, bp.Data)
					}
				}
			case wire.ProtocolPullWait, wire.ProtocolPull:
				if id, ok := replyRequestID(bp.Data); ok && id == 1 {
					waiting, replied = false, true
				}
			case wire.ProtocolRequestError:
				if e, err := wire.DecodeRequestError(bp.Data); err == nil && e.RequestID == 1 && classOf(e.Protocol) == "pull" {
					waiting, replied = false, true
				}
			}
		}
		select {
		case r := <-pull:
			if !replied {
				t.Fatalf("the waiter got a %s reply the model did not expect", r.protocol)
			}
			if id, ok := replyRequestID(r.data); !ok || id != 1 {
				t.Fatalf("pull waiter 1 got a reply for request %d (%v)", id, ok)
			}
			got := 0
			for _, p := range r.parts {
				got += len(p)
			}
			if got > max {
				t.Fatalf("the reply carries %d bytes of parts, more than the %d its request allows", got, max)
			}
			if !slices.EqualFunc(r.parts, want, bytes.Equal) {
				t.Fatalf("the reply carries %d parts, want the %d received for it", len(r.parts), len(want))
			}
		default:
			if replied {
				t.Fatalf("no reply for the waiter, the model expected one with %d parts", len(want))
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !waiting && (s.batches[k] != nil || s.waiters[k] != nil) {
			t.Fatal("request 1 is answered (or given up), but its waiter or batch parts are still kept")
		}
	})
}
