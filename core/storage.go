package core

import "context"

// Message is one message of a stream partition: its index and its bytes.
type Message struct {
	// Index is the message's position in its partition; see the package doc.
	Index uint64
	// Data is the message body. Slices returned by Fetch belong to the caller.
	Data []byte
}

// Storage stores streams of messages. It mirrors the storage of the Ockam stream service
// (init_stream, init_partition, save, fetch) with batch append.
//
// Implementations are safe for concurrent use by multiple goroutines. Every method honours
// ctx: a cancelled or expired ctx makes it return ctx.Err() (possibly wrapped) promptly. A
// call whose ctx is already done when it is made changes nothing (no stream created or
// deleted, no message appended, no index saved); one whose ctx ends while it runs may still
// take effect, as each method documents. After Close every method returns an error matching
// [ErrClosed].
type Storage interface {
	// CreateStream makes sure stream exists with the given number of partitions (>= 1) and
	// returns the number of partitions it has. It is idempotent: creating an existing stream
	// is not an error and returns the existing partition count, which may differ from the
	// count asked for. An invalid name or partition count returns [ErrInvalidArgument].
	CreateStream(ctx context.Context, stream string, partitions int) (int, error)

	// Append appends msgs, in order, to one partition of an existing stream and returns the
	// index of each message (same length and order as msgs). It returns only when every
	// message is durable. Append does not retain msgs after it returns.
	//
	// A stream that was never created returns [ErrStreamNotFound]; a partition outside
	// [0, partitions) or an invalid name returns [ErrInvalidArgument]; a message longer than
	// Capabilities().MaxMessageSize returns [ErrMessageTooLarge] and appends nothing. An empty
	// msgs appends nothing and returns an empty slice. On error, no message of the batch may
	// later be fetched under an index other than one reported by a successful Append; a
	// backend that can partially succeed reports nothing and documents whether the message may
	// still appear (at-least-once callers retry).
	Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error)

	// Fetch returns the messages of one partition with index >= from, in index order, at
	// most limit of them. It never skips a message that exists. It returns an empty slice and
	// a nil error when from is past the last message (caught up) or the partition is empty;
	// limit 0 returns an empty slice; a negative limit returns [ErrInvalidArgument]. A
	// stream that was never created returns [ErrStreamNotFound]; a partition outside
	// [0, partitions) returns [ErrInvalidArgument]. To page, fetch again from the last
	// returned index + 1. A backend may return fewer than limit messages even when more
	// exist (for example to bound a response's size); only an empty result means caught up.
	// Messages that a backend's retention deleted no longer exist: a from below the oldest
	// message left returns messages from that one.
	Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]Message, error)

	// Capabilities describes what this backend guarantees; it never does I/O.
	Capabilities() Capabilities

	// Close releases the backend's resources. It waits for in-flight appends to finish or
	// fail, but never blocks forever. A second Close returns nil.
	Close() error
}

// IndexStorage stores each consumer's saved index per (client_id, stream, partition). It
// mirrors the index storage of the Ockam stream service (get_index, save_index). Whether a
// key of a stream or partition that does not exist can be saved is the backend's to say
// (Kafka keeps committed offsets only for existing topics; bbolt and memory keep any key):
// callers save indexes of streams they read.
//
// Implementations are safe for concurrent use; ctx and Close behave as for [Storage].
type IndexStorage interface {
	// GetIndex returns the saved index: the next index the consumer will read. A key that
	// was never saved returns an error matching [ErrIndexNotFound] (the protocol's
	// "undefined"/none), distinct from index 0.
	GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error)

	// SaveIndex saves index for the key. Saving is monotonic: a value lower than the one
	// saved is ignored (no error); saving the same value again is a no-op. It returns only
	// after the value is durable for a persistent backend.
	SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error

	// Close releases resources; see [Storage].Close.
	Close() error
}

// StreamDeleter is implemented by backends that can delete a stream and all its messages
// (used to clean up after conformance runs). Deleting a missing stream returns
// [ErrStreamNotFound]. The consumer indexes saved for the stream go with it, so a stream
// created again under the same name starts with none: an index saved for the old stream
// would make its consumers skip the new stream's first messages.
type StreamDeleter interface {
	DeleteStream(ctx context.Context, stream string) error
}

// IndexDeleter is implemented by index storages that can delete every index saved for a
// stream, whatever the client and partition. A backend whose indexes live in another
// backend's IndexStorage (as Kinesis's do) calls it from DeleteStream. A stream without
// saved indexes, or one this IndexStorage never heard of, is no error.
type IndexDeleter interface {
	DeleteIndexes(ctx context.Context, stream string) error
}

// PartitionCounter is implemented by backends that can report how many partitions an
// existing stream has without creating it. A missing stream returns [ErrStreamNotFound].
// Implement it unless the broker cannot tell: without it a hub knows only the streams
// created through it since it started, and clients must create other streams again (for
// example after a hub restart) before they can use them.
type PartitionCounter interface {
	Partitions(ctx context.Context, stream string) (int, error)
}
