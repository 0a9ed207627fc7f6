package wire

// Protocol names carried in BasePayload.Protocol.
const (
	// ProtocolCreate creates a stream: CreateStreamRequest -> Init.
	ProtocolCreate = "stream_create"
	// ProtocolCreatePartitioned creates a partitioned stream (Ockam's implementation name):
	// CreateStreamPartitionedRequest -> one InitPartitioned per partition.
	ProtocolCreatePartitioned = "stream_create_partitioned"
	// ProtocolCreatePartitions is the Ockam proposal's name for ProtocolCreatePartitioned,
	// accepted as an alias; replies use the name of the request.
	ProtocolCreatePartitions = "stream_create_partitions"
	// ProtocolPush appends one message: PushRequest -> PushConfirm.
	ProtocolPush = "stream_push"
	// ProtocolPull fetches messages: PullRequest -> PullResponse.
	ProtocolPull = "stream_pull"
	// ProtocolIndex gets or saves a consumer index: IndexRequest -> IndexResponse.
	ProtocolIndex = "stream_index"
	// ProtocolIndexPartitioned is ProtocolIndex with a partition:
	// IndexRequestPartitioned -> IndexResponsePartitioned.
	ProtocolIndexPartitioned = "stream_index_partitioned"
	// ProtocolError carries an Error reply.
	ProtocolError = "error"
	// ProtocolBinary carries opaque Binary data.
	ProtocolBinary = "binary"

	// ProtocolPullWait is the Sluice long-poll pull: PullWaitRequest -> PullResponse (under
	// this same name).
	ProtocolPullWait = "sluice_pull_wait"
	// ProtocolPullBatch is the Sluice multi-frame pull: PullBatchRequest -> one or more
	// PullBatchPart (under this same name), the last with More false.
	ProtocolPullBatch = "sluice_pull_batch"
	// ProtocolPushBatch is the Sluice batch push: PushBatchRequest -> PushBatchConfirm.
	ProtocolPushBatch = "sluice_push_batch"
	// ProtocolIndexSave is the Sluice acknowledged index save: IndexSaveRequest -> IndexReply.
	ProtocolIndexSave = "sluice_index_save"
	// ProtocolIndexGet is the Sluice index get: IndexGetRequest -> IndexReply.
	ProtocolIndexGet = "sluice_index_get"
	// ProtocolStreamInfo asks whether a stream exists and how many partitions it has,
	// without creating it: StreamInfoRequest -> StreamInfoReply.
	ProtocolStreamInfo = "sluice_stream_info"
	// ProtocolStreamOpen asks for the routes to the partitions of an existing stream,
	// without creating it: StreamOpenRequest -> one StreamOpenReply per partition, each from
	// the partition's worker, or one StreamOpenReply from the stream service when the stream
	// does not exist or the hub cannot tell.
	ProtocolStreamOpen = "sluice_stream_open"
	// ProtocolRequestError carries a RequestError: the failure of one numbered Sluice
	// extension request that its own reply cannot express.
	ProtocolRequestError = "sluice_error"
)

// Encoder is implemented by every payload type of this package.
type Encoder interface {
	// Size returns the exact number of bytes Append writes.
	Size() int
	// Append appends the encoding to dst and returns the extended slice.
	Append(dst []byte) []byte
}

// Encode returns the encoding of e in a new slice of exactly e.Size() bytes.
func Encode[E Encoder](e E) []byte { return e.Append(make([]byte, 0, e.Size())) }

// BasePayload is the envelope of every stream protocol message: a protocol name and the
// protocol-specific encoded data.
type BasePayload struct {
	Protocol string
	Data     []byte
}

// Size returns the encoded size of p.
func (p BasePayload) Size() int { return DataSize(len(p.Protocol)) + DataSize(len(p.Data)) }

// Append appends the encoding of p.
func (p BasePayload) Append(dst []byte) []byte {
	return AppendData(AppendString(dst, p.Protocol), p.Data)
}

// DecodeBasePayload decodes a BasePayload. Data aliases b.
func DecodeBasePayload(b []byte) (BasePayload, error) {
	r := NewReader(b, "BasePayload")
	p := BasePayload{Protocol: r.protocol(), Data: r.ReadData()}
	if err := r.Finish(); err != nil {
		return BasePayload{}, err
	}
	return p, nil
}

// PayloadSize returns the encoded size of a BasePayload with the given protocol wrapping e
// (see AppendPayload).
func PayloadSize[E Encoder](protocol string, e E) int {
	return DataSize(len(protocol)) + DataSize(e.Size())
}

// AppendPayload appends a BasePayload{protocol, encoding of e} without encoding e twice.
func AppendPayload[E Encoder](dst []byte, protocol string, e E) []byte {
	dst = AppendString(dst, protocol)
	dst = AppendUint(dst, uint64(e.Size()))
	return e.Append(dst)
}

// EncodePayload returns a new slice holding BasePayload{protocol, encoding of e}: the
// Payload of a TransportMessage carrying a stream protocol message.
func EncodePayload[E Encoder](protocol string, e E) []byte {
	return AppendPayload(make([]byte, 0, PayloadSize(protocol, e)), protocol, e)
}

// knownProtocols are returned without allocating when decoding a BasePayload.
var knownProtocols = []string{
	ProtocolPush, ProtocolPull, ProtocolPullWait, ProtocolPullBatch, ProtocolPushBatch, ProtocolIndexSave,
	ProtocolIndexGet, ProtocolCreate, ProtocolCreatePartitioned, ProtocolCreatePartitions,
	ProtocolIndex, ProtocolIndexPartitioned, ProtocolError, ProtocolBinary, ProtocolStreamInfo,
	ProtocolStreamOpen, ProtocolRequestError,
}

// protocol reads a protocol name, interning the known ones.
func (r *Reader) protocol() string {
	start := r.off
	b := r.ReadData()
	if r.err != nil {
		return ""
	}
	for _, p := range knownProtocols {
		if string(b) == p {
			return p
		}
	}
	r.off = start
	return r.ReadString()
}
