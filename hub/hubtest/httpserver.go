package hubtest

import (
	"net"
	"testing"
	"time"
)

// HTTPServer returns the address (127.0.0.1) of a listener that answers whatever a
// connection sends first with "HTTP/1.1 400 Bad Request" and closes it, as an HTTP server
// does when a Sluice client mistakes it for a hub (a hub's -metrics-addr, say). It stops
// when the test ends.
func HTTPServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // owned by the test: ends when the cleanup closes ln
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Read(make([]byte, 512))
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}
