package wire_test

import (
	"fmt"

	"github.com/sluicehq/sluice/core/wire"
)

// A client builds a stream_push for the stream worker it learned from Init, and the hub
// decodes it level by level.
func Example() {
	msg := wire.TransportMessage{
		OnwardRoute: wire.Route{wire.TCP("127.0.0.1:4000"), wire.Local("stream_orders_0")},
		ReturnRoute: wire.Route{wire.Local("publisher")},
		Payload:     wire.EncodePayload(wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("hello")}),
	}
	frame, err := wire.AppendFrame(nil, msg)
	if err != nil {
		panic(err)
	}
	fmt.Printf("frame: %d bytes\n", len(frame))

	got, err := wire.DecodeTransportMessage(frame[wire.FrameHeaderLen:])
	if err != nil {
		panic(err)
	}
	base, err := wire.DecodeBasePayload(got.Payload)
	if err != nil {
		panic(err)
	}
	switch base.Protocol {
	case wire.ProtocolPush:
		push, err := wire.DecodePushRequest(base.Data)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s to [%s]: request %d, %q\n", base.Protocol, got.OnwardRoute, push.RequestID, push.Data)
	}
	// Output:
	// frame: 70 bytes
	// stream_push to [1#127.0.0.1:4000 => 0#stream_orders_0]: request 1, "hello"
}
