package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/sluicehq/sluice/core"
)

// Version is the only TransportMessage version: Ockam routing v1.
const Version = 1

// MaxFrame is the largest encoded TransportMessage: TCP frames carry a u16 length prefix.
const MaxFrame = 65535

// FrameHeaderLen is the length of a TCP frame's length prefix.
const FrameHeaderLen = 2

// TransportMessage is an Ockam routing v1 message: version u8 (= Version), onward_route,
// return_route, payload data. The payload is opaque to routing; stream protocol messages
// carry an encoded BasePayload.
type TransportMessage struct {
	// OnwardRoute is where the message goes; its first address is the next hop.
	OnwardRoute Route
	// ReturnRoute is how to reply; its first address is the hop closest to the receiver.
	ReturnRoute Route
	// Payload is the message body.
	Payload []byte
}

// Size returns the encoded size of m (without any frame header).
func (m TransportMessage) Size() int {
	return 1 + m.OnwardRoute.Size() + m.ReturnRoute.Size() + DataSize(len(m.Payload))
}

// Append appends the encoding of m to dst. It does not check MaxFrame; see AppendFrame.
func (m TransportMessage) Append(dst []byte) []byte {
	dst = append(dst, Version)
	dst = m.OnwardRoute.Append(dst)
	dst = m.ReturnRoute.Append(dst)
	return AppendData(dst, m.Payload)
}

// Clone returns a deep copy of m that aliases no buffer.
func (m TransportMessage) Clone() TransportMessage {
	c := TransportMessage{OnwardRoute: m.OnwardRoute.Clone(), ReturnRoute: m.ReturnRoute.Clone()}
	if m.Payload != nil {
		c.Payload = append([]byte(nil), m.Payload...)
	}
	return c
}

// String formats m's routes and payload length for logs.
func (m TransportMessage) String() string {
	return fmt.Sprintf("onward=[%s] return=[%s] payload=%dB", m.OnwardRoute, m.ReturnRoute, len(m.Payload))
}

// DecodeTransportMessage decodes one TransportMessage. A version byte other than Version
// returns an error matching ErrUnsupportedVersion. Route values and Payload alias b.
func DecodeTransportMessage(b []byte) (TransportMessage, error) {
	r := NewReader(b, "TransportMessage")
	if v := r.ReadU8(); r.Err() == nil && v != Version {
		r.off = 0
		r.Fail(fmt.Sprintf("version %d, want %d", v, Version), ErrUnsupportedVersion)
	}
	var m TransportMessage
	m.OnwardRoute = r.readRoute()
	m.ReturnRoute = r.readRoute()
	m.Payload = r.ReadData()
	if err := r.Finish(); err != nil {
		return TransportMessage{}, err
	}
	return m, nil
}

// AppendFrame appends a TCP frame holding m: a u16 big-endian length, then m's encoding.
// It refuses what a receiver would refuse, returning dst unchanged and the error of
// [TransportMessage.Validate]: a route of more than MaxRouteLen addresses (ErrRouteTooLong,
// core.ErrInvalidArgument) or an encoding of more than MaxFrame bytes (ErrFrameTooLarge,
// core.ErrMessageTooLarge).
func AppendFrame(dst []byte, m TransportMessage) ([]byte, error) {
	n, err := m.frameSize()
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	return m.Append(dst), nil
}

// Validate reports whether m can travel in a frame, i.e. whether its receiver's decoder
// will accept it as far as lengths go: each route holds at most MaxRouteLen addresses (else
// an error matching ErrRouteTooLong and core.ErrInvalidArgument) and m encodes to at most
// MaxFrame bytes (else an error matching ErrFrameTooLarge and core.ErrMessageTooLarge).
// [AppendFrame] makes the same checks; a transport calls Validate to refuse a message
// before it does anything else for it (dialling a connection, say).
func (m TransportMessage) Validate() error {
	_, err := m.frameSize()
	return err
}

// ValidateRoutes reports whether each route of m holds at most MaxRouteLen addresses, as
// a decoder requires, with an error matching ErrRouteTooLong and core.ErrInvalidArgument.
// Validate checks it too; a sender that encodes m into something else than a frame (the
// plaintext of a secure channel message, a stream message) calls it before encoding.
func (m TransportMessage) ValidateRoutes() error {
	if len(m.OnwardRoute) > MaxRouteLen || len(m.ReturnRoute) > MaxRouteLen {
		return fmt.Errorf("%w: %w: transport message has %d onward and %d return addresses, the limit is %d per route (MaxRouteLen)", ErrRouteTooLong, core.ErrInvalidArgument, len(m.OnwardRoute), len(m.ReturnRoute), MaxRouteLen)
	}
	return nil
}

// frameSize returns m's encoded size, or the error of Validate.
func (m TransportMessage) frameSize() (int, error) {
	if err := m.ValidateRoutes(); err != nil {
		return 0, err
	}
	n := m.Size()
	if n > MaxFrame {
		return 0, fmt.Errorf("%w: transport message to [%s] encodes to %d bytes, the limit is %d", ErrFrameTooLarge, m.OnwardRoute, n, MaxFrame)
	}
	return n, nil
}

// FramePayloadBudget returns the largest payload length such that a TransportMessage with
// these routes fits in MaxFrame, or a negative number when even an empty payload does not.
// Like FitPullResponse it is conservative when onward still holds the first hop that the
// transport strips before framing.
func FramePayloadBudget(onward, ret Route) int {
	fixed := 1 + onward.Size() + ret.Size()
	room := MaxFrame - fixed // room for the payload's length prefix and bytes
	n := room - UintSize(uint64(room))
	for n >= 0 && UintSize(uint64(n))+n > room {
		n--
	}
	return n
}
