package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// DefaultCreateQuiet is the default for [Conn.CreateQuiet]. Hubs that answer
// sluice_stream_info (every Sluice hub) make the wait unnecessary.
const DefaultCreateQuiet = 100 * time.Millisecond

// Conn is one session with the hub for plain request/response use: every method sends one
// request and waits for its reply, without retries or reconnects. It suits tools and the
// remote backend; applications want [Publisher] and [Consumer].
//
// A Conn fails for good when its connection is lost, a request times out, the hub breaks the
// protocol ([ErrProtocol]), or the hub answers with an Ockam "error" reply (which names no
// request, so every request waiting on the Conn fails with it; [Conn.OpenStream] is the
// exception, see there); [Conn.Done] is then closed and every method returns an error
// matching [core.ErrUnavailable] or [ErrRejected]. Open a new Conn to go on. A request the
// hub refuses by number (status ERROR, or a sluice_error reply) fails alone, with an error
// matching [ErrRejected] and [core.ErrUnavailable]; the Conn goes on working.
//
// Methods are safe for concurrent use.
type Conn struct {
	s       *session
	timeout time.Duration
	reqID   atomic.Uint64

	// CreateQuiet is how long CreateStream waits for one more partition's Init after the
	// last one before it concludes that the stream has no more partitions, when the hub
	// cannot report the count with sluice_stream_info. Set it before use; default
	// DefaultCreateQuiet.
	CreateQuiet time.Duration

	createMu sync.Mutex // one partitioned create at a time (their replies are not numbered)
	mu       sync.Mutex
	routes   map[partKey]wire.Route
	parts    map[string]int
}

type partKey struct {
	stream    string
	partition int
}

// Open opens a Conn. timeout bounds each request (a long-poll Pull waits its wait on top).
func (c *Client) Open(ctx context.Context, timeout time.Duration) (*Conn, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("%w: client: request timeout %v, want > 0", core.ErrInvalidOption, timeout)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("client: open: %w", core.ErrClosed)
	}
	s, err := c.openSession(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &Conn{s: s, timeout: timeout, CreateQuiet: DefaultCreateQuiet, routes: map[partKey]wire.Route{}, parts: map[string]int{}}, nil
}

// Done is closed when the Conn failed or was closed.
func (c *Conn) Done() <-chan struct{} { return c.s.done() }

// Err returns why the Conn is done, or nil while it works.
func (c *Conn) Err() error {
	select {
	case <-c.s.done():
		return c.s.err()
	default:
		return nil
	}
}

// Close releases the Conn's reply address. It does not close the Client.
func (c *Conn) Close() error {
	c.s.close()
	return nil
}

func (c *Conn) nextID() uint64 { return c.reqID.Add(1) }

// Partitions returns the partition count this Conn learned for stream from CreateStream or
// OpenStream, and whether it knows one.
func (c *Conn) Partitions(stream string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.parts[stream]
	return n, ok
}

// CreateStream makes sure stream exists (stream_create_partitioned) and returns its
// partition count, which for an existing stream is its own count. After the first Init it
// asks the hub for the count (sluice_stream_info) and waits for exactly that many Init
// replies; only when the hub cannot tell does it count the Inits that arrive (see
// CreateQuiet).
func (c *Conn) CreateStream(ctx context.Context, stream string, partitions int) (int, error) {
	c.createMu.Lock()
	defer c.createMu.Unlock()
	routes, err := c.s.createPartitioned(ctx, stream, partitions, c.nextID, c.timeout, c.CreateQuiet)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.parts[stream] = len(routes)
	for p, r := range routes {
		c.routes[partKey{stream, p}] = r
	}
	c.mu.Unlock()
	return len(routes), nil
}

