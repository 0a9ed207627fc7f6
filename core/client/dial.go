package client

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// Dial returns a Client with its own routing node and TCP transport that reaches the hub at
// addr ("host:port"). Nothing is connected yet: publishers and consumers connect on first
// use and reconnect after failures. Close closes the node and its connections.
//
// The client's publishers, consumers and Conns share one TCP connection to the hub, dialled
// when the first of them needs it and again after it closed. Each session (see [Publisher]
// and [Consumer]) notices at once when that connection closes, and then reconnects, instead
// of waiting for its requests to time out. A request that times out ends only its own
// session and leaves the connection to the others: a hub that is slow to answer one stream
// does not cut off the rest. A connection that stopped delivering altogether is closed after
// the idle timeout ([WithIdleTimeout]), which ends every session on it. A connection that
// the hub closes before answering anything on it (a hub at its connection limit accepts and
// closes at once) fails its sessions with an error matching [ErrClosedBeforeAnswer], as
// does a dial that such a peer resets before it returns ("connect: connection reset by
// peer": which of the two a client sees is a matter of timing); one whose peer answered
// with HTTP (addr is an HTTP server's, such as a hub's metrics address) with an error
// matching [tcp.ErrHTTPServer] instead: that address is no hub's.
// Both match [core.ErrUnavailable], and publishers and consumers retry them like any lost
// connection.
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
	c := &Client{node: node, ownNode: true, cfg: cfg, idle: cfg.idleTimeout}
	c.dial = func(ctx context.Context) (link, error) { return c.tcpLink(ctx, tr, addr) }
	return c, nil
}

// tcpLink connects to addr, or reuses the transport's open connection to it: done is that
// connection's Done channel. Releasing the link leaves the connection open for the others.
func (c *Client) tcpLink(ctx context.Context, tr *tcp.Transport, addr string) (link, error) {
	a, err := tr.Connect(ctx, addr)
	if errors.Is(err, syscall.ECONNRESET) {
		// The peer accepted the connection and reset it before the dial returned: the
		// same failure as a connection closed before any answer, which it is when the
		// reset comes a moment later, so it gets the same error.
		return link{}, fmt.Errorf("%w: %w", ErrClosedBeforeAnswer, err)
	}
	if err != nil {
		return link{}, err
	}
	done, cause := tr.Watch(a) // done is closed already if the connection closed since Connect
	return link{
		route: wire.Route{a},
		done:  done,
		cause: cause,
		close: func() {},
		conn:  c.connState(string(a.Value), done),
	}, nil
}
