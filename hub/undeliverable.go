package hub

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// maxNoWorker bounds Hub.noWork. An entry lives from the fallback that declines an address
// to the undeliverable call right after it, on the same connection's reading goroutine;
// only a message sent to a partition address by something else than the hub's transport
// (a worker of a shared node) leaves one behind.
const maxNoWorker = 1024

// noWorker notes why the fallback registered no worker at the partition address addr, for
// undeliverable to answer the message with.
func (h *Hub) noWorker(addr string, why error) {
	h.nwmu.Lock()
	defer h.nwmu.Unlock()
	if len(h.noWork) >= maxNoWorker {
		clear(h.noWork)
	}
	h.noWork[addr] = why
}

// takeNoWorker returns (and forgets) why the fallback registered no worker at addr, or nil
// when it noted nothing (another connection's message took the note first).
func (h *Hub) takeNoWorker(addr string) error {
	h.nwmu.Lock()
	defer h.nwmu.Unlock()
	why := h.noWork[addr]
	delete(h.noWork, addr)
	return why
}

// undeliverable, the TCP transport's undeliverable hook, handles a message read from a
// connection (from remote) that the node did not deliver (err says why). A message to the
// address of a stream partition that does not exist (the stream was deleted, by another hub
// or a tool, after the client learned the route, or never had that partition) is a request
// the hub can answer like its worker would for a failed backend call, so the client learns
// at once and need not wait for its request to time out: a push is confirmed with status
// ERROR (a sluice_push_batch too), other requests get an `error` reply (a sluice_error
// naming the request for Sluice's extensions); when the hub cannot tell whether the
// partition exists, every request is answered as not taken (see answerNoWorker). A message
// to any other unknown address (a remote one too, as the transport does not relay) is
// dropped, as the protocol has no way to answer it. Each is counted in
// Metrics.UndeliverableMessages and warned about at most once every warnEvery per kind.
func (h *Hub) undeliverable(remote string, msg wire.TransportMessage, err error) {
	h.m.undeliverable.Add(1)
	var to wire.Address
	if len(msg.OnwardRoute) > 0 {
		to = msg.OnwardRoute[0]
	}
	if !errors.Is(err, routing.ErrNoRoute) {
		h.logLimited(slog.LevelWarn, "dropped messages the routing node could not deliver", "messages",
			"last_address", to.String(), "last_remote", remote, "err", err)
		return
	}
	stream, id, ok := parsePartitionAddr(string(to.Value))
	if to.Type != wire.AddressLocal || !ok {
		h.logLimited(slog.LevelWarn, "dropped messages to an unknown address: no worker is registered there (a client's mistake, or a route meant for another node)", "messages",
			"last_address", to.String(), "last_remote", remote)
		return
	}
	why := h.takeNoWorker(string(to.Value))
	if why == nil { // another connection's message to the same address took the note
		why = fmt.Errorf("no worker for stream %q partition %d: the backend does not have it, or could not be asked", stream, id)
	}
	h.answerNoWorker(msg, why)
	switch {
	case errors.As(why, new(loggedError)):
		// The failed lookup is the line to read.
	case errors.Is(why, core.ErrStreamNotFound):
		h.logLimited(slog.LevelWarn, "answered requests to a stream partition that does not exist as failed (pushes with status ERROR): was the stream deleted while clients still use it?", "requests",
			"last_address", to.String(), "last_remote", remote, "last_reason", why.Error())
	default:
		h.logLimited(slog.LevelWarn, "refused requests to a stream partition the hub cannot find; clients should create the stream again (stream_create)", "requests",
			"last_address", to.String(), "last_remote", remote, "last_reason", why.Error())
	}
}

// answerNoWorker answers msg, a request to the address of a stream partition that has no
// worker (why says why). When the partition does not exist (why matches
// core.ErrStreamNotFound) it answers as the worker answers a request whose append or fetch
// failed: a push with a confirm with status ERROR, anything else with an `error` or
// sluice_error reply (see failRequest). A Sluice publisher whose pushes are refused asks
// sluice_stream_open whether the stream still exists and creates it again. When the hub
// cannot tell (the backend failed, or cannot report partition counts and the stream was not
// created through this hub), a push is not refused, which would say that storing its
// messages failed: it gets an `error` or sluice_error too, as a request not taken, and the
// client sends it again once it has reconnected and created the stream. The reply comes
// from the partition's address, as the worker's would, and never waits for the destination
// (see reply).
func (h *Hub) answerNoWorker(msg wire.TransportMessage, why error) {
	to, from := msg.ReturnRoute, wire.Route{msg.OnwardRoute[0]}
	addr := string(msg.OnwardRoute[0].Value)
	// The replies are logged at Debug: undeliverable logs a line about them, rate-limited.
	cause := loggedError{why}
	bp, err := wire.DecodeBasePayload(msg.Payload)
	if err != nil {
		h.replyError(to, from, fmt.Sprintf("%s: undecodable payload: %v", addr, err), cause)
		return
	}
	reason := fmt.Sprintf("%s: %s request not served: %v", addr, bp.Protocol, why)
	if !errors.Is(why, core.ErrStreamNotFound) {
		h.failRequest(to, from, bp, reason, cause)
		return
	}
	switch bp.Protocol {
	case wire.ProtocolPush:
		if req, err := wire.DecodePushRequest(bp.Data); err == nil {
			h.m.pushErrors.Add(1)
			h.reply(to, from, wire.ProtocolPush, wire.PushConfirm{RequestID: req.RequestID, Status: wire.StatusError})
			return
		}
	case wire.ProtocolPushBatch:
		// Refused whatever its messages hold: not decoded, which allocates for each (as
		// the worker refuses a batch whose confirm cannot fit).
		if id, n, err := wire.PeekPushBatchRequest(bp.Data); err == nil {
			h.m.pushErrors.Add(uint64(n))
			h.reply(to, from, wire.ProtocolPushBatch, wire.PushBatchConfirm{RequestID: id, Status: wire.StatusError})
			return
		}
	}
	h.failRequest(to, from, bp, reason, cause)
}
