package brokers

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listeners returns the local addresses, as /proc/net/tcp and /proc/net/tcp6 write them
// (hexadecimal), of the sockets listening on port.
func listeners(port int) ([]string, error) {
	var out []string
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			addr, p, ok := strings.Cut(fields[1], ":")
			if n, err := strconv.ParseUint(p, 16, 16); ok && err == nil && int(n) == port {
				out = append(out, addr)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// loopback reports whether a /proc/net/tcp{,6} address is 127.0.0.1, ::1 or ::ffff:127.0.0.1.
func loopback(addr string) bool {
	switch addr {
	case "0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F":
		return true
	}
	return false
}

// TestKinesisMockListensOnLoopback: the launcher's kinesis-mock, which listens on every
// interface by itself, is reachable on 127.0.0.1 only, as every launched broker is.
func TestKinesisMockListensOnLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := StartKinesis(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "kinesis-mock", err)
	}
	defer k.Stop()
	if k.Process() == nil {
		t.Fatalf("KINESIS_ENDPOINT or Docker: no local kinesis-mock to check (unset KINESIS_ENDPOINT, SLUICE_BROKERS=process)")
	}
	var ports []int
	for _, kv := range k.env {
		for _, name := range []string{"KINESIS_MOCK_PLAIN_PORT=", "KINESIS_MOCK_TLS_PORT="} {
			if v, ok := strings.CutPrefix(kv, name); ok {
				p, err := strconv.Atoi(v)
				if err != nil {
					t.Fatal(err)
				}
				ports = append(ports, p)
			}
		}
	}
	if len(ports) != 2 {
		t.Fatalf("ports %v in kinesis-mock's environment; want the plain and the TLS port", ports)
	}
	for _, p := range ports {
		addrs, err := listeners(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) == 0 {
			t.Errorf("nothing listens on port %d", p)
		}
		for _, a := range addrs {
			if !loopback(a) {
				t.Errorf("kinesis-mock listens on port %d of address %s (as /proc/net/tcp writes it), not on 127.0.0.1 only", p, a)
			}
		}
	}
}
