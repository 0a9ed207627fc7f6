// Package remote is a Sluice backend that stores through a hub: a [core.Storage] and
// [core.IndexStorage] whose every call is a stream protocol request to a hub over TCP. It
// lets the conformance suite, benchmarks and tools run against a deployed hub (and through
// it against whatever broker the hub uses), exactly as a device sees it.
//
// # Configuration
//
// [New] takes the hub's "host:port" and connects on first use; [core.Open] takes
// "sluice://host:port" once the package is imported, connects at once and asks the hub one
// question (a stream's partition count), so that it fails, as for the other backends,
// when no hub listens there: nothing, or an HTTP server such as a hub's -metrics-addr.
// URL query parameters: dense=true and persistent=true declare the matching capabilities
// of the hub's backend (the protocol cannot ask), max_message_size=N and max_partitions=N
// lower the defaults, timeout=5s bounds each request.
//
// # Index semantics
//
// Indexes are the hub backend's indexes, unchanged. Saved indexes use the hub's index
// service (sluice_index_get / sluice_index_save), which saves monotonically.
//
// # Errors
//
// Arguments are validated locally ([core.ErrInvalidArgument], [core.ErrMessageTooLarge]).
// Append and Fetch of a stream that does not exist return [core.ErrStreamNotFound], also
// when another Store (another hub of the same broker, or the hub's backend itself) deleted
// it after this Store learned its routes: the hub only says that such a request failed (a
// push confirm with status ERROR), so after a push or pull the hub refused, the Store asks
// it whether the stream still exists. If not, the call returns [core.ErrStreamNotFound];
// if it was created again without that partition, [core.ErrInvalidArgument]. A stream
// created again by another Store is used with its new partition count from the next call
// on.
// A lost connection, a timeout or a hub ERROR reply returns an error matching
// [core.ErrUnavailable]; the next call reconnects.
//
// # Limitations
//
// The Store learns whether a stream exists, how many partitions it has and the routes to
// them in one request, the hub's sluice_stream_open, which never creates the stream; it
// does so once per connection and again after it found the stream changed. A hub can tell
// exactly when its backend implements [core.PartitionCounter] (every backend of this
// module does; this one asks its hub's sluice_stream_info, so a hub on a remote Store
// serves streams created through the hub behind it); otherwise only for streams created
// through that hub process, and Append and Fetch of other streams fail with
// [core.ErrUnavailable].
//
// A hub that does not know sluice_stream_open (one older than it) answers it with an Ockam
// "error" reply. The Store then asks sluice_stream_info whether the stream exists and learns
// the routes from stream_create_partitioned, which for an existing stream creates nothing:
// with such a hub only, if another Store deletes the stream between the two requests (one
// round trip), the second creates it again, empty, and the Append or Fetch that was
// learning the routes goes to the new stream instead of returning [core.ErrStreamNotFound].
// With such a hub, delete streams through the Store that uses them where possible, or when
// no Store uses them. A hub that does not answer sluice_stream_open at all is not asked the
// old way: the request times out and the call fails with [core.ErrUnavailable].
//
// An Append batch that does not fit one frame is sent as several requests: if a later one
// fails, the earlier messages are stored although Append reports an error.
package remote
