package wire

// Ockam stream protocol payloads. Field order follows Ockam's Elixir implementation.

// CreateStreamRequest is the request of ProtocolCreate: {stream_name: optional<string>}.
// An absent name asks the hub to generate one.
type CreateStreamRequest struct {
	StreamName Optional[string]
}

func (p CreateStreamRequest) Size() int { return optionalStringSize(p.StreamName) }
func (p CreateStreamRequest) Append(dst []byte) []byte {
	return AppendOptionalString(dst, p.StreamName)
}

// DecodeCreateStreamRequest decodes a CreateStreamRequest.
func DecodeCreateStreamRequest(b []byte) (CreateStreamRequest, error) {
	r := NewReader(b, "CreateStreamRequest")
	p := CreateStreamRequest{StreamName: r.ReadOptionalString()}
	if err := r.Finish(); err != nil {
		return CreateStreamRequest{}, err
	}
	return p, nil
}

// CreateStreamPartitionedRequest is the request of ProtocolCreatePartitioned (and its alias
// ProtocolCreatePartitions): {stream_name: optional<string>, partitions: uint}.
type CreateStreamPartitionedRequest struct {
	StreamName Optional[string]
	Partitions uint64
}

func (p CreateStreamPartitionedRequest) Size() int {
	return optionalStringSize(p.StreamName) + UintSize(p.Partitions)
}
func (p CreateStreamPartitionedRequest) Append(dst []byte) []byte {
	return AppendUint(AppendOptionalString(dst, p.StreamName), p.Partitions)
}

// DecodeCreateStreamPartitionedRequest decodes a CreateStreamPartitionedRequest.
func DecodeCreateStreamPartitionedRequest(b []byte) (CreateStreamPartitionedRequest, error) {
	r := NewReader(b, "CreateStreamPartitionedRequest")
	p := CreateStreamPartitionedRequest{StreamName: r.ReadOptionalString(), Partitions: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return CreateStreamPartitionedRequest{}, err
	}
	return p, nil
}

// Init is the reply of ProtocolCreate, sent by the stream worker: {stream_name: string}.
// Its return route is the route to the stream.
type Init struct {
	StreamName string
}

func (p Init) Size() int                { return DataSize(len(p.StreamName)) }
func (p Init) Append(dst []byte) []byte { return AppendString(dst, p.StreamName) }

// DecodeInit decodes an Init.
func DecodeInit(b []byte) (Init, error) {
	r := NewReader(b, "Init")
	p := Init{StreamName: r.ReadString()}
	if err := r.Finish(); err != nil {
		return Init{}, err
	}
	return p, nil
}

// InitPartitioned is the reply of ProtocolCreatePartitioned, one per partition, each sent by
// that partition's worker: {stream_name: string, partition: uint}.
type InitPartitioned struct {
	StreamName string
	Partition  uint64
}

func (p InitPartitioned) Size() int { return DataSize(len(p.StreamName)) + UintSize(p.Partition) }
func (p InitPartitioned) Append(dst []byte) []byte {
	return AppendUint(AppendString(dst, p.StreamName), p.Partition)
}

// DecodeInitPartitioned decodes an InitPartitioned.
func DecodeInitPartitioned(b []byte) (InitPartitioned, error) {
	r := NewReader(b, "InitPartitioned")
	p := InitPartitioned{StreamName: r.ReadString(), Partition: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return InitPartitioned{}, err
	}
	return p, nil
}

// PushRequest is the request of ProtocolPush: {request_id: uint, data: data}.
type PushRequest struct {
	RequestID uint64
	Data      []byte
}

func (p PushRequest) Size() int { return UintSize(p.RequestID) + DataSize(len(p.Data)) }
func (p PushRequest) Append(dst []byte) []byte {
	return AppendData(AppendUint(dst, p.RequestID), p.Data)
}

