package hub

import "testing"

func TestPartitionAddr(t *testing.T) {
	for _, tc := range []struct {
		stream string
		p      int
	}{{"a", 0}, {"a.b.c", 12}, {"x-1_2", 1023}} {
		s, p, ok := parsePartitionAddr(partitionAddr(tc.stream, tc.p))
		if !ok || s != tc.stream || p != tc.p {
			t.Errorf("round trip of (%q, %d) = (%q, %d, %v)", tc.stream, tc.p, s, p, ok)
		}
	}
	for _, bad := range []string{"stream", "stream.", "stream.a", "stream.a.", "stream.a.-1", "stream.a.01", "other.a.1", "stream..1"} {
		if _, _, ok := parsePartitionAddr(bad); ok {
			t.Errorf("parsePartitionAddr(%q) ok", bad)
		}
	}
}
