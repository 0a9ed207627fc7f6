// Package bistream is the bi-directional stream transport: it carries routing messages
// between the nodes of two devices through streams hosted on a hub, so that the devices
// never need to be online at the same time. Each device consumes its own stream (its inbox)
// and publishes to the other's; every stream message carries the inner routing message
// together with the stream where replies go.
//
// Because the transport preserves Ockam routing (forwarders, return routes, replies), any
// protocol that works over a route works through streams unchanged. In particular a secure
// channel handshake and the encrypted messages after it travel entirely through the hub:
//
//	// Device A: subscribe to its inbox, then dial B's listener through B's inbox.
//	ta, _ := bistream.New(nodeA, clientA)
//	ta.Subscribe("inbox-a", "device-a")
//	r, _ := ta.Route("inbox-b", "inbox-a")
//	ch, _ := securechannel.Dial(ctx, nodeA, append(r, wire.Local("listener")), cfgA)
//
//	// Device B (whenever it comes online): a listener, then its subscription.
//	securechannel.Listen(nodeB, "listener", cfgB, nil)
//	tb, _ := bistream.New(nodeB, clientB)
//	tb.Subscribe("inbox-b", "device-b")
//
// The hub stores only what the devices publish: with a secure channel, the handshake
// messages and ciphertext.
//
// # Devices that are rarely online together
//
// Through streams nothing is lost, but an answer comes only when the peer is next online:
//
//   - Do not retry securechannel.Dial on a timeout: each try writes another handshake
//     message 1 into the peer's inbox, and the peer answers each. Run Dial in a goroutine
//     with a ctx as long as the peer may stay offline, and keep the node open meanwhile: a
//     node of the device's own, not the client's, lets the Transport and the client close
//     and reopen while Dial waits (Dial ends early if the node closes).
//     An initiator in mid-handshake cannot be saved: if its process exits, it dials again.
//     When the peer's key is known, securechannel.DialIK needs no answer before sending.
//   - On the listener, set ListenOptions.HandshakeTimeout to the longest time an initiator
//     may stay offline between its messages 1 and 3 (the 30 s default suits live links).
//   - Register the listener, the workers and the restored channels
//     (securechannel.RestoreSession, Listener.RestoreSession) before Subscribe: a message
//     for an address with nothing registered is skipped for good, and its sender is not told.
//     One session file per channel; save every channel at shutdown, the listener's
//     responders waiting for message 3 included (Listener.Channels).
//
// # Addresses
//
// A [Transport] publishes through one routing.Sender per (destination stream, return
// stream) pair, at the local address [SenderAddress] "bistream/<to>/<return>". The address
// does not depend on the Transport, so a route that contains it (a secure channel's route to
// its peer, say) stays valid when the Transport is closed and a new one is created on the
// same node, for example after the device was offline, or on a new node after the device's
// process restarted: a secure channel restored from its session file
// (securechannel.RestoreSession) keeps its route to the peer, whose first address is such a
// sender.
//
// The Transport is the node's fallback (routing.Node.AddFallback): when a message is routed
// to a sender address that has nothing registered, it registers the sender there, so every
// such route works as soon as a Transport runs on the node, a restored channel's included,
// before anything arrived from the peer. It keeps at most twice [WithMaxPublishers] senders
// registered and unregisters the one used least recently to make room (it comes back when a
// message is routed to it again), so the return streams that stream messages name cost
// nothing until a worker answers through them. [ParseSenderAddress] reads the streams back
// from an address; [Transport.RegisterRoute] registers the sender at the start of a saved
// route ahead of time.
//
//	// Device B after a restart: its node, listener and channel come back from files.
//	l, _ := securechannel.Listen(nodeB, "listener", cfgB, nil)
//	ch, _ := l.RestoreSession(sessionFile)
//	tb, _ := bistream.New(nodeB, clientB)
//	tb.RegisterRoute(ch.PeerRoute()) // optional: ch can send through it either way
//	tb.Subscribe("inbox-b", "device-b") // resumes from the index saved on the hub
//
// # Envelope encoding
//
// A stream message is one [Envelope], encoded with BARE (the same primitives as the routing
// protocol: uint = LEB128, data/string = uint length + bytes, optional = u8 flag + value):
//
//	type Envelope struct {
//	  version:       u8                 # EnvelopeVersion = 1
//	  return_stream: optional<string>   # where replies go; a valid stream name when present
//	  message:       data               # an Ockam routing v1 TransportMessage
//	}
//
// The inner TransportMessage's onward route is the route on the receiving node (after the
// stream hop) and must not be empty; its return route is the route back on the sending node.
// On delivery the receiver prepends the local address of its sender for (return_stream, the
// stream it read) to the return route. [DecodeEnvelope] is strict (known version, valid
// stream name, valid inner message, no trailing bytes); a stream message that does not decode
// is counted and skipped, never delivered.
//
// # What a stream message can do
//
// Anybody who can push to a subscribed stream writes the envelopes the device reads (so can
// the hub and its broker: a secure channel protects the payload, not the routing). So the
// subscription delivers an inner message only to a local worker or sender that is not a
// stream sender. An inner onward route whose first address is not local (a TCP address:
// the device would dial it, which the TCP transport refuses for its own peers unless it
// relays) or starts with [AddressPrefix] (the device would publish the rest into a stream
// the pusher chose, over its own connection) is refused: the message is logged, counted as
// undeliverable and skipped. So is an envelope without a return stream whose inner return
// route (the pusher writes all of it then) starts with such an address, since whatever
// answers the message sends the answer there: a secure channel listener answers every
// handshake message 1. The device therefore never relays a stream message into
// another stream by itself; a worker in between can (a secure channel does it for the
// messages of its authenticated peer). Messages that do not decode, and inner messages that
// cannot be delivered for any other reason (no worker at the address, a worker or sender
// that refuses them), are logged, counted and skipped too: no message stops a subscription.
// The warnings are rate-limited (anybody who can push to the stream can send any number):
// one line per kind every 10 seconds counts them and names the last, the others are logged
// at Debug, and Close logs the lines that count those held back. Stats counts every one.
// Only a delivery cut short because the device is stopping fails, so that the message comes
// again after the restart (see Limitations).
//
// The return stream an envelope names costs nothing until a worker answers through it (a
// secure channel listener answers every handshake message 1): the answer registers a sender
// and opens a publisher, both bounded ([WithMaxPublishers]). Stream senders are local
// addresses of the node like any other: what can route to the node's local addresses (its
// own workers, a secure channel's authenticated peer, the peers of a TCP listener on the
// same node) can publish through them.
//
// # Delivery
//
// Publishing uses a client.Publisher per destination stream (request ids, window, retries,
// reconnects, optional outbox: [WithOutboxDir]); consuming uses a client.Consumer per
// subscription with the subscription id as client_id, so a device resumes from its saved
// index after being offline. Delivery is at-least-once: a message may reach the node twice
// (a publisher resent it, or the device stopped before saving its position). Secure channels
// drop such duplicates with their replay window, which makes processing exactly-once.
//
// # Limitations
//
// One Transport at a time may run on a node (the sender addresses are fixed), and it is the
// node's fallback, so the node cannot have another one: New refuses a node that has one, so
// when a device reconnects, close the old Transport before it creates the new one. To stop
// a device without repeating anything, close the Transport (the subscriptions save their
// positions, giving the workers up to a second to handle what they queued), then let the
// node's workers handle what is queued (routing.Node.Drain), then save its secure channels'
// sessions, then close the node, and the client after the Transport (when the node is the
// client's, Client.Close closes it: drain and save first). A stream should have one
// consumer device (its subscription id is its identity for the saved index); several
// devices publishing into it is fine. A subscription never saves a position past a message
// that is not handled yet, including one in a worker's mailbox (see [Transport.Subscribe]),
// so neither a crash nor a stop loses a message: a delivery the stop cuts short (a full
// mailbox) is neither skipped by the subscription nor remembered by the secure channel, and
// comes again after the restart. Only the first hop is followed: what a worker sends on to
// another worker is that worker's to keep.
package bistream
