// Package pulsar is a Sluice backend on Apache Pulsar, with github.com/apache/pulsar-client-go
// for messages and Pulsar's admin REST API (plain net/http) for topics. A [Store] is both the
// core.Storage and the core.IndexStorage; it registers the URL scheme "pulsar".
//
// # Configuration
//
// Programs blank-import the package and open a URL with core.Open:
//
//	pulsar://127.0.0.1:6650?admin=http://127.0.0.1:8080&tenant=public&namespace=default&prefix=sluice-
//
// (also max_message_size, max_partitions, max_producers, max_reader_bytes and
// retention=infinite). [Open]
// takes the same URL and builds a pulsar.Client that the Store owns. [New] takes a caller's
// pulsar.Client (for authentication, TLS, logging: the caller keeps it and closes it) and
// the admin URL. [Options] set the tenant and namespace (default public/default), a
// topic prefix, the largest message (default [DefaultMaxMessageSize], Pulsar's 5 MiB less
// 8 KiB of metadata headroom), the most partitions per stream (default
// [DefaultMaxPartitions]), the most producers a Store keeps (default [DefaultMaxProducers]),
// the memory its idle readers may hold (default [DefaultMaxReaderBytes], see "Reader
// memory") and whether CreateStream sets infinite topic-level retention.
//
// A stream "s" with n partitions is the partitioned topic
// persistent://<tenant>/<namespace>/<prefix>s, created through the admin API with n
// partitions; partition p is the topic ...<prefix>s-partition-<p>. Append uses one producer
// per partition topic, cached, with batching off, and waits for the send receipt of every
// message (the broker has written the entry to the bookies' journals: Pulsar's durable
// acknowledgement). Fetch opens a reader positioned at the message id of its from index.
//
// Producers. A Store keeps at most Options.MaxProducers producers ([DefaultMaxProducers]):
// beyond it, a lookup closes the least recently used producer that no append is using (a
// later append to its partition creates a new one: a lookup and a producer round trip). An
// append holds its producer from its start to its last receipt, so eviction never fails or
// reorders an append: a producer is closed only once every message sent on it was
// acknowledged, and the messages of later appends, on a new producer, come after them.
// While more appends to different partitions are in flight than the bound, the Store holds
// more producers, and the next append after them closes the extra ones. Close closes them
// all.
//
// # Index semantics
//
// Pulsar identifies a persisted message by a MessageID (ledger id, entry id, batch index,
// partition). With batching off every message is its own entry (batch index -1), and the
// backend maps it to
//
//	index = ledgerID << 28 | entryID        (EntryBits = 28, LedgerBits = 36)
//
// Bit budget: entry ids up to [MaxEntryID] (268,435,455 messages per ledger) and ledger ids
// up to [MaxLedgerID] (68,719,476,735). A broker rolls a topic over to a new ledger after
// managedLedgerMaxEntriesPerLedger entries (default 50,000), but not before
// managedLedgerMinLedgerRolloverTimeMinutes (default 10) — so 268M entries is 447,000
// messages per second for ten minutes on one partition. Ledger ids come from the cluster-wide
// BookKeeper id generator; 2^36 ledgers are far beyond any cluster's lifetime. A receipt or a
// read message outside the budget, or a message inside a batch (written by another
// producer with batching on), is an error matching [ErrIndexOutOfRange]; nothing is ever
// silently truncated.
//
// Monotonicity. Within one topic (one managed ledger) Pulsar appends to one ledger at a time;
// a new ledger is opened only after the previous one is closed, and its id, drawn from the
// cluster's monotonically increasing ledger id generator, is larger than every earlier
// ledger's. Entry ids within a ledger are consecutive from 0 in append order. So append
// order is the lexicographic order of (ledgerID, entryID) — the order Pulsar itself uses to
// compare positions and message ids. For two messages a before b in one partition, either
// ledger(a) < ledger(b), and then index(a) < ledger(a)+1 << 28 <= index(b) because
// entry(a) < 2^28; or ledger(a) = ledger(b) and entry(a) < entry(b), and the high bits are
// equal while the low bits increase. The map is therefore strictly increasing and injective
// on every id within the budget, across broker restarts (a restart opens a new, larger
// ledger) and across producers. Indexes are not dense: a new ledger starts at entry 0 of a
// larger ledger id (Capabilities().DenseIndex is false).
//
// Seeking. Fetch(from) decodes from into (ledger, entry) and creates a reader (or reuses one
// that a previous Fetch left positioned at from, see below) with
// StartMessageID = that id and StartMessageIDInclusive, so the broker positions its cursor
// there (the id need not exist: the broker moves to the next valid position, skipping to the
// next ledger when the entry is past the end of its ledger) and never scans the partition
// from the start. The Store then asks for the last persisted message id of the partition
// (one round trip, a GET of the admin API's lastMessageId, which a cancelled Fetch or Close
// abandons at once; the reader's own GetLastMessageID cannot be stopped and may wait while
// the reader reconnects, without limit);
// if that is below from the partition is caught up and Fetch returns an empty slice at once,
// otherwise it reads until limit messages or that last message. The reader remembers that
// last message and asks again only when a Fetch would otherwise return nothing, so a
// sequential reader pays the round trip once per catching up, not once per Fetch (a Fetch
// may therefore return fewer than limit messages while more exist). What the Store appended
// itself is known to exist without asking (its receipts say so), so a hub that reads what it
// wrote, waking a long poll after an append, does not pay the round trip at all. A message with an
// index below from (the broker may deliver the entry before an inclusive start) is never
// returned.
//
// Streams deleted by another Store. What a Fetch knows to exist without asking the broker
// (the last message the broker reported, what the Store appended itself) exists only until
// another Store (another hub) deletes the stream, maybe re-creating it. A re-created
// partition starts in a new ledger, so its indexes are all above the deleted ones. A Fetch
// that reads towards a message known to exist notices the deletion when its reader delivers
// a later message first (the reader reconnected to the re-created topic and skipped what was
// deleted), or when no message comes within a second: it then asks the broker where the
// partition ends, and reads on through a new reader (the old one may have lost the topic for
// good).
// Either way it forgets the Store's own appends to that partition and the copies the reader
// kept, returns only what the partition holds from its from index on, and closes the
// partition's producer unless an append uses it (the client closes a producer whose topic
// vanished; the next Append creates a new one). A Fetch that asks the broker as usual and
// learns that the partition ends below the Store's own appends forgets them too. None of
// this costs a round trip while nobody else deletes the stream. An Append or a Fetch that
// fails asks the admin API whether the stream still exists: when another Store deleted it
// (and did not create it again), the error matches core.ErrStreamNotFound, not
// core.ErrUnavailable, and the Store forgets the stream, its producers and readers, so that
// the stream created again is used at once. An Append whose receipts take more than a
// second asks the same, and again every second while it waits (one question at a time per
// stream): a producer whose topic was deleted often keeps reconnecting, and its messages
// would otherwise fail only at the send timeout (30 s); when the stream is gone, its
// producers are closed and the Append fails at once.
//
// Reader cache. A Fetch leaves its reader idle, positioned after the last message it
// returned, with a copy of the messages it returned (up to 1 MiB). The next Fetch from that
// position, or from any index within those messages (a caller that used only the first
// messages of a page, as the hub does when a page does not fit its reply frame), takes the
// idle reader instead of creating one: kept messages are served again as copies, then the
// reader continues.
//
// Reader memory. An idle reader holds what its receive queue prefetched: up to its queue
// size of the messages after its position (pulsar-client-go bounds the queue in messages,
// not bytes, and the broker keeps filling it as messages are appended). The Store keeps
// up to 64 idle readers and bounds their memory by Options.MaxReaderBytes (default
// [DefaultMaxReaderBytes], 64 MiB): it estimates an idle reader's queue as its queue size
// times the mean size of the messages it returned, adds the copies it keeps, and closes the
// least recently used idle readers beyond the bound. A reader gets a queue of up to 1000
// messages (pulsar-client-go's default, kept for messages up to 4 KiB by default: a
// smaller queue of small messages slows pulls) that fits in a 16th of the bound (4 MiB by
// default) at the mean message size last seen on its partition, at least one: a queue of
// about the same bytes keeps about the same bytes in flight (64 messages of 64 KiB read
// as fast as 1000). So the bound holds about 64 idle readers of 1 KiB messages (fewer as
// they keep more copies), about 16 of large ones. The first reader of a partition has the default queue; when it returned
// messages so large that its queue is estimated above twice a 16th of the bound, it is
// closed rather than kept, and the next Fetch creates a reader with a smaller queue.
//
// # Index storage
//
// Saved consumer indexes live in Pulsar too (Capabilities().NativeIndexStorage): SaveIndex
// appends a small record (client_id, stream, partition, index; see encodeIndexRecord) to the
// one-partition topic <prefix>sluice=index of the namespace ('=' cannot occur in a stream
// name) and returns after its send receipt. GetIndex and SaveIndex first read the records
// appended since the Store's last read (a seek to its own position, as Fetch does) and keep
// the maximum per key. Because every reader takes the maximum of all records, a lower value
// never replaces a higher one, also with several hubs saving concurrently; SaveIndex of a
// value not above the known maximum appends nothing. DeleteStream (and DeleteIndexes) append
// a record that makes every reader forget the stream's keys saved before it, so a stream
// created again under the same name starts with no saved index. The topic grows by one small
// record per effective save or delete; it needs the same retention as streams and must not be
// compacted (compaction would keep the latest record per key, not the largest).
//
// # Errors
//
// One function maps every error of pulsar-client-go, of the admin API and of the network to
// a core sentinel, keeping the original error in the chain (errors.As finds *pulsar.Error):
// a missing topic (admin 404, TopicNotFound) is core.ErrStreamNotFound, a missing tenant or
// namespace (admin 404 naming it) core.ErrInvalidOption; MessageTooBig is
// core.ErrMessageTooLarge; bad names and conflicting topics are core.ErrInvalidArgument;
// authentication, authorization and configuration errors are core.ErrInvalidOption; calls
// after or during Close are core.ErrClosed (a call that Close cancelled also matches
// context.Canceled); a call whose context ended returns the context's error; everything else
// (timeouts, lookups, connections, broker persistence errors, 5xx) is core.ErrUnavailable.
// The timeouts of the backend's own (Options.HTTPClient's Timeout, the client's operation and
// send timeouts) never match context.DeadlineExceeded: that is only the caller's deadline.
// ErrIndexOutOfRange is described above.
//
// [Open] checks both addresses before it returns: the admin API (a GET of the namespace's
// policies) and the service URL (a dial, then one partitioned-metadata lookup on the binary
// protocol, made on a connection of its own and at most 10 seconds), so a wrong port fails
// Open with an error that names it, matching core.ErrUnavailable, rather than the first
// Append after the operation timeout.
// [New] does no I/O: its caller built the client.
//
// # Limitations
//
//   - Retention: Pulsar deletes closed ledgers that no durable subscription holds unless the
//     namespace (or topic) has retention. Streams are read with non-durable readers, so the
//     namespace needs infinite retention (pulsar-admin namespaces set-retention <ns> --size -1
//     --time -1), or set Options.InfiniteRetention (URL retention=infinite) to have
//     CreateStream set it per topic (needs topic-level policies). Likewise disable the
//     deletion of inactive topics (brokerDeleteInactiveTopicsEnabled=false or a namespace
//     inactive-topic policy). The test launcher configures both.
//   - Writers: streams must be written through this backend (batching off). Topic compaction,
//     offloading with deletion, and message TTL on these topics break the contract.
//   - A failed or cancelled Append may leave some of its messages in the stream (each under
//     its own index, unreported); a producer that reconnects after a broker failure resends
//     unacknowledged messages, so a message can be stored twice (at-least-once; the hub's
//     secure channel drops duplicates).
//   - A Fetch from an index no idle reader covers creates a reader (lookup and subscribe
//     round trips); the Store keeps up to 64 idle readers (see "Reader cache"), so
//     sequential pulls pay at most the last-message-id round trip. The idle readers' memory
//     (prefetched messages and copies of the ones they last returned, at most 1 MiB each)
//     is bounded by Options.MaxReaderBytes, but its queue part is an estimate from the
//     sizes of messages already read (see "Reader memory"): a partition whose messages
//     grow can make an idle reader hold up to its queue size times the new size until a
//     Fetch uses it again. Message payloads are counted, not the client's fixed overhead
//     per message. A reader in use by a Fetch is not counted.
//   - A stream deleted by another Store (see "Index semantics"): a Fetch served entirely from
//     an idle reader's copies (a re-read of a page that ended at the last message the reader
//     knew of) still returns them, deleted or not, and the next Fetch reads the re-created
//     stream; a partition count the Store has seen outlives a re-creation with fewer
//     partitions (more partitions, or partitions added, are learned from the admin API by
//     the first Append or Fetch that names one beyond the count); and an idle reader whose topic was missing when pulsar-client-go tried to
//     reconnect it delivers nothing more: the next Fetch that reads through it waits a
//     second, then asks the admin API where the partition ends and reads on through a new
//     reader. Delete streams through the Store that uses them where possible.
//   - pulsar-client-go's creation and closing of producers and readers take no context. A
//     call gives up on them when its ctx ends, and they run on goroutines of the Store;
//     Close waits for them at most 5 seconds (a broker that stopped answering makes each
//     wait up to the client's operation timeout per request, plus, for a new connection,
//     the dial, which pulsar-client-go bounds only by ClientOptions.ConnectionTimeout:
//     DefaultConnectionTimeout for the client Open builds), then returns and leaves them
//     to end: each closes what it created, and the last one closes the client of a Store
//     built by Open. A Store built by New leaves them using the caller's client until
//     then.
//   - Empty messages carry the property sluice-empty=1: pulsar-client-go drops a
//     non-batched message that has neither payload nor properties when reading it.
package pulsar
