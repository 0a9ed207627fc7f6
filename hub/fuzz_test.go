package hub

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/backends/memory"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// FuzzWorkers feeds arbitrary payloads, as they arrive from the network, to the hub's three
// kinds of workers (stream service, index service, partition worker). The handlers are
// called directly, outside the node's panic recovery, so a panic fails the fuzz run.
func FuzzWorkers(f *testing.F) {
	seeds := []struct {
		target uint8
		p      []byte
	}{
		{0, wire.EncodePayload(wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("s")})},
		{0, wire.EncodePayload(wire.ProtocolCreate, wire.CreateStreamRequest{})},
		{0, wire.EncodePayload(wire.ProtocolCreatePartitioned, wire.CreateStreamPartitionedRequest{StreamName: wire.Some("s"), Partitions: 3})},
		{0, wire.EncodePayload(wire.ProtocolCreatePartitions, wire.CreateStreamPartitionedRequest{Partitions: 1 << 40})},
		{0, wire.EncodePayload(wire.ProtocolStreamInfo, wire.StreamInfoRequest{RequestID: 1, StreamName: "s"})},
		{0, wire.EncodePayload(wire.ProtocolStreamInfo, wire.StreamInfoRequest{RequestID: 2, StreamName: "no/such"})},
		{1, wire.EncodePayload(wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexSave, ClientID: "c", StreamName: "s", Index: 4})},
		{1, wire.EncodePayload(wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "c", StreamName: "s"})},
		{1, wire.EncodePayload(wire.ProtocolIndexPartitioned, wire.IndexRequestPartitioned{Op: wire.IndexGet, ClientID: "c", StreamName: "s", Partition: 1 << 50})},
		{1, wire.EncodePayload(wire.ProtocolIndexSave, wire.IndexSaveRequest{RequestID: 1, ClientID: "c", StreamName: "s", Index: 9})},
		{1, wire.EncodePayload(wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: 2, ClientID: "c", StreamName: "s"})},
		{2, wire.EncodePayload(wire.ProtocolPush, wire.PushRequest{RequestID: 1, Data: []byte("x")})},
		{2, wire.EncodePayload(wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 1, Messages: [][]byte{{1}, {}}})},
		{2, wire.EncodePayload(wire.ProtocolPull, wire.PullRequest{RequestID: 1, Index: 0, Limit: 1 << 62})},
		{2, wire.EncodePayload(wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: 5, Limit: 3, WaitMS: 1})},
		{2, []byte{0xff}},
		{0, nil},
	}
	for _, s := range seeds {
		f.Add(s.target, s.p)
	}

	store, err := memory.New(nil)
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	h, err := New(&core.Backend{Storage: store, Index: store}, WithMaxPullWait(0))
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	// Replies go to a worker that drops them.
	if err := h.node.Register("sink", routing.WorkerFunc(func(context.Context, *routing.Message) error { return nil })); err != nil {
		f.Fatal(err)
	}
	if _, err := store.CreateStream(context.Background(), "s", 1); err != nil {
		f.Fatal(err)
	}
	p, err := h.partition("s", 0)
	if err != nil {
		f.Fatal(err)
	}
	ret := wire.Route{wire.Local("sink")}

	f.Fuzz(func(t *testing.T, target uint8, payload []byte) {
		ctx := context.Background()
		var err error
		switch target % 3 {
		case 0:
			err = h.handleStream(ctx, &routing.Message{TransportMessage: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(StreamAddress)}, ReturnRoute: ret, Payload: payload}, Address: StreamAddress})
		case 1:
			err = h.handleIndex(ctx, &routing.Message{TransportMessage: wire.TransportMessage{OnwardRoute: wire.Route{wire.Local(IndexAddress)}, ReturnRoute: ret, Payload: payload}, Address: IndexAddress})
		case 2:
			err = p.HandleMessage(ctx, &routing.Message{TransportMessage: wire.TransportMessage{OnwardRoute: p.self, ReturnRoute: ret, Payload: payload}, Address: p.addr})
		}
		if err != nil {
			t.Fatalf("handler returned %v; handlers answer the peer instead of failing", err)
		}
	})
}

// FuzzParsePartitionAddr feeds arbitrary local addresses, as they arrive in the onward
// routes of network messages (the node's fallback parses every unknown one), to
// parsePartitionAddr. An address it accepts names a valid stream and partition, and is
// exactly the address of that partition's worker, so that one worker never has two
// addresses.
func FuzzParsePartitionAddr(f *testing.F) {
	for _, s := range []string{
		"stream.s.0", "stream.orders.2", "stream.a.b.12", "stream.generated_00ff.1023",
		"stream..0", "stream...0", "stream....1", "stream.s.", "stream.s", "stream.", "stream", "",
		"stream.s.-1", "stream.s.+1", "stream.s.01", "stream.s. 1", "stream.s.99999999999999999999",
		"other.s.0", "STREAM.s.0", "stream.s\xff.1", "stream.s/x.1", "stream.." + string(make([]byte, 300)) + ".1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		stream, partition, ok := parsePartitionAddr(addr)
		if !ok {
			if stream != "" || partition != 0 {
				t.Fatalf("parsePartitionAddr(%q) = %q, %d, false: want zero values when not ok", addr, stream, partition)
			}
			return
		}
		if err := core.ValidateStreamName(stream); err != nil {
			t.Fatalf("parsePartitionAddr(%q) accepted stream %q: %v", addr, stream, err)
		}
		if partition < 0 {
			t.Fatalf("parsePartitionAddr(%q) accepted partition %d", addr, partition)
		}
		if back := partitionAddr(stream, partition); back != addr {
			t.Fatalf("parsePartitionAddr(%q) = %q, %d, whose address is %q", addr, stream, partition, back)
		}
	})
}
