package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// streamOpen sends sluice_stream_open for stream and reads n replies, failing the test on
// any other reply or a reply to another request.
func streamOpen(t *testing.T, c *hubtest.Conn, id uint64, stream string, n int) ([]wire.StreamOpenReply, []wire.Route) {
	t.Helper()
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolStreamOpen, wire.StreamOpenRequest{RequestID: id, StreamName: stream})
	var reps []wire.StreamOpenReply
	var from []wire.Route
	for range n {
		r := c.Expect(wire.ProtocolStreamOpen)
		rep, err := wire.DecodeStreamOpenReply(r.Data)
		if err != nil {
			t.Fatalf("decode sluice_stream_open reply: %v", err)
		}
		if rep.RequestID != id {
			t.Fatalf("sluice_stream_open reply for request %d, want %d", rep.RequestID, id)
		}
		reps = append(reps, rep)
		from = append(from, r.Msg.ReturnRoute.Clone())
	}
	return reps, from
}

// partitions returns the partition count the backend reports for stream, or 0 when it has
// no such stream.
func partitions(t *testing.T, b *core.Backend, stream string) int {
	t.Helper()
	n, err := b.Storage.(core.PartitionCounter).Partitions(context.Background(), stream)
	if errors.Is(err, core.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("backend Partitions(%q): %v", stream, err)
	}
	return n
}

// TestStreamOpenExisting: for a stream the backend has (created behind the hub's back),
// sluice_stream_open answers once per partition, from that partition's worker, and the
// return routes reach the partitions.
func TestStreamOpenExisting(t *testing.T) {
	b := openMemory(t)
	t.Cleanup(func() { b.Close() }) // after the hub's shutdown (cleanups run last first)
	const stream, n = "open-existing", 3
	if _, err := b.Storage.CreateStream(context.Background(), stream, n); err != nil {
		t.Fatal(err)
	}
	h, addr := hubtest.Start(t, b)
	c := hubtest.Dial(t, addr)
	reps, from := streamOpen(t, c, 7, stream, n)
	if m := h.Metrics(); m.StreamOpens != 1 || m.StreamInfos != 0 {
		t.Errorf("metrics stream_opens = %d, stream_infos = %d after one sluice_stream_open, want 1 and 0", m.StreamOpens, m.StreamInfos)
	}
	routes := make([]wire.Route, n)
	for i, rep := range reps {
		if rep.Status != wire.StatusOK || rep.Partitions != wire.Some[uint64](n) || rep.Partition >= n || rep.Reason != "" {
			t.Fatalf("reply %d = %+v, want OK, %d partitions, a partition below that, no reason", i, rep, n)
		}
		if routes[rep.Partition] != nil {
			t.Fatalf("two replies for partition %d", rep.Partition)
		}
		want := wire.Route{wire.Local(fmt.Sprintf("stream.%s.%d", stream, rep.Partition))}
		if !from[i].Equal(want) {
			t.Fatalf("reply for partition %d comes from [%s], want [%s]", rep.Partition, from[i], want)
		}
		routes[rep.Partition] = from[i]
	}
	for p, route := range routes {
		s := hubtest.Stream{Name: stream, Partition: uint64(p), Route: route}
		if pc := c.Push(s, uint64(10+p), fmt.Appendf(nil, "m%d", p)); pc.Status != wire.StatusOK {
			t.Fatalf("push to partition %d through the opened route: %+v", p, pc)
		}
	}
	for p := range n {
		got, err := b.Storage.Fetch(context.Background(), stream, p, 0, 10)
		if err != nil || len(got) != 1 || string(got[0].Data) != fmt.Sprintf("m%d", p) {
			t.Fatalf("partition %d holds %v (%v), want the one message pushed to it", p, got, err)
		}
	}
	if got := partitions(t, b, stream); got != n {
		t.Fatalf("the stream has %d partitions after open, want %d", got, n)
	}
}

