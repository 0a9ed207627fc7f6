package wire

import (
	"math"
	"strings"
)

// Sluice extension payloads. They use their own protocol names (sluice_*), so a plain Ockam
// client never meets them; their semantics are in docs/protocol.md.

// PullWaitRequest is the request of ProtocolPullWait (long-poll pull):
// {request_id: uint, index: uint, limit: uint, wait_ms: uint}. The hub replies with a
// PullResponse under ProtocolPullWait as soon as at least one message with index >= Index
// exists, or after WaitMS milliseconds with no messages.
type PullWaitRequest struct {
	RequestID uint64
	Index     uint64
	Limit     uint64
	WaitMS    uint64
}

func (p PullWaitRequest) Size() int {
	return UintSize(p.RequestID) + UintSize(p.Index) + UintSize(p.Limit) + UintSize(p.WaitMS)
}
func (p PullWaitRequest) Append(dst []byte) []byte {
	dst = AppendUint(AppendUint(dst, p.RequestID), p.Index)
	return AppendUint(AppendUint(dst, p.Limit), p.WaitMS)
}

// DecodePullWaitRequest decodes a PullWaitRequest.
func DecodePullWaitRequest(b []byte) (PullWaitRequest, error) {
	r := NewReader(b, "PullWaitRequest")
	p := PullWaitRequest{RequestID: r.ReadUint(), Index: r.ReadUint(), Limit: r.ReadUint(), WaitMS: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return PullWaitRequest{}, err
	}
	return p, nil
}

// PullBatchRequest is the request of ProtocolPullBatch (multi-frame pull):
// {request_id: uint, index: uint, limit: uint, wait_ms: uint, max_bytes: uint}. It waits like
// PullWaitRequest, then the hub answers with as many PullBatchPart frames as it takes to send
// up to Limit messages from Index, stopping after the frame in which the message data reaches
// MaxBytes, so one request moves many frames' worth of messages without a round trip per
// frame.
type PullBatchRequest struct {
	RequestID uint64
	Index     uint64
	Limit     uint64
	WaitMS    uint64
	MaxBytes  uint64
}

func (p PullBatchRequest) Size() int {
	return UintSize(p.RequestID) + UintSize(p.Index) + UintSize(p.Limit) + UintSize(p.WaitMS) + UintSize(p.MaxBytes)
}
func (p PullBatchRequest) Append(dst []byte) []byte {
	dst = AppendUint(AppendUint(dst, p.RequestID), p.Index)
	dst = AppendUint(AppendUint(dst, p.Limit), p.WaitMS)
	return AppendUint(dst, p.MaxBytes)
}

// DecodePullBatchRequest decodes a PullBatchRequest.
func DecodePullBatchRequest(b []byte) (PullBatchRequest, error) {
	r := NewReader(b, "PullBatchRequest")
	p := PullBatchRequest{RequestID: r.ReadUint(), Index: r.ReadUint(), Limit: r.ReadUint(), WaitMS: r.ReadUint(), MaxBytes: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return PullBatchRequest{}, err
	}
	return p, nil
}

// PullBatchPart is one reply frame of ProtocolPullBatch:
// {request_id: uint, more: bool, messages: []StreamMessage}. More is true on every part but
// the last; the parts of one request are sent in order on one connection, and their messages
// continue each other in index order. The last part may be empty.
type PullBatchPart struct {
	RequestID uint64
	More      bool
	Messages  []StreamMessage
}

// PullBatchPartOverhead is the number of bytes a PullBatchPart adds to a PullResponse with
// the same request id and messages (the More flag).
const PullBatchPartOverhead = 1

func (p PullBatchPart) Size() int {
	return UintSize(p.RequestID) + PullBatchPartOverhead + streamMessagesSize(p.Messages)
}
func (p PullBatchPart) Append(dst []byte) []byte {
	return appendStreamMessages(AppendBool(AppendUint(dst, p.RequestID), p.More), p.Messages)
}

