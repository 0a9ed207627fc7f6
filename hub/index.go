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

// handleIndex is the index service at IndexAddress: Ockam's stream_index and
// stream_index_partitioned, and Sluice's acknowledged sluice_index_save / sluice_index_get.
// A plain stream_index save is not answered (as in Ockam) unless it fails.
func (h *Hub) handleIndex(_ context.Context, msg *routing.Message) error {
	bp, ok := h.decodePayload(msg)
	if !ok {
		return nil
	}
	protocol := bp.Protocol
	to, self := msg.ReturnRoute.Clone(), wire.Route{msg.Self()}
	fail := func(err error) {
		h.replyError(to, self, fmt.Sprintf("%s: %v", protocol, err))
	}
	var (
		key indexKey
		run func(ctx context.Context)
	)
	switch protocol {
	case wire.ProtocolIndex:
		req, err := wire.DecodeIndexRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		key = indexKey{req.ClientID, req.StreamName, 0}
		run = func(ctx context.Context) {
			if req.Op == wire.IndexSave {
				if err := h.saveIndex(ctx, req.ClientID, req.StreamName, 0, req.Index); err != nil {
					fail(err)
				}
				return
			}
			idx, err := h.getIndex(ctx, req.ClientID, req.StreamName, 0)
			if err != nil {
				fail(err)
				return
			}
			h.reply(to, self, protocol, wire.IndexResponse{ClientID: req.ClientID, StreamName: req.StreamName, Index: idx})
		}
	case wire.ProtocolIndexPartitioned:
		req, err := wire.DecodeIndexRequestPartitioned(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		key = indexKey{req.ClientID, req.StreamName, req.Partition}
		run = func(ctx context.Context) {
			part, err := partitionArg(req.Partition)
			if err != nil {
				fail(err)
				return
			}
			if req.Op == wire.IndexSave {
				if err := h.saveIndex(ctx, req.ClientID, req.StreamName, part, req.Index); err != nil {
					fail(err)
				}
				return
			}
			idx, err := h.getIndex(ctx, req.ClientID, req.StreamName, part)
			if err != nil {
				fail(err)
				return
			}
			h.reply(to, self, protocol, wire.IndexResponsePartitioned{ClientID: req.ClientID, StreamName: req.StreamName, Partition: req.Partition, Index: idx})
		}
	case wire.ProtocolIndexSave:
		req, err := wire.DecodeIndexSaveRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		key = indexKey{req.ClientID, req.StreamName, req.Partition}
		run = func(ctx context.Context) {
			rep := wire.IndexReply{RequestID: req.RequestID, Status: wire.StatusError}
			part, err := partitionArg(req.Partition)
			if err == nil {
				err = h.saveIndex(ctx, req.ClientID, req.StreamName, part, req.Index)
			}
			if err == nil {
				rep.Index, err = h.getIndex(ctx, req.ClientID, req.StreamName, part)
			}
			if err == nil {
				rep.Status = wire.StatusOK
			} else {
				h.log.Warn("index save failed", "client_id", req.ClientID, "stream", req.StreamName, "partition", req.Partition, "err", err)
				rep.Index = wire.None[uint64]()
			}
			h.reply(to, self, protocol, rep)
		}
	case wire.ProtocolIndexGet:
		req, err := wire.DecodeIndexGetRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		key = indexKey{req.ClientID, req.StreamName, req.Partition}
		run = func(ctx context.Context) {
			rep := wire.IndexReply{RequestID: req.RequestID, Status: wire.StatusError}
			part, err := partitionArg(req.Partition)
			if err == nil {
				rep.Index, err = h.getIndex(ctx, req.ClientID, req.StreamName, part)
			}
			if err == nil {
				rep.Status = wire.StatusOK
			} else {
				h.log.Warn("index get failed", "client_id", req.ClientID, "stream", req.StreamName, "partition", req.Partition, "err", err)
			}
			h.reply(to, self, protocol, rep)
		}
	default:
		h.unknownProtocol(msg, protocol, wire.ProtocolIndex, wire.ProtocolIndexPartitioned, wire.ProtocolIndexSave, wire.ProtocolIndexGet)
		return nil
	}
	if h.isClosing() {
		h.shuttingDown(msg, bp)
		return nil
	}
	h.runIndex(key, run)
	return nil
}

// runIndex runs f after the index requests of the same key that arrived before it, on a
// task goroutine, with at most WithMaxConcurrentFetches backend calls at once.
func (h *Hub) runIndex(key indexKey, f func(ctx context.Context)) {
	h.imu.Lock()
	if q, busy := h.indexQueues[key]; busy {
		h.indexQueues[key] = append(q, f)
		h.imu.Unlock()
		return
	}
	h.indexQueues[key] = []func(context.Context){}
	h.imu.Unlock()
	drain := func(ctx context.Context) {
		for next := f; next != nil; {
			select {
			case h.indexSem <- struct{}{}:
				next(ctx)
				<-h.indexSem
			case <-ctx.Done():
				next(ctx) // fails fast with ctx's error and answers the peer
			}
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
