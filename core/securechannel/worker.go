package securechannel

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// Defaults of the routing layer.
const (
	// DefaultHandshakeTimeout is how long a responder waits for handshake message 3 before
	// it forgets the half-open channel, and with it the data messages that overtook message
	// 3 (they are lost). Messages 3 that fail authentication do not end or extend the wait.
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultMaxPendingHandshakes bounds the half-open channels of a Listener: message 1 is
	// unauthenticated, so anybody can start handshakes.
	DefaultMaxPendingHandshakes = 256
	// maxEarly and maxEarlyBytes bound the data messages a responder keeps when they
	// overtake message 3. Whoever sent message 1 learns the half-open channel's address from
	// message 2 and can fill this buffer without authenticating, so it is small: with
	// DefaultMaxPendingHandshakes, a listener holds at most 16 MiB of it. A message beyond
	// the bounds is dropped and counted (Stats.Rejected), and not held (see earlyMessage).
	maxEarly      = 64
	maxEarlyBytes = 64 << 10
	// maxRememberedIK bounds how many IK messages 1 a Listener remembers to refuse replays.
	maxRememberedIK = 4096
)

// ListenOptions configures a Listener. Nil or zero fields mean the defaults.
type ListenOptions struct {
	// HandshakeTimeout: see DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes: see DefaultMaxPendingHandshakes.
	MaxPendingHandshakes int
	// OnChannel, if set, is called when a channel is established (from the goroutine that
	// delivered the last handshake message, such as a connection's or a stream
	// subscription's; messages of the channel may be delivered concurrently). It must not
	// block for long.
	// Listener.Channel finds the channel before its first message is delivered.
	OnChannel func(*SecureChannel)
}

// Stats counts what a SecureChannel did. Duplicates are the at-least-once duplicates and
// replays that were dropped (data messages, and repeated handshake messages, including a
// listener's message 1 that came again for an existing channel); Rejected are messages that
// failed authentication or parsing.
type Stats struct {
	Sent, Delivered, Duplicates, Rejected uint64
}

// SecureChannel is one end of an established (or establishing) channel on a routing.Node.
// It has two local addresses: the application-facing Address, and an internal one that the
// peer sends ciphertext to.
//
// To send through the channel, route a message to [Address, rest of the route on the peer's
// node...]: the channel encrypts the message (its remaining onward route, its return route
// and its payload) and the peer's end delivers it to the rest of the route, with the peer
// end's Address prepended to the return route, so replies come back through the channel.
// Sending to Address is synchronous: the sender's node.Send returns ErrMessageTooLarge or a
// routing error directly. Duplicated and replayed ciphertexts are dropped, so each message
// is delivered once.
type SecureChannel struct {
	node      *routing.Node
	log       *slog.Logger
	id        *Identity // seals the session file
	initiator bool
	hello     []byte // responder: the peer's handshake message 1 (the listener's key)
	encAddr   string // application-facing: plaintext in (a routing.Sender)
	decAddr   string // network-facing: ciphertext in (a routing.Sender too)
	// selfRoute is [encAddr], the return route of every decrypted message whose own return
	// route is empty. It is never modified, so every such message shares it (routes are
	// read-only for the workers that receive them; see routing.Node.Send).
	selfRoute wire.Route

	sent, delivered, duplicates, rejected atomic.Uint64

	// unhandled follows the decrypted messages delivered into a worker's mailbox until the
	// worker handled them, labelled with deliveryLabel: a session saved meanwhile leaves
	// them out of its replay windows, so that a channel restored after a crash accepts them
	// again when they come again (the stream did not move past them either). opening holds
	// the labels of the messages being delivered, from just before the replay window accepts
	// them (under the channel's receive lock, once they authenticated) until they are in
	// unhandled (or handled): a save leaves those out too.
	unhandled routing.Tracker
	openingMu sync.Mutex
	opening   []uint64

	// earlyUnhandled follows the early data of IK message 1 (responder) into a worker's
	// mailbox until the worker handled it (see ikEarly).
	earlyUnhandled routing.Tracker

	mu        sync.Mutex
	hs        *Handshake
	ch        *Channel       // set when the handshake completed
	peerRoute wire.Route     // replaced, never modified in place: data messages share it
	early     []earlyMessage // data that arrived before the handshake completed
	earlySize int            // payload bytes in early
	done      chan struct{}  // closed by settleLocked
	settled   bool           // the handshake completed (err == nil) or failed
	err       error          // why the handshake failed
	closed    bool
	timer     *time.Timer          // responder handshake timeout
	onOpen    func(*SecureChannel) // listener bookkeeping, before the channel carries data
	notify    func(*SecureChannel) // ListenOptions.OnChannel
	onClose   func(*SecureChannel)
	ikEarly   ikEarlyState // responder: where the early data of IK message 1 is
	// unsent3 is the initiator's XX message 3 while its send was cut short, and read2 the
	// message 2 it answers: when that message 2 comes again, message 3 is sent and the
	// channel opens (see sendMessage3).
	unsent3, read2 []byte
	// unsent2 is the responder's handshake message 2 when this process does not know that
	// it was sent: its send was cut short (the delivery of message 1 failed, so message 1
	// comes again), or the channel was restored while it waited for message 3. It is sent
	// when message 1 comes again (see resendMessage2); a peer drops a message 2 it has.
	unsent2 []byte
	// unsaved holds the delivery of the message 3 that completed the handshake of a
	// responder saved (or restored) while it waited for message 3 (routing.Hold): until the
	// open channel is saved, its saved state is the half-open handshake, which a restore
	// after a crash completes only with that message 3 again, so a stream subscription must
	// not move past it. Released by the next save of the open channel, or by Close.
	unsaved *routing.Held

	saveMu      sync.Mutex // serialises saves: a file never holds an older reservation than committed
	sessionPath string     // set by SaveSession and RestoreSession; guarded by saveMu
	// marshaled is set once MarshalBinary returned a state (guarded by saveMu): the channel
	// then refuses SaveSession, as a channel with a sessionPath refuses MarshalBinary. Each
	// way extends the send reservation without the other's state recording it, so a channel
	// restored from the other one after a crash would reuse nonces.
	marshaled bool
}

