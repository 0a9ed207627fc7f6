package brokers

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// loopback reports whether a /proc/net/tcp{,6} address is 127.0.0.1, ::1 or ::ffff:127.0.0.1.
func loopback(addr string) bool {
	switch addr {
	case "0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F":
		return true
	}
	return false
}

// processListeners returns the local addresses (address:port as /proc/net/tcp{,6} write
// them, hexadecimal) of the TCP sockets that process pid listens on.
func processListeners(pid int) ([]string, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 10 && fields[3] == "0A" && inodes[fields[9]] {
				out = append(out, fields[1])
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkLoopbackOnly fails t if process pid, a broker the launcher started, listens on
// another address than 127.0.0.1 or ::1: every launched broker listens on loopback only, as
// the package doc says (kinesis-mock and Pulsar's bookie listen on every interface unless
// told otherwise).
func checkLoopbackOnly(t *testing.T, name string, pid int) {
	t.Helper()
	addrs, err := processListeners(pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) == 0 {
		t.Errorf("%s (pid %d) listens on no TCP port", name, pid)
	}
	for _, a := range addrs {
		host, port, _ := strings.Cut(a, ":")
		if !loopback(host) {
			p, _ := strconv.ParseUint(port, 16, 16)
			t.Errorf("%s (pid %d) listens on port %d of address %s (as /proc/net/tcp writes it), not on 127.0.0.1 only", name, pid, p, host)
		}
	}
}
