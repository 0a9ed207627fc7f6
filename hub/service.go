package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// decodePayload decodes msg's BasePayload, answering an `error` reply when it does not
// decode.
func (h *Hub) decodePayload(msg *routing.Message) (wire.BasePayload, bool) {
	bp, err := wire.DecodeBasePayload(msg.Payload)
	if err != nil {
		h.replyError(msg.ReturnRoute, wire.Route{msg.Self()}, fmt.Sprintf("%s: undecodable payload: %v", msg.Address, err), nil)
		return wire.BasePayload{}, false
	}
	return bp, true
}

// undecodable answers a payload whose protocol data does not decode.
func (h *Hub) undecodable(msg *routing.Message, bp wire.BasePayload, err error) {
	h.failRequest(msg.ReturnRoute, wire.Route{msg.Self()}, bp, fmt.Sprintf("%s: undecodable %s request: %v", msg.Address, bp.Protocol, err), nil)
}

// failRequest answers a request that cannot be served with reason: a Sluice extension
// request whose request id can be read gets a sluice_error naming it (so that the client
// fails that request only), anything else an `error` reply. cause is as for replyError.
func (h *Hub) failRequest(to, from wire.Route, bp wire.BasePayload, reason string, cause error) {
	if wire.IsExtension(bp.Protocol) {
		if id, ok := wire.RequestIDOf(bp.Data); ok {
			h.replyRequestError(to, from, bp.Protocol, id, reason, cause)
			return
		}
	}
	h.replyError(to, from, reason, cause)
}

func (h *Hub) unknownProtocol(msg *routing.Message, protocol string, want ...string) {
	h.replyError(msg.ReturnRoute, wire.Route{msg.Self()}, fmt.Sprintf("%s: unknown protocol %q; this worker handles %s", msg.Address, protocol, strings.Join(want, ", ")), nil)
}

func (h *Hub) shuttingDown(msg *routing.Message, bp wire.BasePayload) {
	h.failRequest(msg.ReturnRoute, wire.Route{msg.Self()}, bp, fmt.Sprintf("%s: %v", msg.Address, errShuttingDown), errShuttingDown)
}

// handleStream is the stream service at StreamAddress.
func (h *Hub) handleStream(ctx context.Context, msg *routing.Message) error {
	bp, ok := h.decodePayload(msg)
	if !ok {
		return nil
	}
	var name wire.Optional[string]
	partitions := uint64(1)
	partitioned := false
	switch bp.Protocol {
	case wire.ProtocolCreate:
		req, err := wire.DecodeCreateStreamRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		name = req.StreamName
	case wire.ProtocolCreatePartitioned, wire.ProtocolCreatePartitions:
		req, err := wire.DecodeCreateStreamPartitionedRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		name, partitions, partitioned = req.StreamName, req.Partitions, true
	case wire.ProtocolStreamInfo:
		h.handleStreamInfo(ctx, msg, bp)
		return nil
	case wire.ProtocolStreamOpen:
		h.handleStreamOpen(ctx, msg, bp)
		return nil
	default:
		h.unknownProtocol(msg, bp.Protocol, wire.ProtocolCreate, wire.ProtocolCreatePartitioned, wire.ProtocolCreatePartitions, wire.ProtocolStreamInfo, wire.ProtocolStreamOpen)
		return nil
	}
	if h.isClosing() {
		h.shuttingDown(msg, bp)
		return nil
	}
	stream := name.Value
	if !name.Valid {
		stream = generateName()
	}
	replyTo := msg.ReturnRoute.Clone()
	self := wire.Route{msg.Self()}
	protocol := bp.Protocol
	// Creating a topic can be slow (Kafka, Kinesis): do it off the service's mailbox, on one
	// of a bounded number of goroutines.
	started := h.goBounded(ctx, h.taskSem, func(ctx context.Context) {
		if err := h.create(ctx, protocol, stream, partitions, partitioned, replyTo); err != nil {
			h.replyError(replyTo, self, fmt.Sprintf("%s %q: %v", protocol, stream, err), err)
		}
	})
	if !started {
		h.shuttingDown(msg, bp)
	}
	return nil
}

