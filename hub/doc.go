// Package hub is the Sluice hub: a server that speaks the Ockam stream protocol (and
// Sluice's extensions) over Ockam routing and stores streams in a pluggable backend.
//
//	import _ "github.com/sluicehq/sluice/backends/bbolt" // registers bbolt:
//
//	backend, err := core.Open(ctx, "bbolt:sluice-data")
//	h, err := hub.New(backend, hub.WithLogger(logger))
//	addr, err := h.Listen("127.0.0.1:4000")
//	...
//	err = h.Shutdown(ctx) // then backend.Close()
//
// # Services
//
// The hub registers two workers on its routing node:
//
//   - "stream" ([StreamAddress]): stream_create, stream_create_partitioned and its alias
//     stream_create_partitions (the reply uses the name of the request). A request without a
//     name creates "generated_<16 hex>". Creating an existing stream is not an error: Init is
//     sent again. Init (one per partition for the partitioned forms) is sent with the
//     partition worker's address as its return route, so a client that replies along it
//     reaches that worker.
//   - "stream_index" ([IndexAddress]): Ockam's stream_index and stream_index_partitioned
//     (get answers {client_id, stream_name[, partition], index: optional}; save is not
//     answered, as in Ockam, unless it fails) and Sluice's acknowledged sluice_index_save
//     and sluice_index_get. Saves are monotonic (the backend's [core.IndexStorage] ignores a
//     lower value); a get of a key never saved answers index none. Requests for the same
//     (client_id, stream, partition) are handled in arrival order, so a save followed by a
//     get sees the save; requests for different keys run concurrently.
//
// The stream service also answers Sluice's sluice_stream_info (does a stream exist, and
// with how many partitions) and sluice_stream_open (the same, with one reply per partition
// sent from its worker's address, so that a client learns the routes to an existing stream)
// without creating anything, from the backend when it implements [core.PartitionCounter]
// and otherwise from the streams created through this hub.
//
// Each stream partition has one worker, at the local address "stream.<name>.<partition>".
// It is registered on the first message for that address when the stream has that
// partition (the hub is the routing node's fallback, see routing.Node.AddFallback): a
// create only sends the Inits, so a partition that is never used costs no memory or
// goroutine, and routes learned from an Init survive a hub restart. A request that arrives
// on the hub's TCP transport for a partition the backend does not have (its stream was
// deleted after the client learned the route) is answered as failed from that address
// (see Errors). It handles
// stream_push, stream_pull and Sluice's sluice_push_batch, sluice_pull_wait and
// sluice_pull_batch. A worker that had no push queued or being appended and no pull
// running or parked for [WithWorkerIdleTimeout] (default 5 minutes; 0 never retires one)
// is retired: its goroutines, mailbox and push queue are released, and the next message
// for its address registers a new worker, as after a restart (its indexes come from the
// backend). Workers check at that interval, so a worker goes between one and two
// intervals after it was last busy. Retirement never loses a request: a message racing
// with it either reaches the worker first, which then stays, or the new worker.
// Metrics.PartitionWorkers and Metrics.PartitionWorkersRetired show how many workers
// there are and how many were retired.
//
// # Pushes
//
// The partition worker is the partition's single writer. Pushes are queued (bounded by
// [WithQueueLen]; a full queue slows the connections that push, nothing is dropped) and one
// writer goroutine appends whatever is queued in ONE backend Append (bounded by
// [WithMaxBatch]), then confirms each request: a PushConfirm with status OK and the index is
// sent only after the durable append. With a backend that implements [core.AsyncAppender]
// (bbolt, Kafka, Pulsar) the writer keeps up to [WithMaxAppendsInFlight] such appends in flight,
// batching what arrives meanwhile, and confirms them in the order they were started. A failed append confirms every request of the batch
// with status ERROR; a sluice_push_batch is appended whole or not at all. A message larger
// than [Hub.MaxMessageSize] is confirmed with status ERROR and nothing of its request is
// appended; so is a sluice_push_batch whose confirm, with an index per message counted at
// its longest (10 bytes), might not fit in one frame (a batch of some 6,500 tiny messages).
//
// # Pulls
//
// A pull is answered with at most limit messages (capped by [WithMaxPullLimit]) and never
// more than fit in one frame together with the reply's routes: the hub pages through the
// backend and stops before a message that would not fit, so a response is never truncated.
// An empty list means caught up; a failed fetch is an `error` reply (a sluice_error naming
// the request for sluice_pull_wait and sluice_pull_batch), never an empty list.
//
// A sluice_pull_batch is answered with as many frames as its limit and max_bytes (capped
// by [WithMaxPullBytes]) allow, sent one after another; a fetch that fails after the
// first frame ends the batch with an empty last part, and the next pull meets the failure.
//
// sluice_pull_wait and sluice_pull_batch are long polls: when the partition is caught up
// the request is parked on the partition and answered when the next append lands (or with
// no messages when wait_ms, capped by [WithMaxPullWait] and by half the idle timeout,
// expires; one with limit 0, which no message can answer, is answered at once). There is
// no polling loop: the writer wakes the parked requests after each append, those waiting
// for an index the append reached; the others stay parked. Only
// appends through this hub wake them: with several hubs on one backend, a message another
// hub appended is seen when the wait expires, so across hubs the latency is up to the wait.
// At most [WithMaxParkedPulls] requests park per partition, and at most
// [WithMaxParkedPullsPerConnection] (default 1024) per TCP connection over all partitions:
// one beyond either is answered at once with no messages (counted in
// Metrics.PullWaitsRefused). Parked requests of a connection that has closed are dropped,
// unanswered, when the next append, the cap or their wait's end finds them. A parked
// request keeps its partition worker from being retired.
//
// # Slow clients and bounds
//
// A client that stops reading its replies never stalls the work of others. The partition
// writer, the workers' mailboxes and the services never wait for a client's connection:
// a reply (a push confirm, an Init, an index reply, an error, an empty pull response) is
// queued on the connection at once or, when its write queue is full, kept in a backlog
// for that connection, in order. Replies that carry pulled messages are sent by the pull's
// own goroutine, which waits for room (backpressure on that pull only). A connection that
// takes no reply for 5 s, or lets more than 4096 replies (or 1 MiB of them) pile up in
// its backlog, is a slow consumer: the hub closes it at once (as NATS does), socket
// included, dropping the replies still queued on it, and counts it once in
// Metrics.SlowConsumers (however many of its replies were waiting). Its client reconnects and sends again what was not answered; a
// publisher resends the pushes that were not confirmed, so nothing is lost (some messages may be stored twice,
// as always with at-least-once delivery). Replies to a destination that is not a
// connection of the hub's own TCP transport (a worker of a shared node) are dropped
// instead.
//
// Requests in progress are bounded (see [WithMaxConcurrentFetches]): a worker takes a
// slot before it starts a goroutine for a pull, an index request, a create, a
// sluice_stream_info or a sluice_stream_open, and waits in its mailbox while none is free,
// which slows down the connections that send to it. So a flood of requests, or a slow
// broker, costs the hub a bounded number of goroutines.
//
// # Errors
//
// A request that cannot be served is answered, never dropped: unknown protocols, payloads
// that do not decode, invalid names, and backend failures get an `error` reply whose reason
// says what was wrong (pushes get a confirm with status ERROR instead, as the protocol has
// one). Requests of Sluice extensions are answered per request: in their own reply (status
// ERROR) or, when it cannot say it, with a sluice_error carrying the request's id, so that a
// client pipelining requests fails only that one; an `error` goes only to a sluice_* request
// whose request id cannot be read. While the hub shuts down, a request it no longer takes
// is answered the same way, pushes included (an `error` to a stream_push, a sluice_error to
// a sluice_push_batch): nothing was stored or refused, and the client resends it once it
// has reconnected. A request to the address of a stream partition that does not exist is
// answered as its worker answers a failed backend call: pushes with a confirm with status
// ERROR, pulls with an `error` (a sluice_error for sluice_pull_wait and sluice_pull_batch)
// saying that the stream does not exist (when the hub cannot tell, because the backend
// failed or cannot report partition counts, pushes too get an `error` or sluice_error, as
// requests not taken); a message to any other address with no worker is dropped, as there
// is nobody to answer it as. A frame that is not a valid transport
// message closes that connection only.
//
// # Limits
//
// The largest message is the smaller of the backend's Capabilities().MaxMessageSize and
// [MaxFrameMessageSize] (what fits in one pull response frame), or less with
// [WithMaxMessageSize]. [WithMaxConnections] and [WithIdleTimeout] bound the TCP
// transport: a connection accepted beyond the limit is closed at once, before it is read,
// and its client sees the connection closed.
//
// # Metrics and logs
//
// [Hub.Metrics] returns counters (pushes, pulls, appends and batch sizes, long polls,
// index requests, errors, slow consumers, refused connections and HTTP requests, messages
// skipped because retention deleted them, messages with no worker at their address,
// partition workers retired) and two gauges, the
// connections open and the partition workers. [Metrics] renders as JSON, so it can be
// published with expvar, and [Metrics.WritePrometheus] writes it in the Prometheus text
// format (sluice_hub_pushes_total, sluice_hub_connections, ..., and sluice_build_info with
// the Sluice version); sluice hub -metrics-addr serves both, at /debug/vars and /metrics.
// Logging uses log/slog ([WithLogger]).
//
// A connection refused at the connection limit is counted in Metrics.ConnectionsRefused
// and logged at Debug; the hub also warns, at most once every 10 s, that it is at its
// limit, with the limit, the connections refused since its previous warning, and how to
// raise it ([WithMaxConnections], sluice hub -max-connections); refusals after a warning are
// counted by the next one, at the latest 10 s later (or when the hub stops). The counter is
// exact whatever the log level. So it goes for connections that start with an HTTP request
// (an HTTP client or a health check pointed at the hub's port instead of its metrics
// address): each is answered "400 Bad Request" saying what the port speaks, closed, counted
// in Metrics.HTTPRequestsRefused, and warned about at most once every 10 s, with the number
// closed and the last client's address. So it goes too for messages with no worker at their
// address (Metrics.UndeliverableMessages): requests to a stream partition that does not
// exist, answered as failed (see Errors), and messages to an unknown address, dropped; each
// kind is warned about at most once every 10 s, with the number since the previous warning
// and the last address and client, so a client that floods them costs a line per interval.
//
// On a backend with dense indexes (Capabilities().DenseIndex: bbolt, whose max_messages
// retention deletes a partition's oldest messages), a pull from an index below the oldest
// message kept is answered from that message on, as the backend's Fetch does; the hub counts
// the messages it skipped in Metrics.RetentionSkipped and warns, at most once every 10 s,
// with the stream, partition, the index asked for and the number skipped: a consumer was
// further behind than the backend keeps, and lost those messages. Other backends' indexes
// have gaps of their own, so the hub cannot tell retention from them there.
//
// A request the backend fails (a broker down, a timeout) is logged once, where the hub
// called the backend, with the stream, partition or client id; the error reply that answers
// it is logged at Debug. While a broker is down every client retries, so each kind of
// failure ("append failed", "fetch failed", "create stream failed", ...) is logged at most
// once every 10 s, the line counting the failures since the previous one ("failures"); those
// in between are logged at Debug, and counted by the next line, which comes at the latest
// at the end of the 10 s (or when the hub stops) even when no failure follows: the count of
// a burst that ends is not held back until the next outage. A line names the stream of the
// failure it logs, not of each one it counts. A request the hub cannot read or serve for a
// reason of its own (an unknown protocol, an invalid stream name) is logged by its error
// reply ("error replies", "request error replies"), and a push refused (a message larger
// than the backend takes, say) as "pushes refused", at Warn, rate-limited the same way,
// with the last client's address and reason. So are slow consumers (see Limitations),
// "slow consumer: connection closed", counted in Metrics.SlowConsumers.
//
// # Limitations
//
// A client that floods pulls without reading their replies can hold all pull slots until
// it is closed as a slow consumer (up to 5 s); meanwhile other pulls wait for a slot.
//
// With a backend that does not implement [core.PartitionCounter], a partition worker exists
// only once its stream was created on this hub process: after a restart a client must send
// stream_create again (Sluice's client does on reconnect) before using the route it had.
// Creating a worker on first use (after a restart, or after the worker was retired) costs
// one partition-count lookup in the backend unless the stream was created through this hub
// process, made on the reading goroutine of the connection the message came in on; so do
// requests to a partition that does not exist, but the hub goes by the backend's answer for
// a second (the count, or that the stream does not exist): however many such requests come,
// they cost the backend at most one lookup per stream a second. A stream another hub or a
// tool creates meanwhile is found at the latest a second later, or at once by
// sluice_stream_open (which always asks the backend) or a create through this hub.
//
// Only messages that come in on the hub's own TCP transport ([Hub.Listen]) are answered or
// counted when they have no worker to go to: on a node it was given ([WithNode]), a message
// from another transport that has nowhere to go is that transport's to report.
package hub
