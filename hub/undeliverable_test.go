package hub_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// answerWait bounds the wait for each answer below: without one the request is simply
// never answered, and the test fails after it instead of after hubtest.ReplyTimeout.
const answerWait = 10 * time.Second

// recvWithin reads c's next message, failing t when none comes within answerWait.
func recvWithin(t *testing.T, c *hubtest.Conn, what string) hubtest.Reply {
	t.Helper()
	r, err := c.TryRecv(answerWait)
	if err != nil {
		t.Fatalf("%s: no answer: %v", what, err)
	}
	return r
}

// TestRequestsToDeletedStreamAnswered: a client that learned the route to a partition from
// one hub keeps it (routes survive restarts), but the stream was deleted meanwhile. A hub
// that does not have the partition's worker must answer its requests as failed, as the
// worker would answer a failed append or fetch, so that the client learns it at once (a
// Sluice publisher then asks sluice_stream_open, and creates the stream again) instead of
// waiting for every request to time out. Messages to an unknown address that names no
// partition have nobody to be answered as; they are dropped, and like the others counted
// and warned about once per interval, not once per frame.
func TestRequestsToDeletedStreamAnswered(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	_, addrA := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	streams := hubtest.Dial(t, addrA).CreatePartitioned(wire.ProtocolCreatePartitioned, "doomed", 2)
	if err := b.Storage.(core.StreamDeleter).DeleteStream(context.Background(), "doomed"); err != nil {
		t.Fatal(err)
	}

	var logs hubtest.LogBuffer
	h, addrB := hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := hubtest.Dial(t, addrB)
	route := streams[1].Route
	worker := wire.Local("stream.doomed.1")
	if !route.Equal(wire.Route{worker}) {
		t.Fatalf("Init route %v, want [%v]", route, worker)
	}
	from := func(r hubtest.Reply) {
		t.Helper()
		if !r.Msg.ReturnRoute.Equal(route) {
			t.Errorf("%s answer comes from %v, want the partition's address %v", r.Protocol, r.Msg.ReturnRoute, route)
		}
	}

	c.Send(route, wire.ProtocolPush, wire.PushRequest{RequestID: 7, Data: []byte("a")})
	r := recvWithin(t, c, "stream_push to a deleted stream")
	pc, err := wire.DecodePushConfirm(r.Data)
	if r.Protocol != wire.ProtocolPush || err != nil || pc.RequestID != 7 || pc.Status != wire.StatusError {
		t.Fatalf("stream_push to a deleted stream answered %q %+v (%v), want PushConfirm{7, ERROR}", r.Protocol, pc, err)
	}
	from(r)

	c.Send(route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 8, Messages: [][]byte{[]byte("a"), []byte("b")}})
	r = recvWithin(t, c, "sluice_push_batch to a deleted stream")
	bc, err := wire.DecodePushBatchConfirm(r.Data)
	if r.Protocol != wire.ProtocolPushBatch || err != nil || bc.RequestID != 8 || bc.Status != wire.StatusError || len(bc.Indexes) != 0 {
		t.Fatalf("sluice_push_batch to a deleted stream answered %q %+v (%v), want PushBatchConfirm{8, ERROR, []}", r.Protocol, bc, err)
	}
	from(r)

	c.Send(route, wire.ProtocolPull, wire.PullRequest{RequestID: 9, Limit: 10})
	r = recvWithin(t, c, "stream_pull from a deleted stream")
	e, err := wire.DecodeErrorPayload(r.Data)
	if r.Protocol != wire.ProtocolError || err != nil || !strings.Contains(e.Reason, `stream "doomed" does not exist`) {
		t.Fatalf("stream_pull from a deleted stream answered %q %+v (%v), want an error saying the stream does not exist", r.Protocol, e, err)
	}
	from(r)

	for id, protocol := range map[uint64]string{10: wire.ProtocolPullWait, 11: wire.ProtocolPullBatch} {
		var req wire.Encoder = wire.PullWaitRequest{RequestID: id, Limit: 10, WaitMS: 1000}
		if protocol == wire.ProtocolPullBatch {
			req = wire.PullBatchRequest{RequestID: id, Limit: 10, WaitMS: 1000, MaxBytes: 1 << 20}
		}
		c.Send(route, protocol, req)
		r = recvWithin(t, c, protocol+" from a deleted stream")
		re, err := wire.DecodeRequestError(r.Data)
		if r.Protocol != wire.ProtocolRequestError || err != nil || re.RequestID != id || re.Protocol != protocol || !strings.Contains(re.Reason, "does not exist") {
			t.Fatalf("%s from a deleted stream answered %q %+v (%v), want a sluice_error naming request %d", protocol, r.Protocol, re, err, id)
		}
		from(r)
	}

	// A partition beyond the stream's count is answered the same way.
	if _, err := b.Storage.CreateStream(context.Background(), "small", 1); err != nil {
		t.Fatal(err)
	}
	c.Send(wire.Route{wire.Local("stream.small.3")}, wire.ProtocolPush, wire.PushRequest{RequestID: 12, Data: []byte("a")})
	r = recvWithin(t, c, "stream_push to a partition the stream does not have")
	if pc, err := wire.DecodePushConfirm(r.Data); r.Protocol != wire.ProtocolPush || err != nil || pc.RequestID != 12 || pc.Status != wire.StatusError {
		t.Fatalf("stream_push to partition 3 of a 1-partition stream answered %q %+v (%v), want PushConfirm{12, ERROR}", r.Protocol, pc, err)
	}

	// Unknown addresses that name no partition: dropped, counted, one warning.
	const unknown = 50
	for range unknown {
		c.Send(wire.Route{wire.Local("nowhere")}, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("a")})
	}
	// The connection's messages are read in order: once this is answered, all were handled.
	if rep := c.StreamInfo(13, "doomed"); rep.Partitions.Valid {
		t.Fatalf("sluice_stream_info of the deleted stream: %+v", rep)
	}

	m := h.Metrics()
	if want := uint64(6 + unknown); m.UndeliverableMessages != want {
		t.Errorf("Metrics.UndeliverableMessages = %d, want %d", m.UndeliverableMessages, want)
	}
	if m.PushErrors != 4 { // one stream_push, a batch of two, one more stream_push
		t.Errorf("Metrics.PushErrors = %d, want 4", m.PushErrors)
	}
	var warnUnknown, warnDeleted int
	for _, line := range strings.Split(logs.String(), "\n") {
		switch {
		case !strings.Contains(line, "level=WARN"):
		case strings.Contains(line, "unknown address"):
			warnUnknown++
		case strings.Contains(line, "does not exist"):
			warnDeleted++
		default:
			t.Errorf("unexpected warning: %s", line)
		}
	}
	if warnUnknown != 1 || warnDeleted != 1 {
		t.Errorf("%d warnings about unknown addresses and %d about deleted partitions, want one each (rate-limited):\n%s", warnUnknown, warnDeleted, logs.String())
	}
}

