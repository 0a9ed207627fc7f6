package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// rpc is a minimal request/reply connection to a hub, for the requests core/client does
// not cover (creating partitioned streams). It owns a routing node with a TCP transport and
// one local worker that receives every reply.
type rpc struct {
	node    *routing.Node
	tr      *tcp.Transport
	hub     wire.Address
	replies chan reply
	done    <-chan struct{} // the connection's Done channel, once send connected
	cause   func() error    // why it closed, once done is closed
	heard   bool            // a reply arrived (recv)
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
	tr, err := tcp.New(node, tcp.WithLogger(discard))
	if err != nil {
		node.Close()
		return nil, err
	}
	r := &rpc{node: node, tr: tr, hub: wire.TCP(hubAddr), replies: make(chan reply, 64)}
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
	// Connect first, to learn when the connection closes (see recv), and send on that
	// connection's own address, so that a closed connection is not dialled again.
	a, err := r.tr.Connect(ctx, string(r.hub.Value))
	if err != nil {
		return err
	}
	r.done, r.cause = r.tr.Watch(a)
	err = r.node.Send(ctx, wire.TransportMessage{
		OnwardRoute: wire.Route{a, wire.Local(service)},
		ReturnRoute: wire.Route{wire.Local(rpcAddress)},
		Payload:     wire.EncodePayload(protocol, e),
	})
	if err != nil && ctx.Err() == nil && (errors.Is(err, tcp.ErrConnectionClosed) || errors.Is(err, routing.ErrNoRoute)) {
		// The connection closed, or is closing: it leaves the node just before its Done
		// channel closes.
		select {
		case <-r.done:
			return fmt.Errorf("%w: %w", r.lost(), err)
		case <-ctx.Done():
		}
	}
	return err
}

// recv returns the next reply; an `error` reply becomes an error carrying its reason. A
// connection that closed is an error that says why (see lost).
func (r *rpc) recv(ctx context.Context) (reply, error) {
	select {
	case rep := <-r.replies:
		r.heard = true
		return r.decode(rep)
	case <-r.done:
		select {
		case rep := <-r.replies: // arrived before the connection closed
			r.heard = true
			return r.decode(rep)
		default:
		}
		return reply{}, r.lost()
	case <-ctx.Done():
		return reply{}, fmt.Errorf("no reply from the hub: %w", context.Cause(ctx))
	}
}

// lost is the error of a connection that closed, worded as a client session's.
func (r *rpc) lost() error { return client.LostConnection(r.cause(), r.heard) }

// decode turns an `error` reply into an error carrying its reason.
func (r *rpc) decode(rep reply) (reply, error) {
	if rep.bp.Protocol == wire.ProtocolError {
		e, err := wire.DecodeErrorPayload(rep.bp.Data)
		if err != nil {
			return reply{}, fmt.Errorf("hub sent an undecodable error reply: %w", err)
		}
		return reply{}, fmt.Errorf("hub: %s", e.Reason)
	}
	return rep, nil
}
