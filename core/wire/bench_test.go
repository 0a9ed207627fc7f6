package wire

import (
	"fmt"
	"testing"
)

var benchSizes = []int{16, 256, 4096}

func BenchmarkPushRequest(b *testing.B) {
	for _, n := range benchSizes {
		p := PushRequest{RequestID: 123456, Data: make([]byte, n)}
		msg := TransportMessage{OnwardRoute: Route{Local(localAddr32)}, ReturnRoute: Route{Local(localAddr32)}}
		b.Run(fmt.Sprintf("encode/%dB", n), func(b *testing.B) {
			buf := make([]byte, 0, 2*n+256)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				// Payload and TransportMessage into one reused buffer.
				payload := AppendPayload(buf[:0], ProtocolPush, p)
				msg.Payload = payload
				_ = msg.Append(payload[len(payload):])
			}
		})
		msg.Payload = EncodePayload(ProtocolPush, p)
		enc := msg.Append(nil)
		b.Run(fmt.Sprintf("decode/%dB", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				m, err := DecodeTransportMessage(enc)
				if err != nil {
					b.Fatal(err)
				}
				bp, err := DecodeBasePayload(m.Payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := DecodePushRequest(bp.Data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPullResponse(b *testing.B) {
	for _, n := range benchSizes {
		msgs := make([]StreamMessage, 60000/(n+8))
		for i := range msgs {
			msgs[i] = StreamMessage{Index: uint64(1_000_000 + i), Data: make([]byte, n)}
		}
		p := PullResponse{RequestID: 99, Messages: msgs}
		total := int64(len(msgs) * n)
		b.Run(fmt.Sprintf("encode/%dx%dB", len(msgs), n), func(b *testing.B) {
			buf := make([]byte, 0, PayloadSize(ProtocolPull, p))
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendPayload(buf[:0], ProtocolPull, p)
			}
		})
		enc := EncodePayload(ProtocolPull, p)
		b.Run(fmt.Sprintf("decode/%dx%dB", len(msgs), n), func(b *testing.B) {
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				bp, err := DecodeBasePayload(enc)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := DecodePullResponse(bp.Data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("fit/%dx%dB", len(msgs), n), func(b *testing.B) {
			onward, ret := Route{Local(localAddr32)}, Route{Local("stream")}
			b.ReportAllocs()
			for b.Loop() {
				_ = FitPullResponse(onward, ret, ProtocolPull, 99, msgs)
			}
		})
	}
}
