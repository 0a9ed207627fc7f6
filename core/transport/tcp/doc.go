// Package tcp is the TCP transport of a [routing.Node]: Ockam routing v1 messages in
// length-prefixed frames.
//
// # Framing
//
// Each frame is a u16 big-endian length followed by exactly that many bytes holding one
// encoded [wire.TransportMessage]. A frame with length 0, a message that does not decode, a
// version other than 1 or trailing bytes closes that connection (and only that one); the
// reason is logged. A message that encodes to more than [wire.MaxFrame] bytes is refused at
// send with an error matching [wire.ErrFrameTooLarge]; it is never truncated. Routes hold at
// most [wire.MaxRouteLen] addresses: a frame with a longer one does not decode, and a message
// with one is refused at send with an error matching [wire.ErrRouteTooLong].
//
// An accepted connection whose first bytes are the start of an HTTP request (an HTTP/1.x
// method and a space, or the HTTP/2 preface) is someone pointing an HTTP client at the
// wrong port: the transport warns that the port speaks routing v1, not HTTP, with the
// client's address (rate-limited, as below; or, with [WithRefusedHook], hands it to the hook
// with [ErrHTTPRequest] and logs at Debug), answers a fixed "400 Bad Request" whose body
// says the same (nothing of the request is repeated), and closes the connection. No frame
// is taken for a request: the third byte of a frame is the message's version, 1, and that
// of every request a letter. The check reads no byte that reading the first frame would
// not wait for and allocates nothing for a frame. Likewise, a dialled connection whose
// first bytes are an HTTP response (the address dialled is an HTTP server's, such as a
// hub's metrics address) is closed with a warning that says so and quotes the status
// line, not as a frame "HT" (18516 bytes) long cut short; the cause that
// [Transport.Watch] gives for it matches [ErrHTTPServer], so a client can tell its user
// that the address is wrong instead of retrying it.
//
// # Routing
//
// The transport registers itself with the node for address type 1 (TCP, "host:port"), and
// takes itself off the node when it is closed (Close or Shutdown, or the node's Close), so
// a node whose transport was closed can be given a new one. A
// message whose first onward address is a TCP address is sent over a connection to that
// host:port, dialled on first use and reused afterwards; the TCP address is removed from the
// onward route before the frame is written. Every connection, dialled or accepted, is also
// registered on the node at a random local address (32 hex characters): the receiving side
// prepends that address to the return route of every message it reads, so replies travel
// back through the same connection, and a message routed to that local address is written
// to the connection (its address removed from the onward route) — Ockam's TCP router
// behaviour.
//
// A message read from a connection whose first onward address is itself a TCP address is
// dropped unless [WithRelay] allows relaying, so a peer cannot make the node dial arbitrary
// hosts. Routes learned from replies start with a connection's local address; use
// [Transport.StableRoute] to turn them into routes that survive reconnects.
//
// Reads go through a buffer, so a frame's header and body, and the small frames behind it,
// arrive in one read system call. Each frame's body is copied into a buffer of its own, and
// the messages a connection delivers own their bytes: workers may keep their routes and
// payloads (which alias that buffer) as long as they like, e.g. to answer a long-poll later.
// Frames of 4 KiB and more are read into pooled buffers and delivered with
// routing.Node.SendOwned: a worker done with one (the hub, once the pushes it carried are
// stored) calls routing.Message.Release to hand its buffer back for a later frame; a worker
// that never does keeps it, and it is garbage collected.
//
// # Queues, timeouts and limits
//
// Each connection has a bounded write queue drained by one writer goroutine, which takes
// everything queued, writes it through a buffer and flushes when the queue is empty, so
// frames queued together leave in as few system calls as fit the buffer. When the queue is full, Send waits for room, for ctx, or for the
// connection to close; a peer that does not read is cut off by the write timeout. Reading is
// done by one goroutine per connection that hands each message to the node; a worker with a
// full mailbox therefore slows down reading from that connection (TCP back-pressure).
//
// An accepted connection must deliver its first frame within the handshake timeout. Any
// connection on which no frame arrives for the idle timeout is closed. Connections beyond
// the maximum (accepted and dialled together) are refused: accepted ones are closed at once,
// dials fail with [ErrTooManyConnections]. Refused accepted connections are warned about,
// or, with [WithRefusedHook], handed to the hook (and logged at Debug). So are the messages
// read that are not delivered (no worker at their address, or a remote address while
// relaying is off), with [WithUndeliverableHook], whose owner may answer them. The
// transport's own warnings about them, and about accepted connections it closes for an
// error (a malformed or cut-short frame, a read error, an idle or handshake timeout), are
// rate-limited (package loglimit): at most one line per kind every 10 seconds, which counts
// the connections or messages since the previous line; the others are logged at Debug. A
// peer cannot flood the log. (A dialled connection closed for an error is warned about
// each time: it is this process's own.)
//
// # Lifetime
//
// [Transport.StopListening] stops accepting and leaves open connections alone (servers call
// it when a graceful shutdown starts); [Transport.Disconnect] closes one connection, e.g.
// one that stopped answering, so that the next send dials a new one. A connection that is
// closing still writes the frames queued on it (for at most the write timeout in all,
// counted from when it starts to close, however slowly its peer reads), but delivers
// nothing more that it reads; it stops counting against the maximum as it starts to
// close. [Transport.Abort] closes one at once, socket included, dropping what is queued:
// servers give up a peer that does not read its replies (a slow consumer) with it, so that
// its socket does not outlive its place in the count.
// [Transport.Shutdown] stops the listeners, lets every connection flush what is already
// queued, closes the connections and waits for all goroutines. The flush is bounded by the
// close timeout ([WithCloseTimeout], default [DefaultCloseTimeout]) and by Shutdown's ctx:
// when either ends first, the connections still writing are closed, which interrupts a
// write blocked on a peer that stopped reading, and their unwritten frames are dropped, so
// Shutdown returns promptly whatever the peers do. [Transport.Close] (also called by the
// node's Close) is Shutdown bounded by the close timeout alone; servers pass their
// shutdown context to Shutdown.
package tcp
