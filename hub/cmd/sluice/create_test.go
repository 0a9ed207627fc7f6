package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// scriptedHub starts, on a loopback port, a stream service that answers each request with
// answer(protocol, data, reply) (reply sends one reply to the request), and returns its
// address.
func scriptedHub(t *testing.T, answer func(protocol string, data []byte, reply func(protocol string, e wire.Encoder))) string {
	t.Helper()
	node, err := routing.NewNode(routing.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	tr, err := tcp.New(node, tcp.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	err = node.Register(hub.StreamAddress, routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, err := wire.DecodeBasePayload(m.Payload)
		if err != nil {
			return err
		}
		answer(bp.Protocol, bp.Data, func(protocol string, e wire.Encoder) {
			_ = node.Send(ctx, wire.TransportMessage{
				OnwardRoute: m.ReturnRoute,
				ReturnRoute: wire.Route{wire.Local(hub.StreamAddress)},
				Payload:     wire.EncodePayload(protocol, e),
			})
		})
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := tr.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// create reports the partition count of the stream, however long the hub pauses between
// its Init replies: a hub that pauses longer than the quiet period create used to trust
// made it report fewer partitions, and with -partitions claim that the stream existed with
// another count. A hub that does not know sluice_stream_info, or does not answer it, is
// counted by its Inits as before.
func TestCLICreateCountsPartitionsOfSlowHub(t *testing.T) {
	// slow sends the Init of partition 0 at once, and that of partition 1 only when asked
	// for the partition count: a pause as long as the client waits.
	slow := func(protocol string, data []byte, reply func(string, wire.Encoder)) {
		switch protocol {
		case wire.ProtocolCreatePartitioned:
			reply(protocol, wire.InitPartitioned{StreamName: "s", Partition: 0})
		case wire.ProtocolStreamInfo:
			req, err := wire.DecodeStreamInfoRequest(data)
			if err != nil || req.StreamName != "s" {
				t.Errorf("sluice_stream_info request %+v, %v; want one for stream s", req, err)
			}
			reply(wire.ProtocolCreatePartitioned, wire.InitPartitioned{StreamName: "s", Partition: 1})
			reply(protocol, wire.StreamInfoReply{RequestID: req.RequestID, Status: wire.StatusOK, Partitions: wire.Some[uint64](2)})
		}
	}
	// old sends both Inits at once and does not know sluice_stream_info, as a hub older
	// than it (or an Ockam node) answers.
	old := func(protocol string, data []byte, reply func(string, wire.Encoder)) {
		switch protocol {
		case wire.ProtocolCreatePartitioned:
			reply(protocol, wire.InitPartitioned{StreamName: "s", Partition: 0})
			reply(protocol, wire.InitPartitioned{StreamName: "s", Partition: 1})
		default:
			reply(wire.ProtocolError, wire.Error{Reason: "unknown protocol " + protocol})
		}
	}
	// mute sends both Inits at once and never answers sluice_stream_info.
	mute := func(protocol string, data []byte, reply func(string, wire.Encoder)) {
		if protocol == wire.ProtocolCreatePartitioned {
			reply(protocol, wire.InitPartitioned{StreamName: "s", Partition: 0})
			reply(protocol, wire.InitPartitioned{StreamName: "s", Partition: 1})
		}
	}
	for _, tc := range []struct {
		name    string
		answer  func(string, []byte, func(string, wire.Encoder))
		errWant string
	}{
		{"slow", slow, ""},
		{"old", old, ""},
		{"mute", mute, "did not answer sluice_stream_info within -timeout; counting the 2 Init replies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := scriptedHub(t, tc.answer)
			for _, args := range [][]string{{"s"}, {"-partitions", "2", "s"}} {
				args = append([]string{"create", "-hub", addr, "-timeout", "2s"}, args...)
				code, out, errs := runIO(t.Context(), "", args...)
				if code != 0 || out != "stream s: 2 partition(s)\n" || !strings.Contains(errs, tc.errWant) || tc.errWant == "" && errs != "" {
					t.Errorf("sluice %q: exit %d, stdout %q, stderr %q; want 0 and 2 partitions", args, code, out, errs)
				}
			}
		})
	}
}
