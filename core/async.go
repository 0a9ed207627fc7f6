package core

import "context"

// AsyncAppender is implemented by backends that can keep several appends to one partition
// in flight and still store them in the order they were started (for example a Kafka or
// Pulsar producer with several requests outstanding). A caller such as the hub uses it to
// overlap the round trips of consecutive appends instead of waiting for each one.
//
// AppendAsync starts appending msgs, in order, to one partition of an existing stream and
// calls done with the outcome: the index of each message (same length and order as msgs),
// or an error. The contract, for one partition:
//
//   - AppendAsync validates its arguments and enqueues msgs before it returns, so the
//     messages of calls started one after another by one goroutine are stored in that
//     order: every index reported for a call is greater than every index reported for a
//     call started before it. Calls started concurrently are ordered as the backend
//     received them.
//   - done is called exactly once, possibly before AppendAsync returns and possibly on
//     another goroutine; it must be quick and must not call back into the backend's
//     appends (it may run on the backend's delivery goroutine).
//   - done of successful calls run in start order. A call that fails may have its done
//     called earlier (for example when it is refused before being enqueued), and calls
//     started after a failed one may still succeed: the order guarantees then hold among
//     the successful calls only.
//   - AppendAsync never retains msgs after done has been called; the caller may reuse them
//     from then on.
//   - Errors are those of [Storage].Append, with the same meaning for partial failures, and
//     are reported through done, never returned. ctx bounds the whole call: cancelling it
//     makes done report ctx's error unless the messages were already stored.
type AsyncAppender interface {
	AppendAsync(ctx context.Context, stream string, partition int, msgs [][]byte, done func(indexes []uint64, err error))
}