// earlyMessage is a data message that arrived before the handshake completed. It is held
// with the Trackers that followed it into the channel (routing.Hold), so that a stream
// subscription that delivered it does not save its position past it while the channel keeps
// it: a session saved meanwhile does not hold it, so after a restart (or a crash) the
// subscription delivers it again. held is released once the message was opened and its inner
// message delivered (which, into a mailbox, keeps it pending until its worker handled it), or
// when the handshake fails or the channel is closed (the message is then lost).
type earlyMessage struct {
	payload []byte
	held    *routing.Held
}

// ikEarlyState says where an IK responder is with the early data of message 1. The early
// data is not in the channel's state: message 1 holds it, and a message 1 that comes again
// (from a stream, after a delivery was cut short or after a restart) is decrypted again to
// deliver it, once: only while the state is ikEarlyWaiting.
type ikEarlyState uint8

const (
	ikEarlyNone       ikEarlyState = iota // no early data
	ikEarlyWaiting                        // not delivered yet (cut short, or restored unhandled)
	ikEarlyDelivering                     // being delivered
	ikEarlyDelivered                      // delivered: earlyUnhandled follows it until handled
)

// settleLocked ends the handshake phase, once: err == nil means established. A failed
// handshake drops and releases the data that arrived early. c.mu is held.
func (c *SecureChannel) settleLocked(err error) bool {
	if c.settled {
		return false
	}
	c.settled = true
	c.err = err
	if err != nil {
		for _, m := range c.early {
			m.held.Release() // lost: a subscription may move past it now
		}
		c.early, c.earlySize = nil, 0
	}
	close(c.done)
	return true
}

// Address returns the application-facing local address of the channel.
func (c *SecureChannel) Address() wire.Address { return wire.Local(c.encAddr) }

// PeerIdentity returns the peer's authenticated static key. It is the zero key before the
// handshake completed.
func (c *SecureChannel) PeerIdentity() PublicKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		return PublicKey{}
	}
	return c.ch.PeerIdentity()
}

// PeerRoute returns the route on which the channel sends to the peer's end (a copy). After a
// restart, whatever transport the route's first address belongs to must be set up again
// before the restored channel sends (for example the stream sender of a bistream.Transport).
func (c *SecureChannel) PeerRoute() wire.Route {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerRoute.Clone()
}

// Wait waits until the handshake completed (nil), failed or the channel was closed (the
// reason), or ctx is done (ctx.Err()). A channel from Dial or OnChannel is complete already;
// a responder restored while it waited for the last handshake message completes when that
// message arrives.
func (c *SecureChannel) Wait(ctx context.Context) error {
	select {
	case <-c.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stats returns the channel's counters.
func (c *SecureChannel) Stats() Stats {
	return Stats{Sent: c.sent.Load(), Delivered: c.delivered.Load(), Duplicates: c.duplicates.Load(), Rejected: c.rejected.Load()}
}

// Close unregisters the channel's addresses. It is idempotent and does not notify the peer.
func (c *SecureChannel) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.settleLocked(fmt.Errorf("securechannel: channel closed during the handshake: %w", core.ErrClosed))
	onClose := c.onClose
	unsaved := c.unsaved
	c.unsaved = nil
	c.mu.Unlock()
	if unsaved != nil {
		unsaved.Release() // the channel is gone: a subscription may move past message 3
	}
	_ = c.node.Unregister(c.encAddr)
	_ = c.node.Unregister(c.decAddr)
	if onClose != nil {
		onClose(c)
	}
	return nil
}

func newSecureChannel(node *routing.Node, hs *Handshake) (*SecureChannel, error) {
	c := &SecureChannel{node: node, log: node.Logger(), id: hs.cfg.Identity, initiator: hs.Initiator(), hs: hs, done: make(chan struct{})}
	for {
		c.decAddr = newNetworkAddress()
		err := node.RegisterSender(c.decAddr, decryptor{c})
		if errors.Is(err, routing.ErrAddressInUse) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("securechannel: register: %w", err)
		}
		break
	}
	c.encAddr = routing.NewAddress()
	c.selfRoute = wire.Route{wire.Local(c.encAddr)}
	if err := node.RegisterSender(c.encAddr, encryptor{c}); err != nil {
		_ = node.Unregister(c.decAddr)
		return nil, fmt.Errorf("securechannel: register: %w", err)
	}
	return c, nil
}

// newNetworkAddress returns a random local address for a channel's network-facing worker.
// The address travels in the clear in every data message (it is the last hop of the peer's
// route), so it is 64 random bits (16 hex digits) rather than routing.NewAddress's 128: it
// only has to be unique on its node, and registering it retries on a collision.
func newNetworkAddress() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// register registers a restored channel at its saved addresses.
func (c *SecureChannel) register() error {
	if err := c.node.RegisterSender(c.decAddr, decryptor{c}); err != nil {
		if errors.Is(err, routing.ErrAddressInUse) {
			return fmt.Errorf("securechannel: restore at %s: %w (is this channel restored on the node already?)", c.decAddr, err)
		}
		return fmt.Errorf("securechannel: restore at %s: %w", c.decAddr, err)
	}
	if err := c.node.RegisterSender(c.encAddr, encryptor{c}); err != nil {
		_ = c.node.Unregister(c.decAddr)
		return fmt.Errorf("securechannel: restore at %s: %w", c.encAddr, err)
	}
	return nil
}

// encryptor is the application-facing address: a synchronous routing.Sender.
type encryptor struct{ c *SecureChannel }

