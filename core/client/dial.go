package client

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// Dial returns a Client with its own routing node and TCP transport that reaches the hub at
// addr ("host:port"). Nothing is connected yet: publishers and consumers connect on first
// use and reconnect after failures. Close closes the node and its connections.
//
// Each session (see [Publisher] and [Consumer]) notices at once when the TCP connection it
// uses closes, and then reconnects, instead of waiting for its requests to time out. A
// request that times out closes the connection it was sent on, so that the reconnect dials
// a new one instead of reusing a connection that stopped answering.
func Dial(addr string, opts ...Option) (*Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("%w: client: empty hub address", core.ErrInvalidOption)
	}
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	node, err := routing.NewNode(routing.WithLogger(cfg.logger))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	tr, err := tcp.New(node, tcp.WithLogger(cfg.logger), tcp.WithDialTimeout(cfg.dialTimeout), tcp.WithIdleTimeout(cfg.idleTimeout))
	if err != nil {
		_ = node.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{node: node, ownNode: true, cfg: cfg}
	c.dial = func(ctx context.Context) (link, error) { return tcpLink(ctx, tr, addr) }
	return c, nil
}

// tcpLink connects (or reuses the transport's connection) to addr: done is the
// connection's Done channel, and drop closes that connection.
func tcpLink(ctx context.Context, tr *tcp.Transport, addr string) (link, error) {
	a, err := tr.Connect(ctx, addr)
	if err != nil {
		return link{}, err
	}
	return link{
		route: wire.Route{a},
		done:  tr.Done(a), // already closed if the connection closed since Connect
		close: func() {},
		drop:  func() { _ = tr.Disconnect(a) }, // an error: it closed already
	}, nil
}
