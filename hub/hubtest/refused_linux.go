//go:build linux

package hubtest

import (
	"fmt"
	"syscall"
	"testing"
)

// RefusedAddr returns a loopback address (127.0.0.1:PORT) where every connection is
// refused for as long as the test runs: a hub, or a broker, that is down. The port is
// held by a socket that is bound but never listens, so no other listener, of this test
// process or another one running beside it, can be given it meanwhile; an address freed by
// closing a listener could be handed out again at once, and a test that dials it would then
// reach whatever took it. The socket is closed when the test ends.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("hubtest: refused address: socket: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("hubtest: refused address: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("hubtest: refused address: getsockname: %v", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		t.Fatalf("hubtest: refused address: bound to %T, want an IPv4 address", sa)
	}
	return fmt.Sprintf("127.0.0.1:%d", in4.Port)
}
