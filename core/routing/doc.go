// Package routing implements Ockam routing v1 inside one process: a [Node] holds workers at
// local addresses and transports for remote address types, and moves
// [wire.TransportMessage]s between them.
//
// # Routing rules
//
// A message is delivered to its first onward address. A local address (type 0) names a
// worker of the node; any other type is handed to the transport registered for that type
// (the TCP transport for type 1), which carries the message to another node. A worker that
// forwards a message removes itself from the onward route and prepends itself to the return
// route ([Forward]); a reply goes to the return route of the request and carries the
// replier's address as its return route ([Reply]). Payloads are opaque to routing.
//
// # Mailboxes
//
// Each worker registered with [Node.Register] gets a bounded mailbox and one goroutine, owned
// by the node, that calls HandleMessage for one message at a time, in arrival order. When a
// mailbox is full, [Node.Send] waits until there is room, ctx is done or the worker or node
// stops; it never drops a message silently. Because of that, two workers that send to each
// other from their handlers with full mailboxes can wait on each other: handlers that reply to
// remote peers should use a ctx with a deadline. A [Sender] registered with
// [Node.RegisterSender] has no mailbox: the node calls its Send from the sender's goroutine.
//
// A [Tracker] follows the messages sent with its context into mailboxes until they are
// handled, so that whoever hands messages to workers (a stream subscription) acknowledges
// upstream only what was handled; a message dropped unhandled stays pending for good. A
// Sender handles a message within its Send, unless it keeps the message to handle later (a
// secure channel keeps data that overtook its handshake): it then holds it with [Hold], so
// that the message stays pending until the Sender releases it.
//
// # Ownership
//
// Send hands the message over: the receiver owns the payload (it may modify it, for example
// decrypt it in place), but routes are read-only for receivers, because a sender may share
// one route among many messages; a worker that needs another route builds a new one.
// [Node.SendBorrowed] lets a caller keep its payload buffer for the next message: the node
// copies the payload unless the destination declares with [PayloadCopier] that it copies
// what it keeps. [Node.SendOwned] lends a payload whose buffer the sender wants back (a
// transport's pooled frame): a worker that is done with it calls [Message.Release]; a
// worker that keeps it simply never does.
//
// # Lifetime
//
// [Node.Unregister] removes a worker at once, dropping what is queued for it.
// [Node.UnregisterIdle] removes it only when nothing is queued for it and no handler is
// running, atomically with Send, so that a server can retire idle workers without losing a
// message: a message that races with it either reaches the worker first or finds the
// address free, and the fallback registers a worker again.
//
// [Node.Close] closes every transport, stops every mailbox goroutine (messages still queued
// are dropped, handlers in progress see their ctx cancelled) and waits for them. After Close,
// Send and Register return errors matching [ErrClosed].
package routing
