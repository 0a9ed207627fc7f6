package securechannel

import (
	"encoding/binary"
	"fmt"
	"math"
)

// MessageType is the first byte of every secure channel message.
type MessageType uint8

// Message types. 0 is reserved and never valid.
const (
	TypeHandshake1 MessageType = 1 // initiator -> responder: e
	TypeHandshake2 MessageType = 2 // responder -> initiator: e, ee, s, es
	TypeHandshake3 MessageType = 3 // initiator -> responder: s, se
	TypeData       MessageType = 4 // either direction: header + AEAD ciphertext
	TypeIK1        MessageType = 5 // IK initiator -> responder: e, es, s, ss, early data
	TypeIK2        MessageType = 6 // IK responder -> initiator: e, ee, se
)

func (t MessageType) String() string {
	switch t {
	case TypeHandshake1:
		return "handshake1"
	case TypeHandshake2:
		return "handshake2"
	case TypeHandshake3:
		return "handshake3"
	case TypeData:
		return "data"
	case TypeIK1:
		return "ik1"
	case TypeIK2:
		return "ik2"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Sizes of the message format. See the package documentation for the layout.
const (
	// HeaderSize is the size of a data message header: type u8, epoch u32, nonce u64.
	HeaderSize = 1 + 4 + 8
	// TagSize is the size of the ChaCha20-Poly1305 authentication tag.
	TagSize = 16
	// Overhead is what Seal adds to a plaintext.
	Overhead = HeaderSize + TagSize
	// MaxFrame is the largest routing frame (u16 length prefix).
	MaxFrame = 65535
	// RouteReserve is the part of a frame kept for routing: the TransportMessage version,
	// onward and return routes, payload length, and any wrapping on the way (for example a
	// stream push). Sealed messages are at most MaxFrame-RouteReserve bytes.
	RouteReserve = 1024
	// MaxSealedSize is the largest message Seal produces and Open accepts.
	MaxSealedSize = MaxFrame - RouteReserve
	// MaxPlaintextSize is the largest plaintext Seal accepts.
	MaxPlaintextSize = MaxSealedSize - Overhead

	// handshake message sizes: type byte + Noise message with empty payloads.
	handshake1Size = 1 + KeySize                               // e
	handshake2Size = 1 + KeySize + KeySize + TagSize + TagSize // e, encrypted s, payload tag
	handshake3Size = 1 + KeySize + TagSize + TagSize           // encrypted s, payload tag
	ik1MinSize     = 1 + KeySize + KeySize + TagSize + TagSize // e, encrypted s, payload tag
	ik2Size        = 1 + KeySize + TagSize                     // e, payload tag

	// MaxEarlyDataSize is the most early data IK message 1 carries: the message is at most
	// MaxSealedSize bytes.
	MaxEarlyDataSize = MaxSealedSize - ik1MinSize
)

// Header is the clear-text header of a data message. All of it is authenticated (it is the
// AEAD associated data).
type Header struct {
	// Epoch counts key rotations since the handshake: epoch e uses the key obtained by
	// applying the Noise REKEY function e times to the handshake's key.
	Epoch uint32
	// Nonce is the AEAD nonce within the epoch; the sender uses 0, 1, 2, ... and never
	// reuses one. math.MaxUint64 is reserved by Noise for REKEY and is never valid.
	Nonce uint64
}

// appendHeader appends the encoded data message header.
func appendHeader(b []byte, h Header) []byte {
	b = append(b, byte(TypeData))
	b = binary.BigEndian.AppendUint32(b, h.Epoch)
	return binary.BigEndian.AppendUint64(b, h.Nonce)
}

// ParseHeader parses the header of a data message and returns it with the ciphertext that
// follows (a sub-slice of msg). It checks the type, the minimum and maximum length and the
// reserved nonce; it does not authenticate anything.
func ParseHeader(msg []byte) (Header, []byte, error) {
	if len(msg) < Overhead {
		return Header{}, nil, fmt.Errorf("%w: data message is %d bytes, the minimum is %d", ErrMalformed, len(msg), Overhead)
	}
	if len(msg) > MaxSealedSize {
		return Header{}, nil, fmt.Errorf("%w: data message is %d bytes, the maximum is %d", ErrMalformed, len(msg), MaxSealedSize)
	}
	if t := MessageType(msg[0]); t != TypeData {
		return Header{}, nil, fmt.Errorf("%w: %v message where data was expected", ErrMalformed, t)
	}
	h := Header{
		Epoch: binary.BigEndian.Uint32(msg[1:5]),
		Nonce: binary.BigEndian.Uint64(msg[5:13]),
	}
	if h.Nonce == math.MaxUint64 {
		return Header{}, nil, fmt.Errorf("%w: reserved nonce", ErrMalformed)
	}
	return h, msg[HeaderSize:], nil
}

// PeekType returns the type of a secure channel message after checking that its length is
// possible for that type. It lets a router tell handshake messages from data messages.
func PeekType(msg []byte) (MessageType, error) {
	if len(msg) == 0 {
		return 0, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	t := MessageType(msg[0])
	want := 0
	switch t {
	case TypeHandshake1:
		want = handshake1Size
	case TypeHandshake2:
		want = handshake2Size
	case TypeHandshake3:
		want = handshake3Size
	case TypeIK1:
		if len(msg) < ik1MinSize || len(msg) > MaxSealedSize {
			return 0, fmt.Errorf("%w: %v message is %d bytes, want %d to %d", ErrMalformed, t, len(msg), ik1MinSize, MaxSealedSize)
		}
		return t, nil
	case TypeIK2:
		want = ik2Size
	case TypeData:
		if _, _, err := ParseHeader(msg); err != nil {
			return 0, err
		}
		return t, nil
	default:
		return 0, fmt.Errorf("%w: unknown message type %d", ErrMalformed, msg[0])
	}
	if len(msg) != want {
		return 0, fmt.Errorf("%w: %v message is %d bytes, want %d", ErrMalformed, t, len(msg), want)
	}
	return t, nil
}
