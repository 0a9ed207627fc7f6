package client

import (
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
