package wire

// FitPullResponse returns how many of msgs, taken in order from the first, fit in a
// PullResponse{requestID, msgs[:n]} sent under protocol in a TransportMessage with the given
// routes without exceeding MaxFrame. It returns 0 when not even the first message fits (or
// msgs is empty). The hub fetches up to the requested limit and sends msgs[:n].
//
// Pass the routes as given to the node's Send. A transport strips the first onward address
// (the TCP or connection address) before framing, so the result is conservative by that
// address's few bytes, never too large.
func FitPullResponse(onward, ret Route, protocol string, requestID uint64, msgs []StreamMessage) int {
	return fitPull(onward, ret, protocol, requestID, msgs, 0)
}

// FitPullBatchPart is FitPullResponse for a PullBatchPart sent under ProtocolPullBatch.
func FitPullBatchPart(onward, ret Route, requestID uint64, msgs []StreamMessage) int {
	return fitPull(onward, ret, ProtocolPullBatch, requestID, msgs, PullBatchPartOverhead)
}

// fitPull counts the messages that fit in a pull reply whose encoding is a PullResponse's
// plus overhead bytes.
func fitPull(onward, ret Route, protocol string, requestID uint64, msgs []StreamMessage, overhead int) int {
	budget := FramePayloadBudget(onward, ret) // payload = BasePayload bytes
	if budget < 0 {
		return 0
	}
	fixed := DataSize(len(protocol)) // BasePayload.protocol
	body := 0                        // sum of message sizes
	n := 0
	for _, m := range msgs {
		next := body + m.Size()
		inner := UintSize(requestID) + UintSize(uint64(n+1)) + next + overhead // reply size
		if fixed+DataSize(inner) > budget {                                    // BasePayload.data = PullResponse
			break
		}
		body = next
		n++
	}
	return n
}

// PullResponseMessageSize returns the number of bytes a StreamMessage with this index and
// dataLen bytes of data adds to a PullResponse (not counting the growth of the count prefix).
func PullResponseMessageSize(index uint64, dataLen int) int {
	return UintSize(index) + DataSize(dataLen)
}

// PullResponseSize returns the size of the TransportMessage payload carrying a PullResponse
// under protocol (BasePayload included).
func PullResponseSize(protocol string, p PullResponse) int { return PayloadSize(protocol, p) }
