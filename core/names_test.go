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
