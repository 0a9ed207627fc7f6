package securechannel

import "fmt"

// A TrustPolicy decides whether a peer's authenticated static public key is accepted. It is
// consulted during the handshake: the initiator checks the responder's key from handshake
// message 2, the responder checks the initiator's key from message 3, and an untrusted peer
// never gets a channel. Implementations must be safe for concurrent use.
type TrustPolicy interface {
	// Trust returns nil to accept peer, or an error (wrapping ErrUntrusted) to refuse it.
	Trust(peer PublicKey) error
}

// TrustPolicyFunc adapts a function to a TrustPolicy.
type TrustPolicyFunc func(peer PublicKey) error

// Trust calls f(peer).
func (f TrustPolicyFunc) Trust(peer PublicKey) error { return f(peer) }

type trustKeys map[PublicKey]struct{}

// TrustKeys accepts exactly the listed peer public keys. The list is copied.
func TrustKeys(keys ...PublicKey) TrustPolicy {
	m := make(trustKeys, len(keys))
	for _, k := range keys {
		m[k] = struct{}{}
	}
	return m
}

func (m trustKeys) Trust(peer PublicKey) error {
	if _, ok := m[peer]; ok {
		return nil
	}
	return fmt.Errorf("%w: %s is not in the list of trusted keys", ErrUntrusted, peer)
}

type trustAny struct{}

func (trustAny) Trust(PublicKey) error { return nil }

// TrustAnyInsecure accepts every peer. The channel is still encrypted and the peer's key is
// still authenticated (the application can read it), but anybody with a key pair can connect,
// and an active attacker on the route can sit in the middle. Use it only for tests and demos,
// or when the application checks the peer key itself.
func TrustAnyInsecure() TrustPolicy { return trustAny{} }