func (e encryptor) Send(ctx context.Context, msg wire.TransportMessage) error {
	c := e.c
	c.mu.Lock()
	ch, route, closed := c.ch, c.peerRoute, c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("securechannel: send through %s: %w", c.encAddr, core.ErrClosed)
	}
	if ch == nil {
		return fmt.Errorf("%w: send through %s before the handshake completed", ErrHandshakeState, c.encAddr)
	}
	inner := wire.TransportMessage{ReturnRoute: msg.ReturnRoute, Payload: msg.Payload}
	if len(msg.OnwardRoute) > 1 {
		inner.OnwardRoute = msg.OnwardRoute[1:]
	}
	if len(inner.OnwardRoute) == 0 { // the peer would drop it, and it would cost a nonce
		return fmt.Errorf("%w: securechannel: send through %s: the route ends at the channel; route to [channel address, address on the peer's node, ...]", core.ErrInvalidArgument, c.encAddr)
	}
	if err := inner.ValidateRoutes(); err != nil { // the peer could not decode it
		return fmt.Errorf("securechannel: send through %s: %w", c.encAddr, err)
	}
	// Encode the inner message after room for the header and encrypt it in place, in a
	// reused buffer: SendBorrowed below copies it for a destination that would keep it.
	bp := sealBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledSealBuf {
			sealBufs.Put(bp)
		}
	}()
	buf := *bp
	if n := Overhead + inner.Size(); cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	buf = inner.Append(buf[:HeaderSize])
	*bp = buf[:0]
	sealed, err := ch.sealInPlace(buf)
	if errors.Is(err, ErrReservationExhausted) {
		if sealed, err = c.resaveAndSeal(ch, buf[HeaderSize:]); err != nil {
			err = fmt.Errorf("%w (save the session with SaveSession to reserve more nonces)", err)
		}
	}
	if len(sealed) == 0 || &sealed[0] != &buf[0] {
		clear(buf) // not sealed in place: the pooled buffer still holds the plaintext
	}
	if err != nil {
		return fmt.Errorf("securechannel: send through %s: %w", c.encAddr, err)
	}
	c.sent.Add(1)
	// No return route: the peer's end sends to the route it learned in the handshake and
	// ignores the return route of data messages, so it would only make every message longer.
	// The onward route is shared, not copied: peerRoute is never modified in place and the
	// receivers of a message treat its routes as read-only.
	return c.node.SendBorrowed(ctx, wire.TransportMessage{OnwardRoute: route, Payload: sealed})
}

// CopiesPayload implements routing.PayloadCopier: Send encrypts the payload into a buffer of
// its own.
func (encryptor) CopiesPayload() bool { return true }

// sealBufs holds the buffers in which encryptor.Send seals (*[]byte).
var sealBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledSealBuf is the largest buffer kept in sealBufs, so that one large message does
// not pin a large buffer.
const maxPooledSealBuf = 16 << 10

// decryptor is the network-facing address: a synchronous routing.Sender, so that a data
// message is opened and its inner message delivered in the goroutine that received it (a
// TCP connection, a stream subscription) instead of going through a mailbox of its own.
// Concurrent calls are safe: Channel.Open locks the receive direction, and the handshake
// state is guarded by c.mu.
type decryptor struct{ c *SecureChannel }

// Send handles one message from the peer. It returns nil once the message was handled,
// delivered or dropped: messages that are malformed, replayed or fail authentication are
// counted (Stats) and dropped, and so is an inner message for an address where nothing is
// registered (logged). When the delivery of the inner message was cut short instead (ctx
// ended while the worker's mailbox was full, or the node or worker is closing), Send
// returns that error and the replay window forgets the message, so that it is accepted
// when it comes again: a stream subscription does not move past it, and delivers it again
// after a restart (or at once, from the same buffer, when it goes on: Send decrypts in
// place, and gives the payload its ciphertext back in that case).
//
// A data message that arrives before the handshake completed is kept until it does, and
// Send returns nil; the message stays pending with the routing.Trackers of ctx
// (routing.Hold) until it is delivered, so a subscription does not move past it meanwhile.
// Kept messages are bounded per channel (64 messages, 64 KiB); beyond that a message is
// dropped and counted as Rejected.
//
// Handshake messages are handled and dropped the same way, and Send returns nil, but for
// the initiator's message 2 when sending message 3 was cut short: Send returns the error,
// and the initiator sends message 3 when message 2 comes again.
func (d decryptor) Send(ctx context.Context, msg wire.TransportMessage) error {
	return d.c.handleNetwork(ctx, msg)
}