// DecodePullBatchPart decodes a PullBatchPart. Message data alias b.
func DecodePullBatchPart(b []byte) (PullBatchPart, error) {
	r := NewReader(b, "PullBatchPart")
	p := PullBatchPart{RequestID: r.ReadUint(), More: r.readBool("more")}
	p.Messages = r.readStreamMessages()
	if err := r.Finish(); err != nil {
		return PullBatchPart{}, err
	}
	return p, nil
}

// PullBatchPartHeader reads the request id and More flag that start a PullBatchPart,
// without decoding its messages. ok is false when b does not start with them.
func PullBatchPartHeader(b []byte) (requestID uint64, more, ok bool) {
	r := NewReader(b, "PullBatchPart")
	requestID, more = r.ReadUint(), r.readBool("more")
	return requestID, more, r.Err() == nil
}

// PushBatchRequest is the request of ProtocolPushBatch: {request_id: uint, messages: []data}.
// The hub appends all messages in one durable append, or none.
type PushBatchRequest struct {
	RequestID uint64
	Messages  [][]byte
}

func (p PushBatchRequest) Size() int {
	n := UintSize(p.RequestID) + UintSize(uint64(len(p.Messages)))
	for _, m := range p.Messages {
		n += DataSize(len(m))
	}
	return n
}
func (p PushBatchRequest) Append(dst []byte) []byte {
	dst = AppendUint(AppendUint(dst, p.RequestID), uint64(len(p.Messages)))
	for _, m := range p.Messages {
		dst = AppendData(dst, m)
	}
	return dst
}

// DecodePushBatchRequest decodes a PushBatchRequest. Messages alias b.
func DecodePushBatchRequest(b []byte) (PushBatchRequest, error) {
	r := NewReader(b, "PushBatchRequest")
	p := PushBatchRequest{RequestID: r.ReadUint()}
	n := r.ReadArrayLen(1)
	if r.err == nil && n > 0 {
		p.Messages = make([][]byte, n)
		for i := range p.Messages {
			p.Messages[i] = r.ReadData()
		}
	}
	if err := r.Finish(); err != nil {
		return PushBatchRequest{}, err
	}
	return p, nil
}

// PeekPushBatchRequest returns the request id and the message count of the sluice_push_batch
// request b without decoding its messages, so that a receiver can refuse a batch of too many
// messages before it allocates for each (DecodePushBatchRequest allocates a slice per
// message: up to 24 times the request's size for a request of empty messages). The count
// is checked against the bytes left, as DecodePushBatchRequest checks it; the messages are
// not checked: decode b before using it.
func PeekPushBatchRequest(b []byte) (requestID uint64, n int, err error) {
	r := NewReader(b, "PushBatchRequest")
	requestID = r.ReadUint()
	n = r.ReadArrayLen(1)
	if err := r.Err(); err != nil {
		return 0, 0, err
	}
	return requestID, n, nil
}

// PushBatchConfirm is the reply of ProtocolPushBatch:
// {request_id: uint, status: Status, indexes: []uint}. On StatusOK Indexes holds the index of
// every message, in request order; on StatusError it is empty and nothing was appended.
type PushBatchConfirm struct {
	RequestID uint64
	Status    Status
	Indexes   []uint64
}

func (p PushBatchConfirm) Size() int {
	n := UintSize(p.RequestID) + UintSize(uint64(p.Status)) + UintSize(uint64(len(p.Indexes)))
	for _, i := range p.Indexes {
		n += UintSize(i)
	}
	return n
}
func (p PushBatchConfirm) Append(dst []byte) []byte {
	dst = AppendUint(AppendUint(dst, p.RequestID), uint64(p.Status))
	dst = AppendUint(dst, uint64(len(p.Indexes)))
	for _, i := range p.Indexes {
		dst = AppendUint(dst, i)
	}
	return dst
}