// create creates (or finds) the stream and sends the client an Init for each partition,
// from the partition worker's address. It registers no worker: each is registered on the
// first message to its address (see Hub.fallback), so partitions never used cost nothing.
func (h *Hub) create(ctx context.Context, protocol, stream string, partitions uint64, partitioned bool, replyTo wire.Route) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return err
	}
	maxParts := h.backend.Storage.Capabilities().MaxPartitions
	if partitions > core.MaxPartitions {
		return core.ValidatePartitionCount(core.MaxPartitions+1, maxParts)
	}
	if err := core.ValidatePartitionCount(int(partitions), maxParts); err != nil {
		return err
	}
	n, err := h.backend.Storage.CreateStream(ctx, stream, int(partitions))
	if err != nil {
		h.logFailure(slog.LevelError, "create stream failed", "stream", stream, "partitions", partitions, "err", err)
		return loggedError{fmt.Errorf("backend: %w", err)}
	}
	if err := checkCount(stream, n); err != nil {
		return err
	}
	h.mu.Lock()
	h.streams[stream] = n
	h.mu.Unlock()
	if !partitioned {
		n = 1 // stream_create talks to partition 0 of a stream that may have more
	}
	h.m.creates.Add(1)
	for id := range n {
		// Init comes from the partition worker: its return route is the route to it.
		self := wire.Route{wire.Local(partitionAddr(stream, id))}
		if partitioned {
			h.reply(replyTo, self, protocol, wire.InitPartitioned{StreamName: stream, Partition: uint64(id)})
		} else {
			h.reply(replyTo, self, protocol, wire.Init{StreamName: stream})
		}
	}
	h.log.Debug("stream ready", "stream", stream, "partitions", n)
	return nil
}

// handleStreamInfo answers sluice_stream_info (see streamQuery).
func (h *Hub) handleStreamInfo(ctx context.Context, msg *routing.Message, bp wire.BasePayload) {
	req, err := wire.DecodeStreamInfoRequest(bp.Data)
	if err != nil {
		h.undecodable(msg, bp, err)
		return
	}
	h.streamQuery(ctx, msg, bp, req.StreamName, &h.m.streamInfos, func(replyTo, self wire.Route, n int, err error) {
		rep := wire.StreamInfoReply{RequestID: req.RequestID, Status: wire.StatusOK}
		switch {
		case errors.Is(err, core.ErrStreamNotFound): // OK, partitions absent
		case err != nil:
			rep.Status, rep.Reason = wire.StatusError, err.Error()
		default:
			rep.Partitions = wire.Some(uint64(n))
		}
		h.reply(replyTo, self, wire.ProtocolStreamInfo, rep)
	})
}

// handleStreamOpen answers sluice_stream_open (see streamQuery). It never creates the
// stream: for an existing stream it sends one reply per partition from the partition
// worker's address, as create sends Init (the worker is registered on the first message to
// it, see Hub.fallback); for a missing stream, or when the hub cannot tell, one reply from
// the stream service.
func (h *Hub) handleStreamOpen(ctx context.Context, msg *routing.Message, bp wire.BasePayload) {
	req, err := wire.DecodeStreamOpenRequest(bp.Data)
	if err != nil {
		h.undecodable(msg, bp, err)
		return
	}
	h.streamQuery(ctx, msg, bp, req.StreamName, &h.m.streamOpens, func(replyTo, self wire.Route, n int, err error) {
		rep := wire.StreamOpenReply{RequestID: req.RequestID, Status: wire.StatusOK}
		switch {
		case errors.Is(err, core.ErrStreamNotFound): // OK, partitions absent
		case err != nil:
			rep.Status, rep.Reason = wire.StatusError, err.Error()
		default:
			rep.Partitions = wire.Some(uint64(n))
			for id := range n {
				rep.Partition = uint64(id)
				h.reply(replyTo, wire.Route{wire.Local(partitionAddr(req.StreamName, id))}, wire.ProtocolStreamOpen, rep)
			}
			return
		}
		h.reply(replyTo, self, wire.ProtocolStreamOpen, rep)
	})
}