// handleNetwork handles what the peer sends: handshake messages and ciphertext.
func (c *SecureChannel) handleNetwork(ctx context.Context, msg wire.TransportMessage) error {
	t, err := PeekType(msg.Payload)
	if err != nil {
		c.rejected.Add(1)
		c.log.Debug("securechannel: dropped malformed message", "address", c.decAddr, "err", err)
		return nil
	}
	switch t {
	case TypeData:
		c.mu.Lock()
		ch := c.ch
		if ch == nil {
			if c.settled { // the handshake failed or the channel closed: nothing will open it
				c.mu.Unlock()
				c.log.Debug("securechannel: dropped a data message for a channel whose handshake ended", "address", c.decAddr)
				return nil
			}
			if len(c.early) >= maxEarly || c.earlySize+len(msg.Payload) > maxEarlyBytes {
				// Dropped, not held: a subscription may move past it (but not past the early
				// messages held before it, so a restart before the handshake completes
				// delivers it again too).
				c.mu.Unlock()
				c.rejected.Add(1)
				c.node.WarnLimited("securechannel: dropped data messages that came before the handshake completed: too many wait already", "messages",
					"last_address", c.decAddr, "waiting", len(c.early), "waiting_bytes", c.earlySize)
				return nil
			}
			// Held under c.mu, so that settleLocked releases every message it finds.
			c.early = append(c.early, earlyMessage{payload: append([]byte(nil), msg.Payload...), held: routing.Hold(ctx)})
			c.earlySize += len(msg.Payload)
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		return c.openAndDeliver(ctx, ch, msg.Payload)
	case TypeHandshake2, TypeHandshake3, TypeIK2:
		return c.handleHandshake(ctx, msg)
	default:
		c.duplicates.Add(1) // message 1 retransmitted to the wrong address: nothing to do
	}
	return nil
}

// openAndDeliver opens a data message and delivers its inner message. It returns an error
// only when the delivery was cut short (see decryptor.Send).
func (c *SecureChannel) openAndDeliver(ctx context.Context, ch *Channel, msg []byte) error {
	// The routing node handed msg over to this worker (routing.Node.Send takes ownership),
	// and a message that fails is dropped: decrypt it where it is. The header is not
	// encrypted: decrypting in place leaves it as it was.
	h, _, _ := ParseHeader(msg) // its error is open's too
	label := deliveryLabel(h)
	// The label is recorded only for a message that authenticated and is new, under the
	// channel's receive lock: a duplicate or a forgery of a message already handled must not
	// make a save leave that message out of its replay window.
	opening := false
	var key [32]byte // the epoch's key, for forget
	pt, err := ch.openInPlace(msg, func(_ Header, k [32]byte) {
		c.beginOpening(label)
		opening, key = true, k
	})
	if opening {
		defer c.endOpening(label)
	}
	if errors.Is(err, ErrReplay) {
		c.duplicates.Add(1)
		return nil
	}
	if err != nil {
		c.rejected.Add(1)
		c.node.WarnLimited("securechannel: dropped messages that failed to decrypt or authenticate", "messages", "last_address", c.decAddr, "last_err", err)
		return nil
	}
	if err := c.deliverInner(c.unhandled.Context(ctx, label), pt); err != nil {
		ch.forget(h, key)
		clear(key[:])
		// The caller may deliver the same message again, in the same buffer: a stream
		// subscription's consumer retries its handler with the stream message it read when
		// the delivery failed while the subscription goes on (a worker stopped). Give msg its
		// ciphertext back, or it would fail authentication then and be dropped as forged.
		ch.unopenInPlace(msg, pt)
		return err
	}
	return nil
}

func (c *SecureChannel) beginOpening(label uint64) {
	c.openingMu.Lock()
	c.opening = append(c.opening, label)
	c.openingMu.Unlock()
}

func (c *SecureChannel) endOpening(label uint64) {
	c.openingMu.Lock()
	if i := slices.Index(c.opening, label); i >= 0 {
		c.opening = slices.Delete(c.opening, i, i+1)
	}
	c.openingMu.Unlock()
}

// unhandledLabels returns the labels of the messages that a save must leave out of its
// replay windows: those being opened and delivered, then those delivered and not handled.
// Channel.snapshot calls it with the receive direction locked (no message starts opening
// meanwhile); read in that order, it misses none that moves from one to the other.
func (c *SecureChannel) unhandledLabels() []uint64 {
	c.openingMu.Lock()
	labels := slices.Clone(c.opening)
	c.openingMu.Unlock()
	return c.unhandled.Labels(labels)
}

// handleHandshake handles XX message 2 (initiator) or 3 (responder), or IK message 2
// (initiator). It returns an error only when the initiator's send of message 3 was cut
// short: the delivery of message 2 does not move past it, and message 3 is sent when
// message 2 comes again.
func (c *SecureChannel) handleHandshake(ctx context.Context, msg wire.TransportMessage) error {
	c.mu.Lock()
	if m3 := c.unsent3; m3 != nil && !c.closed && !c.settled && bytes.Equal(msg.Payload, c.read2) {
		c.unsent3 = nil
		route := c.peerRoute
		c.mu.Unlock()
		c.duplicates.Add(1)
		return c.sendMessage3(ctx, route, m3)
	}
	if c.closed || c.settled || c.hs.Expects() != MessageType(msg.Payload[0]) {
		c.mu.Unlock()
		c.duplicates.Add(1) // a duplicate or stray handshake message
		return nil
	}
	if c.initiator && len(msg.ReturnRoute) == 0 {
		// The initiator learns its route to the peer from message 2's return route, which is
		// not authenticated: without one, it could neither answer nor send. Dropped before
		// it is read, so that the handshake still waits for a message 2 with a route.
		c.mu.Unlock()
		c.rejected.Add(1)
		c.node.WarnLimited("securechannel: dropped handshake messages 2 without a return route", "messages", "last_address", c.decAddr)
		return nil
	}
	if err := c.hs.ReadMessage(msg.Payload); err != nil {
		if c.hs.Err() == nil {
			// Not fatal, such as a forged message 3: the handshake is as it was before the
			// message, and still waits for the genuine one (within the handshake timeout).
			c.mu.Unlock()
			c.rejected.Add(1)
			c.node.WarnLimited("securechannel: dropped handshake messages", "messages", "last_address", c.decAddr, "last_err", err)
			return nil
		}
		c.mu.Unlock()
		c.fail(err)
		return nil
	}
	unsaved := false
	if c.initiator {
		c.peerRoute = msg.ReturnRoute.Clone()
	} else if c.hs.exported && c.hs.Complete() {
		// The saved state is the half-open handshake: keep message 3 pending until the open
		// channel is saved (see unsaved). Set before establish sets c.ch, so that a save
		// that finds the channel open releases it.
		c.unsaved, unsaved = routing.Hold(ctx), true
	}
	var out []byte
	if c.hs.WantsWrite() { // XX message 3
		var err error
		if out, err = c.hs.WriteMessage(); err != nil {
			c.mu.Unlock()
			c.fail(err)
			return nil
		}
		c.read2 = bytes.Clone(msg.Payload) // to tell message 2 coming again (see unsent3)
	}
	route := c.peerRoute
	c.mu.Unlock()

	if out != nil {
		return c.sendMessage3(ctx, route, out)
	}
	c.establish(ctx)
	if unsaved {
		c.saveOpened()
	}
	return nil
}

// sendMessage3 sends the initiator's XX message 3 on route and opens the channel. A send cut
// short keeps message 3 (unsent3) and returns the error, so that message 2 comes again and
// handleHandshake sends it then; a send that fails otherwise ends the handshake.
func (c *SecureChannel) sendMessage3(ctx context.Context, route wire.Route, m3 []byte) error {
	err := c.node.Send(ctx, wire.TransportMessage{OnwardRoute: route.Clone(), ReturnRoute: wire.Route{wire.Local(c.decAddr)}, Payload: bytes.Clone(m3)})
	if err != nil {
		err = fmt.Errorf("securechannel: send handshake message 3: %w", err)
		if cutShort(ctx, err) {
			c.mu.Lock()
			if c.unsent3 == nil {
				c.unsent3 = m3
			}
			c.mu.Unlock()
			return err
		}
		c.fail(err)
		return nil
	}
	c.mu.Lock()
	c.unsent3, c.read2 = nil, nil
	c.mu.Unlock()
	c.establish(ctx)
	return nil
}

// saveOpened saves the open channel to its session file, if it has one: its handshake
// completed after it was saved (or restored) while waiting for message 3, which stays
// pending until then (see unsaved). A channel without a file keeps message 3 pending until
// the application saves it.
func (c *SecureChannel) saveOpened() {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	open := c.ch != nil && !c.closed
	c.mu.Unlock()
	if !open || c.sessionPath == "" {
		return
	}
	if err := c.saveLocked(c.sessionPath, true); err != nil {
		c.log.Warn("securechannel: save the session of a channel whose handshake completed; message 3 stays pending until it is saved", "address", c.decAddr, "err", err)
	}
}

// establish switches a channel whose handshake completed to data: it stops the handshake
// timer, registers the channel with its listener, wakes Dial, opens data that arrived early,
// and calls OnChannel.
func (c *SecureChannel) establish(ctx context.Context) {
	c.mu.Lock()
	if c.settled || c.closed {
		c.mu.Unlock()
		return
	}
	ch, err := c.hs.Channel()
	if err != nil {
		c.mu.Unlock()
		c.fail(err)
		return
	}
	onOpen := c.onOpen
	c.mu.Unlock()
	if onOpen != nil {
		onOpen(c) // Listener.Channel finds c before any message is delivered
	}

	c.mu.Lock()
	if !c.settleLocked(nil) {
		c.mu.Unlock()
		return
	}
	c.ch = ch
	c.hs = nil // drop the handshake state and its key material
	if c.timer != nil {
		c.timer.Stop()
	}
	early := c.early
	c.early, c.earlySize = nil, 0
	notify := c.notify
	c.mu.Unlock()

	for _, m := range early {
		// Delivered under the Trackers that followed the early message in (not those of the
		// message that completed the handshake), so that it stays pending until its worker
		// handled it. A delivery cut short (the node or the worker is closing, or ctx ended)
		// leaves it pending for good, as routing does with a message dropped from a mailbox,
		// and the replay window forgets it: it is accepted when it comes again.
		if err := c.openAndDeliver(m.held.Context(ctx), ch, m.payload); err != nil {
			c.log.Warn("securechannel: delivery of a message that arrived before the handshake completed was cut short", "address", c.decAddr, "err", err)
			continue
		}
		m.held.Release()
	}
	if notify != nil {
		notify(c)
	}
}

// deliverInner delivers a decrypted inner message (the plaintext of a data message or IK
// early data) to its onward route, with the channel's application-facing address prepended
// to its return route.
func (c *SecureChannel) deliverInner(ctx context.Context, pt []byte) error {
	inner, err := wire.DecodeTransportMessage(pt)
	if err != nil || len(inner.OnwardRoute) == 0 {
		c.rejected.Add(1)
		c.node.WarnLimited("securechannel: dropped authenticated messages without a valid inner route", "messages", "last_address", c.decAddr, "last_err", err)
		return nil
	}
	ret := c.selfRoute
	if len(inner.ReturnRoute) > 0 {
		ret = inner.ReturnRoute.Prepend(c.selfRoute[0])
	}
	// Counted before it is handed on: the worker that receives it may read Stats before Send
	// returns here.
	c.delivered.Add(1)
	err = c.node.Send(ctx, wire.TransportMessage{
		OnwardRoute: inner.OnwardRoute,
		ReturnRoute: ret,
		Payload:     inner.Payload,
	})
	if err != nil && (ctx.Err() != nil || errors.Is(err, routing.ErrClosed)) {
		// Cut short: the caller forgets the message so that it comes again.
		c.delivered.Add(^uint64(0)) // not delivered after all
		return fmt.Errorf("securechannel: deliver decrypted message to %s: %w", inner.OnwardRoute, err)
	}
	if err != nil {
		c.node.WarnLimited("securechannel: could not deliver decrypted messages", "messages", "last_address", c.decAddr, "last_to", inner.OnwardRoute.String(), "last_err", err)
	}
	return nil
}

// fail ends a handshake that cannot complete and closes the channel. It does nothing once
// the handshake has settled (completed, failed or closed).
func (c *SecureChannel) fail(err error) {
	c.mu.Lock()
	ok := c.settleLocked(err)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.node.WarnLimited("securechannel: handshakes failed", "handshakes", "last_address", c.decAddr, "last_err", err)
	_ = c.Close()
}

// Dial starts a channel as initiator to the Listener at the end of route (for example
// [1#hub:4000, 0#listener] or a route through streams) and waits until the handshake
// completes, fails (ErrUntrusted, ErrDecrypt, a routing error), node closes (an error
// matching core.ErrClosed) or ctx is done. On a direct link messages may be lost: give ctx
// a deadline and retry on failure. Through streams nothing is lost but the answer comes
// when the peer is next online: do not retry on a timeout (each try writes another message
// 1 into the peer's inbox, and the peer answers each); give ctx as long as the peer may stay
// offline and keep node open meanwhile (a message 3 whose send is cut short, because the
// subscription that delivered message 2 stops, is sent when message 2 comes again). On
// success the channel is registered on node until Close (or node.Close).
//
// The responder checks the initiator's key only when it reads the last handshake message,
// which needs no answer: if the responder refuses the initiator, Dial still succeeds and
// what is sent through the channel is dropped by the responder.
func Dial(ctx context.Context, node *routing.Node, route wire.Route, cfg Config) (*SecureChannel, error) {
	hs, err := NewInitiator(cfg)
	if err != nil {
		return nil, err
	}
	return dial(ctx, node, route, hs, nil)
}

// DialIK is Dial with the IK pattern, for an initiator that already knows the responder's
// static key (which cfg.Trust must accept). Its first handshake message can carry early, an
// inner message (the route on the responder's node after the channel, the return route, the
// payload) that the responder delivers when it reads that message: through a store-and-forward
// route (streams) it can be sent before the responder was ever online. early may be nil.
//
// Early data is encrypted to the responder's static key only: it is not forward secret, and
// a listener suppresses replays of the first message only while it remembers them (see
// docs/security.md). Send idempotent requests as early data.
func DialIK(ctx context.Context, node *routing.Node, route wire.Route, cfg Config, responder PublicKey, early *wire.TransportMessage) (*SecureChannel, error) {
	hs, err := NewInitiatorIK(cfg, responder)
	if err != nil {
		return nil, err
	}
	var payload []byte
	if early != nil {
		if len(early.OnwardRoute) == 0 {
			return nil, fmt.Errorf("%w: securechannel: early data needs an onward route", core.ErrInvalidArgument)
		}
		payload = early.Append(make([]byte, 0, early.Size()))
	}
	return dial(ctx, node, route, hs, payload)
}

func dial(ctx context.Context, node *routing.Node, route wire.Route, hs *Handshake, early []byte) (*SecureChannel, error) {
	if node == nil || len(route) == 0 {
		return nil, fmt.Errorf("%w: securechannel: dial needs a node and a non-empty route", core.ErrInvalidArgument)
	}
	m1, err := hs.WriteMessageWithPayload(early)
	if err != nil {
		return nil, err
	}
	c, err := newSecureChannel(node, hs)
	if err != nil {
		return nil, err
	}
	err = node.Send(ctx, wire.TransportMessage{OnwardRoute: route.Clone(), ReturnRoute: wire.Route{wire.Local(c.decAddr)}, Payload: m1})
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("securechannel: dial %s: %w", route, err)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.Close()
		return nil, fmt.Errorf("securechannel: dial %s: handshake: %w (no answer arrived: is a listener at the end of the route, and, through streams, subscribed to its inbox?)", route, ctx.Err())
	case <-node.Done():
		_ = c.Close()
		return nil, fmt.Errorf("securechannel: dial %s: handshake: %w", route, routing.ErrClosed)
	}
	c.mu.Lock()
	err = c.err
	c.mu.Unlock()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("securechannel: dial %s: %w", route, err)
	}
	return c, nil
}

