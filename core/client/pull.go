package client

import (
	"fmt"
	"math"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

// DefaultPullMaxBytes is the default for [WithPullMaxBytes] and the max_bytes of
// [Conn.Pull]: the message data one pull brings, at most, before the hub ends its reply (the
// hub may send up to one frame more).
const DefaultPullMaxBytes = 1 << 20

// maxBatchOverhead is the most bytes a sluice_pull_batch part spends on one of its messages
// besides the message's data: its index (a uint, up to 10 bytes) and its data length (up to
// 3 bytes: a frame holds less than 64 KiB), and, since every part but the last holds a
// message, a part's header: request id (up to 10 bytes), more (1) and message count (3).
const maxBatchOverhead = 10 + 3 + 10 + 1 + 3

// maxBatchParts returns the most bytes the parts before the last of a sluice_pull_batch
// reply may hold, for a request of at most limit messages and maxBytes bytes of message
// data: the hub ends the reply after the part in which the data reaches maxBytes, so the
// reply holds at most maxBytes plus one frame of data, and the encoding of at most limit
// messages.
func maxBatchParts(limit, maxBytes int) int {
	if maxBytes > math.MaxInt-wire.MaxFrame {
		return math.MaxInt
	}
	fixed := maxBytes + wire.MaxFrame
	if limit > (math.MaxInt-fixed)/maxBatchOverhead {
		return math.MaxInt
	}
	return fixed + limit*maxBatchOverhead
}

// pullPayload encodes a sluice_pull_batch request: up to limit messages from index from,
// waiting up to waitMS for the first, in as many frames as maxBytes allows.
func pullPayload(id, from uint64, limit int, waitMS uint64, maxBytes int) []byte {
	req := wire.PullBatchRequest{RequestID: id, Index: from, Limit: uint64(limit), WaitMS: waitMS, MaxBytes: uint64(maxBytes)}
	return wire.EncodePayload(wire.ProtocolPullBatch, req)
}

// decodePull returns the messages of a reply to a pull from index from (a sluice_pull_batch
// reply, its parts in order, or a single-frame PullResponse), checking that their indexes
// are at least from and increase. An empty result means the wait passed without a message.
//
// The messages' data alias the reply frames, which the transport never reuses: they are
// the caller's to keep.
func decodePull(r reply, from uint64) ([]core.Message, error) {
	if r.protocol == wire.ProtocolRequestError {
		return nil, requestError(r)
	}
	var out []core.Message
	add := func(msgs []wire.StreamMessage) error {
		if out == nil {
			// Room for as many messages in each part as in the first, but no more than the
			// reply's bytes can hold: a message takes at least two (its index and its data
			// length), whatever a hub puts in its first part.
			most := len(r.data)
			for _, p := range r.parts {
				most += len(p)
			}
			n := most / 2
			if k := len(r.parts) + 1; len(msgs) <= n/k { // their product fits n: no overflow
				n = len(msgs) * k
			}
			out = make([]core.Message, 0, n)
		}
		for _, m := range msgs {
			if m.Index < from || len(out) > 0 && m.Index <= out[len(out)-1].Index {
				return fmt.Errorf("index %d out of order (pull from %d)", m.Index, from)
			}
			out = append(out, core.Message{Index: m.Index, Data: m.Data})
		}
		return nil
	}
	if r.protocol != wire.ProtocolPullBatch {
		resp, err := wire.DecodePullResponse(r.data)
		if err != nil {
			return nil, err
		}
		if err := add(resp.Messages); err != nil {
			return nil, err
		}
		return out, nil
	}
	for _, data := range append(r.parts, r.data) {
		part, err := wire.DecodePullBatchPart(data)
		if err != nil {
			return nil, err
		}
		if err := add(part.Messages); err != nil {
			return nil, err
		}
	}
	return out, nil
}
