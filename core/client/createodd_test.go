package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// TestCreateStreamOddHub: Conn.CreateStream of a partitioned stream against a fake hub that
// answers oddly returns an error that says what the hub did (and never hangs), and takes
// what a hub that cannot report partition counts sends within the quiet time.
func TestCreateStreamOddHub(t *testing.T) {
	noInfo := wire.StreamInfoReply{Status: wire.StatusError, Reason: "unknown protocol"}
	info := func(n uint64) wire.StreamInfoReply {
		return wire.StreamInfoReply{Status: wire.StatusOK, Partitions: wire.Some(n)}
	}
	for _, tc := range []struct {
		name    string
		inits   []wire.InitPartitioned // the Init replies to the create, in order
		info    wire.StreamInfoReply   // the reply to sluice_stream_info
		wantN   int                    // the partition count CreateStream returns, when wantErr is empty
		wantErr string                 // a part of the error
		wantIs  error                  // what the error must match, if anything
	}{
		{name: "all", inits: inits("s", 0, 1, 2), info: info(3), wantN: 3},
		{name: "info unknown, all within the quiet time", inits: inits("s", 1, 0), info: noInfo, wantN: 2},
		{name: "another stream's Init", inits: inits("t", 0), info: info(1), wantErr: `unexpected Init for stream "t"`},
		{name: "partition out of range", inits: inits("s", core.MaxPartitions), info: info(1), wantErr: "unexpected Init"},
		{name: "Init, then no such stream", inits: inits("s", 0), info: wire.StreamInfoReply{Status: wire.StatusOK}, wantErr: "reports no such stream", wantIs: core.ErrUnavailable},
		{name: "too many partitions", inits: inits("s", 0), info: info(core.MaxPartitions + 1), wantErr: fmt.Sprintf("reports %d partitions", core.MaxPartitions+1)},
		{name: "an Init missing", inits: inits("s", 0, 2), info: info(3), wantErr: "2 of 3 Init replies arrived", wantIs: client.ErrTimeout},
		{name: "info unknown, a gap", inits: inits("s", 0, 2), info: noInfo, wantErr: "none for partition 1", wantIs: core.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := fakeNode(t)
			if err := node.Register("stream", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
				bp, err := wire.DecodeBasePayload(m.Payload)
				if err != nil {
					return err
				}
				switch bp.Protocol {
				case wire.ProtocolCreatePartitioned:
					for _, in := range tc.inits {
						fakeReply(ctx, node, m, wire.ProtocolCreatePartitioned, in)
					}
				case wire.ProtocolStreamInfo:
					req, err := wire.DecodeStreamInfoRequest(bp.Data)
					if err != nil {
						return err
					}
					rep := tc.info
					rep.RequestID = req.RequestID
					fakeReply(ctx, node, m, wire.ProtocolStreamInfo, rep)
				}
				return nil
			})); err != nil {
				t.Fatal(err)
			}
			conn := fakeConn(t, node, 2*time.Second) // only "an Init missing" waits for the timeout
			ctx := t.Context()
			n, err := conn.CreateStream(ctx, "s", 3)
			switch {
			case tc.wantErr == "" && (err != nil || n != tc.wantN):
				t.Fatalf("CreateStream = %d, %v; want %d partitions", n, err, tc.wantN)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("CreateStream = %d, %v; want an error with %q", n, err, tc.wantErr)
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Fatalf("CreateStream error %v does not match %v", err, tc.wantIs)
			}
		})
	}
}

// inits returns the Init replies of stream's partitions, in the order given.
func inits(stream string, partitions ...uint64) []wire.InitPartitioned {
	out := make([]wire.InitPartitioned, len(partitions))
	for i, p := range partitions {
		out[i] = wire.InitPartitioned{StreamName: stream, Partition: p}
	}
	return out
}
