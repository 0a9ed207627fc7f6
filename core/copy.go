package core

// CopyMessages returns a copy of msgs whose bytes share one new buffer (one allocation for
// all of them), each message capped so that appending to it cannot write over the next.
// Backends use it to keep messages past the return of the call that passed them.
func CopyMessages(msgs [][]byte) [][]byte {
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	buf := make([]byte, 0, total)
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		start := len(buf)
		buf = append(buf, m...)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}