// createPartitioned is Conn.CreateStream on session s: it returns the route to each
// partition of stream, indexed by partition. id numbers its sluice_stream_info request;
// quiet is Conn.CreateQuiet. One partitioned create at a time may run on a session (their
// replies are not numbered).
func (s *session) createPartitioned(ctx context.Context, stream string, partitions int, id func() uint64, timeout, quiet time.Duration) ([]wire.Route, error) {
	if partitions < 1 {
		return nil, fmt.Errorf("client: create stream %q: %w: %d partitions", stream, core.ErrInvalidArgument, partitions)
	}
	ch := make(chan reply, core.MaxPartitions+1)
	s.mu.Lock()
	s.partInits = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.partInits = nil
		s.mu.Unlock()
	}()
	payload := wire.EncodePayload(wire.ProtocolCreatePartitioned, wire.CreateStreamPartitionedRequest{StreamName: wire.Some(stream), Partitions: uint64(partitions)})
	first, err := s.await(ctx, ch, func() error { return s.send(ctx, s.route(s.c.cfg.streamService), payload) }, timeout)
	if err != nil {
		return nil, fmt.Errorf("client: create stream %q: %w", stream, err)
	}
	routes := map[int]wire.Route{}
	add := func(r reply) error {
		in, err := wire.DecodeInitPartitioned(r.data)
		if err != nil {
			return err
		}
		if in.StreamName != stream || in.Partition >= core.MaxPartitions {
			return fmt.Errorf("unexpected Init for stream %q partition %d", in.StreamName, in.Partition)
		}
		routes[int(in.Partition)] = r.ret.Clone()
		return nil
	}
	if err := add(first); err != nil {
		return nil, fmt.Errorf("client: create stream %q: %w", stream, err)
	}
	// The first Init comes after the backend created the stream, so the hub now knows its
	// partition count.
	want, exists, infoErr := s.streamInfo(ctx, id(), stream, timeout)
	switch {
	case infoErr != nil && !errors.Is(infoErr, ErrRejected):
		return nil, fmt.Errorf("client: create stream %q: %w", stream, infoErr)
	case infoErr == nil && !exists:
		return nil, fmt.Errorf("client: create stream %q: %w: the hub sent Init but reports no such stream", stream, core.ErrUnavailable)
	case infoErr == nil && want > core.MaxPartitions:
		return nil, fmt.Errorf("client: create stream %q: the hub reports %d partitions", stream, want)
	}
	t := time.NewTimer(quiet)
	if infoErr == nil {
		t.Reset(timeout) // the remaining Inits are on their way: wait for them
	}
	defer t.Stop()
