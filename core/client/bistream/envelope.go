package bistream

import (
	"fmt"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

// EnvelopeVersion is the version byte of every [Envelope] this package writes and the only
// one it reads.
const EnvelopeVersion = 1

// Envelope is the content of one bi-directional stream message: the inner routing message
// and the stream where replies to it go. See the package documentation for the encoding.
type Envelope struct {
	// ReturnStream is the stream the sender consumes: a reply to Message is published there.
	// Empty means the sender takes no replies.
	ReturnStream string
	// Message is the inner routing message. Its OnwardRoute is the route on the receiving
	// node (after the stream hop), its ReturnRoute the route back on the sending node.
	Message wire.TransportMessage
}

// Size returns the encoded size of e.
func (e Envelope) Size() int {
	n := 1 + 1 // version, optional flag
	if e.ReturnStream != "" {
		n += wire.DataSize(len(e.ReturnStream))
	}
	return n + wire.DataSize(e.Message.Size())
}

// Append appends the encoding of e to dst and returns the extended slice. It does not
// validate e; [Envelope.Validate] does.
func (e Envelope) Append(dst []byte) []byte {
	dst = append(dst, EnvelopeVersion)
	if e.ReturnStream == "" {
		dst = wire.AppendOptionalString(dst, wire.None[string]())
	} else {
		dst = wire.AppendOptionalString(dst, wire.Some(e.ReturnStream))
	}
	dst = wire.AppendUint(dst, uint64(e.Message.Size()))
	return e.Message.Append(dst)
}

// Validate reports whether e can be encoded and delivered: a return stream, when set, is a
// valid stream name, and the inner message has an onward route and routes of at most
// wire.MaxRouteLen addresses (else also [wire.ErrRouteTooLong]). The error matches
// [core.ErrInvalidArgument].
func (e Envelope) Validate() error {
	if e.ReturnStream != "" {
		if err := core.ValidateStreamName(e.ReturnStream); err != nil {
			return fmt.Errorf("bistream: return stream: %w", err)
		}
	}
	if len(e.Message.OnwardRoute) == 0 {
		return fmt.Errorf("%w: bistream: inner message has an empty onward route; route to [stream sender, address on the receiving node, ...]", core.ErrInvalidArgument)
	}
	if err := e.Message.ValidateRoutes(); err != nil {
		return fmt.Errorf("bistream: inner message: %w", err)
	}
	return nil
}

// DecodeEnvelope decodes an Envelope. It is strict: the version must be EnvelopeVersion,
// the return stream (when present) must be a valid, non-empty stream name, the inner
// message must be a valid TransportMessage with a non-empty onward route, and no byte may
// be left over. Errors match [wire.ErrMalformed]. Route values and the payload of the inner
// message alias b.
func DecodeEnvelope(b []byte) (Envelope, error) {
	ret, hasRet, m, err := decodeEnvelope(b, nil)
	if err != nil {
		return Envelope{}, err
	}
	e := Envelope{Message: m}
	if hasRet {
		e.ReturnStream = string(ret)
	}
	return e, nil
}

// decodeEnvelope is DecodeEnvelope without copying the return stream: ret aliases b, and
// hasRet reports whether the envelope has one. A return stream that is a key of known was
// validated before and is not checked again (known may be nil). The subscription uses it
// with its cache of reply routes, so that a message costs no string allocation.
func decodeEnvelope(b []byte, known map[string]wire.Route) (ret []byte, hasRet bool, m wire.TransportMessage, err error) {
	r := wire.NewReader(b, "bistream.Envelope")
	if v := r.ReadU8(); r.Err() == nil && v != EnvelopeVersion {
		r.Fail(fmt.Sprintf("version %d, want %d", v, EnvelopeVersion), nil)
	}
	if r.ReadOptional() {
		ret = r.ReadData()
		if _, ok := known[string(ret)]; !ok && r.Err() == nil {
			// Stream names are ASCII, so this also rejects what is not UTF-8.
			if err := core.ValidateStreamName(string(ret)); err != nil {
				r.Fail("invalid return stream", err)
			}
		}
		hasRet = true
	}
	inner := r.ReadData()
	if err := r.Finish(); err != nil {
		return nil, false, wire.TransportMessage{}, err
	}
	m, err = wire.DecodeTransportMessage(inner)
	if err != nil {
		r.Fail("inner message", err)
		return nil, false, wire.TransportMessage{}, r.Err()
	}
	if len(m.OnwardRoute) == 0 {
		r.Fail("inner message has an empty onward route", nil)
		return nil, false, wire.TransportMessage{}, r.Err()
	}
	return ret, hasRet, m, nil
}
