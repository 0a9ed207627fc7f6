package hubtest_test

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub/hubtest"
)

// A refused address refuses every connection, and (on Linux) nothing else can listen on it
// while the test runs.
func TestRefusedAddr(t *testing.T) {
	addr := hubtest.RefusedAddr(t)
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded, want connection refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s = %v, want connection refused", addr, err)
		}
	}
	if runtime.GOOS != "linux" {
		return
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("listening on the refused address %s succeeded; want it held", addr)
	}
}