// DecodePushRequest decodes a PushRequest. Data aliases b.
func DecodePushRequest(b []byte) (PushRequest, error) {
	r := NewReader(b, "PushRequest")
	p := PushRequest{RequestID: r.ReadUint(), Data: r.ReadData()}
	if err := r.Finish(); err != nil {
		return PushRequest{}, err
	}
	return p, nil
}

// Status is the BARE enum {OK, ERROR} of push confirmations and Sluice index replies.
type Status uint8

const (
	StatusOK    Status = 0
	StatusError Status = 1
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusError:
		return "ERROR"
	}
	return "Status(" + itoa(uint64(s)) + ")"
}

func (r *Reader) status() Status { return Status(r.ReadEnum("status", uint64(StatusError))) }

// PushConfirm is the reply of ProtocolPush: {request_id: uint, status: Status, index: uint}.
// Index is meaningful only when Status is StatusOK.
type PushConfirm struct {
	RequestID uint64
	Status    Status
	Index     uint64
}

func (p PushConfirm) Size() int {
	return UintSize(p.RequestID) + UintSize(uint64(p.Status)) + UintSize(p.Index)
}
func (p PushConfirm) Append(dst []byte) []byte {
	dst = AppendUint(dst, p.RequestID)
	dst = AppendUint(dst, uint64(p.Status))
	return AppendUint(dst, p.Index)
}

// DecodePushConfirm decodes a PushConfirm.
func DecodePushConfirm(b []byte) (PushConfirm, error) {
	r := NewReader(b, "PushConfirm")
	p := PushConfirm{RequestID: r.ReadUint(), Status: r.status(), Index: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return PushConfirm{}, err
	}
	return p, nil
}

// PullRequest is the request of ProtocolPull: {request_id: uint, index: uint, limit: uint}:
// at most Limit messages with index >= Index.
type PullRequest struct {
	RequestID uint64
	Index     uint64
	Limit     uint64
}

func (p PullRequest) Size() int {
	return UintSize(p.RequestID) + UintSize(p.Index) + UintSize(p.Limit)
}
func (p PullRequest) Append(dst []byte) []byte {
	return AppendUint(AppendUint(AppendUint(dst, p.RequestID), p.Index), p.Limit)
}

// DecodePullRequest decodes a PullRequest.
func DecodePullRequest(b []byte) (PullRequest, error) {
	r := NewReader(b, "PullRequest")
	p := PullRequest{RequestID: r.ReadUint(), Index: r.ReadUint(), Limit: r.ReadUint()}
	if err := r.Finish(); err != nil {
		return PullRequest{}, err
	}
	return p, nil
}

// StreamMessage is one message of a PullResponse: {index: uint, data: data}.
type StreamMessage struct {
	Index uint64
	Data  []byte
}

func (m StreamMessage) Size() int { return UintSize(m.Index) + DataSize(len(m.Data)) }
func (m StreamMessage) Append(dst []byte) []byte {
	return AppendData(AppendUint(dst, m.Index), m.Data)
}

// PullResponse is the reply of ProtocolPull (and ProtocolPullWait):
// {request_id: uint, messages: []StreamMessage}.
type PullResponse struct {
	RequestID uint64
	Messages  []StreamMessage
}

func (p PullResponse) Size() int { return UintSize(p.RequestID) + streamMessagesSize(p.Messages) }
func (p PullResponse) Append(dst []byte) []byte {
	return appendStreamMessages(AppendUint(dst, p.RequestID), p.Messages)
}

// DecodePullResponse decodes a PullResponse. Message data alias b.
func DecodePullResponse(b []byte) (PullResponse, error) {
	r := NewReader(b, "PullResponse")
	p := PullResponse{RequestID: r.ReadUint()}
	p.Messages = r.readStreamMessages()
	if err := r.Finish(); err != nil {
		return PullResponse{}, err
	}
	return p, nil
}

// streamMessagesSize is the encoded size of msgs as a BARE array.
func streamMessagesSize(msgs []StreamMessage) int {
	n := UintSize(uint64(len(msgs)))
	for _, m := range msgs {
		n += m.Size()
	}
	return n
}

