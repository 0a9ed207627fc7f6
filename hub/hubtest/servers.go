package hubtest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// HTTPServer returns the address (127.0.0.1) of a listener that answers whatever a
// connection sends first with "HTTP/1.1 400 Bad Request" and closes it, as an HTTP server
// does when a Sluice client mistakes it for a hub (a hub's -metrics-addr, say). It stops
// when the test ends.
func HTTPServer(t testing.TB) string {
	t.Helper()
	return serve(t, func(c net.Conn) (keep bool) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Read(make([]byte, 512))
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
		_ = c.Close()
		return false
	})
}

// SilentServer returns the address (127.0.0.1) of a listener that accepts connections and
// never answers or closes them, as a port taken by something that is no sluice hub and
// waits for another protocol's client to speak. Its connections are closed when the test
// ends.
func SilentServer(t testing.TB) string {
	t.Helper()
	return serve(t, func(net.Conn) (keep bool) { return true })
}

// serve listens on a loopback port and hands each connection it accepts to handle, one at
// a time; the connections handle keeps are closed, and the listener stops, when the test
// ends. It returns the listener's address.
func serve(t testing.TB, handle func(net.Conn) (keep bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		kept []net.Conn
	)
	done := make(chan struct{})
	go func() { // owned by the test: ends when the cleanup closes ln
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if handle(c) {
				mu.Lock()
				kept = append(kept, c)
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range kept {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}