// TestRequestsToUnknownPartitionNotTaken: a hub whose backend cannot report partition
// counts cannot tell whether a partition it did not create exists (after a restart, it
// did not). Refusing a push there (status ERROR) would say that storing it failed; it is
// answered as not taken instead, an `error` to a stream_push and a sluice_error to a
// sluice_push_batch, and the client sends it again once it has created the stream, which
// then works.
func TestRequestsToUnknownPartitionNotTaken(t *testing.T) {
	mem := openMemory(t)
	defer mem.Close()
	if _, err := mem.Storage.CreateStream(context.Background(), "kept", 1); err != nil {
		t.Fatal(err)
	}
	h, addr := hubtest.Start(t, &core.Backend{Storage: noCounter{mem.Storage}, Index: mem.Index}, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	route := wire.Route{wire.Local("stream.kept.0")}

	c.Send(route, wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("a")})
	r := recvWithin(t, c, "stream_push to a partition the hub cannot find")
	if e, err := wire.DecodeErrorPayload(r.Data); r.Protocol != wire.ProtocolError || err != nil || !strings.Contains(e.Reason, "cannot report partition counts") {
		t.Fatalf("stream_push to a partition the hub cannot find answered %q %+v (%v), want an error saying why", r.Protocol, e, err)
	}
	c.Send(route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 2, Messages: [][]byte{[]byte("a")}})
	r = recvWithin(t, c, "sluice_push_batch to a partition the hub cannot find")
	if re, err := wire.DecodeRequestError(r.Data); r.Protocol != wire.ProtocolRequestError || err != nil || re.RequestID != 2 || re.Protocol != wire.ProtocolPushBatch {
		t.Fatalf("sluice_push_batch to a partition the hub cannot find answered %q %+v (%v), want a sluice_error naming request 2", r.Protocol, re, err)
	}
	if m := h.Metrics(); m.PushErrors != 0 || m.UndeliverableMessages != 2 {
		t.Errorf("push_errors %d, undeliverable_messages %d; want 0 and 2", m.PushErrors, m.UndeliverableMessages)
	}
	s := c.Create("kept")
	if pc := c.Push(s, 3, []byte("a")); pc.Status != wire.StatusOK {
		t.Fatalf("push after creating the stream again: status %d", pc.Status)
	}
}

// TestPushBatchToDeletedStreamNotDecoded: a sluice_push_batch to a stream partition that
// does not exist is refused by its request id and message count alone, as the worker
// refuses a batch whose confirm cannot fit (see TestPushBatchRefusedBeforeDecoding):
// decoding its messages would allocate for each, up to 24 times the frame, for a request
// that is refused whatever they hold. So a batch whose messages do not even decode is
// refused all the same, with status ERROR, and its messages are counted as push errors.
func TestPushBatchToDeletedStreamNotDecoded(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	if _, err := b.Storage.CreateStream(context.Background(), "doomed", 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Storage.(core.StreamDeleter).DeleteStream(context.Background(), "doomed"); err != nil {
		t.Fatal(err)
	}
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger))
	c := hubtest.Dial(t, addr)
	// request id 7, 30,000 messages: 29,999 empty ones, then one whose length (5) runs past
	// the end.
	req := wire.AppendUint(nil, 7)
	req = wire.AppendUint(req, 30_000)
	req = append(req, make([]byte, 29_999)...)
	req = append(req, 5)
	if _, err := wire.DecodePushBatchRequest(req); err == nil {
		t.Fatal("the request decodes: the test needs one that does not")
	}
	c.SendPayload(wire.Route{wire.Local("stream.doomed.0")}, wire.BasePayload{Protocol: wire.ProtocolPushBatch, Data: req}.Append(nil))
	r := recvWithin(t, c, "sluice_push_batch to a deleted stream")
	pc, err := wire.DecodePushBatchConfirm(r.Data)
	if r.Protocol != wire.ProtocolPushBatch || err != nil || pc.RequestID != 7 || pc.Status != wire.StatusError {
		t.Fatalf("got a %q reply %+v (%v), want push batch 7 confirmed with status ERROR", r.Protocol, pc, err)
	}
	if m := h.Metrics(); m.PushErrors != 30_000 || m.UndeliverableMessages != 1 {
		t.Errorf("metrics count %d push errors and %d undeliverable messages, want 30000 and 1", m.PushErrors, m.UndeliverableMessages)
	}
}