// PushBatchConfirmFits reports whether the OK confirm of a sluice_push_batch of n messages
// with request id requestID fits in a payload (protocol name and data) of budget bytes (see
// FramePayloadBudget), whatever indexes the messages get: each is counted at its longest
// encoding, MaxUintLen. The indexes are known only once the batch is stored, so a hub
// refuses a batch whose confirm might not fit before storing anything.
func PushBatchConfirmFits(budget int, requestID uint64, n int) bool {
	size := UintSize(requestID) + UintSize(uint64(StatusError)) + UintSize(uint64(n)) + n*MaxUintLen
	return DataSize(len(ProtocolPushBatch))+DataSize(size) <= budget
}

// MaxPushBatch returns the most messages a sluice_push_batch may hold for its OK confirm to
// fit in a payload of budget bytes whatever its request id (see PushBatchConfirmFits):
// about budget/10, some 6,500 in a frame.
func MaxPushBatch(budget int) int {
	n := max(budget/MaxUintLen, 0)
	for n > 0 && !PushBatchConfirmFits(budget, math.MaxUint64, n) {
		n--
	}
	return n
}

// DecodePushBatchConfirm decodes a PushBatchConfirm.
func DecodePushBatchConfirm(b []byte) (PushBatchConfirm, error) {
	r := NewReader(b, "PushBatchConfirm")
	p := PushBatchConfirm{RequestID: r.ReadUint(), Status: r.status()}
	n := r.ReadArrayLen(1)
	if r.err == nil && n > 0 {
		p.Indexes = make([]uint64, n)
		for i := range p.Indexes {
			p.Indexes[i] = r.ReadUint()
		}
	}
	if err := r.Finish(); err != nil {
		return PushBatchConfirm{}, err
	}
	return p, nil
}

// IndexSaveRequest is the request of ProtocolIndexSave:
// {request_id: uint, client_id: string, stream_name: string, partition: uint, index: uint}.
// The save is monotonic: a lower index never replaces a higher one.
type IndexSaveRequest struct {
	RequestID  uint64
	ClientID   string
	StreamName string
	Partition  uint64
	Index      uint64
}

func (p IndexSaveRequest) Size() int {
	return UintSize(p.RequestID) + DataSize(len(p.ClientID)) + DataSize(len(p.StreamName)) + UintSize(p.Partition) + UintSize(p.Index)
}
func (p IndexSaveRequest) Append(dst []byte) []byte {
	dst = AppendString(AppendString(AppendUint(dst, p.RequestID), p.ClientID), p.StreamName)
	return AppendUint(AppendUint(dst, p.Partition), p.Index)
}

// DecodeIndexSaveRequest decodes an IndexSaveRequest.
func DecodeIndexSaveRequest(b []byte) (IndexSaveRequest, error) {
	r := NewReader(b, "IndexSaveRequest")
	p := IndexSaveRequest{RequestID: r.ReadUint(), ClientID: r.ReadString(), StreamName: r.ReadString(), Partition: r.ReadUint(), Index: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return IndexSaveRequest{}, err
	}
	return p, nil
}

// IndexGetRequest is the request of ProtocolIndexGet:
// {request_id: uint, client_id: string, stream_name: string, partition: uint}.
type IndexGetRequest struct {
	RequestID  uint64
	ClientID   string
	StreamName string
	Partition  uint64
}

func (p IndexGetRequest) Size() int {
	return UintSize(p.RequestID) + DataSize(len(p.ClientID)) + DataSize(len(p.StreamName)) + UintSize(p.Partition)
}
func (p IndexGetRequest) Append(dst []byte) []byte {
	dst = AppendString(AppendString(AppendUint(dst, p.RequestID), p.ClientID), p.StreamName)
	return AppendUint(dst, p.Partition)
}

// DecodeIndexGetRequest decodes an IndexGetRequest.
func DecodeIndexGetRequest(b []byte) (IndexGetRequest, error) {
	r := NewReader(b, "IndexGetRequest")
	p := IndexGetRequest{RequestID: r.ReadUint(), ClientID: r.ReadString(), StreamName: r.ReadString(), Partition: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return IndexGetRequest{}, err
	}
	return p, nil
}

