package core

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateStreamName(t *testing.T) {
	for _, name := range []string{"a", "orders", "A.b_c-9", strings.Repeat("x", MaxStreamNameLen)} {
		if err := ValidateStreamName(name); err != nil {
			t.Errorf("ValidateStreamName(%q) = %v, want nil", name, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"", "empty stream name"},
		{strings.Repeat("x", MaxStreamNameLen+1), "the limit is"},
		{".", "reserved"},
		{"..", "reserved"},
		{"a/b", `has '/' at byte 1`},
		{"émoji", `has 'é' at byte 0`},
		{"ab\xff", "has byte 0xff at byte 2"},
		{"a b", `has ' ' at byte 1`},
	} {
		err := ValidateStreamName(tc.name)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateStreamName(%q) = %v, want ErrInvalidArgument saying %q", tc.name, err, tc.want)
		}
	}
}

func TestValidateStreamNameCharacters(t *testing.T) {
	if err := ValidateStreamName("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"); err != nil {
		t.Errorf("every allowed character: %v", err)
	}
	// The neighbours of each allowed range, in ASCII order.
	for _, r := range "`{@[/:" {
		name := "a" + string(r)
		if err := ValidateStreamName(name); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateStreamName(%q) = %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestValidateClientID(t *testing.T) {
	for _, id := range []string{"c", "device 1", "émoji ✓", strings.Repeat("x", MaxClientIDLen), strings.Repeat("é", MaxClientIDLen/2)} {
		if err := ValidateClientID(id); err != nil {
			t.Errorf("ValidateClientID(%q) = %v, want nil", id, err)
		}
	}
	for _, tc := range []struct{ id, want string }{
		{"", "empty client id"},
		{strings.Repeat("x", MaxClientIDLen+1), "the limit is"},
		{strings.Repeat("é", MaxClientIDLen/2+1), "the limit is"}, // 256 bytes, 128 characters
		{"a\xffb", "not valid UTF-8"},
		{"a\x00b", "control character"},
		{"a\nb", "control character"},
		{"a\x7fb", "control character"},   // DEL
		{"a\u0085b", "control character"}, // C1 control (NEL)
	} {
		err := ValidateClientID(tc.id)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateClientID(%q) = %v, want ErrInvalidArgument saying %q", tc.id, err, tc.want)
		}
	}
}

func TestValidatePartitions(t *testing.T) {
	for _, tc := range []struct {
		n, max int
		ok     bool
	}{
		{1, 0, true}, {MaxPartitions, 0, true}, {MaxPartitions + 1, 0, false}, {0, 0, false}, {-1, 0, false},
		{MaxPartitions, -1, true}, {4, 4, true}, {5, 4, false}, {1, 1, true}, {2, 1, false},
		{MaxPartitions, 2 * MaxPartitions, true}, {MaxPartitions + 1, 2 * MaxPartitions, false}, // max is capped
	} {
		err := ValidatePartitionCount(tc.n, tc.max)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidatePartitionCount(%d, %d) = %v, want ok %v", tc.n, tc.max, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		p, n int
		ok   bool
	}{{0, 1, true}, {1, 1, false}, {-1, 1, false}, {2, 3, true}, {3, 3, false}, {0, 0, false}} {
		err := ValidatePartition("s", tc.p, tc.n)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidatePartition(%d, %d) = %v, want ok %v", tc.p, tc.n, err, tc.ok)
		}
	}
}

func TestValidateLimitAndMessages(t *testing.T) {
	for _, tc := range []struct {
		limit int
		ok    bool
	}{{0, true}, {1, true}, {-1, false}} {
		if err := ValidateLimit(tc.limit); tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateLimit(%d) = %v, want ok %v", tc.limit, err, tc.ok)
		}
	}
	if err := ValidateMessages([][]byte{[]byte("abc"), {}, []byte("ab")}, 3); err != nil {
		t.Errorf("messages of at most the limit: %v", err)
	}
	err := ValidateMessages([][]byte{[]byte("abc"), []byte("abcd"), []byte("abcde")}, 3)
	if !errors.Is(err, ErrMessageTooLarge) || errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "message 1 is 4 bytes") {
		t.Errorf("a message over the limit: %v, want ErrMessageTooLarge naming message 1", err)
	}
}

func TestValidateIndexKey(t *testing.T) {
	for _, tc := range []struct {
		client, stream string
		partition      int
		ok             bool
	}{
		{"c", "s", 0, true}, {"c", "s", MaxPartitions - 1, true}, {"c", "s", MaxPartitions, false},
		{"c", "s", -1, false}, {"", "s", 0, false}, {"a\x00", "s", 0, false}, {"c", "", 0, false}, {"c", "a/b", 0, false},
	} {
		err := ValidateIndexKey(tc.client, tc.stream, tc.partition)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateIndexKey(%q, %q, %d) = %v, want ok %v", tc.client, tc.stream, tc.partition, err, tc.ok)
		}
	}
}

// TestSentinelsDistinct checks that no sentinel error matches another: callers tell the
// cases apart with errors.Is.
func TestSentinelsDistinct(t *testing.T) {
	all := []error{ErrStreamNotFound, ErrIndexNotFound, ErrInvalidArgument, ErrMessageTooLarge, ErrClosed, ErrInvalidOption, ErrUnavailable}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
}