// Listener is the responder side: a synchronous routing.Sender at a well-known local
// address that answers handshake message 1 by creating a new SecureChannel at random
// addresses. It handles message 1 in the goroutine that delivered it (a TCP connection's, a
// stream subscription's), as the channels' own addresses do, so that the early data of an
// IK message 1 stays pending with the routing.Trackers of that delivery until the worker it
// goes to handled it. Its methods are safe for concurrent use.
type Listener struct {
	node    *routing.Node
	address string
	cfg     Config
	opts    ListenOptions

	mu       sync.Mutex
	closed   bool
	hellos   map[string]*SecureChannel // every open channel, by its message 1 (initiator's ephemeral key)
	pending  int                       // channels in hellos whose handshake is not complete
	channels map[string]*SecureChannel // established, by application-facing address

	seenIK    map[ikDigest]struct{} // IK messages 1 answered recently (replay suppression)
	seenOrder []ikDigest            // seenIK keys, oldest first

	accepted, opened, failed, refused, duplicates, notHandshake atomic.Uint64
}

// ListenerStats counts what a [Listener] did with the messages sent to its address, and how
// many of its channels are in the handshake or open now. The counters only grow.
type ListenerStats struct {
	// Accepted counts the handshake messages 1 answered with a new channel.
	Accepted uint64
	// Opened counts the channels whose handshake completed (IK: with message 2; XX: when
	// the initiator's message 3 was read and its identity trusted).
	Opened uint64
	// Failed counts the channels whose handshake failed after message 1: the initiator's
	// identity is not trusted (XX), or no valid message 3 came within
	// ListenOptions.HandshakeTimeout. A message 3 that fails authentication does not end the
	// handshake: it is dropped and counted in the half-open channel's Stats().Rejected.
	Failed uint64
	// Refused counts the messages 1 dropped without a channel: an invalid handshake, an
	// untrusted initiator (IK names it in message 1), no return route to answer it, or
	// MaxPendingHandshakes reached.
	Refused uint64
	// Duplicates counts the messages 1 that came again (an at-least-once duplicate, or a
	// replayed IK message 1): they make no new channel.
	Duplicates uint64
	// NotHandshake counts the messages dropped because they are not handshake message 1 (for
	// example data sent to the listener instead of through a channel).
	NotHandshake uint64
	// Pending is the number of channels waiting for the initiator's message 3; Open the
	// number of open channels (not closed yet). Both include the channels restored from
	// saved sessions, which Accepted does not count (a restored pending channel counts in
	// Opened or Failed when its handshake ends).
	Pending, Open int
}

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	pending, open := l.pending, len(l.channels)
	l.mu.Unlock()
	return ListenerStats{
		Accepted: l.accepted.Load(), Opened: l.opened.Load(), Failed: l.failed.Load(),
		Refused: l.refused.Load(), Duplicates: l.duplicates.Load(), NotHandshake: l.notHandshake.Load(),
		Pending: pending, Open: open,
	}
}

