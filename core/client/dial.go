package client

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/routing"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/core/wire"
)

// probeInterval is how often a session checks that its TCP connection is still open.
const probeInterval = 50 * time.Millisecond

// Dial returns a Client with its own routing node and TCP transport that reaches the hub at
// addr ("host:port"). Nothing is connected yet: publishers and consumers connect on first
// use and reconnect after failures. Close closes the node and its connections.
//
// Each session (see [Publisher] and [Consumer]) notices within a few tens of milliseconds
// when the TCP connection it uses closes, and then reconnects, instead of waiting for its
// requests to time out.
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
	c.dial = func(ctx context.Context) (link, error) { return tcpLink(ctx, tr, addr, cfg.dialTimeout) }
	return c, nil
}

// tcpLink connects (or reuses the transport's connection) to addr and watches it: done is
// closed when the transport no longer has that connection. The watcher goroutine is owned
// by the link and stops when the link is closed.
func tcpLink(ctx context.Context, tr *tcp.Transport, addr string, dialTimeout time.Duration) (link, error) {
	a, err := tr.Connect(ctx, addr)
	if err != nil {
		return link{}, err
	}
	done := make(chan struct{})
	lctx, stop := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			// Connect returns the open connection's address without I/O; once that
			// connection is gone it dials a new one (which the next session will use).
			pctx, cancel := context.WithTimeout(lctx, dialTimeout)
			cur, err := tr.Connect(pctx, addr)
			cancel()
			if lctx.Err() != nil {
				return
			}
			if err != nil || !cur.Equal(a) {
				close(done)
				return
			}
		}
	}()
	closeFn := func() {
		stop()
		<-exited
	}
	return link{route: wire.Route{a}, done: done, close: closeFn}, nil
}
