package core

import "errors"

// Sentinel errors. Backends wrap them (together with the broker's own error) so callers
// match with errors.Is and still reach the broker error with errors.As.
var (
	// ErrStreamNotFound: the stream was never created (or was deleted).
	ErrStreamNotFound = errors.New("sluice: stream not found")
	// ErrIndexNotFound: no index was ever saved for this (client_id, stream, partition).
	ErrIndexNotFound = errors.New("sluice: index not found")
	// ErrInvalidArgument: a bad stream name, client id, partition, partition count or limit.
	ErrInvalidArgument = errors.New("sluice: invalid argument")
	// ErrMessageTooLarge: a message is longer than the backend's MaxMessageSize.
	ErrMessageTooLarge = errors.New("sluice: message too large")
	// ErrClosed: the backend (or client) was closed.
	ErrClosed = errors.New("sluice: closed")
	// ErrInvalidOption: a configuration value (URL, option) is invalid.
	ErrInvalidOption = errors.New("sluice: invalid option")
	// ErrUnavailable: the broker (or, for a client, the hub) cannot be reached or refused
	// the request for now; retrying later may succeed.
	ErrUnavailable = errors.New("sluice: unavailable")
)
