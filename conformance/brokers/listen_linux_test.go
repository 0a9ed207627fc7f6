package brokers

import (
	"bufio"
	"context"
	"fmt"
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
	t.Setenv("SLUICE_BROKERS", "process") // a local process, the one to check
	t.Setenv("KINESIS_ENDPOINT", "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := StartKinesis(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "kinesis-mock", err)
	}
	defer k.Stop()
	if k.Process() == nil {
		t.Fatalf("no local kinesis-mock process to check")
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

// checkLoopbackOnly fails t if process pid listens on another address than 127.0.0.1 or ::1.
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

// TestKafkaAndPulsarListenOnLoopback: the launched Kafka and Pulsar listen on 127.0.0.1 only,
// every port of theirs, as the package doc says.
func TestKafkaAndPulsarListenOnLoopback(t *testing.T) {
	t.Setenv("SLUICE_BROKERS", "process") // local processes, the ones to check
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("PULSAR_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	k, err := StartKafka(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "kafka", err)
	}
	t.Cleanup(func() { k.Stop() }) // if the test ends before the Stop below
	if k.proc == nil {
		t.Fatalf("no local Kafka process to check")
	}
	checkLoopbackOnly(t, "kafka", k.proc.Pid())
	if err := k.Stop(); err != nil { // before Pulsar starts: one broker at a time
		t.Errorf("stop kafka: %v", err)
	}
	p, err := StartPulsar(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "pulsar", err)
	}
	defer p.Stop()
	if p.proc == nil {
		t.Fatalf("no local Pulsar process to check")
	}
	checkLoopbackOnly(t, "pulsar", p.proc.Pid())
}
