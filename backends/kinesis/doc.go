// Package kinesis is a Sluice storage backend on Amazon Kinesis Data Streams
// (github.com/aws/aws-sdk-go-v2/service/kinesis). It registers the URL scheme "kinesis".
//
// # Configuration
//
//	kinesis://REGION?index=INDEX_URL&endpoint=URL&prefix=sluice-&max_retries=8
//
// or, keeping control of credentials and transport, [New] with a caller's *kinesis.Client
// (never closed by the Store). Each Sluice stream is a Kinesis stream named prefix+stream
// (default prefix "sluice-"), created in provisioned mode with one shard per partition.
// For kinesis-mock or LocalStack set endpoint; without configured AWS credentials, placeholder
// credentials are then used.
//
// # Partitions
//
// Partition p is the p-th open shard in shard-id order. Every record for partition p is
// written with ExplicitHashKey = the starting hash key of that shard, so it always lands there.
// Resharding a stream (split, merge, UpdateShardCount) is not supported: an append that lands
// on another shard fails with an error that says so.
//
// # Index semantics
//
// Kinesis sequence numbers are decimal strings of up to 128 bits, not dense, and only ordered
// within a shard, so Sluice does not expose them. Instead the Store assigns each message a
// uint64 index and embeds it in the record: a record is
//
//	version u8 = 1 | first index u64 big endian | (uvarint length, bytes)...
//
// and its i-th message has index first+i. Concurrent appends to one partition are packed into
// the same records by the partition's writer (group commit), and records are written one at a
// time with PutRecord and SequenceNumberForOrdering, so the shard holds them in index order.
// PutRecords is not used: it does not guarantee order between records, and a partial failure
// would leave later records ahead of a retried earlier one. Packing makes this cheap: one
// PutRecord carries up to 1 MiB, the whole per-second write budget of a shard.
//
// The largest index is math.MaxUint64-1, so that the next index a consumer saves after it
// fits a uint64; a record holding a larger one is corrupt. An append that needs more indexes
// than are left fails and writes nothing: indexes never wrap to 0.
//
// Indexes increase strictly and are never reused, also across the deletion of a stream, but
// they are not dense and do not start at 0: a partition's first index is the time of its
// first append in nanoseconds since 1970 (see Single writer), for example
// 1795000000000000000. A stream deleted and created again under its name thus numbers its
// messages above every index of the old one, so a consumer index saved for the old stream
// that survived the deletion (an index= store without [core.IndexDeleter], such as kafka, a
// consumer's local index store, or a deletion by someone else) makes its consumer read the
// new stream from its start rather than skip its first messages. This assumes that the
// clocks of the hosts that append to a stream agree to within the time it takes to delete
// and create it again.
//
// An append that finally fails burns its indexes, because its record may have been written
// even though the reply was lost. A retried write can store a record twice; Fetch returns each
// index once (it skips indexes it has passed).
//
// Fetch seeks instead of scanning from TRIM_HORIZON: a sparse in-memory map from a record's
// first index to its sequence number (filled by appends and fetches, at most 4096 entries per
// partition, thinned evenly when full) gives a GetShardIterator AT_SEQUENCE_NUMBER position. When
// the map has nothing at or below the index asked for (after a restart), the Store binary
// searches arrival timestamps with AT_TIMESTAMP iterators (about log2(age in ms) probes, once per
// region of the stream) and remembers what it found. What a Fetch read past its limit (a
// packed record is read whole) is kept with the shard iterator after it for the Fetch that
// continues: at most 4 MiB per reader position, 8 positions per partition and 64 MiB per
// Store, for 4 minutes.
//
// # Single writer
//
// The index counter lives in the Store: on first append to a partition it reads the newest
// records (looking back one minute, one hour, one day, then from the trim horizon) to continue
// after the last index. A shard without Sluice records (a new stream, one created again
// under an old name, or one whose records retention deleted) starts at the current time in
// nanoseconds since 1970, above any index handed out before under its name (a shard takes
// about a million messages a second at most), so that none is reused. The
// same rule applies, with a WARN on the default slog logger, when the newest records in
// Sluice's format do not tell where numbering stopped: a corrupt one (its indexes are
// unknown, or above math.MaxUint64-1), or one whose indexes are below an earlier record's
// (another writer's). Records in another format are skipped. Two Stores (two hub
// processes) appending to the same partition would hand out the same indexes: run one
// writer per stream partition, which is what a hub is. A well-formed record of another
// writer with indexes above the last is indistinguishable from one of ours, and numbering
// continues after it.
//
// # Index storage
//
// Kinesis has no place for consumer indexes, so [Open] composes the Store with another
// backend's IndexStorage named by the required index query parameter (for example
// index=bbolt:///var/lib/sluice/kinesis-index; index=memory:// forgets saved indexes on restart).
// When that IndexStorage implements [core.IndexDeleter] (bbolt, memory and pulsar do; kafka
// does not), DeleteStream deletes the stream's saved indexes too, so a stream created again
// under the same name starts with none.
//
// # Throughput and quotas
//
// A real shard accepts 1 MiB/s or 1000 records/s of writes and serves 2 MiB/s or 5 GetRecords
// calls/s of reads. With packing the record limit rarely binds: a hub partition's pushes are
// batched into one Append, which becomes one record per MiB. Reads are bound by the 5 calls/s:
// a consumer fetching small pages at a high rate will be throttled, so fetch with a large limit.
// Throttling (ProvisionedThroughputExceeded, LimitExceeded) and server errors are retried with
// exponential backoff and full jitter (Options.MaxRetries, RetryBase, RetryMax); when they
// persist the error matches core.ErrUnavailable and says which quota applies.
//
// # Errors
//
// Errors are mapped in one place: ResourceNotFound is core.ErrStreamNotFound,
// InvalidArgument and Validation are core.ErrInvalidArgument, persistent throttling,
// transport failures and an expired shard iterator (Fetch makes a new one when called
// again), and a stream that is not ACTIVE (CreateStream) or not gone (DeleteStream) within
// Options.ActiveTimeout are core.ErrUnavailable; a call that Close cancels matches
// core.ErrClosed, and a timeout of the backend's own (the SDK's, a dial timeout) is
// core.ErrUnavailable, not the caller's context.DeadlineExceeded; authentication and
// authorization failures (UnrecognizedClient, InvalidSignature, ExpiredToken,
// MissingAuthenticationToken, AccessDenied, KMSAccessDenied and the like) are
// core.ErrInvalidOption, with what to check: the credentials, the region, or the IAM
// policy, which must allow kinesis:ListStreams, CreateStream, DescribeStreamSummary,
// ListShards, PutRecord, GetShardIterator, GetRecords and DeleteStream. When the AWS SDK
// finds no credentials to sign a request with (none in AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, no AWS_PROFILE or shared credentials file, no instance or task
// role), or cannot refresh them, the error matches core.ErrInvalidOption too, is not
// retried, and says what to set; the kinesis:// URL carries no credentials. The SDK error
// stays in the chain for errors.As.
//
// # Limitations
//
// Retention is Kinesis's (24 hours by default): messages past it disappear and Fetch continues
// from the oldest one left. DeleteStream removes the Kinesis stream. Records not written by
// Sluice are skipped. The Store caches a stream's shards and record positions; when someone
// else deletes the stream, it forgets them once a call finds the stream missing or its
// CreateStream creates the stream again. A deletion and re-creation between two of its
// calls is noticed later: the first Fetch that seeks to a position of the old stream fails
// with core.ErrInvalidArgument (Kinesis refuses its sequence numbers), and the Store forgets
// what it cached, so the next call sees the new stream. Appends still waiting for their
// partition's writer when the Store forgets a stream were never written: they are queued
// again on what the Store finds next (a stream created again: it continues numbering above
// its newest record, as after a restart; a missing stream: core.ErrStreamNotFound), up to
// three times, then fail with core.ErrUnavailable (call again). An append whose PutRecord
// found the stream missing fails with core.ErrStreamNotFound: it is not retried on a
// stream created again meanwhile, as a write of it that the reply did not confirm may
// arrive late, holding the same messages at other indexes.
package kinesis
