// Package client is what a device embeds to talk to a Sluice hub: a [Publisher] that
// appends messages to a stream with at-least-once delivery, a [Consumer] that reads a stream
// and keeps its position, and a low-level [Conn] for plain request/response use.
//
// A [Client] connects a local routing node to a hub: [Dial] creates a node with a TCP
// transport for a hub at "host:port", whose one connection the client's publishers,
// consumers and Conns share; [New] uses an existing node and any route to the hub.
//
// # Delivery
//
// A message is delivered when the hub confirms it (PushConfirm OK, sent only after the
// backend append is durable). The publisher numbers requests uniquely, keeps up to a window
// of messages in flight (Publish blocks while the window is full), gives each request its
// own timeout, and after a failure of its session — a lost connection, a timeout —
// reconnects with exponential backoff and jitter, creates the stream again and resends
// every unconfirmed message in its original order. A push the hub did not take (it is
// shutting down) is resent the same way. A push the hub refused (status ERROR: storing it
// failed) ends no session: only its messages are sent again, after a backoff, and only such
// refusals count against [WithMaxRejections]. After a refusal the publisher asks the hub
// whether the stream still exists (sluice_stream_open): one deleted while the session was up
// ends the session, so that the next one creates it again (partition 0) or the publisher
// fails for good (see [WithPartition]). A session that ends with nothing in flight
// (its idle connection was closed) is no failure: the publisher connects again when it has
// a message to send. With [WithOutbox], unconfirmed messages are kept in a bbolt file and
// resent first after a device restart. [Publisher.Flush] reports messages that failed for
// good.
//
// So messages can be stored twice, never lost once confirmed, and the first occurrence of
// each of a publisher's messages keeps the publish order (see [Publisher] for the one
// exception, a hub that fails an append). [PublisherStats] counts resends, refusals and
// possible duplicates; a receiver that needs exactly-once processing drops duplicates
// (a secure channel does).
//
// The consumer reads from its saved index (the hub's index service, or a local
// [core.IndexStorage]), long-polls for new messages, hands each to its [Handler] in index
// order and saves the next index — acknowledged by the hub — only after the handler
// succeeded. A failed pull is an error that ends the session and is retried; it is never
// taken for "no messages". A handler error is retried with backoff, then the [ErrorPolicy]
// stops the consumer or skips the message. Pulls and saves are pipelined: while the handler
// works through a page, the pull for the next page and the save of the handled position are
// already in flight (at most one of each per session). [WithSaveInterval] saves less often
// (Kafka's auto.commit.interval.ms); [WithUnhandled] holds the saved position back before
// messages that the handler handed on and that are not handled yet. Publishers and
// consumers create a missing stream; a consumer with [WithoutCreate] never does: its Run
// ends with an error matching [core.ErrStreamNotFound] when the stream does not exist, at
// the start or after a reconnect.
//
// A stream deleted and created again starts over at index 0 on most backends (Kinesis
// numbers it above every index of the old one, so a surviving saved index skips nothing
// there). When the hub refuses a consumer's pull, the consumer asks it whether the stream
// still exists (sluice_stream_open); if not, or when a later session finds the stream
// missing, it forgets its in-memory position, and its next session loads the saved index
// again: gone with the stream on backends that delete saved indexes with it
// ([core.IndexDeleter]), so it reads the new stream from its start index; where the saved
// index survived, it resumes there (past the new stream's first messages, on a backend that
// starts it at 0). Without a client id it starts at the start index.
//
// # Partitions
//
// A publisher and a consumer each talk to one partition of their stream: partition 0 by
// default (stream_create, as Ockam's stream clients do), another with [WithPartition] and
// [WithConsumerPartition]. A partition above 0 needs a stream created with enough
// partitions ([Conn.CreateStream], sluice create -partitions N); it is never created by
// them, and a missing stream or partition fails them for good with an error matching
// [core.ErrStreamNotFound] or [core.ErrInvalidArgument]. A consumer's saved index is per
// client id, stream and partition. [KeyPartition] maps a message key to a partition as
// Kafka's default partitioner does, so that messages with one key keep their order: publish
// each on the publisher of its key's partition.
//
// # Configuration
//
// Clients, publishers and consumers take functional options, validated by their
// constructors; an invalid value returns an error matching [core.ErrInvalidOption].
//
// # Errors
//
// Errors match the sentinels of package core with errors.Is: [core.ErrClosed] after Close,
// [core.ErrMessageTooLarge] for a message that cannot fit a frame ([MaxMessageSize]),
// [core.ErrInvalidArgument] for a bad stream name, [core.ErrUnavailable] when the hub
// cannot be reached; [ErrTimeout], [ErrRejected], [ErrProtocol] and [ErrClosedBeforeAnswer]
// (a hub that accepted the connection and closed it at once: typically one at its
// connection limit) and [github.com/sluicehq/sluice/core/transport/tcp.ErrHTTPServer] (the
// address is an HTTP server's, not a hub's) say why a session failed; [ErrRefused] (which
// also matches [ErrRejected]) marks a push the hub refused, which a Publisher sends again.
//
// # Limitations
//
// A publisher and a consumer each talk to one partition; no publisher spreads messages over
// partitions by itself ([KeyPartition] names a key's partition, for one publisher per
// partition). The publisher's window counts messages, not bytes. A TCP
// connection that silently stops delivering bytes is replaced only after the client's idle
// timeout ([WithIdleTimeout]); until then requests time out and are resent on it.
//
// A consumer notices a deleted stream only when the hub refuses one of its pulls and then
// reports the stream missing, or a session finds it missing. It misses a deletion when the
// stream is created again before that: between two of its pulls' fetches (a tool deleted
// and created the stream in the backend while its long poll was parked on a hub whose
// partition worker stays up: the next fetch finds the new stream), between the refused
// pull and its question, or while it is disconnected (its next session's stream_create
// finds the stream created again, or creates it). It then goes on from its old position and
// skips the new stream's first messages. A hub that cannot tell whether the stream exists,
// or does not know sluice_stream_open, leaves the position as it is too. A save of the
// position that the hub carries out after the deletion outlives it, and the consumer
// resumes there.
package client
