package tcp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/core/wire"
)

// An HTTP client pointed at a node's TCP port (say, at a hub's port instead of its metrics
// address) would otherwise be read as a frame: "GE" is a length of 18245 bytes, and the
// connection ends with a truncated frame or a handshake timeout in the log, which says
// nothing of the mistake. The first bytes of an accepted connection are therefore checked
// for an HTTP request line; such a connection gets a warning saying what the port speaks
// (rate-limited: see the package documentation), a fixed 400 reply, and is closed.
//
// No frame of routing v1 is taken for HTTP: a frame's third byte is the TransportMessage's
// version, 1, and the third byte of every request start below is a letter. A frame that
// starts like a request line would be refused anyway (its version is not 1); only the log
// line and the reply differ.

// httpRequestStarts are the starts of HTTP/1.x request lines (a method and its space) and
// the start of the HTTP/2 connection preface.
var httpRequestStarts = [...]string{
	"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ",
	"PRI * HTTP/2.0",
}

// httpHint is what the warning and the reply say.
const httpHint = "this port speaks the Sluice (Ockam routing v1) TCP protocol, not HTTP; " +
	"a Sluice hub serves HTTP only for its metrics, when enabled, on its -metrics-addr"

// httpReply is the whole reply to an HTTP request: fixed bytes, nothing of the request in
// them.
var httpReply = []byte("HTTP/1.1 400 Bad Request\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: " + strconv.Itoa(len(httpHint)+1) + "\r\n" +
	"Connection: close\r\n" +
	"\r\n" +
	httpHint + "\n")

// How long, and for how many bytes, refuseHTTP reads what the client still sends after the
// reply. Closing a socket with unread bytes resets the connection, and a reset can reach
// the client before it read the reply (net/http lingers for the same reason).
const (
	httpLinger      = time.Second
	httpLingerBytes = 64 << 10
)

// sentHTTP reports whether the bytes waiting in br, the first of an accepted connection,
// start an HTTP request.
func sentHTTP(br *bufio.Reader) bool {
	return startsWith(br, httpRequestStarts[:])
}

// httpResponseStart starts the status line of an HTTP/1.x response.
const httpResponseStart = "HTTP/"

// maxStatusLine bounds the status line answeredHTTP quotes.
const maxStatusLine = 64

// answeredHTTP reports whether the bytes waiting in br, the first a dialled connection
// reads, start an HTTP response: the address dialled is an HTTP server's. It returns the
// response's status line ("HTTP/1.1 400 Bad Request"), or as much of it as has arrived,
// up to maxStatusLine bytes.
func answeredHTTP(br *bufio.Reader) (status string, ok bool) {
	if !startsWith(br, []string{httpResponseStart}) {
		return "", false
	}
	b, _ := br.Peek(min(br.Buffered(), maxStatusLine)) // what has arrived: no wait
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b = b[:i]
	}
	return string(b), true
}

// startsWith reports whether the bytes waiting in br start with one of starts. It peeks at
// no byte that reading the first frame would not wait for (its 2-byte length, then at most
// that many bytes), so it delays no frame, and a frame of routing v1 is decided on its
// third byte without allocating. No start may have the version as its third byte.
func startsWith(br *bufio.Reader, starts []string) bool {
	b, err := br.Peek(wire.FrameHeaderLen)
	if err != nil {
		return false
	}
	n := wire.FrameHeaderLen + int(binary.BigEndian.Uint16(b)) // the frame's bytes
	if n == wire.FrameHeaderLen {
		return false // a zero length: readFrame refuses it without reading on
	}
	if b, err = br.Peek(wire.FrameHeaderLen + 1); err != nil || b[wire.FrameHeaderLen] == wire.Version {
		return false
	}
	longest := 0
	for _, s := range starts {
		longest = max(longest, len(s))
	}
	b, _ = br.Peek(min(n, longest)) // fewer bytes on an error: then no match
	for _, s := range starts {
		if len(b) >= len(s) && string(b[:len(s)]) == s {
			return true
		}
	}
	return false
}

// refuseHTTP warns that c sent an HTTP request (or tells the refused hook, before the
// reply: when the client has it, the refusal has been counted), replies httpReply and
// closes c. Nothing else writes to c: it delivered no message, so no one knows its address.
func (c *conn) refuseHTTP() {
	c.t.refused(c.nc, "tcp: closed a connection that sent an HTTP request: "+httpHint, ErrHTTPRequest, true)
	_ = c.nc.SetWriteDeadline(time.Now().Add(httpLinger))
	if _, err := c.nc.Write(httpReply); err == nil {
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(httpLinger))
		_, _ = io.CopyN(io.Discard, c.nc, httpLingerBytes)
	}
	c.shutdown(nil)
}
