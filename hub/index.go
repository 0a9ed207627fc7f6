package hub

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// indexKey is what orders index requests: requests for the same (client_id, stream,
// partition) run one after another in arrival order (so an Ockam client's save followed by
// a get sees its save); requests for different keys run concurrently, which lets a backend
// group-commit the saves of many consumers.
type indexKey struct {
	clientID, stream string
	partition        uint64
}

// indexCall is one index request: it makes its backend calls and returns its answer, to
// send once its backend slot is free (nil when there is nothing to send).
type indexCall func(ctx context.Context) (answer func())

// handleIndex is the index service at IndexAddress: Ockam's stream_index and
// stream_index_partitioned, and Sluice's acknowledged sluice_index_save / sluice_index_get.
// A plain stream_index save is not answered (as in Ockam) unless it fails.
func (h *Hub) handleIndex(ctx context.Context, msg *routing.Message) error {
	bp, ok := h.decodePayload(msg)
	if !ok {
		return nil
	}
	protocol := bp.Protocol
	to, self := msg.ReturnRoute.Clone(), wire.Route{msg.Self()}
	fail := func(err error) func() {
		return func() { h.replyError(to, self, fmt.Sprintf("%s: %v", protocol, err), err) }
	}
	var (
		key indexKey
		run indexCall
	)
	switch protocol {
	case wire.ProtocolIndex, wire.ProtocolIndexPartitioned:
		if protocol == wire.ProtocolIndexPartitioned {
			key, run = h.partitionedIndex(msg, bp, to, self, fail)
			if run == nil {
				return nil
			}
			break
		}
		req, err := wire.DecodeIndexRequest(bp.Data)
		if err != nil {
			// The stream protocol proposal sends the partitioned schemas under stream_index
			// too (Ockam's Elixir implementation under stream_index_partitioned): a payload
			// that is not an unpartitioned request may be a partitioned one, never both
			// (decoding is strict), answered under stream_index.
			if _, perr := wire.DecodeIndexRequestPartitioned(bp.Data); perr == nil {
				key, run = h.partitionedIndex(msg, bp, to, self, fail)
				break
			}
			h.undecodable(msg, bp, err)
			return nil
		}
		key = indexKey{req.ClientID, req.StreamName, 0}
		run = func(ctx context.Context) func() {
			h.countIndex(req.Op == wire.IndexSave)
			if req.Op == wire.IndexSave {
				if err := h.saveIndex(ctx, req.ClientID, req.StreamName, 0, req.Index); err != nil {
					return fail(err)
				}
				return nil
			}
			idx, err := h.getIndex(ctx, req.ClientID, req.StreamName, 0)
			if err != nil {
				return fail(err)
			}
			return func() {
				h.reply(to, self, protocol, wire.IndexResponse{ClientID: req.ClientID, StreamName: req.StreamName, Index: idx})
			}
		}
	case wire.ProtocolIndexSave:
		req, err := wire.DecodeIndexSaveRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		key = indexKey{req.ClientID, req.StreamName, req.Partition}
		run = func(ctx context.Context) func() {
			h.countIndex(true)
			var idx wire.Optional[uint64]
			part, err := partitionArg(req.Partition)
			if err == nil {
				err = h.saveIndex(ctx, req.ClientID, req.StreamName, part, req.Index)
			}
			if err == nil {
				idx, err = h.getIndex(ctx, req.ClientID, req.StreamName, part)
			}
			rep := h.indexReply("save", req.RequestID, key, idx, err)
			return func() { h.reply(to, self, protocol, rep) }
		}
	case wire.ProtocolIndexGet:
		req, err := wire.DecodeIndexGetRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		key = indexKey{req.ClientID, req.StreamName, req.Partition}
		run = func(ctx context.Context) func() {
			h.countIndex(false)
			var idx wire.Optional[uint64]
			part, err := partitionArg(req.Partition)
			if err == nil {
				idx, err = h.getIndex(ctx, req.ClientID, req.StreamName, part)
			}
			rep := h.indexReply("get", req.RequestID, key, idx, err)
			return func() { h.reply(to, self, protocol, rep) }
		}
	default:
		h.unknownProtocol(msg, protocol, wire.ProtocolIndex, wire.ProtocolIndexPartitioned, wire.ProtocolIndexSave, wire.ProtocolIndexGet)
		return nil
	}
	if h.isClosing() {
		h.shuttingDown(msg, bp)
		return nil
	}
	// A slot per request queued or running bounds them (and their drain goroutines): a
	// flood waits here, in the service's mailbox, slowing down the connections that send.
	if !h.acquire(ctx, h.indexSlots) {
		h.shuttingDown(msg, bp)
		return nil
	}
	h.runIndex(key, run)
	return nil
}

