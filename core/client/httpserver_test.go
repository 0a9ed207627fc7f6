package client_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/tcp"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestHTTPServerIsNoHub: a client pointed at an HTTP server says that the address is an
// HTTP server's (tcp.ErrHTTPServer, quoting its answer), not that a hub closed the
// connection before answering, which could be a hub at its connection limit; a publisher's
// sessions fail with the same error, and it keeps retrying.
func TestHTTPServerIsNoHub(t *testing.T) {
	addr := hubtest.HTTPServer(t)
	c := dial(t, addr)
	ctx := t.Context()
	conn, err := c.Open(ctx, 10*time.Second)
	if err == nil {
		_, err = conn.CreateStream(ctx, "s", 1)
		conn.Close()
	}
	if !errors.Is(err, tcp.ErrHTTPServer) || !errors.Is(err, core.ErrUnavailable) || errors.Is(err, client.ErrClosedBeforeAnswer) ||
		!strings.Contains(err.Error(), `"HTTP/1.1 400 Bad Request"`) {
		t.Fatalf("CreateStream on an HTTP server = %v, want tcp.ErrHTTPServer quoting its status line, ErrUnavailable and not ErrClosedBeforeAnswer", err)
	}

	errs := make(chan error, 100)
	p := newPublisher(t, c, "s", client.WithBackoff(fastBackoff), client.WithCloseTimeout(0), client.WithPublisherSessionErrors(func(err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	if _, err := p.Publish(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the first failure and a retry's
		select {
		case err := <-errs:
			if !errors.Is(err, tcp.ErrHTTPServer) {
				t.Fatalf("publisher session error %d: %v, want tcp.ErrHTTPServer", i+1, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the publisher reported %d session error(s) within 30s, want 2", i)
		}
	}
}