// streamQuery runs answer on a task goroutine (the backend call may be slow), bounded like
// creates, with the partition count of stream (see partitionCount) and the routes to reply
// on: the request's return route, and the stream service's own address. An error other
// than core.ErrStreamNotFound is logged and names the request. count counts the requests.
func (h *Hub) streamQuery(ctx context.Context, msg *routing.Message, bp wire.BasePayload, stream string, count *atomic.Uint64, answer func(replyTo, self wire.Route, n int, err error)) {
	if h.isClosing() {
		h.shuttingDown(msg, bp)
		return
	}
	replyTo, self := msg.ReturnRoute.Clone(), wire.Route{msg.Self()}
	started := h.goBounded(ctx, h.taskSem, func(ctx context.Context) {
		count.Add(1)
		n, err := h.partitionCount(ctx, stream)
		if err != nil && !errors.Is(err, core.ErrStreamNotFound) {
			h.logFailure(slog.LevelWarn, bp.Protocol+" failed", "stream", stream, "err", err)
			err = fmt.Errorf("%s %q: %w", bp.Protocol, stream, err)
		}
		answer(replyTo, self, n, err)
	})
	if !started {
		h.shuttingDown(msg, bp)
	}
}

// partitionCount returns how many partitions stream has, or an error matching
// core.ErrStreamNotFound when it does not exist. It asks the backend when it implements
// core.PartitionCounter; otherwise it knows only the streams this hub process created (or
// found) with stream_create*, and fails with core.ErrUnavailable for the others.
func (h *Hub) partitionCount(ctx context.Context, stream string) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, err
	}
	if pc, ok := h.backend.Storage.(core.PartitionCounter); ok {
		asked := time.Now()
		n, err := pc.Partitions(ctx, stream)
		switch {
		case errors.Is(err, core.ErrStreamNotFound):
		case err != nil:
			err = fmt.Errorf("backend: %w", err)
		default:
			err = checkCount(stream, n)
		}
		h.lookups.put(stream, n, err, asked) // for the fallback: a count, or that it does not exist
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	h.mu.Lock()
	n, ok := h.streams[stream]
	h.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("%w: backend %s cannot report partition counts and this hub has not created stream %q since it started", core.ErrUnavailable, h.backend.Storage.Capabilities().Name, stream)
	}
	return n, nil
}

// checkCount refuses a partition count that no stream can have, which only a broken backend
// reports: the hub would otherwise answer with a reply per partition, billions of them.
func checkCount(stream string, n int) error {
	if n < 1 || n > core.MaxPartitions {
		return fmt.Errorf("%w: backend reports %d partitions for stream %q", core.ErrUnavailable, n, stream)
	}
	return nil
}

// generateName returns a name for a stream created without one: "generated_" and 16 hex
// characters.
func generateName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "generated_" + hex.EncodeToString(b[:])
}

