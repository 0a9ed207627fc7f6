package client

import (
	"fmt"
	"strings"
	"testing"
)

// TestMurmur2Kafka checks the hash against the values of Kafka's own test of
// Utils.murmur2 (and those other Kafka clients check), which cover every tail length.
func TestMurmur2Kafka(t *testing.T) {
	for key, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc":   479470107,
		"1":     -1993445489,
		"12":    126087238,
		"123":   -267702483,
		"1234":  -1614185708,
		"12345": -1188365604,
	} {
		if got := int32(murmur2([]byte(key))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d (Kafka's)", key, got, want)
		}
	}
}

func TestKeyPartition(t *testing.T) {
	// Kafka: toPositive(murmur2(key)) % n. murmur2("21") = -973932308, whose low 31 bits
	// are 1173551340; murmur2("abc") = 479470107.
	for _, tc := range []struct {
		key  string
		n    int
		want int
	}{
		{"21", 1, 0},
		{"21", 7, 1173551340 % 7},
		{"21", 1000, 1173551340 % 1000},
		{"abc", 3, 479470107 % 3},
		{"abc", 1024, 479470107 % 1024},
	} {
		if got := KeyPartition([]byte(tc.key), tc.n); got != tc.want {
			t.Errorf("KeyPartition(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
	// Every key lands in range, and the keys spread over the partitions.
	seen := make(map[int]int)
	for i := range 1000 {
		p := KeyPartition(fmt.Appendf(nil, "device-%d", i), 8)
		if p < 0 || p >= 8 {
			t.Fatalf("KeyPartition(device-%d, 8) = %d, out of range", i, p)
		}
		seen[p]++
	}
	for p := range 8 {
		if seen[p] < 60 { // 125 expected for each
			t.Errorf("partition %d got %d of 1000 keys: %v", p, seen[p], seen)
		}
	}
}

// TestKeyPartitionPanicsWithoutPartitions checks that a partition count below 1 panics with
// the message KeyPartition documents (not a division by zero, and not a partition number
// for a negative count).
func TestKeyPartitionPanicsWithoutPartitions(t *testing.T) {
	for _, n := range []int{0, -1} {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Errorf("KeyPartition(key, %d) did not panic", n)
					return
				}
				if msg, ok := r.(string); !ok || !strings.Contains(msg, "partitions, want at least 1") {
					t.Errorf("KeyPartition(key, %d) panicked with %v, want its own message", n, r)
				}
			}()
			KeyPartition([]byte("k"), n)
		}()
	}
}