// IndexReply is the reply of ProtocolIndexSave and ProtocolIndexGet (under the request's
// protocol name): {request_id: uint, status: Status, index: optional<uint>}. Index is the
// saved value after the (monotonic) save, or for a get the saved value, absent when none was
// ever saved. On StatusError Index is absent.
type IndexReply struct {
	RequestID uint64
	Status    Status
	Index     Optional[uint64]
}

func (p IndexReply) Size() int {
	return UintSize(p.RequestID) + UintSize(uint64(p.Status)) + optionalUintSize(p.Index)
}
func (p IndexReply) Append(dst []byte) []byte {
	dst = AppendUint(AppendUint(dst, p.RequestID), uint64(p.Status))
	return AppendOptionalUint(dst, p.Index)
}

// DecodeIndexReply decodes an IndexReply.
func DecodeIndexReply(b []byte) (IndexReply, error) {
	r := NewReader(b, "IndexReply")
	p := IndexReply{RequestID: r.ReadUint(), Status: r.status(), Index: r.ReadOptionalUint()}
	if err := r.Finish(); err != nil {
		return IndexReply{}, err
	}
	return p, nil
}

// StreamInfoRequest is the request of ProtocolStreamInfo: {request_id: uint, stream_name:
// string}. It asks whether a stream exists and how many partitions it has, without creating
// it.
type StreamInfoRequest struct {
	RequestID  uint64
	StreamName string
}

func (p StreamInfoRequest) Size() int {
	return UintSize(p.RequestID) + DataSize(len(p.StreamName))
}
func (p StreamInfoRequest) Append(dst []byte) []byte {
	return AppendString(AppendUint(dst, p.RequestID), p.StreamName)
}

// DecodeStreamInfoRequest decodes a StreamInfoRequest.
func DecodeStreamInfoRequest(b []byte) (StreamInfoRequest, error) {
	r := NewReader(b, "StreamInfoRequest")
	p := StreamInfoRequest{RequestID: r.ReadUint(), StreamName: r.ReadString()}
	if err := r.Finish(); err != nil {
		return StreamInfoRequest{}, err
	}
	return p, nil
}

// StreamInfoReply is the reply of ProtocolStreamInfo: {request_id: uint, status: Status,
// partitions: optional<uint>, reason: string}. With StatusOK, Partitions is the stream's
// partition count, absent when the stream does not exist, and Reason is empty; with
// StatusError the hub could not tell (Reason says why) and Partitions is absent.
type StreamInfoReply struct {
	RequestID  uint64
	Status     Status
	Partitions Optional[uint64]
	Reason     string
}

func (p StreamInfoReply) Size() int {
	return UintSize(p.RequestID) + UintSize(uint64(p.Status)) + optionalUintSize(p.Partitions) + DataSize(len(p.Reason))
}
func (p StreamInfoReply) Append(dst []byte) []byte {
	dst = AppendUint(AppendUint(dst, p.RequestID), uint64(p.Status))
	return AppendString(AppendOptionalUint(dst, p.Partitions), p.Reason)
}

// DecodeStreamInfoReply decodes a StreamInfoReply.
func DecodeStreamInfoReply(b []byte) (StreamInfoReply, error) {
	r := NewReader(b, "StreamInfoReply")
	p := StreamInfoReply{RequestID: r.ReadUint(), Status: r.status(), Partitions: r.ReadOptionalUint(), Reason: r.ReadString()}
	if err := r.Finish(); err != nil {
		return StreamInfoReply{}, err
	}
	return p, nil
}

// StreamOpenRequest is the request of ProtocolStreamOpen: {request_id: uint, stream_name:
// string}. It asks for the routes to an existing stream's partitions, without creating it.
type StreamOpenRequest struct {
	RequestID  uint64
	StreamName string
}

func (p StreamOpenRequest) Size() int {
	return UintSize(p.RequestID) + DataSize(len(p.StreamName))
}
func (p StreamOpenRequest) Append(dst []byte) []byte {
	return AppendString(AppendUint(dst, p.RequestID), p.StreamName)
}

