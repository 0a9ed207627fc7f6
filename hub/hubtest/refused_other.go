//go:build !linux

package hubtest

import (
	"net"
	"testing"
)

// RefusedAddr returns a loopback address (127.0.0.1:PORT) where connections are refused: a
// hub, or a broker, that is down. On Linux the port is held for the whole test by a socket
// that never listens; here it is a listener's port, freed at once, which the system could
// hand out again while the test runs.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("hubtest: refused address: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("hubtest: refused address: %v", err)
	}
	return addr
}