// partitionedIndex decodes a partitioned index request (stream_index_partitioned, or the
// proposal's form under stream_index) and returns its key and the call that serves it,
// answered under the request's protocol; run is nil when the request does not decode (it
// was answered as undecodable).
func (h *Hub) partitionedIndex(msg *routing.Message, bp wire.BasePayload, to, self wire.Route, fail func(error) func()) (key indexKey, run indexCall) {
	req, err := wire.DecodeIndexRequestPartitioned(bp.Data)
	if err != nil {
		h.undecodable(msg, bp, err)
		return indexKey{}, nil
	}
	protocol := bp.Protocol
	key = indexKey{req.ClientID, req.StreamName, req.Partition}
	return key, func(ctx context.Context) func() {
		h.countIndex(req.Op == wire.IndexSave)
		part, err := partitionArg(req.Partition)
		if err != nil {
			return fail(err)
		}
		if req.Op == wire.IndexSave {
			if err := h.saveIndex(ctx, req.ClientID, req.StreamName, part, req.Index); err != nil {
				return fail(err)
			}
			return nil
		}
		idx, err := h.getIndex(ctx, req.ClientID, req.StreamName, part)
		if err != nil {
			return fail(err)
		}
		return func() {
			h.reply(to, self, protocol, wire.IndexResponsePartitioned{ClientID: req.ClientID, StreamName: req.StreamName, Partition: req.Partition, Index: idx})
		}
	}
}

// runIndex runs f after the index requests of the same key that arrived before it, on a
// task goroutine, with at most WithMaxConcurrentFetches backend calls at once. The caller
// holds a slot of indexSlots for f, which is released once f is answered. The backend
// slot (indexSem) is released before the answer is sent.
func (h *Hub) runIndex(key indexKey, f indexCall) {
	h.imu.Lock()
	if q, busy := h.indexQueues[key]; busy {
		h.indexQueues[key] = append(q, f)
		h.imu.Unlock()
		return
	}
	h.indexQueues[key] = []indexCall{}
	h.imu.Unlock()
	drain := func(ctx context.Context) {
		for next := f; next != nil; {
			var answer func()
			select {
			case h.indexSem <- struct{}{}:
				answer = next(ctx)
				<-h.indexSem
			case <-ctx.Done():
				answer = next(ctx) // fails fast with ctx's error and answers the peer
			}
			if answer != nil {
				answer()
			}
			<-h.indexSlots
			h.imu.Lock()
			if q := h.indexQueues[key]; len(q) > 0 {
				next, h.indexQueues[key] = q[0], q[1:]
			} else {
				delete(h.indexQueues, key)
				next = nil
			}
			h.imu.Unlock()
		}
	}
	if !h.goTask(drain) {
		drain(h.ctx) // the hub is stopping: answer now
	}
}

// countIndex counts one index request in Metrics.IndexSaves (save) or Metrics.IndexGets,
// once per request: a sluice_index_save, which reads the saved value back to answer it,
// is a save, not a get too.
func (h *Hub) countIndex(save bool) {
	if save {
		h.m.indexSaves.Add(1)
	} else {
		h.m.indexGets.Add(1)
	}
}

// indexReply is the reply to the index save or get (op) requestID of key: StatusOK with idx,
// or, when err is not nil, StatusError without an index (and the failure is logged, unless
// it was where it happened).
func (h *Hub) indexReply(op string, requestID uint64, key indexKey, idx wire.Optional[uint64], err error) wire.IndexReply {
	if err != nil {
		h.log.Log(context.Background(), errorReplyLevel(err), "index "+op+" failed", "client_id", key.clientID, "stream", key.stream, "partition", key.partition, "err", err)
		return wire.IndexReply{RequestID: requestID, Status: wire.StatusError, Index: wire.None[uint64]()}
	}
	return wire.IndexReply{RequestID: requestID, Status: wire.StatusOK, Index: idx}
}