// Listen registers a Listener at the local address on node. cfg is validated as for
// NewResponder; opts may be nil.
func Listen(node *routing.Node, address string, cfg Config, opts *ListenOptions) (*Listener, error) {
	if node == nil {
		return nil, fmt.Errorf("%w: securechannel: listen: nil node", core.ErrInvalidArgument)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Listener{node: node, address: address, cfg: cfg, hellos: map[string]*SecureChannel{}, seenIK: map[ikDigest]struct{}{}, channels: map[string]*SecureChannel{}}
	if opts != nil {
		l.opts = *opts
	}
	if l.opts.HandshakeTimeout <= 0 {
		l.opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.opts.MaxPendingHandshakes <= 0 {
		l.opts.MaxPendingHandshakes = DefaultMaxPendingHandshakes
	}
	if err := node.RegisterSender(address, listenerSender{l}); err != nil {
		return nil, fmt.Errorf("securechannel: listen: %w", err)
	}
	return l, nil
}

// Address returns the listener's local address.
func (l *Listener) Address() wire.Address { return wire.Local(l.address) }

// Channel returns the established channel whose application-facing address is addr. A
// worker that receives a message through a channel finds it as the first address of the
// message's return route, and learns the peer's identity from it:
//
//	if sc, ok := l.Channel(msg.ReturnRoute[0]); ok { who := sc.PeerIdentity() }
func (l *Listener) Channel(addr wire.Address) (*SecureChannel, bool) {
	if addr.Type != wire.AddressLocal {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.channels[string(addr.Value)]
	return c, ok
}

// Channels returns the listener's channels: the established ones and those waiting for the
// initiator's last handshake message (which, too, can be saved with SaveSession to survive
// a restart of the process).
func (l *Listener) Channels() []*SecureChannel {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := make([]*SecureChannel, 0, len(l.hellos))
	for _, c := range l.hellos {
		all = append(all, c)
	}
	return all
}

// Close unregisters the listener and closes every channel it created. It is idempotent.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	var all []*SecureChannel
	for _, c := range l.hellos {
		all = append(all, c)
	}
	l.mu.Unlock()
	_ = l.node.Unregister(l.address)
	for _, c := range all {
		_ = c.Close()
	}
	return nil
}

// listenerSender is a Listener's address: a synchronous routing.Sender, like a channel's
// addresses (see Listener.handle).
type listenerSender struct{ l *Listener }

func (s listenerSender) Send(ctx context.Context, msg wire.TransportMessage) error {
	return s.l.handle(ctx, msg)
}

// handle answers handshake message 1, in the goroutine that delivered it (a TCP
// connection's, a stream subscription's), so that the early data of an IK message 1 goes on
// under the routing.Trackers of that delivery: it stays pending with them until the worker
// it is delivered to handled it, and a stream subscription does not save its position past
// message 1 before that. It returns nil once the message was answered or dropped (messages
// that are not message 1, duplicates, replays, refused handshakes, and message 1 beyond
// MaxPendingHandshakes are logged and dropped). It returns an error only when sending
// message 2 or delivering the early data was cut short (ctx ended, or the node or worker is
// closing), so that the delivery does not move past message 1: message 2 cut short is sent,
// and early data cut short delivered, when message 1 comes again.
func (l *Listener) handle(ctx context.Context, msg wire.TransportMessage) error {
	t, err := PeekType(msg.Payload)
	if err != nil || (t != TypeHandshake1 && t != TypeIK1) {
		// Not for us; nothing to answer. At Warn, as a refused handshake: an application that
		// sends its plaintext to the listener instead of through a channel learns why.
		l.notHandshake.Add(1)
		l.node.WarnLimited("securechannel: listener dropped messages that are not handshake message 1 (send data through a SecureChannel's address)", "messages", "last_listener", l.address, "last_bytes", len(msg.Payload))
		return nil
	}
	key := string(msg.Payload)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	if c, dup := l.hellos[key]; dup {
		l.mu.Unlock()
		// An at-least-once duplicate of message 1: that channel exists already. Its early
		// data, if the channel has not delivered it (cut short, or restored from a session
		// saved before it was handled), goes on now.
		c.duplicates.Add(1)
		l.duplicates.Add(1)
		if err := c.resendMessage2(ctx); err != nil {
			return err
		}
		return l.redeliverEarly(ctx, c, msg.Payload)
	}
	if _, replay := l.seenIK[sha256.Sum256(msg.Payload)]; replay {
		l.mu.Unlock()
		l.duplicates.Add(1)
		l.node.Logger().Debug("securechannel: dropped a replayed IK message 1 whose channel is gone", "listener", l.address)
		return nil // never deliver its early data twice
	}
	if len(msg.ReturnRoute) == 0 {
		// Nowhere to answer it, and a channel without a route to its peer could neither send
		// nor be restored from its saved session.
		l.mu.Unlock()
		l.dropped(errors.New("handshake message 1 without a return route: nowhere to answer it"))
		return nil
	}
	if n := l.pending; n >= l.opts.MaxPendingHandshakes {
		l.mu.Unlock()
		l.dropped(errTooManyPending(n))
		return nil
	}
	l.mu.Unlock()

	hs, err := NewResponder(l.cfg)
	if err != nil {
		l.dropped(err)
		return nil
	}
	if err := hs.ReadMessage(msg.Payload); err != nil {
		l.dropped(fmt.Errorf("refused handshake: %w", err))
		return nil
	}
	ik := t == TypeIK1
	early := hs.EarlyData()
	m2, err := hs.WriteMessage()
	if err != nil {
		l.dropped(err)
		return nil
	}
	c, err := newSecureChannel(l.node, hs)
	if err != nil {
		l.dropped(err)
		return nil
	}
	c.peerRoute = msg.ReturnRoute.Clone()
	c.hello = []byte(key)
	if ik && len(early) > 0 {
		c.ikEarly = ikEarlyWaiting
	}
	if err := l.track(c, key, false, l.opts.MaxPendingHandshakes); err != nil {
		_ = c.Close()
		if !errors.Is(err, core.ErrClosed) && !errors.Is(err, errHelloTracked) {
			l.dropped(err) // too many pending handshakes
		}
		// Closed meanwhile, or a concurrent duplicate of message 1 made the channel first:
		// that channel delivers the early data.
		if errors.Is(err, errHelloTracked) {
			l.duplicates.Add(1)
		}
		return nil
	}
	l.accepted.Add(1)
	err = l.node.Send(ctx, wire.TransportMessage{OnwardRoute: c.peerRoute.Clone(), ReturnRoute: wire.Route{wire.Local(c.decAddr)}, Payload: bytes.Clone(m2)})
	if err != nil {
		if cutShort(ctx, err) {
			// Message 1 comes again, as a duplicate: send message 2 then.
			c.mu.Lock()
			c.unsent2 = m2
			c.mu.Unlock()
			err = fmt.Errorf("securechannel: listener %s: send handshake message 2: %w", l.address, err)
		} else {
			// A message 1 whose return route leads nowhere: anybody can send one.
			c.node.WarnLimited("securechannel: could not send handshake messages 2", "messages", "last_listener", l.address, "last_address", c.decAddr, "last_err", err)
			err = nil
		}
	}
	if ik {
		// IK completes with message 2: the channel is open, then the early data goes on.
		c.establish(ctx)
		if derr := c.deliverEarly(ctx, early); derr != nil {
			c.log.Warn("securechannel: delivery of the early data of IK message 1 was cut short; it is delivered when message 1 comes again", "address", c.decAddr, "err", derr)
			if err == nil {
				err = derr
			}
		}
	}
	return err
}

// resendMessage2 sends c's handshake message 2 again if this process does not know that it
// was sent (see unsent2): message 1 came again. It returns an error only when the send was
// cut short again (message 1 then comes again once more).
func (c *SecureChannel) resendMessage2(ctx context.Context) error {
	c.mu.Lock()
	m2, route, closed := c.unsent2, c.peerRoute, c.closed
	c.unsent2 = nil
	c.mu.Unlock()
	if m2 == nil || closed {
		return nil
	}
	err := c.node.Send(ctx, wire.TransportMessage{OnwardRoute: route.Clone(), ReturnRoute: wire.Route{wire.Local(c.decAddr)}, Payload: bytes.Clone(m2)})
	if err == nil {
		return nil
	}
	if cutShort(ctx, err) {
		c.mu.Lock()
		if c.unsent2 == nil {
			c.unsent2 = m2
		}
		c.mu.Unlock()
		return fmt.Errorf("securechannel: channel %s: send handshake message 2 again: %w", c.decAddr, err)
	}
	c.node.WarnLimited("securechannel: could not send handshake messages 2", "messages", "last_address", c.decAddr, "last_err", err)
	return nil
}

// redeliverEarly delivers the early data of IK message 1 hello for c, the channel of hello,
// if c has not delivered it (see ikEarlyState). It returns an error only when the delivery
// was cut short.
func (l *Listener) redeliverEarly(ctx context.Context, c *SecureChannel, hello []byte) error {
	if !c.earlyWaiting() {
		return nil
	}
	// The early data is not kept: decrypt message 1 again (it is the one c was made from).
	hs, err := NewResponder(l.cfg)
	if err == nil {
		err = hs.ReadMessage(hello)
	}
	if err != nil {
		c.log.Warn("securechannel: cannot read the early data of IK message 1 again", "address", c.decAddr, "err", err)
		return nil
	}
	if err := c.deliverEarly(ctx, hs.EarlyData()); err != nil {
		c.log.Warn("securechannel: delivery of the early data of IK message 1 was cut short; it is delivered when message 1 comes again", "address", c.decAddr, "err", err)
		return err
	}
	return nil
}

// dropped counts and logs a message 1 that the listener refuses.
func (l *Listener) dropped(err error) {
	l.refused.Add(1)
	l.node.WarnLimited("securechannel: listener dropped handshake messages 1", "messages", "last_listener", l.address, "last_err", err)
}

// errHelloTracked: the listener has a channel for this handshake message 1 already.
var errHelloTracked = errors.New("securechannel: the listener has the channel of this handshake already")

func errTooManyPending(n int) error {
	return fmt.Errorf("%d handshakes pending, dropping a new one", n)
}

// cutShort reports whether err, from sending with ctx, means that the delivery was cut short
// because the receiver or the caller is stopping (see decryptor.Send).
func cutShort(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, routing.ErrClosed)
}

// earlyWaiting reports whether c is open and has early data of IK message 1 to deliver.
func (c *SecureChannel) earlyWaiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch != nil && !c.closed && c.ikEarly == ikEarlyWaiting
}

