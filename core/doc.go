// Package core holds Sluice's contracts: the Storage and IndexStorage interfaces every
// broker backend implements, the Message type, capabilities, sentinel errors, the rules for
// stream names and client ids, and the registry that opens a backend from a URL.
//
// core imports only the standard library. Broker SDKs live in backends/*, which register a
// URL scheme with [Register]; programs blank-import the backends they want and call [Open].
//
// # Index semantics
//
// Every message appended to a (stream, partition) gets a uint64 index. Indexes are strictly
// increasing in append order and never reused within one life of a stream, also across
// close/reopen and crashes; a stream deleted and created again may start again at 0 (which
// is why deleting a stream deletes its saved indexes). They
// need not be dense: a backend whose indexes are always consecutive (0, 1, 2, ...) declares
// [Capabilities].DenseIndex. A consumer's saved index is the NEXT index it will read (Kafka's
// committed-offset semantics): after handling the message with index i it saves i+1.
//
// A backend with retention (Kafka's and Kinesis's own, bbolt's max_messages) deletes the
// oldest messages of a partition. Deleted messages no longer exist: Fetch from an index below
// the oldest message left returns messages from that one, so a consumer whose saved index is
// below it resumes there, and the messages deleted before it read them are lost to it.
//
// # Durability
//
// Append returns only after every message it reports is durable by the backend's strongest
// ordinary setting (bbolt: committed and fsynced; Kafka: acks=all; Pulsar: send receipt;
// Kinesis: PutRecords success per record). A failed Append never leaves a message that a later
// Fetch returns with an index different from one Append reported.
//
// # Errors
//
// Errors are matched with errors.Is against the sentinels in this package: [ErrStreamNotFound],
// [ErrIndexNotFound], [ErrInvalidArgument], [ErrMessageTooLarge], [ErrClosed],
// [ErrInvalidOption], [ErrUnavailable]; cancellation returns the context's error. A backend keeps
// its broker's own error in the chain so errors.As still finds it.
//
// # Helpers for backends
//
// A backend need not write its own plumbing for what every backend needs: [CopyMessages]
// keeps messages past the return of the call that passed them, in one allocation, and
// [Calls] counts the calls in flight so that Close can refuse new calls, wait for the
// running ones and cancel them ([CallErr] tells a call cancelled by Close from one whose
// caller gave up). The Kafka, Pulsar and Kinesis backends use both. [OwnTimeout] keeps a
// timeout of the backend's own from looking like the end of the caller's context.
package core
