// Package kafka stores Sluice streams in Apache Kafka with franz-go: one topic per stream,
// one Kafka partition per stream partition, the Kafka offset as the message index, and
// consumer indexes as committed offsets of one consumer group per client_id.
//
// Programs blank-import the package and open "kafka://host:9092" with core.Open, or call
// [Dial] (the Store owns its client) or [New] (the caller's *kgo.Client, not closed by the
// Store).
//
// # Configuration
//
// The URL form is
//
//	kafka://[user:password@]host:9092[,host2:9092...][?parameter=value&...]
//
// with these parameters (all optional):
//
//	prefix=sluice.            topic name = prefix + stream, group id = prefix + client_id
//	replication=3             replication factor of new topics (default: the broker's
//	                          default.replication.factor)
//	max_partitions=1024       most partitions CreateStream accepts
//	max_message_size=999000   largest message Append accepts, in bytes
//	fetch_max_bytes=1048576   most bytes one Fetch asks the broker for
//	close_timeout=10s         how long Close waits for in-flight calls
//	client_id=hub-1           the Kafka client.id
//	topic.<config>=<value>    a topic config for new topics, e.g. topic.retention.ms=-1
//	sasl=plain|scram-sha-256|scram-sha-512
//	                          SASL with the URL's user and password
//	tls=true                  TLS with the system roots
//	tls_server_name=name      the name to verify instead of the broker host
//	tls_insecure_skip_verify=true
//	                          no certificate verification (tests only)
//
// Kafka takes '.' and '_' in topic names for the same character (its metrics names replace
// one by the other), so it refuses a topic that differs from an existing one only there:
// streams "orders.eu" and "orders_eu" cannot both exist, and CreateStream of the second
// fails with an error matching core.ErrInvalidArgument that says so.
//
// Mutual TLS, custom roots, OAUTHBEARER, AWS MSK IAM and other client settings: build a
// *kgo.Client with [ClientOpts] plus your own options and pass it to [New].
//
// The producer uses acks from all in-sync replicas with idempotent production (franz-go's
// default), the manual partitioner, no linger and no compression (Sluice payloads are
// end-to-end encrypted and do not compress). Set min.insync.replicas on the cluster or
// with topic.min.insync.replicas for the durability you need: acks=all with one in-sync
// replica is as durable as that one broker.
//
// # Index semantics
//
// A message's index is its Kafka offset. Offsets are strictly increasing and never reused
// in a partition, but NOT dense: transaction markers (from transactional producers sharing
// the topic), aborted records and compaction leave gaps, so Capabilities().DenseIndex is
// false. Append reports each record's offset from the produce response. Fetch(from, limit)
// sends one Fetch request (read_committed, max wait 0) for offset from directly to the
// partition leader, none when read-ahead already holds the messages, and more only to read
// on past offsets that hold no message (transaction markers, aborted records), to restart
// at the log start offset, or after the partition's leader moved: it seeks rather than
// scans, never returns an offset below from, skips gaps, and returns an empty result at
// once when from is at or past the last stable offset.
// If retention deleted from, Fetch starts at the log start offset (the first message that
// still exists). A from above the largest int64 is past the end.
//
// An Append that fails (timeout, broker restart, cancelled context) may still have
// written some or all of its messages: they can appear later under offsets Append never
// reported. Callers are at-least-once and retry; duplicates are dropped end to end. An
// Append that returned indexes is durable under exactly those indexes.
//
// # Index storage
//
// The saved index of (client_id, stream, partition) is the offset committed by consumer
// group prefix+client_id for topic prefix+stream, partition — the Kafka committed-offset
// semantics (the NEXT index to read), visible to Kafka tooling (kafka-consumer-groups).
// Commits are "simple" commits (generation -1), so the group must have no active members
// of its own; do not share group ids with Kafka consumers. An index above the largest
// int64 is committed as offset MaxInt64 with the exact value in the commit metadata
// ("sluice:<decimal>"); GetIndex trusts the metadata only when it agrees with the offset.
// A group, topic or partition without a committed offset returns core.ErrIndexNotFound.
// Deleting a stream deletes its committed offsets.
//
// Kafka accepts any commit, so SaveIndex makes it monotonic: saves of one key are
// serialized inside the Store; each reads the committed offset, commits only if the new
// index is higher, and reads it back, committing again (up to five times) while it finds a
// lower value. Two hubs saving the same key concurrently can still race: between hub A's
// read and its commit, hub B may commit a higher value that A's lower commit then
// replaces. A's read-back sees its own value and stops; B corrects it only if its own
// read-back comes after A's commit. The saved index can therefore go BACKWARDS under
// concurrent writers on different hubs, never forwards past a value someone saved: the
// consumer re-reads messages it already handled (at-least-once duplicates), and never
// skips one. Route each client_id to one hub to avoid this.
//
// # Errors
//
// One function maps franz-go and broker errors to core sentinels, keeping the original
// error (a *kerr.Error, net error, ...) in the chain for errors.As:
//
//	UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID     -> core.ErrStreamNotFound
//	MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE         -> core.ErrMessageTooLarge
//	INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS, ... -> core.ErrInvalidArgument
//	kgo.ErrClientClosed, calls cancelled by Close    -> core.ErrClosed
//	SASL_AUTHENTICATION_FAILED, ILLEGAL_SASL_STATE,
//	UNSUPPORTED_SASL_MECHANISM, TOPIC_, GROUP_,
//	CLUSTER_AUTHORIZATION_FAILED, ...                -> core.ErrInvalidOption
//	connection failures, retriable broker errors,
//	record timeouts, coordinator not available,
//	timeouts of the backend's own (a dial timeout),
//	appends whose buffered records the client dropped
//	when a partition was added or the stream deleted
//	or created again                                 -> core.ErrUnavailable
//
// A cancelled or expired context returns an error matching ctx.Err(); a timeout of the
// backend's own does not (it matches core.ErrUnavailable only). Messages longer than
// MaxMessageSize are rejected before anything is produced. Authentication and authorization
// failures are not retryable and say what to check: the URL's user, password and sasl=, or
// the broker's ACLs for that user (core.ErrInvalidOption, as the Pulsar backend maps its own).
//
// # Limitations
//
//   - A failed Append may have written messages (see # Index semantics); there is no
//     transactional mode.
//   - Indexes are not dense.
//   - Concurrent SaveIndex of one key from several hubs may move it backwards (see
//     # Index storage).
//   - CreateStream never changes an existing topic: its partition count, replication and
//     configs stay as they are.
//   - A Store built with [New] (or [Dial] with extra options) on a client without the
//     manual partitioner, acks=all or idempotent production is refused; messages above the client's ProducerBatchMaxBytes (franz-go default
//     1000012) fail with core.ErrMessageTooLarge even if MaxMessageSize is higher.
//   - Fetch reads one partition per request, with max wait 0: no fetch sessions and no
//     broker long poll (the hub parks long polls itself). What a broker answer brought past
//     the Fetch's limit is kept for the next sequential Fetch (at most 16 MiB over all
//     partitions, for 2 s, 4 reader positions per partition), and a sequential reader's
//     next page is prefetched.
package kafka