// deliverEarly delivers pt, the early data of IK message 1, unless c is not open or has
// delivered it already (or is delivering it). It goes into a worker's mailbox followed by
// c.earlyUnhandled and by the routing.Trackers of ctx, so that it stays pending until it is
// handled. A delivery cut short returns the error and leaves the early data waiting for
// message 1 to come again.
func (c *SecureChannel) deliverEarly(ctx context.Context, pt []byte) error {
	c.mu.Lock()
	if c.ch == nil || c.closed || c.ikEarly != ikEarlyWaiting {
		c.mu.Unlock()
		return nil
	}
	c.ikEarly = ikEarlyDelivering
	c.mu.Unlock()
	err := c.deliverInner(c.earlyUnhandled.Context(ctx, 0), pt)
	c.mu.Lock()
	if err != nil {
		c.ikEarly = ikEarlyWaiting
	} else {
		c.ikEarly = ikEarlyDelivered
	}
	c.mu.Unlock()
	return err
}

// earlyUnhandledLocked reports whether the early data of IK message 1 is not handled yet:
// not delivered, being delivered, or delivered into a mailbox and not handled (c.mu held).
// The state is read before the Tracker: the delivery counts the message with the Tracker
// before it moves to ikEarlyDelivered.
func (c *SecureChannel) earlyUnhandledLocked() bool {
	switch c.ikEarly {
	case ikEarlyWaiting, ikEarlyDelivering:
		return true
	case ikEarlyDelivered:
		return c.earlyUnhandled.Pending() > 0
	}
	return false
}

