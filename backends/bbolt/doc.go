// Package bbolt is Sluice's embedded, durable default backend: streams, their messages and
// consumer indexes in one bbolt (go.etcd.io/bbolt) file. A [Store] implements
// [core.Storage], [core.IndexStorage], [core.StreamDeleter], [core.IndexDeleter],
// [core.PartitionCounter] and [core.AsyncAppender].
//
// Writes from many goroutines are group-committed: a committer goroutine owned by the Store
// covers every write waiting at that moment with one bbolt transaction, so one fsync confirms
// many appends. Reads run concurrently in read-only transactions. [Store.AppendAsync] queues
// an append and returns, so a caller such as the hub keeps several appends to a partition
// waiting while a commit runs: they share the next commit, with the index saves that arrived
// meanwhile, instead of each waiting for a commit of its own.
//
// # Configuration
//
// In a program, call [New] with a path and [Options] (nil means defaults), or [NewWithDB] to
// keep the Store's buckets in a bbolt database the program opened itself. Through the
// backend registry, blank-import this package and open a URL with [core.Open]:
//
//	bbolt:///var/lib/sluice              absolute path
//	bbolt:data/sluice                    relative path
//	bbolt:///var/lib/sluice/hub.db?max_message_size=1048576&nosync=false
//
// Both forms of path are percent-decoded (bbolt:my%20data is the directory "my data").
// The path is a directory when it exists as one, or does not exist and its last element has
// no extension: the database is then the file "sluice.db" inside it. Otherwise it is the
// database file. Missing directories are created (mode 0700). Query parameters, each at most
// once; an unknown one is an error:
//
//	max_message_size=N   largest message in bytes (default 4 MiB)
//	max_partitions=N     largest partition count (default and maximum 1024)
//	max_fetch_bytes=N    soft cap on the bytes one Fetch returns (default 16 MiB)
//	max_commit_bytes=N   soft cap on the message bytes one group commit covers (default 32 MiB)
//	max_messages=N       retention: each partition keeps only its newest N messages
//	                     (default: every message; see # Retention)
//	nosync=BOOL          skip fsync: safe against process crashes only (default false)
//	sync_freelist=BOOL   write bbolt's free-page list in every commit, for a faster open of a
//	                     large file (default false: bbolt rebuilds it on open; see Options)
//	lock_timeout=DUR     wait this long for another process to release the file (default 5s)
//	mode=OCTAL           permission of a new database file (default 600)
//
// A bbolt file can be open in only one process at a time; a second opener waits
// lock_timeout and then fails with [core.ErrUnavailable].
//
// # Index semantics
//
// Indexes are dense: the messages of each partition have the indexes 0, 1, 2, ... in append
// order. Each (stream, partition) is a bucket whose keys are the indexes as big-endian uint64
// and whose values are the message bytes, so Fetch(from) is a cursor seek to from, never a
// scan. The next index of a partition is the last key + 1, read once with a cursor and then
// kept in memory by the committer, the only writer; an index is never reused, also across
// close/reopen and crashes, because it is derived from what is committed (retention never
// deletes a partition's last message). Deleting a stream deletes its messages and its saved
// consumer indexes; a stream created again under the same name starts again at 0.
//
// With retention (see # Retention), a partition holds the consecutive indexes from its oldest kept
// message to its last, and Fetch(from) with from below the oldest kept message returns
// messages from the oldest kept one, as Kafka fetches from its log start offset: the deleted
// messages no longer exist, so none is skipped. Capabilities().DenseIndex stays true:
// retention changes no message's index, and two messages a Fetch returns one after the other
// always have consecutive indexes; the only gap is between a from below the oldest kept
// message and the first message returned. A caller that needs to know how many messages it
// missed there compares the two.
//
// The layout of the file: bucket "meta" maps a stream name to its partition count (uint32,
// big-endian); bucket "streams" holds a bucket per stream holding a bucket per partition
// (named by the partition as big-endian uint32); bucket "index" maps
// stream NUL partition(uint32) client_id to a saved index (uint64); bucket "sluice" holds the
// format version. SaveIndex reads, compares and writes in one transaction, so a saved index
// never decreases.
//
// # Retention
//
// By default a partition keeps every message until its stream is deleted, and the file only
// grows. Options.MaxMessagesPerPartition (URL max_messages=N) bounds each partition to its
// newest N messages, like Kafka's retention or NATS JetStream's MaxMsgs, but by count and per
// partition: the committer, in the transaction that appends to a partition, also deletes the
// partition's oldest messages beyond N (one cursor seek, then one delete per message; in
// steady state it deletes as many messages as it appends). So once an Append returns, its
// partition holds at most N messages, the newest; a partition with fewer keeps them all; an
// Append of more than N messages reports an index for each but keeps only its newest N.
// Streams and partitions are bounded each on its own. Retention is by count only: not by
// age, and not by bytes.
//
// bbolt reuses the pages of deleted messages for new ones, so the file stops growing once
// the partitions are full, but it never shrinks: a file that grew before retention was
// turned on or lowered keeps its size (with the freed pages reused; bbolt's own CLI can
// compact a file offline). Nothing is deleted when the file is opened: after retention was
// turned on or lowered, the next Append to each partition deletes the whole excess in its
// commit, which takes long on a large partition (about 2 s for a million 1 KiB messages on a
// small 2-core machine), and the other writes wait for it.
//
// Retention deletes messages whether or not a consumer has read them. Saved consumer indexes
// are left as they are: a consumer whose saved index is below the oldest kept message resumes
// at the oldest kept message, as a Kafka consumer with auto.offset.reset=earliest does, and
// the messages deleted before it read them are lost to it. That is on purpose: the bound
// holds whatever the consumers do. Choose N above the number of messages a partition
// receives while its slowest consumer may be away. A hub on a Store with retention counts
// the messages its pulls skipped that way (metric retention_skipped) and warns about them.
//
// The conformance suite checks that a backend keeps every message appended, so a Store with
// retention passes it only when N is at least the most messages one of its subtests reads
// back from one partition (8,000 with the suite's default Harness, in ConcurrentAppend). With
// a smaller N, the subtests that read back more than N messages of one partition fail, as
// they should (with N = 1: Order, Paging, Persistence, ConcurrentAppend and most others that
// append); the others, and the whole IndexStorage suite, pass.
//
// # Durability
//
// Append, CreateStream, DeleteStream and SaveIndex return only after the transaction holding
// the write has committed and, unless NoSync is set, been fsynced: a message whose index
// Append reported is in the file after a crash of the process or of the machine. bbolt writes
// data pages, fsyncs, then writes the meta page and fsyncs again, so a crash leaves either the
// whole group commit or none of it. When New creates the file (or directories for it), it
// also fsyncs the directories that hold them, so that the file itself survives such a crash.
//
// A caller whose ctx ends while its write waits for the committer gets ctx.Err(). If the
// committer had not started on the write, nothing is written; if it had, the write may still
// be committed (an Append then under the indexes it would have reported). At-least-once
// callers retry, so a message may be stored twice; consumers deduplicate.
//
// # Errors
//
// Errors match the sentinels of package core with errors.Is: [core.ErrStreamNotFound],
// [core.ErrIndexNotFound], [core.ErrInvalidArgument], [core.ErrMessageTooLarge],
// [core.ErrClosed] (also for bbolt's "database not open"), [core.ErrInvalidOption] for bad
// options and URLs, [core.ErrUnavailable] when the file is locked by another process. A
// path the file system refuses (no permission, a read-only mount, a file where a directory
// should be) is not an invalid option: New returns the system's error and what to do.
// Cancellation returns the context's error. bbolt's own error stays in the chain. In a group
// commit, a write rejected by its own checks (a missing stream, say) fails alone; a failed
// commit (a disk error) fails every write of the group, and none of them is stored.
//
// # Limitations
//
//   - One process at a time: bbolt takes an exclusive file lock. Use Kafka, Pulsar or
//     Kinesis for a hub with several processes.
//   - All writes go through one committer goroutine and one bbolt writer; throughput comes
//     from batching, not parallelism. Fetch is not blocked by writes.
//   - Retention is by message count per partition only (Options.MaxMessagesPerPartition),
//     off by default, and bbolt does not shrink its file (freed pages are reused).
//   - A message must fit in memory twice (the caller's copy and the Store's); the largest
//     allowed is 2 GiB - 2 bytes, bbolt's value limit.
//   - If the operating system reports an fsync error, bbolt rolls the transaction back and
//     every write of the group fails; whether the bytes reached the disk is then unknown,
//     as for any fsync failure.
package bbolt
