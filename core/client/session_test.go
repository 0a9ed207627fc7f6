package client

import (
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

func newTestSession() *session {
	return &session{waiters: map[waitKey]chan reply{}, doneCh: make(chan struct{}), stop: make(chan struct{})}
}

// handlePart hands s one sluice_pull_batch part.
func handlePart(t *testing.T, s *session, p wire.PullBatchPart) {
	t.Helper()
	payload := wire.EncodePayload(wire.ProtocolPullBatch, p)
	if err := s.handle(t.Context(), &routing.Message{TransportMessage: wire.TransportMessage{Payload: payload}}); err != nil {
		t.Fatal(err)
	}
}

func (s *session) failed() bool {
	select {
	case <-s.doneCh:
		return true
	default:
		return false
	}
}

// TestSessionBoundsPullBatchParts: the parts of a sluice_pull_batch reply are kept up to
// what the request allows (max_bytes plus a frame, plus the framing of limit messages); one
// byte more fails the session with ErrProtocol and drops them, and later parts are dropped.
func TestSessionBoundsPullBatchParts(t *testing.T) {
	const id, limit, maxBytes = 1, 10, 1000
	s := newTestSession()
	k := waitKey{"pull", id}
	s.waiters[k] = make(chan reply, 1)
	s.expectBatch(k, limit, maxBytes)
	bound := maxBatchParts(limit, maxBytes)
	data := make([]byte, 1000)
	part := wire.PullBatchPart{RequestID: id, More: true, Messages: []wire.StreamMessage{{Index: 1, Data: data}}}
	size := 0
	for size+part.Size() <= bound {
		handlePart(t, s, part)
		size += part.Size()
	}
	if s.failed() {
		t.Fatalf("session failed with %d bytes of parts, within the bound %d: %v", size, bound, s.err())
	}
	// Fill up to the bound exactly, then one byte more.
	fill := wire.PullBatchPart{RequestID: id, More: true, Messages: []wire.StreamMessage{{Index: 1}}}
	for fill.Size() < bound-size {
		fill.Messages[0].Data = make([]byte, len(fill.Messages[0].Data)+1)
	}
	if fill.Size() != bound-size {
		t.Fatalf("cannot fill %d bytes with one part", bound-size)
	}
	handlePart(t, s, fill)
	if s.failed() {
		t.Fatalf("session failed with parts of exactly the bound %d: %v", bound, s.err())
	}
	handlePart(t, s, wire.PullBatchPart{RequestID: id, More: true, Messages: []wire.StreamMessage{{Index: 2}}})
	if !s.failed() || !errors.Is(s.err(), ErrProtocol) {
		t.Fatalf("after parts beyond the bound: failed %v, err %v; want ErrProtocol", s.failed(), s.err())
	}
	handlePart(t, s, part)
	s.mu.Lock()
	left := len(s.batches)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d batches kept after the session failed", left)
	}
}

// TestSessionKeepsHonestPullBatch: a reply as large as the protocol allows is kept whole:
// message data just under max_bytes before the last part, in as many parts as the limit
// allows, with the longest indexes and request id (the most framing per message).
func TestSessionKeepsHonestPullBatch(t *testing.T) {
	const id, limit, maxBytes = 1 << 62, 10000, 1 << 20
	s := newTestSession()
	k := waitKey{"pull", id}
	ch := make(chan reply, 1)
	s.waiters[k] = ch
	s.expectBatch(k, limit, maxBytes)
	const n = limit - 1
	data := make([]byte, (maxBytes-1)/n)
	for i := range n {
		handlePart(t, s, wire.PullBatchPart{RequestID: id, More: true, Messages: []wire.StreamMessage{{Index: 1<<63 + uint64(i), Data: data}}})
	}
	last := make([]byte, MaxMessageSize)
	handlePart(t, s, wire.PullBatchPart{RequestID: id, Messages: []wire.StreamMessage{{Index: 1<<63 + n, Data: last}}})
	if s.failed() {
		t.Fatalf("an honest reply failed the session: %v", s.err())
	}
	r := <-ch
	msgs, err := decodePull(r, 0)
	if err != nil || len(msgs) != limit {
		t.Fatalf("decoded %d messages (%v), want %d", len(msgs), err, limit)
	}
}

func TestMaxBatchPartsSaturates(t *testing.T) {
	for _, c := range []struct{ limit, maxBytes int }{{math.MaxInt, 1}, {1, math.MaxInt}, {math.MaxInt, math.MaxInt}} {
		if got := maxBatchParts(c.limit, c.maxBytes); got != math.MaxInt {
			t.Errorf("maxBatchParts(%d, %d) = %d, want math.MaxInt", c.limit, c.maxBytes, got)
		}
	}
	if got, want := maxBatchParts(1000, 1<<20), 1<<20+wire.MaxFrame+1000*maxBatchOverhead; got != want {
		t.Errorf("maxBatchParts(1000, 1 MiB) = %d, want %d", got, want)
	}
}

// TestSessionRefusesPartsOfNoBatch: parts for a pull that is not a batch fail the session
// instead of being dropped silently (the last part alone would lose the messages before it).
func TestSessionRefusesPartsOfNoBatch(t *testing.T) {
	s := newTestSession()
	s.waiters[waitKey{"pull", 1}] = make(chan reply, 1)
	handlePart(t, s, wire.PullBatchPart{RequestID: 1, More: true})
	if !errors.Is(s.err(), ErrProtocol) {
		t.Fatalf("session error %v, want ErrProtocol", s.err())
	}
}

// TestSessionPartsDoNotPinTheirFrames: the bound on the parts of a sluice_pull_batch reply
// must bound the memory they keep. A part aliases the frame it came in, and a frame may be
// far larger than its part: here a hub sends "more" parts of one empty message each, with a
// return route of an address of some 60000 bytes. Counted by their own few bytes, a
// thousand such parts are well within the bound of a default pull, but kept as they are
// they hold on to some 60 MB of frames. The session may keep about the bound, not that.
func TestSessionPartsDoNotPinTheirFrames(t *testing.T) {
	const id, limit, maxBytes, parts = 1, 1000, DefaultPullMaxBytes, 1000
	bound := maxBatchParts(limit, maxBytes)
	s := newTestSession()
	k := waitKey{"pull", id}
	s.waiters[k] = make(chan reply, 1)
	s.expectBatch(k, limit, maxBytes)
	part := wire.EncodePayload(wire.ProtocolPullBatch, wire.PullBatchPart{RequestID: id, More: true, Messages: []wire.StreamMessage{{Index: 1}}})
	ret := wire.Route{wire.Local(strings.Repeat("r", wire.MaxFrame-len(part)-100))}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range parts {
		// A frame as the TCP transport reads it: one buffer, which the decoded message's
		// routes and payload alias.
		frame := wire.TransportMessage{OnwardRoute: wire.Route{wire.Local("x")}, ReturnRoute: ret, Payload: part}.Append(nil)
		m, err := wire.DecodeTransportMessage(frame)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.handle(t.Context(), &routing.Message{TransportMessage: m}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	s.mu.Lock()
	b := s.batches[k]
	s.mu.Unlock()
	if b == nil || s.failed() { // the session refused the reply: nothing is kept
		return
	}
	if kept > 4*int64(bound) {
		t.Fatalf("%d parts kept %d bytes of heap, more than 4 times the bound of %d bytes for the reply", len(b.parts), kept, bound)
	}
}
