package wire

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/core"
)

var (
	// ErrMalformed matches every error returned by a decode function: the bytes are not a
	// valid encoding of the expected type.
	ErrMalformed = errors.New("wire: malformed message")

	// ErrUnsupportedVersion matches (together with ErrMalformed) a TransportMessage whose
	// version byte is not [Version].
	ErrUnsupportedVersion = errors.New("wire: unsupported transport message version")

	// ErrFrameTooLarge: an encoded TransportMessage is longer than [MaxFrame]. It also
	// matches core.ErrMessageTooLarge. Nothing is truncated: the message is refused.
	ErrFrameTooLarge = fmt.Errorf("wire: frame too large: %w", core.ErrMessageTooLarge)

	// ErrRouteTooLong: a route has more than [MaxRouteLen] addresses. A decoder returns it
	// together with ErrMalformed; [AppendFrame] and [TransportMessage.Validate] return it
	// together with core.ErrInvalidArgument, before anything is sent.
	ErrRouteTooLong = errors.New("wire: route too long")
)

// DecodeError describes why bytes could not be decoded. It matches [ErrMalformed] (and Err,
// when set) with errors.Is.
type DecodeError struct {
	// Type is the name of the type being decoded, e.g. "TransportMessage" or "PushRequest".
	Type string
	// Offset is the byte offset in the input where the problem was found.
	Offset int
	// Reason says what is wrong, e.g. "truncated uint" or "2 trailing bytes".
	Reason string
	// Err is an optional more specific sentinel, e.g. ErrUnsupportedVersion.
	Err error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("wire: decode %s: %s at offset %d", e.Type, e.Reason, e.Offset)
}

// Unwrap returns ErrMalformed and, when set, Err.
func (e *DecodeError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrMalformed, e.Err}
	}
	return []error{ErrMalformed}
}
