package hubtest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// ReplyTimeout bounds how long the tests wait for one reply from the hub: long enough for
// a slow broker, short enough that a missing reply fails instead of hanging the run.
var ReplyTimeout = 30 * time.Second

// started maps the address of each hub that Start runs to its backend (string to
// *core.Backend), so that a Conn to it can delete the streams it creates (see deleteAtEnd).
var started sync.Map

// Start starts a hub for backend listening on a free port of 127.0.0.1 and returns it with
// its address. The hub is shut down when the test ends (the backend is not closed). Streams
// that a Conn to it creates with Create or CreatePartitioned are deleted from the backend
// when the Conn's test ends, if its Storage is a core.StreamDeleter.
func Start(t testing.TB, backend *core.Backend, opts ...hub.Option) (*hub.Hub, string) {
	t.Helper()
	h, err := hub.New(backend, opts...)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	addr, err := h.Listen("127.0.0.1:0")
	if err != nil {
		_ = h.Close()
		t.Fatalf("hub.Listen: %v", err)
	}
	started.Store(addr.String(), backend)
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("hub.Close: %v", err)
		}
		started.Delete(addr.String())
	})
	return h, addr.String()
}

// DeleteAtEnd deletes stream from backend when t ends, if backend's Storage is a
// core.StreamDeleter, so that tests on a shared broker leave no streams behind: a Kinesis
// account (and kinesis-mock) limits its open shards, and a real one bills for them. A stream
// that is already gone, or a backend the test closed first, is fine; another error fails t.
func DeleteAtEnd(t testing.TB, backend *core.Backend, stream string) {
	d, ok := backend.Storage.(core.StreamDeleter)
	if !ok {
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ReplyTimeout)
		defer cancel()
		err := d.DeleteStream(ctx, stream)
		if err != nil && !errors.Is(err, core.ErrStreamNotFound) && !errors.Is(err, core.ErrClosed) {
			t.Errorf("cleanup: delete stream %q: %v", stream, err)
		}
	})
}

// Conn is a raw protocol connection to a hub: it writes frames built with package wire and
// reads the replies, with no client library in between. It is not safe for concurrent
// use, except that Send may run concurrently with Recv.
type Conn struct {
	t    testing.TB
	nc   net.Conn
	r    *bufio.Reader
	addr string // the hub's
	// Self is the return route of every message sent (default [0#app]); replies come back
	// with it as their onward route.
	Self wire.Route
}

// Dial connects to a hub at addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, ReplyTimeout)
	if err != nil {
		t.Fatalf("dial hub %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &Conn{t: t, nc: nc, r: bufio.NewReader(nc), addr: addr, Self: wire.Route{wire.Local("app")}}
}

// deleteAtEnd deletes stream, which c created, when c's test ends (see DeleteAtEnd), if
// Start runs the hub. A stream created twice is deleted by the first cleanup; the second
// finds it gone.
func (c *Conn) deleteAtEnd(stream string) {
	if b, ok := started.Load(c.addr); ok {
		DeleteAtEnd(c.t, b.(*core.Backend), stream)
	}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// NetConn returns the underlying connection, for tests that write raw bytes.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Send writes one message to onward carrying protocol and e.
func (c *Conn) Send(onward wire.Route, protocol string, e wire.Encoder) {
	c.t.Helper()
	c.SendPayload(onward, wire.EncodePayload(protocol, e))
}

// SendPayload writes one message to onward with a raw payload.
func (c *Conn) SendPayload(onward wire.Route, payload []byte) {
	c.t.Helper()
	frame, err := wire.AppendFrame(nil, wire.TransportMessage{OnwardRoute: onward, ReturnRoute: c.Self, Payload: payload})
	if err != nil {
		c.t.Fatalf("encode frame: %v", err)
	}
	if err := c.write(frame); err != nil {
		c.t.Fatalf("write frame: %v", err)
	}
}

func (c *Conn) write(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(ReplyTimeout))
	_, err := c.nc.Write(b)
	return err
}

// Reply is one message received from the hub.
type Reply struct {
	Msg      wire.TransportMessage
	Protocol string
	Data     []byte
	// FrameLen is the length of the frame's body (at most wire.MaxFrame).
	FrameLen int
}

// Recv reads the next message, failing the test on a timeout, a closed connection or an
// undecodable frame.
func (c *Conn) Recv() Reply {
	c.t.Helper()
	r, err := c.TryRecv(ReplyTimeout)
	if err != nil {
		c.t.Fatalf("receive from hub: %v", err)
	}
	return r
}

// TryRecv reads the next message within d.
func (c *Conn) TryRecv(d time.Duration) (Reply, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return Reply{}, err
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c.r, body); err != nil {
		return Reply{}, err
	}
	msg, err := wire.DecodeTransportMessage(body)
	if err != nil {
		return Reply{}, err
	}
	bp, err := wire.DecodeBasePayload(msg.Payload)
	if err != nil {
		return Reply{}, err
	}
	if !msg.OnwardRoute.Equal(c.Self) {
		return Reply{}, fmt.Errorf("reply onward route [%s], want [%s]", msg.OnwardRoute, c.Self)
	}
	return Reply{Msg: msg, Protocol: bp.Protocol, Data: bp.Data, FrameLen: len(body)}, nil
}

