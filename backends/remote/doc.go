// Package remote is a Sluice backend that stores through a hub: a [core.Storage] and
// [core.IndexStorage] whose every call is a stream protocol request to a hub over TCP. It
// lets the conformance suite, benchmarks and tools run against a deployed hub (and through
// it against whatever broker the hub uses), exactly as a device sees it.
//
// # Configuration
//
// [New] takes the hub's "host:port"; [core.Open] takes "sluice://host:port" once the
// package is imported. URL query parameters: dense=true and persistent=true declare the
// matching capabilities of the hub's backend (the protocol cannot ask), max_message_size=N
// and max_partitions=N lower the defaults, timeout=5s bounds each request.
//
// # Index semantics
//
// Indexes are the hub backend's indexes, unchanged. Saved indexes use the hub's index
// service (sluice_index_get / sluice_index_save), which saves monotonically.
//
// # Errors
//
// Arguments are validated locally ([core.ErrInvalidArgument], [core.ErrMessageTooLarge]).
// Append and Fetch of a stream that does not exist return [core.ErrStreamNotFound].
// A lost connection, a timeout or a hub ERROR reply returns an error matching
// [core.ErrUnavailable]; the next call reconnects.
//
// # Limitations
//
// The Store learns whether a stream exists and how many partitions it has from the hub's
// sluice_stream_info, and the routes to its partitions from stream_create_partitioned
// (which for an existing stream creates nothing). A hub answers sluice_stream_info exactly
// when its backend implements [core.PartitionCounter] (every backend of this module does);
// otherwise only for streams created through that hub process, and Append and Fetch of
// other streams fail with [core.ErrUnavailable]. An Append batch that does not fit one
// frame is sent as several requests: if a later one fails, the earlier messages are stored
// although Append reports an error.
package remote