// appendStreamMessages appends msgs as a BARE array.
func appendStreamMessages(dst []byte, msgs []StreamMessage) []byte {
	dst = AppendUint(dst, uint64(len(msgs)))
	for _, m := range msgs {
		dst = m.Append(dst)
	}
	return dst
}

// readStreamMessages reads a BARE array of StreamMessage; the data alias the input.
func (r *Reader) readStreamMessages() []StreamMessage {
	n := r.ReadArrayLen(2) // index + data length, at least one byte each
	if r.err != nil || n == 0 {
		return nil
	}
	msgs := make([]StreamMessage, n)
	for i := range msgs {
		msgs[i] = StreamMessage{Index: r.ReadUint(), Data: r.ReadData()}
	}
	return msgs
}

// IndexOp is the tag of the IndexRequest union.
type IndexOp uint8

const (
	// IndexGet asks for the saved index.
	IndexGet IndexOp = 0
	// IndexSave saves an index (monotonic).
	IndexSave IndexOp = 1
)

func (o IndexOp) String() string {
	switch o {
	case IndexGet:
		return "get"
	case IndexSave:
		return "save"
	}
	return "IndexOp(" + itoa(uint64(o)) + ")"
}

// IndexRequest is the request of ProtocolIndex, the union
// Get=0 {client_id: string, stream_name: string} |
// Save=1 {client_id: string, stream_name: string, index: uint}.
// Index is encoded only for IndexSave.
type IndexRequest struct {
	Op         IndexOp
	ClientID   string
	StreamName string
	Index      uint64
}

func (p IndexRequest) Size() int {
	n := UintSize(uint64(p.Op)) + DataSize(len(p.ClientID)) + DataSize(len(p.StreamName))
	if p.Op == IndexSave {
		n += UintSize(p.Index)
	}
	return n
}
func (p IndexRequest) Append(dst []byte) []byte {
	dst = AppendUint(dst, uint64(p.Op))
	dst = AppendString(AppendString(dst, p.ClientID), p.StreamName)
	if p.Op == IndexSave {
		dst = AppendUint(dst, p.Index)
	}
	return dst
}

// DecodeIndexRequest decodes an IndexRequest.
func DecodeIndexRequest(b []byte) (IndexRequest, error) {
	r := NewReader(b, "IndexRequest")
	p := IndexRequest{Op: IndexOp(r.ReadEnum("index request tag", uint64(IndexSave)))}
	p.ClientID = r.ReadString()
	p.StreamName = r.ReadString()
	if p.Op == IndexSave {
		p.Index = r.ReadUint()
	}
	if err := r.Finish(); err != nil {
		return IndexRequest{}, err
	}
	return p, nil
}

// IndexResponse is the reply of ProtocolIndex:
// {client_id: string, stream_name: string, index: optional<uint>}; Index is absent when no
// index was ever saved.
type IndexResponse struct {
	ClientID   string
	StreamName string
	Index      Optional[uint64]
}

func (p IndexResponse) Size() int {
	return DataSize(len(p.ClientID)) + DataSize(len(p.StreamName)) + optionalUintSize(p.Index)
}
func (p IndexResponse) Append(dst []byte) []byte {
	dst = AppendString(AppendString(dst, p.ClientID), p.StreamName)
	return AppendOptionalUint(dst, p.Index)
}

// DecodeIndexResponse decodes an IndexResponse.
func DecodeIndexResponse(b []byte) (IndexResponse, error) {
	r := NewReader(b, "IndexResponse")
	p := IndexResponse{ClientID: r.ReadString(), StreamName: r.ReadString(), Index: r.ReadOptionalUint()}
	if err := r.Finish(); err != nil {
		return IndexResponse{}, err
	}
	return p, nil
}

// IndexRequestPartitioned is the request of ProtocolIndexPartitioned, the union
// Get=0 {client_id, stream_name, partition: uint} |
// Save=1 {client_id, stream_name, partition: uint, index: uint}.
type IndexRequestPartitioned struct {
	Op         IndexOp
	ClientID   string
	StreamName string
	Partition  uint64
	Index      uint64
}