collect:
	for infoErr != nil || len(routes) < want {
		select {
		case r := <-ch:
			if err := add(r); err != nil {
				return nil, fmt.Errorf("client: create stream %q: %w", stream, err)
			}
			if infoErr != nil {
				t.Reset(quiet)
			}
		case <-t.C:
			if infoErr == nil {
				return nil, fmt.Errorf("client: create stream %q: %w after %v: %d of %d Init replies arrived", stream, ErrTimeout, timeout, len(routes), want)
			}
			break collect
		case <-s.done():
			return nil, fmt.Errorf("client: create stream %q: %w", stream, s.err())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := make([]wire.Route, len(routes))
	for p := range out {
		if routes[p] == nil {
			return nil, fmt.Errorf("client: create stream %q: %w: Init replies for %d partitions but none for partition %d", stream, core.ErrUnavailable, len(out), p)
		}
		out[p] = routes[p]
	}
	return out, nil
}

// StreamInfo asks the hub whether stream exists and how many partitions it has, without
// creating it (sluice_stream_info). exists false with a nil error means the stream does not
// exist. A hub that cannot tell returns an error matching [ErrRejected].
func (c *Conn) StreamInfo(ctx context.Context, stream string) (partitions int, exists bool, err error) {
	return c.s.streamInfo(ctx, c.nextID(), stream, c.timeout)
}

// streamInfo asks the hub whether stream exists and how many partitions it has, without
// creating it (see Conn.StreamInfo); id numbers the request.
func (s *session) streamInfo(ctx context.Context, id uint64, stream string, timeout time.Duration) (partitions int, exists bool, err error) {
	payload := wire.EncodePayload(wire.ProtocolStreamInfo, wire.StreamInfoRequest{RequestID: id, StreamName: stream})
	r, err := s.call(ctx, s.route(s.c.cfg.streamService), waitKey{"info", id}, payload, timeout)
	if err != nil {
		return 0, false, fmt.Errorf("client: stream info %q: %w", stream, err)
	}
	rep, err := wire.DecodeStreamInfoReply(r.data)
	if err != nil {
		return 0, false, fmt.Errorf("client: stream info %q: %w", stream, err)
	}
	if rep.Status != wire.StatusOK {
		return 0, false, fmt.Errorf("client: stream info %q: %w: %s: %w", stream, ErrRejected, rep.Reason, core.ErrUnavailable)
	}
	if !rep.Partitions.Valid {
		return 0, false, nil
	}
	if rep.Partitions.Value > core.MaxPartitions {
		return 0, false, fmt.Errorf("client: stream info %q: the hub reports %d partitions", stream, rep.Partitions.Value)
	}
	return int(rep.Partitions.Value), true, nil
}

// OpenStream learns the routes to the partitions of an existing stream without ever
// creating it (sluice_stream_open), and returns its partition count. exists false with a nil
// error means the stream does not exist; the Conn then forgets any routes it knew for it.
// A hub that cannot tell returns an error matching [ErrRejected].
//
// A hub that does not know sluice_stream_open (a Sluice hub older than it, or an Ockam
// node) answers with an Ockam "error" reply: OpenStream then returns an error matching
// [errors.ErrUnsupported] and [ErrRejected], and unlike other requests the Conn goes on
// working (the request has a reply address of its own), so the caller may fall back to
// [Conn.StreamInfo] and [Conn.CreateStream], which create a stream deleted between the two.
// A hub that does not answer at all times the request out, which fails the Conn.
func (c *Conn) OpenStream(ctx context.Context, stream string) (partitions int, exists bool, err error) {
	routes, err := c.s.openStream(ctx, c.nextID(), stream, c.timeout)
	if err != nil {
		return 0, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if routes == nil {
		delete(c.parts, stream)
		for k := range c.routes {
			if k.stream == stream {
				delete(c.routes, k)
			}
		}
		return 0, false, nil
	}
	c.parts[stream] = len(routes)
	for p, r := range routes {
		c.routes[partKey{stream, p}] = r
	}
	return len(routes), true, nil
}

// openStream asks the hub for the routes to the partitions of stream without creating it
// (see Conn.OpenStream); id numbers the request. It returns the route to each partition,
// indexed by partition, or nil routes and a nil error when the stream does not exist.
//
// The replies come to a reply address of the request's own, registered for its duration:
// an existing stream's replies are not numbered by partition count in advance, and an
// Ockam "error" reply to it (a hub that does not know the protocol) must fail this request
// only, with an error matching errors.ErrUnsupported, not the session.
func (s *session) openStream(ctx context.Context, id uint64, stream string, timeout time.Duration) ([]wire.Route, error) {
	failed := func(err error) ([]wire.Route, error) {
		return nil, fmt.Errorf("client: open stream %q: %w", stream, err)
	}
	broken := func(format string, args ...any) ([]wire.Route, error) {
		err := fmt.Errorf("client: open stream %q: %w: %s: %w", stream, ErrProtocol, fmt.Sprintf(format, args...), core.ErrUnavailable)
		s.fail(err)
		return nil, err
	}
	ch := make(chan reply, core.MaxPartitions+1)
	addr, err := registerOpenReplies(s.c.node, openReplies{s: s, ch: ch})
	if err != nil {
		return failed(fmt.Errorf("register reply address: %w", err))
	}
	defer func() { _ = s.c.node.Unregister(addr) }()
	payload := wire.EncodePayload(wire.ProtocolStreamOpen, wire.StreamOpenRequest{RequestID: id, StreamName: stream})
	msg := wire.TransportMessage{OnwardRoute: s.route(s.c.cfg.streamService), ReturnRoute: wire.Route{wire.Local(addr)}, Payload: payload}
	if err := s.sendMsg(ctx, msg, false); err != nil {
		return failed(err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	var routes []wire.Route
	got := 0
	for {
		var r reply
		select {
		case r = <-ch:
		case <-t.C:
			err := fmt.Errorf("%w after %v: %d partition replies arrived", ErrTimeout, timeout, got)
			s.fail(err)
			return failed(err)
		case <-s.doneCh:
			return failed(s.err())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		switch r.protocol {
		case wire.ProtocolStreamOpen:
		case wire.ProtocolError:
			reason := "(undecodable error reply)"
			if e, err := wire.DecodeErrorPayload(r.data); err == nil {
				reason = e.Reason
			}
			return failed(fmt.Errorf("%w: the hub does not support %s (%w): %s: %w", ErrRejected, wire.ProtocolStreamOpen, errors.ErrUnsupported, reason, core.ErrUnavailable))
		case wire.ProtocolRequestError:
			// It comes to this request's own address (not through the session's dispatch,
			// which checks the others).
			e, err := wire.DecodeRequestError(r.data)
			switch {
			case err != nil:
				return broken("%v", err)
			case e.RequestID != id:
				return broken("an error reply to request %d, want %d", e.RequestID, id)
			}
			return failed(requestError(r))
		default:
			return broken("a %q reply to %s", r.protocol, wire.ProtocolStreamOpen)
		}
		rep, err := wire.DecodeStreamOpenReply(r.data)
		if err != nil {
			return broken("%v", err)
		}
		switch {
		case rep.RequestID != id:
			return broken("reply to request %d, want %d", rep.RequestID, id)
		case rep.Status != wire.StatusOK:
			return failed(fmt.Errorf("%w: %s: %w", ErrRejected, rep.Reason, core.ErrUnavailable))
		case !rep.Partitions.Valid && routes == nil:
			return nil, nil // no such stream
		case !rep.Partitions.Valid:
			return broken("a reply for no stream after %d partition replies", got)
		case rep.Partitions.Value < 1 || rep.Partitions.Value > core.MaxPartitions:
			return broken("the hub reports %d partitions", rep.Partitions.Value)
		}
		n := int(rep.Partitions.Value)
		if routes == nil {
			routes = make([]wire.Route, n)
		}
		switch {
		case n != len(routes):
			return broken("replies report %d and %d partitions", len(routes), n)
		case rep.Partition >= uint64(n):
			return broken("a reply for partition %d of %d", rep.Partition, n)
		case routes[rep.Partition] != nil:
			return broken("two replies for partition %d", rep.Partition)
		case len(r.ret) == 0:
			return broken("the reply for partition %d has no return route", rep.Partition)
		}
		routes[rep.Partition] = r.ret.Clone()
		if got++; got == n {
			return routes, nil
		}
	}
}

// openReplies receives the replies of one sluice_stream_open request at its own address
// (see session.openStream). Send never blocks: the channel holds a reply per partition and
// one more; a hub that sends more has broken the protocol, and its extra replies are dropped.
type openReplies struct {
	s  *session
	ch chan reply
}

func (o openReplies) Send(_ context.Context, msg wire.TransportMessage) error {
	if st := o.s.link.conn; st != nil && !st.heard.Load() {
		st.heard.Store(true) // the hub answered on this connection
	}
	bp, err := wire.DecodeBasePayload(msg.Payload)
	if err != nil {
		return fmt.Errorf("client: reply from %s: %w", msg.ReturnRoute, err)
	}
	select {
	case o.ch <- reply{protocol: bp.Protocol, data: bp.Data, ret: msg.ReturnRoute}:
	default:
	}
	return nil
}

// registerOpenReplies registers o at a new random address of node.
func registerOpenReplies(node *routing.Node, o openReplies) (string, error) {
	for {
		a := routing.NewAddress()
		err := node.RegisterSender(a, o)
		if errors.Is(err, routing.ErrAddressInUse) {
			continue // 2^-128
		}
		return a, err
	}
}

func (c *Conn) route(stream string, partition int) (wire.Route, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.parts[stream]
	if !ok {
		return nil, fmt.Errorf("client: stream %q: %w: create it on this Conn first", stream, core.ErrStreamNotFound)
	}
	if err := core.ValidatePartition(stream, partition, n); err != nil {
		return nil, err
	}
	return c.routes[partKey{stream, partition}], nil
}

// Push appends msgs to a partition of a stream created on this Conn, in as few
// sluice_push_batch requests as fit a frame (and whose confirms fit one: at most
// [wire.MaxPushBatch] messages each), and returns their indexes. When a request
// fails after earlier ones succeeded, those earlier messages are stored although Push
// reports an error (at-least-once callers retry).
func (c *Conn) Push(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	route, err := c.route(stream, partition)
	if err != nil {
		return nil, err
	}
	budget := wire.FramePayloadBudget(route, c.s.self) - wire.DataSize(len(wire.ProtocolPushBatch)) - 3*wire.MaxUintLen
	// At least one message per request, as the publisher sends: with none, a route too long
	// for the margin left for a confirm would make Push send empty requests forever. Whether
	// the confirm of one message fits is the hub's to judge (it refuses the request if not).
	maxBatch := max(wire.MaxPushBatch(wire.FramePayloadBudget(route, c.s.self)-confirmMargin), 1)
	out := make([]uint64, 0, len(msgs))
	for len(msgs) > 0 {
		n, size := 0, 0
		for n < len(msgs) && n < maxBatch {
			sz := wire.DataSize(len(msgs[n]))
			if n > 0 && size+sz > budget {
				break
			}
			if sz > budget {
				return out, fmt.Errorf("client: push to %q: %w: message is %d bytes, at most %d fit in a frame", stream, core.ErrMessageTooLarge, len(msgs[n]), budget)
			}
			size += sz
			n++
		}
		id := c.nextID()
		payload := wire.EncodePayload(wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: id, Messages: msgs[:n]})
		r, err := c.s.call(ctx, route, waitKey{"push", id}, payload, c.timeout)
		if err != nil {
			return out, fmt.Errorf("client: push to %q partition %d: %w", stream, partition, err)
		}
		confirm, err := wire.DecodePushBatchConfirm(r.data)
		if err != nil {
			return out, fmt.Errorf("client: push to %q partition %d: %w", stream, partition, err)
		}
		if confirm.Status != wire.StatusOK {
			return out, fmt.Errorf("client: push to %q partition %d: %w: %w", stream, partition, ErrRefused, core.ErrUnavailable)
		}
		if len(confirm.Indexes) != n {
			return out, fmt.Errorf("client: push to %q partition %d: %d indexes confirmed for %d messages", stream, partition, len(confirm.Indexes), n)
		}
		out = append(out, confirm.Indexes...)
		msgs = msgs[n:]
	}
	return out, nil
}

// Pull returns up to limit messages with index >= from of a partition of a stream created
// on this Conn. With wait > 0 it long-polls: the hub answers as soon as a message exists or
// wait passed (at most half the idle timeout of a [Client] created by [Dial], as for
// [WithPullWait]). An empty result means "no message"; every failure is an error. The hub sends
// the messages in as many frames as it takes (sluice_pull_batch), and may return fewer than
// limit when their data reaches [DefaultPullMaxBytes]. A reply larger than that allows fails
// the Conn with an error matching [ErrProtocol] and [core.ErrUnavailable].
func (c *Conn) Pull(ctx context.Context, stream string, partition int, from uint64, limit int, wait time.Duration) ([]core.Message, error) {
	route, err := c.route(stream, partition)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, core.ValidateLimit(limit)
	}
	wait = c.s.c.longPoll(max(wait, 0))
	id := c.nextID()
	payload := pullPayload(id, from, limit, uint64(wait/time.Millisecond), DefaultPullMaxBytes)
	k := waitKey{"pull", id}
	c.s.expectBatch(k, limit, DefaultPullMaxBytes)
	r, err := c.s.call(ctx, route, k, payload, c.timeout+wait)
	if err == nil {
		var msgs []core.Message
		if msgs, err = decodePull(r, from); err == nil {
			return msgs, nil
		}
	}
	return nil, fmt.Errorf("client: pull %q partition %d from %d: %w", stream, partition, from, err)
}

// GetIndex returns the index saved on the hub for (clientID, stream, partition), or an
// error matching core.ErrIndexNotFound.
func (c *Conn) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	return getIndex(ctx, c.s, c.nextID(), clientID, stream, partition, c.timeout)
}

// SaveIndex saves index on the hub (monotonically) and returns the value saved afterwards.
func (c *Conn) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) (uint64, error) {
	return saveIndex(ctx, c.s, c.nextID(), clientID, stream, partition, index, c.timeout)
}
