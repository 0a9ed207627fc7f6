package main

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// rpc is a minimal request/reply connection to a hub, for the requests core/client does
// not cover (creating partitioned streams). It owns a routing node with a TCP transport and
// one local worker that receives every reply.
type rpc struct {
	node    *routing.Node
	hub     wire.Address
	replies chan reply
}

type reply struct {
	msg wire.TransportMessage
	bp  wire.BasePayload
}

const rpcAddress = "sluice-cli"

func dialRPC(hubAddr string) (*rpc, error) {
	node, err := routing.NewNode(routing.WithLogger(discard))
	if err != nil {
		return nil, err
	}
	if _, err := tcp.New(node, tcp.WithLogger(discard)); err != nil {
		node.Close()
		return nil, err
	}
	r := &rpc{node: node, hub: wire.TCP(hubAddr), replies: make(chan reply, 64)}
	err = node.Register(rpcAddress, routing.WorkerFunc(func(ctx context.Context, m *routing.Message) error {
		bp, err := wire.DecodeBasePayload(m.Payload)
		if err != nil {
			return err
		}
		select {
		case r.replies <- reply{msg: m.TransportMessage, bp: bp}:
		case <-ctx.Done():
		}
		return nil
	}))
	if err != nil {
		node.Close()
		return nil, err
	}
	return r, nil
}

func (r *rpc) Close() error { return r.node.Close() }

// send sends protocol/e to the service at the hub's local address service.
func (r *rpc) send(ctx context.Context, service, protocol string, e wire.Encoder) error {
	return r.node.Send(ctx, wire.TransportMessage{
		OnwardRoute: wire.Route{r.hub, wire.Local(service)},
		ReturnRoute: wire.Route{wire.Local(rpcAddress)},
		Payload:     wire.EncodePayload(protocol, e),
	})
}

// recv returns the next reply; an `error` reply becomes an error carrying its reason.
func (r *rpc) recv(ctx context.Context) (reply, error) {
	select {
	case rep := <-r.replies:
		if rep.bp.Protocol == wire.ProtocolError {
			e, err := wire.DecodeErrorPayload(rep.bp.Data)
			if err != nil {
				return reply{}, fmt.Errorf("hub sent an undecodable error reply: %w", err)
			}
			return reply{}, fmt.Errorf("hub: %s", e.Reason)
		}
		return rep, nil
	case <-ctx.Done():
		return reply{}, fmt.Errorf("no reply from the hub: %w", context.Cause(ctx))
	}
}