// HandleMessage makes the partition the routing worker of its local address: it handles
// stream_push, stream_pull, sluice_push_batch, sluice_pull_wait and sluice_pull_batch.
func (p *partition) HandleMessage(ctx context.Context, msg *routing.Message) error {
	h := p.h
	bp, ok := h.decodePayload(msg)
	if !ok {
		return nil
	}
	switch bp.Protocol {
	case wire.ProtocolPush:
		req, err := wire.DecodePushRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		p.push(ctx, &pushReq{requestID: req.RequestID, msgs: [][]byte{req.Data}, size: len(req.Data), replyTo: msg.ReturnRoute.Clone(), release: msg.Release})
	case wire.ProtocolPushBatch:
		// A batch whose confirm cannot fit is refused before its messages are decoded: the
		// decoding allocates for each (up to 24 times the frame for empty messages).
		if id, n, err := wire.PeekPushBatchRequest(bp.Data); err == nil {
			if err := confirmFits(msg.ReturnRoute, p.self, id, n); err != nil {
				h.m.pushErrors.Add(uint64(n)) // confirm counts the messages it has: none here
				p.refuse(&pushReq{requestID: id, batch: true, replyTo: msg.ReturnRoute.Clone(), release: msg.Release}, err)
				return nil
			}
		}
		req, err := wire.DecodePushBatchRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		r := &pushReq{requestID: req.RequestID, msgs: req.Messages, batch: true, replyTo: msg.ReturnRoute.Clone(), release: msg.Release}
		for _, m := range req.Messages {
			r.size += len(m)
		}
		if len(r.msgs) == 0 {
			p.confirm(r, []uint64{}, nil)
			r.releaseMsgs()
			return nil
		}
		p.push(ctx, r)
	case wire.ProtocolPull:
		req, err := wire.DecodePullRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		p.startPull(ctx, msg, bp, pullReq{protocol: bp.Protocol, requestID: req.RequestID, index: req.Index, limit: h.pullLimit(req.Limit), replyTo: msg.ReturnRoute})
	case wire.ProtocolPullWait:
		req, err := wire.DecodePullWaitRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		p.startPull(ctx, msg, bp, pullReq{protocol: bp.Protocol, requestID: req.RequestID, index: req.Index, limit: h.pullLimit(req.Limit), wait: true, deadline: time.Now().Add(h.pullWait(req.WaitMS)), replyTo: msg.ReturnRoute})
	case wire.ProtocolPullBatch:
		req, err := wire.DecodePullBatchRequest(bp.Data)
		if err != nil {
			h.undecodable(msg, bp, err)
			return nil
		}
		maxBytes := h.cfg.maxPullBytes
		if req.MaxBytes < uint64(maxBytes) {
			maxBytes = max(int(req.MaxBytes), 1)
		}
		p.startPull(ctx, msg, bp, pullReq{protocol: bp.Protocol, requestID: req.RequestID, index: req.Index, limit: h.pullLimit(req.Limit), wait: true, deadline: time.Now().Add(h.pullWait(req.WaitMS)), replyTo: msg.ReturnRoute, batch: true, maxBytes: maxBytes})
	default:
		h.unknownProtocol(msg, bp.Protocol, wire.ProtocolPush, wire.ProtocolPull, wire.ProtocolPushBatch, wire.ProtocolPullWait, wire.ProtocolPullBatch)
	}
	return nil
}

// pullWait returns a request's wait_ms as a duration, capped by WithMaxPullWait.
func (h *Hub) pullWait(ms uint64) time.Duration {
	if ms < uint64(h.cfg.maxPullWait/time.Millisecond) {
		return time.Duration(ms) * time.Millisecond
	}
	return h.cfg.maxPullWait
}

// pullLimit clamps a requested pull limit to [0, WithMaxPullLimit].
func (h *Hub) pullLimit(limit uint64) int {
	if limit > uint64(h.cfg.maxPullLimit) {
		return h.cfg.maxPullLimit
	}
	return int(limit)
}

// push validates r and queues it for the writer. Invalid requests are confirmed with status
// ERROR; valid ones the partition no longer queues (the hub is shutting down) are answered
// as not taken (see partition.notTaken).
func (p *partition) push(ctx context.Context, r *pushReq) {
	h := p.h
	err := core.ValidateMessages(r.msgs, h.cfg.maxMessageSize)
	if err == nil && r.batch {
		err = confirmFits(r.replyTo, p.self, r.requestID, len(r.msgs))
	}
	if err != nil {
		p.refuse(r, err)
		return
	}
	// The request's bytes alias the payload it came in, which the hub owns (routing.Node.Send
	// hands a message's payload to its receiver): keep them without copying, capped so that
	// an append to one message can never write over the next, until the backend is done with
	// them (pushReq.releaseMsgs).
	for i, m := range r.msgs {
		r.msgs[i] = m[:len(m):len(m)]
	}
	if err := p.enqueue(ctx, r); err != nil {
		p.notTaken(r, err)
		r.releaseMsgs()
	}
}