// Expect reads the next message and fails the test unless its protocol is protocol. An
// `error` reply is reported with its reason.
func (c *Conn) Expect(protocol string) Reply {
	c.t.Helper()
	r := c.Recv()
	if r.Protocol != protocol {
		reason := ""
		if r.Protocol == wire.ProtocolError {
			if e, err := wire.DecodeErrorPayload(r.Data); err == nil {
				reason = ": " + e.Reason
			}
		}
		c.t.Fatalf("got a %q reply%s, want %q", r.Protocol, reason, protocol)
	}
	return r
}

// ExpectError reads the next message, fails the test unless it is an `error` reply, and
// returns its reason.
func (c *Conn) ExpectError() string {
	c.t.Helper()
	r := c.Expect(wire.ProtocolError)
	e, err := wire.DecodeErrorPayload(r.Data)
	if err != nil {
		c.t.Fatalf("decode error reply: %v", err)
	}
	if e.Reason == "" {
		c.t.Fatalf("error reply has an empty reason")
	}
	return e.Reason
}

// ExpectRequestError reads the next message, fails the test unless it is a sluice_error
// answering request id of protocol, and returns its reason.
func (c *Conn) ExpectRequestError(protocol string, id uint64) string {
	c.t.Helper()
	r := c.Expect(wire.ProtocolRequestError)
	e, err := wire.DecodeRequestError(r.Data)
	if err != nil {
		c.t.Fatalf("decode sluice_error reply: %v", err)
	}
	if e.Protocol != protocol || e.RequestID != id {
		c.t.Fatalf("sluice_error for %s request %d, want %s request %d (reason %q)", e.Protocol, e.RequestID, protocol, id, e.Reason)
	}
	if e.Reason == "" {
		c.t.Fatalf("sluice_error reply has an empty reason")
	}
	return e.Reason
}

// StreamInfo sends sluice_stream_info for stream to the stream service and returns the
// reply.
func (c *Conn) StreamInfo(requestID uint64, stream string) wire.StreamInfoReply {
	c.t.Helper()
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolStreamInfo, wire.StreamInfoRequest{RequestID: requestID, StreamName: stream})
	r := c.Expect(wire.ProtocolStreamInfo)
	rep, err := wire.DecodeStreamInfoReply(r.Data)
	if err != nil {
		c.t.Fatalf("decode sluice_stream_info reply: %v", err)
	}
	if rep.RequestID != requestID {
		c.t.Fatalf("sluice_stream_info reply for request %d, want %d", rep.RequestID, requestID)
	}
	return rep
}

