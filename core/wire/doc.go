// Package wire holds Sluice's byte formats: the BARE primitives, the Ockam routing v1
// TransportMessage, the Ockam stream protocol payloads and Sluice's extension payloads.
//
// Everything here is byte-compatible with Ockam's Elixir implementation: a client written
// against the Ockam stream protocol talks to a Sluice hub unchanged. The full description of
// the format, with examples, is in docs/protocol.md of the repository.
//
// # Encoding
//
// Every message type has an Append method that appends its encoding to dst and returns the
// extended slice (like strconv.AppendInt), and a Size method that returns the exact number
// of bytes Append writes, so callers can allocate once or check a frame budget before
// encoding. [Encode] and [EncodePayload] are the allocating conveniences.
//
// # Decoding
//
// Decode functions are strict: every byte of the input must be consumed (trailing bytes are
// an error), a uint must use the shortest LEB128 form and fit in 64 bits, lengths and array
// counts are checked against the remaining input before anything is allocated, optional
// flags must be 0 or 1, enum values must be known and strings must be valid UTF-8. Every
// decode error is a *[DecodeError] and matches [ErrMalformed] with errors.Is.
//
// Decoded []byte fields (Address.Value, TransportMessage.Payload, BasePayload.Data,
// PushRequest.Data, StreamMessage.Data, ...) ALIAS the input buffer: they are valid as long
// as the input is not modified. Their capacity is clipped to their length, so appending to
// them never overwrites the input. Strings are copied. Callers that reuse the input buffer
// must copy the byte fields they keep.
//
// Because the encoding is canonical, for every input b that decodes without error,
// encoding the decoded value gives back exactly b.
//
// # Limits
//
// A TransportMessage travels in one TCP frame whose u16 length prefix caps it at [MaxFrame]
// bytes. [TransportMessage.Size], [FramePayloadBudget] and [FitPullResponse] let senders
// stay within it; [AppendFrame] refuses a larger message with [ErrFrameTooLarge].
//
// A route holds at most [MaxRouteLen] addresses, so that a frame cannot make a decoder
// allocate much more than its own size. Decoders refuse a longer route with an error
// matching [ErrMalformed] and [ErrRouteTooLong]; [AppendFrame] and
// [TransportMessage.Validate] refuse to send one, with [ErrRouteTooLong].
package wire