// refuse confirms r with status ERROR, appending nothing, because of err.
func (p *partition) refuse(r *pushReq, err error) {
	p.h.logLimited(slog.LevelWarn, "pushes refused", "pushes", "last_stream", p.stream, "last_partition", p.id, "last_request_id", r.requestID, "last_err", err)
	p.confirm(r, nil, err)
	r.releaseMsgs()
}

// confirmFits refuses a sluice_push_batch of n messages whose OK confirm, which carries the
// index of each, might not fit in one frame along replyTo: the batch would be stored and
// never confirmed, and its client would send it again and again. The indexes are known only
// once appended, so each is counted at its longest encoding: a batch of a few thousand
// tiny messages is refused with status ERROR, before anything is appended, and the client
// sends them in smaller batches (Sluice's publisher does, after a refused batch).
func confirmFits(replyTo, self wire.Route, requestID uint64, n int) error {
	budget := wire.FramePayloadBudget(replyTo, self)
	if wire.PushBatchConfirmFits(budget, requestID, n) {
		return nil
	}
	return fmt.Errorf("%w: a sluice_push_batch of %d messages is confirmed with an index for each, which may not fit in one %d-byte frame; send at most %d messages per batch",
		core.ErrInvalidArgument, n, wire.MaxFrame, wire.MaxPushBatch(budget))
}

// startPull hands a pull to a task goroutine, waiting for a pull slot (see Hub.goPull).
func (p *partition) startPull(ctx context.Context, msg *routing.Message, bp wire.BasePayload, r pullReq) {
	h := p.h
	if h.isClosing() {
		h.shuttingDown(msg, bp)
		return
	}
	r.replyTo = r.replyTo.Clone()
	h.goPull(ctx, p, r)
}

func partitionArg(p uint64) (int, error) {
	if p >= core.MaxPartitions {
		return 0, fmt.Errorf("%w: partition %d is outside [0, %d)", core.ErrInvalidArgument, p, core.MaxPartitions)
	}
	return int(p), nil
}

func validateIndexKey(clientID, stream string) error {
	if err := core.ValidateClientID(clientID); err != nil {
		return err
	}
	return core.ValidateStreamName(stream)
}

// getIndex returns the saved index, None when it was never saved.
func (h *Hub) getIndex(ctx context.Context, clientID, stream string, partition int) (wire.Optional[uint64], error) {
	if err := validateIndexKey(clientID, stream); err != nil {
		return wire.None[uint64](), err
	}
	idx, err := h.backend.Index.GetIndex(ctx, clientID, stream, partition)
	if errors.Is(err, core.ErrIndexNotFound) {
		return wire.None[uint64](), nil
	}
	if err != nil {
		h.logFailure(slog.LevelError, "get index failed", "client_id", clientID, "stream", stream, "partition", partition, "err", err)
		return wire.None[uint64](), loggedError{fmt.Errorf("backend: %w", err)}
	}
	return wire.Some(idx), nil
}

// saveIndex saves index (monotonic: the backend ignores a lower value).
func (h *Hub) saveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	if err := validateIndexKey(clientID, stream); err != nil {
		return err
	}
	if err := h.backend.Index.SaveIndex(ctx, clientID, stream, partition, index); err != nil {
		h.logFailure(slog.LevelError, "save index failed", "client_id", clientID, "stream", stream, "partition", partition, "err", err)
		return loggedError{fmt.Errorf("backend: %w", err)}
	}
	return nil
}