// DecodeStreamOpenRequest decodes a StreamOpenRequest.
func DecodeStreamOpenRequest(b []byte) (StreamOpenRequest, error) {
	r := NewReader(b, "StreamOpenRequest")
	p := StreamOpenRequest{RequestID: r.ReadUint(), StreamName: r.ReadString()}
	if err := r.Finish(); err != nil {
		return StreamOpenRequest{}, err
	}
	return p, nil
}

// StreamOpenReply is a reply of ProtocolStreamOpen: {request_id: uint, status: Status,
// partitions: optional<uint>, partition: uint, reason: string}. For an existing stream the
// hub sends one reply per partition, each from that partition's worker (so the reply's
// return route is the route to the worker, as for an Init), with StatusOK, Partitions the
// stream's partition count, Partition the partition and Reason empty. For a stream that
// does not exist it sends one reply with StatusOK, Partitions absent and Partition 0; when
// it cannot tell, one with StatusError, Partitions absent, Partition 0 and Reason saying
// why. The last two come from the stream service.
type StreamOpenReply struct {
	RequestID  uint64
	Status     Status
	Partitions Optional[uint64]
	Partition  uint64
	Reason     string
}

func (p StreamOpenReply) Size() int {
	return UintSize(p.RequestID) + UintSize(uint64(p.Status)) + optionalUintSize(p.Partitions) + UintSize(p.Partition) + DataSize(len(p.Reason))
}
func (p StreamOpenReply) Append(dst []byte) []byte {
	dst = AppendUint(AppendUint(dst, p.RequestID), uint64(p.Status))
	dst = AppendUint(AppendOptionalUint(dst, p.Partitions), p.Partition)
	return AppendString(dst, p.Reason)
}

// DecodeStreamOpenReply decodes a StreamOpenReply.
func DecodeStreamOpenReply(b []byte) (StreamOpenReply, error) {
	r := NewReader(b, "StreamOpenReply")
	p := StreamOpenReply{RequestID: r.ReadUint(), Status: r.status(), Partitions: r.ReadOptionalUint(), Partition: r.ReadUint(), Reason: r.ReadString()}
	if err := r.Finish(); err != nil {
		return StreamOpenReply{}, err
	}
	return p, nil
}

// RequestError is the message of ProtocolRequestError: {request_id: uint, protocol: string,
// reason: string}. The hub sends it instead of an Error when it cannot answer one request of
// a Sluice extension (Protocol, numbered RequestID) with that extension's own reply, for
// example because the request does not decode or the hub is shutting down. Unlike Error it
// names the request, so a client fails that request only.
type RequestError struct {
	RequestID uint64
	Protocol  string
	Reason    string
}

func (p RequestError) Size() int {
	return UintSize(p.RequestID) + DataSize(len(p.Protocol)) + DataSize(len(p.Reason))
}
func (p RequestError) Append(dst []byte) []byte {
	return AppendString(AppendString(AppendUint(dst, p.RequestID), p.Protocol), p.Reason)
}

// DecodeRequestError decodes a RequestError.
func DecodeRequestError(b []byte) (RequestError, error) {
	r := NewReader(b, "RequestError")
	p := RequestError{RequestID: r.ReadUint(), Protocol: r.ReadString(), Reason: r.ReadString()}
	if err := r.Finish(); err != nil {
		return RequestError{}, err
	}
	return p, nil
}

// IsExtension reports whether protocol is a Sluice extension (its name starts with
// "sluice_"): failures of its requests are answered in its own reply or with a
// RequestError, never with an Error.
func IsExtension(protocol string) bool { return strings.HasPrefix(protocol, "sluice_") }

// RequestIDOf reads the request id that starts every Sluice extension request and reply.
// ok is false when data does not start with a valid uint.
func RequestIDOf(data []byte) (id uint64, ok bool) {
	r := NewReader(data, "request id")
	id = r.ReadUint()
	return id, r.Err() == nil
}
