// Package securechannel implements Sluice's end-to-end encrypted channels: a Noise XX
// handshake (Noise_XX_25519_ChaChaPoly_BLAKE2s, github.com/flynn/noise) between two
// identities, then authenticated encryption of every message with an explicit nonce, so that
// channels work over routes that lose, duplicate and reorder messages (TCP, a hub, streams).
//
// The package has two layers. The transport-independent core is [Handshake] (a state
// machine that writes and reads the three handshake messages) and [Channel] ([Channel.Seal],
// [Channel.Open]). The routing layer runs channels on a routing.Node, so a channel works
// over any route: a [Listener] and both local addresses of a channel end are synchronous
// routing.Senders, so a message is encrypted in the goroutine that sends it, and a
// handshake message 1 is answered, or a message decrypted (then handed to the next worker),
// in the goroutine that received it, such as a TCP connection's or a stream
// subscription's. What a channel hands to a worker's mailbox therefore stays pending with
// the routing.Trackers of that delivery until the worker handled it: a stream subscription
// does not save its position past a message whose plaintext was not handled.
//
// # Routing
//
// [Listen] registers a [Listener] at a local address of a routing.Node; [Dial] runs the
// handshake over any route to it (direct, through TCP, via a hub, through streams) and
// returns a [SecureChannel]. Each end has an application-facing local address
// ([SecureChannel.Address]): a message routed to [channel address, rest...] is encrypted
// together with its remaining onward route and its return route, and the other end delivers
// it to rest... with its own channel address prepended to the return route, so replies travel
// back through the channel. The responder's application finds the initiator's identity with
// [Listener.Channel] on the first return address. Duplicates (of data messages, and of
// handshake messages, message 1 included) are dropped and counted ([SecureChannel.Stats],
// and [Listener.Stats] for what the listener answered, refused and dropped);
// nothing crosses the route in the clear except the handshake's ephemeral key and the data
// headers. Each end sends data messages to the route it learned
// in the handshake (the initiator: the return route of message 2; the responder: that of
// message 1), so data messages carry no return route of their own.
//
// Sending, receiving and replying:
//
//	// A: "app" on B's node gets the plaintext; replies come back to A's "inbox" worker.
//	node.Send(ctx, wire.TransportMessage{
//		OnwardRoute: wire.Route{ch.Address(), wire.Local("app")},
//		ReturnRoute: wire.Route{wire.Local("inbox")},
//		Payload:     []byte("hello"),
//	})
//
//	// B: a worker at "app"; who sent it is the channel at its return route's first address.
//	nodeB.Register("app", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
//		if ch, ok := listener.Channel(m.ReturnRoute[0]); ok {
//			_ = ch.PeerIdentity() // authenticated
//		}
//		return m.Reply(ctx, []byte("hi")) // back through the channel to A's "inbox"
//	}))
//
// # Cipher suite
//
// One suite, no negotiation: Curve25519 for Diffie-Hellman, ChaCha20-Poly1305 as AEAD and
// BLAKE2s as hash. ChaCha20-Poly1305 and BLAKE2s are fast and constant time in pure software,
// also on small devices without AES instructions (the same choice as WireGuard); Curve25519
// gives 32-byte public keys that are easy to print, list and compare. A prologue
// ("sluice/securechannel/1") binds the handshake to this protocol version.
//
// # Message format
//
// Every message starts with a type byte. Handshake messages are the type (1, 2 or 3) followed
// by the Noise message with an empty payload (32, 96 and 64 bytes after the type byte). A data
// message (type 4) is:
//
//	type u8 = 4 | epoch u32 big endian | nonce u64 big endian | ciphertext | 16-byte tag
//
// The 13-byte header is the AEAD associated data, so it is authenticated. The AEAD nonce is
// the header's nonce, encoded as Noise's ChaChaPoly does (32 zero bits, then the 64-bit
// nonce little endian), and the key is the epoch's key.
//
// # Replay window
//
// The receiver keeps, per key epoch, a sliding bitmap of [WindowSize] (1024) nonces below the
// highest nonce accepted. A message is accepted once: a repeat returns [ErrDuplicate], one
// WindowSize or more behind the highest returns [ErrReplay] (both match ErrReplay), and in
// either case the caller drops it silently. Within the window, any order is accepted. A
// message that fails authentication returns [ErrDecrypt] and never touches the window.
//
// # Rekeying
//
// After [Config].RekeyAfter messages (default [DefaultRekeyAfter], 2^20) the sender moves to
// the next epoch: key(e+1) = REKEY(key(e)) (Noise's rekey function) and the nonce restarts at
// 0. The epoch travels in the header, so the receiver derives the new key itself when a message
// of a later epoch authenticates (at most [MaxEpochSkip] epochs ahead). It keeps the previous
// epoch's key and window for stragglers; messages of older epochs are dropped as replays
// (but for the held messages of a restored channel, see Sessions).
// After 2^32 epochs Seal returns [ErrExhausted]: perform a new handshake.
//
// # IK
//
// When the initiator already knows the responder's static key, [NewInitiatorIK] and [DialIK]
// use Noise_IK_25519_ChaChaPoly_BLAKE2s (message types 5 and 6): the first message carries
// optional early data and can be sent before the responder is online; the responder checks
// the initiator's key when it reads it. Early data is not forward secret and can be replayed
// once a listener has forgotten it: send only idempotent requests as early data.
//
// The responder delivers the early data once per channel, when it reads message 1, and it
// stays pending with the routing.Trackers of the delivery of message 1 until the worker it
// goes to handled it. It is not kept: when its delivery is cut short (the listener returns
// the error, so that the subscription does not move past message 1), or when a channel saved
// before the early data was handled is restored after a restart, the channel delivers it when
// the same message 1 comes again (from the stream). Otherwise a repeated message 1 is a
// duplicate.
//
// # Sessions: channels that survive a restart
//
// A channel's state can be saved and restored in another process, so that a device that
// stops (its process exits) keeps its channels: messages the peer sealed meanwhile stay
// readable, and no new handshake is needed. [SecureChannel.SaveSession] writes the state to
// a file (mode 0600, atomically), sealed with ChaCha20-Poly1305 under a key derived with
// HKDF-BLAKE2s from the device identity's static private key and a random salt
// ([SealSession]); [RestoreSession] (an initiator's channel) and
// [Listener.RestoreSession] (a listener's responder channel, which the package-level one
// refuses: a listener that does not know a restored channel would take its handshake
// message 1, coming again, for a new handshake) read it back and register the
// channel on a new routing.Node at the same two local addresses, so the route the peer
// stored to this channel keeps working. [SecureChannel.PeerRoute] is the channel's route to
// the peer: set up its first hop (a bistream sender, a TCP connection) before sending. The
// byte-level forms are [SecureChannel.MarshalBinary] / [Restore] and, for the transport-free
// core, [Channel.MarshalBinary] / [UnmarshalChannel].
//
// The state holds both directions' keys and epochs, the receive replay windows, the held
// messages (see below) with the keys of their epochs, both identities, the channel binding,
// the addresses and the route to the peer. An XX responder
// that sent message 2 and waits for message 3 can be saved too: its state holds handshake
// message 1 and its ephemeral private key, from which the handshake is replayed exactly.
// A listener whose send of message 2 (XX or IK) was cut short (the subscription that
// delivered message 1 stopped) sends it when message 1 comes again, and so does a channel
// restored from a state taken before it was sent: an IK responder's state holds it, and an XX
// responder waiting for message 3 writes it again from its state, which does not say whether
// it went out (an initiator drops a message 2 it has already).
// Restoring checks that the state belongs to the configured identity and that the trust
// policy still accepts the peer.
//
// Data messages that overtook message 3 are not in the state. The half-open channel keeps
// them (at most 64 messages and 64 KiB; what comes beyond is dropped and counted as
// Rejected) pending with the routing.Trackers of the delivery that brought them
// (routing.Hold) until message 3 arrives and their inner messages are handled, so a stream
// subscription does not save its position past them: after a restart, or a crash, it
// delivers them again to the restored channel. When the half-open channel is forgotten
// instead (handshake timeout, Close, a refused message 3), they are released and lost.
// Message 3, when it completes the handshake of a responder saved (or restored) while it
// waited for it, stays pending the same way until the open channel is saved again (a channel
// with a session file saves itself there at once): until then its saved state is the
// half-open handshake, which needs that message 3 after a crash.
//
// The early data of IK message 1 is not in the state either; the state says whether it was
// handled, and a responder restored from a state taken before it was delivers it when message
// 1 comes again (see IK above).
//
// Nonces are never reused across a crash: a save records the send position [ReserveNonces]
// (1024) messages ahead, and the live channel uses only the reserved nonces until the next
// save. A channel saved to a file saves itself again when they run out; one restored from a
// file saves itself before its first message. Without a file, Seal returns
// [ErrReservationExhausted] until the state is saved again. A restore after a crash
// therefore skips at most ReserveNonces nonces (16 epochs with a RekeyAfter below 64: four
// restarts in a row whose messages never reach the peer then leave the peer more than
// MaxEpochSkip epochs behind, unable to open anything until a new handshake). A backlog of
// older epochs that waits in a stream is opened before the restored sender's messages, in
// the stream's order; out of that order, what is older than the receiver's previous epoch
// is dropped as retired. A channel saves itself one way: one saved
// with SaveSession (or restored with RestoreSession) refuses MarshalBinary, and one whose
// state was taken with MarshalBinary refuses SaveSession, since neither state records the
// nonces the other reserved.
//
// Replay windows are as fresh as the last save: messages opened after it are accepted once
// more by a channel restored from it. Save when the device stops (after its subscriptions
// stopped), and before acknowledging what was processed for exactly-once across crashes.
// A save leaves out of the windows the messages delivered into a worker's mailbox and not
// handled yet, so that a restored channel accepts them again when they come again. Those a
// window has passed already are saved as held messages (their nonces, with their epoch's
// key; at most [MaxHeldMessages], the newest), which a restored channel accepts once each,
// even when it has retired their epoch since; a save drops them (and their epoch's key) once
// they came again and were handled. One process at a time may use a session file.
//
// # Identities and trust
//
// An [Identity] is a static Curve25519 key pair persisted with [SaveIdentity] (mode 0600, no
// overwrite unless asked) and [LoadIdentity]. Its [PublicKey] prints as 64 hex characters. A
// [TrustPolicy] ([TrustKeys], or the explicit [TrustAnyInsecure]) is consulted during the
// handshake: an untrusted peer never gets a channel.
//
// An XX responder waiting for message 3 drops a message 3 that fails authentication or is
// malformed (counted in [SecureChannel.Stats] as Rejected) and keeps its half-open handshake
// exactly as it was, so that whoever can send to the channel's address cannot end it: the
// genuine message 3 still completes it. The half-open channel ends at the handshake timeout,
// or when a message 3 authenticates with a static key that the trust policy refuses; the
// data messages it kept are then lost.
//
// # Errors
//
// Match errors with errors.Is: [ErrReplay], [ErrDuplicate], [ErrDecrypt], [ErrMalformed],
// [ErrMessageTooLarge] (also core.ErrMessageTooLarge), [ErrUntrusted], [ErrHandshakeState],
// [ErrHandshakeFailed], [ErrExhausted], [ErrReservationExhausted], [ErrSessionCorrupt], and
// the identity file errors.
//
// # Limitations
//
// See docs/security.md in the repository: routes, sizes and timing stay visible to the hub
// and the broker; a compromised static key lets an attacker impersonate its owner (past
// traffic stays protected by the ephemeral keys); there is no key revocation beyond removing
// a key from the trust policy (restoring a session checks the policy again); whoever holds a
// session file and the identity file can read and forge the channel's current and later
// messages, and read those of an older epoch whose key the file keeps for held messages.
package securechannel
