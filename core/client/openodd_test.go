package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/wire"
)

// rawPayload is payload data that is sent as it is, for replies a decoder must refuse.
type rawPayload []byte

func (p rawPayload) Size() int                { return len(p) }
func (p rawPayload) Append(dst []byte) []byte { return append(dst, p...) }

// oddReply is a reply of a fake hub: p under protocol proto, from "fake.s" unless noRet.
type oddReply struct {
	proto string
	p     wire.Encoder
	noRet bool
}

// TestOpenStreamOddHub: Conn.OpenStream against a fake hub that answers oddly. A reply that
// breaks the protocol fails the Conn with an error matching ErrProtocol that says what the
// hub sent; a refusal fails the request only; no reply fails the Conn at the timeout. None
// hangs.
func TestOpenStreamOddHub(t *testing.T) {
	open := func(id, partition, of uint64) oddReply {
		return oddReply{proto: wire.ProtocolStreamOpen, p: wire.StreamOpenReply{RequestID: id, Status: wire.StatusOK, Partitions: wire.Some(of), Partition: partition}}
	}
	for _, tc := range []struct {
		name       string
		replies    func(id uint64) []oddReply
		wantN      int    // the partition count, when wantErr is empty
		wantErr    string // a part of the error
		wantIs     error  // what the error must match, if anything
		connBroken bool   // the Conn fails with the request
	}{
		{name: "two partitions", replies: func(id uint64) []oddReply { return []oddReply{open(id, 1, 2), open(id, 0, 2)} }, wantN: 2},
		{name: "no such stream", replies: func(id uint64) []oddReply {
			return []oddReply{{proto: wire.ProtocolStreamOpen, p: wire.StreamOpenReply{RequestID: id, Status: wire.StatusOK}}}
		}, wantN: 0},
		{name: "refused", replies: func(id uint64) []oddReply {
			return []oddReply{{proto: wire.ProtocolStreamOpen, p: wire.StreamOpenReply{RequestID: id, Status: wire.StatusError, Reason: "backend down"}}}
		}, wantErr: "backend down", wantIs: client.ErrRejected},
		{name: "request error", replies: func(id uint64) []oddReply {
			return []oddReply{{proto: wire.ProtocolRequestError, p: wire.RequestError{RequestID: id, Protocol: wire.ProtocolStreamOpen, Reason: "too busy"}}}
		}, wantErr: "too busy", wantIs: client.ErrRejected},
		{name: "undecodable request error", replies: func(uint64) []oddReply {
			return []oddReply{{proto: wire.ProtocolRequestError, p: rawPayload{0xff}}}
		}, wantIs: client.ErrProtocol, connBroken: true},
		{name: "another request's request error", replies: func(id uint64) []oddReply {
			return []oddReply{{proto: wire.ProtocolRequestError, p: wire.RequestError{RequestID: id + 1, Protocol: wire.ProtocolStreamOpen, Reason: "too busy"}}}
		}, wantErr: "an error reply to request", wantIs: client.ErrProtocol, connBroken: true},
		{name: "another protocol", replies: func(id uint64) []oddReply {
			return []oddReply{{proto: wire.ProtocolStreamInfo, p: wire.StreamInfoReply{RequestID: id}}}
		}, wantErr: `a "sluice_stream_info" reply`, wantIs: client.ErrProtocol, connBroken: true},
		{name: "undecodable", replies: func(uint64) []oddReply {
			return []oddReply{{proto: wire.ProtocolStreamOpen, p: rawPayload{0xff}}}
		}, wantIs: client.ErrProtocol, connBroken: true},
		{name: "another request's reply", replies: func(id uint64) []oddReply { return []oddReply{open(id+1, 0, 1)} },
			wantErr: "reply to request", wantIs: client.ErrProtocol, connBroken: true},
		{name: "no stream after a partition", replies: func(id uint64) []oddReply {
			return []oddReply{open(id, 0, 2), {proto: wire.ProtocolStreamOpen, p: wire.StreamOpenReply{RequestID: id, Status: wire.StatusOK}}}
		}, wantErr: "a reply for no stream after 1 partition replies", wantIs: client.ErrProtocol, connBroken: true},
		{name: "zero partitions", replies: func(id uint64) []oddReply { return []oddReply{open(id, 0, 0)} },
			wantErr: "reports 0 partitions", wantIs: client.ErrProtocol, connBroken: true},
		{name: "counts differ", replies: func(id uint64) []oddReply { return []oddReply{open(id, 0, 2), open(id, 1, 3)} },
			wantErr: "replies report 2 and 3 partitions", wantIs: client.ErrProtocol, connBroken: true},
		{name: "partition out of range", replies: func(id uint64) []oddReply { return []oddReply{open(id, 2, 2)} },
			wantErr: "a reply for partition 2 of 2", wantIs: client.ErrProtocol, connBroken: true},
		{name: "a partition twice", replies: func(id uint64) []oddReply { return []oddReply{open(id, 0, 2), open(id, 0, 2)} },
			wantErr: "two replies for partition 0", wantIs: client.ErrProtocol, connBroken: true},
		{name: "no return route", replies: func(id uint64) []oddReply {
			r := open(id, 0, 1)
			r.noRet = true
			return []oddReply{r}
		}, wantErr: "has no return route", wantIs: client.ErrProtocol, connBroken: true},
		{name: "a reply missing", replies: func(id uint64) []oddReply { return []oddReply{open(id, 0, 2)} },
			wantErr: "1 partition replies arrived", wantIs: client.ErrTimeout, connBroken: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := fakeNode(t)
			if err := node.Register("stream", routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
				bp, err := wire.DecodeBasePayload(m.Payload)
				if err != nil {
					return err
				}
				if bp.Protocol != wire.ProtocolStreamOpen {
					return answerStreamService(ctx, node, m)
				}
				req, err := wire.DecodeStreamOpenRequest(bp.Data)
				if err != nil {
					return err
				}
				replies := tc.replies(req.RequestID)
				if req.StreamName == "ok" {
					replies = []oddReply{open(req.RequestID, 0, 1)}
				}
				for _, r := range replies {
					msg := wire.TransportMessage{OnwardRoute: m.ReturnRoute.Clone(), ReturnRoute: wire.Route{wire.Local("fake.s")}, Payload: wire.EncodePayload(r.proto, r.p)}
					if r.noRet {
						msg.ReturnRoute = nil
					}
					if err := node.Send(ctx, msg); err != nil {
						return err
					}
				}
				return nil
			})); err != nil {
				t.Fatal(err)
			}
			conn := fakeConn(t, node, 2*time.Second) // only "a reply missing" waits for the timeout
			ctx := t.Context()
			n, exists, err := conn.OpenStream(ctx, "s")
			switch {
			case tc.wantErr == "" && tc.wantIs == nil && (err != nil || n != tc.wantN || exists != (tc.wantN > 0)):
				t.Fatalf("OpenStream = %d, %v, %v; want %d partitions", n, exists, err, tc.wantN)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("OpenStream = %d, %v, %v; want an error with %q", n, exists, err, tc.wantErr)
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Fatalf("OpenStream error %v does not match %v", err, tc.wantIs)
			case errors.Is(tc.wantIs, client.ErrProtocol) && !errors.Is(err, core.ErrUnavailable):
				t.Fatalf("OpenStream error %v does not match core.ErrUnavailable: clients would not retry", err)
			}
			// Another request on the same Conn fails only when the hub broke the protocol.
			_, _, oerr := conn.OpenStream(ctx, "ok")
			if broken := oerr != nil; broken != tc.connBroken {
				t.Fatalf("OpenStream of another stream after the odd reply: %v; want the Conn broken: %v", oerr, tc.connBroken)
			}
		})
	}
}