// track makes c, the responder channel of handshake message 1 key, one of the listener's
// channels: established already (restored), or pending, with its handshake timeout for XX.
// It fails after Close (core.ErrClosed), if the listener has a channel for key
// (errHelloTracked), or if maxPending > 0 and c would be pending beyond it.
func (l *Listener) track(c *SecureChannel, key string, established bool, maxPending int) error {
	c.onOpen = func(c *SecureChannel) {
		l.mu.Lock()
		if l.hellos[key] == c {
			l.pending--
			l.channels[c.encAddr] = c
			l.opened.Add(1)
		}
		l.mu.Unlock()
	}
	c.notify = l.opts.OnChannel
	c.onClose = func(c *SecureChannel) {
		c.mu.Lock()
		handshakeErr := c.err
		c.mu.Unlock()
		l.mu.Lock()
		if l.hellos[key] == c {
			delete(l.hellos, key)
			if _, established := l.channels[c.encAddr]; established {
				delete(l.channels, c.encAddr)
			} else {
				l.pending--
				if handshakeErr != nil && !errors.Is(handshakeErr, core.ErrClosed) {
					l.failed.Add(1) // not closed by the application or the listener
				}
			}
		}
		l.mu.Unlock()
	}
	ik := MessageType(key[0]) == TypeIK1
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return fmt.Errorf("securechannel: listener %s: %w", l.address, core.ErrClosed)
	}
	if _, dup := l.hellos[key]; dup {
		l.mu.Unlock()
		return fmt.Errorf("%w: %w (listener %s)", core.ErrInvalidArgument, errHelloTracked, l.address)
	}
	if !established && maxPending > 0 && l.pending >= maxPending {
		n := l.pending
		l.mu.Unlock()
		return errTooManyPending(n)
	}
	l.hellos[key] = c
	if established {
		l.channels[c.encAddr] = c
	} else {
		l.pending++
	}
	if ik {
		l.rememberIK(key)
	}
	l.mu.Unlock()
	if !established && !ik {
		timeout := l.opts.HandshakeTimeout
		c.mu.Lock()
		c.timer = time.AfterFunc(timeout, func() {
			c.mu.Lock()
			open := c.ch != nil
			c.mu.Unlock()
			if !open {
				c.fail(fmt.Errorf("securechannel: no handshake message 3 within %v (raise ListenOptions.HandshakeTimeout if initiators go offline mid-handshake)", timeout))
			}
		})
		c.mu.Unlock()
	}
	return nil
}

// ikDigest is the SHA-256 digest of an IK message 1: what a listener remembers of it, so
// that remembering maxRememberedIK of them takes 128 KiB however much early data they carry.
type ikDigest = [sha256.Size]byte

// rememberIK records an IK message 1 in a bounded FIFO set (l.mu held).
func (l *Listener) rememberIK(hello string) {
	key := sha256.Sum256([]byte(hello))
	if len(l.seenOrder) >= maxRememberedIK {
		delete(l.seenIK, l.seenOrder[0])
		l.seenOrder = l.seenOrder[1:]
	}
	l.seenIK[key] = struct{}{}
	l.seenOrder = append(l.seenOrder, key)
}

// MaxPayloadSize returns the largest application payload that fits through a SecureChannel
// in one message when the route after the channel's address is onward and the return route
// is ret: the encoded inner message must not exceed MaxPlaintextSize. It returns a negative
// number when the routes alone are too long.
func MaxPayloadSize(onward, ret wire.Route) int {
	room := MaxPlaintextSize - (1 + onward.Size() + ret.Size()) // for the payload's length and bytes
	n := room - wire.UintSize(uint64(max(room, 0)))
	// The length of a payload that fits may take a byte less than the room's would (a room of
	// 128 holds 127 bytes and their 1-byte length, not 126 and a 2-byte one).
	for n >= 0 && wire.DataSize(n+1) <= room {
		n++
	}
	return n
}