func (p IndexRequestPartitioned) Size() int {
	n := UintSize(uint64(p.Op)) + DataSize(len(p.ClientID)) + DataSize(len(p.StreamName)) + UintSize(p.Partition)
	if p.Op == IndexSave {
		n += UintSize(p.Index)
	}
	return n
}
func (p IndexRequestPartitioned) Append(dst []byte) []byte {
	dst = AppendUint(dst, uint64(p.Op))
	dst = AppendString(AppendString(dst, p.ClientID), p.StreamName)
	dst = AppendUint(dst, p.Partition)
	if p.Op == IndexSave {
		dst = AppendUint(dst, p.Index)
	}
	return dst
}

// DecodeIndexRequestPartitioned decodes an IndexRequestPartitioned.
func DecodeIndexRequestPartitioned(b []byte) (IndexRequestPartitioned, error) {
	r := NewReader(b, "IndexRequestPartitioned")
	p := IndexRequestPartitioned{Op: IndexOp(r.ReadEnum("index request tag", uint64(IndexSave)))}
	p.ClientID = r.ReadString()
	p.StreamName = r.ReadString()
	p.Partition = r.ReadUint()
	if p.Op == IndexSave {
		p.Index = r.ReadUint()
	}
	if err := r.Finish(); err != nil {
		return IndexRequestPartitioned{}, err
	}
	return p, nil
}

// IndexResponsePartitioned is the reply of ProtocolIndexPartitioned:
// {client_id, stream_name, partition: uint, index: optional<uint>}.
type IndexResponsePartitioned struct {
	ClientID   string
	StreamName string
	Partition  uint64
	Index      Optional[uint64]
}

func (p IndexResponsePartitioned) Size() int {
	return DataSize(len(p.ClientID)) + DataSize(len(p.StreamName)) + UintSize(p.Partition) + optionalUintSize(p.Index)
}
func (p IndexResponsePartitioned) Append(dst []byte) []byte {
	dst = AppendString(AppendString(dst, p.ClientID), p.StreamName)
	return AppendOptionalUint(AppendUint(dst, p.Partition), p.Index)
}

// DecodeIndexResponsePartitioned decodes an IndexResponsePartitioned.
func DecodeIndexResponsePartitioned(b []byte) (IndexResponsePartitioned, error) {
	r := NewReader(b, "IndexResponsePartitioned")
	p := IndexResponsePartitioned{ClientID: r.ReadString(), StreamName: r.ReadString(), Partition: r.ReadUint(), Index: r.ReadOptionalUint()}
	if err := r.Finish(); err != nil {
		return IndexResponsePartitioned{}, err
	}
	return p, nil
}

// Error is the payload of ProtocolError: {reason: string}.
type Error struct {
	Reason string
}

func (p Error) Size() int                { return DataSize(len(p.Reason)) }
func (p Error) Append(dst []byte) []byte { return AppendString(dst, p.Reason) }

// DecodeErrorPayload decodes an Error payload (DecodeError is the error type).
func DecodeErrorPayload(b []byte) (Error, error) {
	r := NewReader(b, "Error")
	p := Error{Reason: r.ReadString()}
	if err := r.Finish(); err != nil {
		return Error{}, err
	}
	return p, nil
}

// Binary is the payload of ProtocolBinary: data.
type Binary struct {
	Data []byte
}

func (p Binary) Size() int                { return DataSize(len(p.Data)) }
func (p Binary) Append(dst []byte) []byte { return AppendData(dst, p.Data) }

// DecodeBinary decodes a Binary payload. Data aliases b.
func DecodeBinary(b []byte) (Binary, error) {
	r := NewReader(b, "Binary")
	p := Binary{Data: r.ReadData()}
	if err := r.Finish(); err != nil {
		return Binary{}, err
	}
	return p, nil
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