// ExpectClosed fails the test unless the hub closes the connection (EOF or reset) within
// the reply timeout, skipping any message that arrives first.
func (c *Conn) ExpectClosed() {
	c.t.Helper()
	for {
		_, err := c.TryRecv(ReplyTimeout)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("the hub did not close the connection within %v", ReplyTimeout)
		}
		return
	}
}

// Stream is a route to one stream partition worker, as learned from Init.
type Stream struct {
	Name      string
	Partition uint64
	Route     wire.Route
}

// Create sends stream_create for name ("" = let the hub generate one) and returns the
// stream from the Init reply.
func (c *Conn) Create(name string) Stream {
	c.t.Helper()
	req := wire.CreateStreamRequest{}
	if name != "" {
		req.StreamName = wire.Some(name)
	}
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, req)
	r := c.Expect(wire.ProtocolCreate)
	init, err := wire.DecodeInit(r.Data)
	if err != nil {
		c.t.Fatalf("decode Init: %v", err)
	}
	if len(r.Msg.ReturnRoute) == 0 {
		c.t.Fatalf("Init for %q has an empty return route", init.StreamName)
	}
	c.deleteAtEnd(init.StreamName)
	return Stream{Name: init.StreamName, Route: r.Msg.ReturnRoute.Clone()}
}

// CreatePartitioned sends protocol (stream_create_partitioned or its alias) and returns the
// partitions from the InitPartitioned replies, indexed by partition.
func (c *Conn) CreatePartitioned(protocol, name string, partitions int) []Stream {
	c.t.Helper()
	req := wire.CreateStreamPartitionedRequest{Partitions: uint64(partitions)}
	if name != "" {
		req.StreamName = wire.Some(name)
	}
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, protocol, req)
	out := make([]Stream, partitions)
	for range partitions {
		r := c.Expect(protocol)
		init, err := wire.DecodeInitPartitioned(r.Data)
		if err != nil {
			c.t.Fatalf("decode InitPartitioned: %v", err)
		}
		if init.Partition >= uint64(partitions) {
			c.t.Fatalf("InitPartitioned for partition %d of a %d-partition stream", init.Partition, partitions)
		}
		if out[init.Partition].Route != nil {
			c.t.Fatalf("two InitPartitioned for partition %d", init.Partition)
		}
		out[init.Partition] = Stream{Name: init.StreamName, Partition: init.Partition, Route: r.Msg.ReturnRoute.Clone()}
		c.deleteAtEnd(init.StreamName)
	}
	return out
}

// Push pushes data with requestID and returns the confirm.
func (c *Conn) Push(s Stream, requestID uint64, data []byte) wire.PushConfirm {
	c.t.Helper()
	c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: requestID, Data: data})
	return c.ExpectConfirm()
}

// ExpectConfirm reads a PushConfirm.
func (c *Conn) ExpectConfirm() wire.PushConfirm {
	c.t.Helper()
	r := c.Expect(wire.ProtocolPush)
	pc, err := wire.DecodePushConfirm(r.Data)
	if err != nil {
		c.t.Fatalf("decode PushConfirm: %v", err)
	}
	return pc
}

// Pull pulls up to limit messages from index and returns the response.
func (c *Conn) Pull(s Stream, requestID, index, limit uint64) wire.PullResponse {
	c.t.Helper()
	c.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: requestID, Index: index, Limit: limit})
	return c.ExpectPull(wire.ProtocolPull)
}

// ExpectPull reads a PullResponse sent under protocol.
func (c *Conn) ExpectPull(protocol string) wire.PullResponse {
	c.t.Helper()
	r := c.Expect(protocol)
	pr, err := wire.DecodePullResponse(r.Data)
	if err != nil {
		c.t.Fatalf("decode PullResponse: %v", err)
	}
	return pr
}