// TestStreamOpenMissing: for a missing stream sluice_stream_open answers once, from the
// stream service, with partitions absent, and creates nothing; an invalid name and a
// backend that cannot tell give one ERROR reply with a reason; a request that does not
// decode gets a sluice_error naming it.
func TestStreamOpenMissing(t *testing.T) {
	b := openMemory(t)
	t.Cleanup(func() { b.Close() }) // after the hub's shutdown (cleanups run last first)
	_, addr := hubtest.Start(t, b)
	c := hubtest.Dial(t, addr)
	const stream = "open-missing"
	for id := uint64(1); id <= 2; id++ { // asking twice creates nothing either
		reps, from := streamOpen(t, c, id, stream, 1)
		if rep := reps[0]; rep.Status != wire.StatusOK || rep.Partitions.Valid || rep.Partition != 0 || rep.Reason != "" {
			t.Fatalf("reply = %+v, want OK with partitions absent", rep)
		}
		if want := (wire.Route{wire.Local(hub.StreamAddress)}); !from[0].Equal(want) {
			t.Fatalf("reply comes from [%s], want [%s]", from[0], want)
		}
		if n := partitions(t, b, stream); n != 0 {
			t.Fatalf("sluice_stream_open created the stream with %d partitions", n)
		}
	}
	if rep := c.StreamInfo(3, stream); rep.Status != wire.StatusOK || rep.Partitions.Valid {
		t.Fatalf("stream info after open = %+v, want no such stream", rep)
	}

	reps, _ := streamOpen(t, c, 4, "bad name/x", 1)
	if rep := reps[0]; rep.Status != wire.StatusError || rep.Partitions.Valid || !strings.Contains(rep.Reason, "bad name/x") {
		t.Fatalf("reply for an invalid name = %+v, want ERROR naming the stream", rep)
	}

	c.SendPayload(wire.Route{wire.Local(hub.StreamAddress)}, wire.Encode(wire.BasePayload{Protocol: wire.ProtocolStreamOpen, Data: []byte{0x05, 0x80}})) // id 5, then a truncated name
	c.ExpectRequestError(wire.ProtocolStreamOpen, 5)
}

// TestStreamOpenCannotTell: a hub whose backend cannot report partition counts answers
// for the streams it created, and ERROR for the others, never creating them.
func TestStreamOpenCannotTell(t *testing.T) {
	b := openMemory(t)
	t.Cleanup(func() { b.Close() }) // after the hub's shutdown (cleanups run last first)
	_, addr := hubtest.Start(t, &core.Backend{Storage: noCounter{b.Storage}, Index: b.Index})
	c := hubtest.Dial(t, addr)
	created := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "open-created", 2)
	reps, from := streamOpen(t, c, 1, "open-created", 2)
	for i, rep := range reps {
		if rep.Status != wire.StatusOK || rep.Partitions != wire.Some[uint64](2) {
			t.Fatalf("reply %d for a stream created through the hub = %+v, want OK with 2 partitions", i, rep)
		}
		if !from[i].Equal(created[rep.Partition].Route) {
			t.Fatalf("reply for partition %d comes from [%s], want the Init's [%s]", rep.Partition, from[i], created[rep.Partition].Route)
		}
	}
	reps, _ = streamOpen(t, c, 2, "open-unknown", 1)
	if rep := reps[0]; rep.Status != wire.StatusError || rep.Partitions.Valid || rep.Reason == "" {
		t.Fatalf("reply for a stream the hub cannot know = %+v, want ERROR with a reason", rep)
	}
	if n := partitions(t, b, "open-unknown"); n != 0 {
		t.Fatalf("sluice_stream_open created the stream with %d partitions", n)
	}
}

// impossibleCount is a broken backend: it reports a partition count no stream can have.
type impossibleCount struct{ core.Storage }

func (impossibleCount) Partitions(context.Context, string) (int, error) { return 1<<32 - 1, nil }

func (impossibleCount) CreateStream(context.Context, string, int) (int, error) {
	return 1<<32 - 1, nil
}

// TestImpossiblePartitionCount: with a backend that reports more partitions than a stream
// can have, sluice_stream_open, sluice_stream_info and stream_create_partitioned get one
// ERROR each, not a reply per partition (four billion of them).
func TestImpossiblePartitionCount(t *testing.T) {
	b := openMemory(t)
	t.Cleanup(func() { b.Close() }) // after the hub's shutdown (cleanups run last first)
	_, addr := hubtest.Start(t, &core.Backend{Storage: impossibleCount{b.Storage}, Index: b.Index})
	c := hubtest.Dial(t, addr)
	const want = "backend reports 4294967295 partitions"
	reps, _ := streamOpen(t, c, 1, "counted", 1)
	if rep := reps[0]; rep.Status != wire.StatusError || rep.Partitions.Valid || !strings.Contains(rep.Reason, want) {
		t.Fatalf("sluice_stream_open reply = %+v, want ERROR saying %q", rep, want)
	}
	if rep := c.StreamInfo(2, "counted"); rep.Status != wire.StatusError || rep.Partitions.Valid || !strings.Contains(rep.Reason, want) {
		t.Fatalf("sluice_stream_info reply = %+v, want ERROR saying %q", rep, want)
	}
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreatePartitioned, wire.CreateStreamPartitionedRequest{StreamName: wire.Some("created"), Partitions: 2})
	if reason := c.ExpectError(); !strings.Contains(reason, want) {
		t.Fatalf("stream_create_partitioned error = %q, want it to say %q", reason, want)
	}
}
