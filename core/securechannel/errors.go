package securechannel

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/core"
)

// Errors returned by this package. Match them with errors.Is.
var (
	// ErrReplay: a transport message was already accepted, or is too old for the replay
	// window (or belongs to a retired key epoch) so that it cannot be told apart from a replay.
	// Such messages are dropped silently by the routing layer: with at-least-once delivery they
	// are usually harmless duplicates.
	ErrReplay = errors.New("securechannel: replayed or too old message")
	// ErrDuplicate: a transport message whose nonce was already accepted. It matches ErrReplay
	// too.
	ErrDuplicate error = duplicateError{}
	// ErrDecrypt: a message failed authentication (tampered, forged, or for another channel).
	// A Channel that returns it is unchanged and keeps working, and so is an XX responder's
	// Handshake reading message 3; any other Handshake that returns it has failed.
	ErrDecrypt = errors.New("securechannel: message authentication failed")
	// ErrMalformed: bytes that are not a message of this protocol (short, unknown type, wrong
	// length). Nothing was changed.
	ErrMalformed = errors.New("securechannel: malformed message")
	// ErrMessageTooLarge: a plaintext is longer than MaxPlaintextSize. It matches
	// core.ErrMessageTooLarge too.
	ErrMessageTooLarge = fmt.Errorf("securechannel: %w", core.ErrMessageTooLarge)
	// ErrUntrusted: the peer's static key is not accepted by the trust policy. The handshake
	// is aborted.
	ErrUntrusted = errors.New("securechannel: peer identity not trusted")
	// ErrHandshakeState: a handshake method was called out of turn (for example WriteMessage
	// while a message from the peer is expected), or a handshake message arrived that this
	// side does not expect now (a duplicate, or one for the other role). Nothing was changed.
	ErrHandshakeState = errors.New("securechannel: unexpected handshake step")
	// ErrHandshakeFailed: the handshake failed earlier (see the wrapped cause) and cannot
	// continue; start a new one.
	ErrHandshakeFailed = errors.New("securechannel: handshake failed")
	// ErrExhausted: the channel used its last key epoch; perform a new handshake. With the
	// default rekey threshold this needs 2^52 messages.
	ErrExhausted = errors.New("securechannel: channel keys exhausted, perform a new handshake")
	// ErrReservationExhausted: Seal refused to use a send nonce that a saved session state
	// may restart from (a crash would then reuse it). Save the session again
	// (Channel.MarshalBinary, SecureChannel.SaveSession) to reserve the next nonces; a
	// SecureChannel saved to a file does so by itself.
	ErrReservationExhausted = errors.New("securechannel: reserved send nonces used up, save the session state again")
	// ErrSessionCorrupt: a session state or session file cannot be decoded, fails
	// authentication (damaged, or sealed with another identity), or does not match the
	// identity or node it is restored with. Nothing was registered.
	ErrSessionCorrupt = errors.New("securechannel: session state corrupt")
	// ErrIdentityNotFound: the identity file does not exist. It matches fs.ErrNotExist too.
	ErrIdentityNotFound = errors.New("securechannel: identity file not found")
	// ErrIdentityCorrupt: the identity file cannot be parsed or its keys do not match.
	ErrIdentityCorrupt = errors.New("securechannel: identity file corrupt")
	// ErrIdentityPermissions: the identity file is readable or writable by group or others.
	ErrIdentityPermissions = errors.New("securechannel: identity file permissions too open")
	// ErrIdentityExists: SaveIdentity would overwrite an existing file and Overwrite was not
	// set. It matches fs.ErrExist too.
	ErrIdentityExists = errors.New("securechannel: identity file already exists")
)

// duplicateError is ErrDuplicate: a distinct value that also matches ErrReplay.
type duplicateError struct{}

func (duplicateError) Error() string        { return "securechannel: duplicate message" }
func (duplicateError) Is(target error) bool { return target == ErrReplay }
