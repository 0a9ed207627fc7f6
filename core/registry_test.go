package core_test

import (
	"context"
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// closeCounter is a Storage and IndexStorage that counts its Close calls; only Close is used.
type closeCounter struct {
	core.Storage
	closes int
	log    *[]string // if not nil, Close appends name
	name   string
}

func (c *closeCounter) Close() error {
	c.closes++
	if c.log != nil {
		*c.log = append(*c.log, c.name)
	}
	return nil
}

func (c *closeCounter) GetIndex(context.Context, string, string, int) (uint64, error) {
	return 0, core.ErrIndexNotFound
}

func (c *closeCounter) SaveIndex(context.Context, string, string, int, uint64) error { return nil }

type ctxKey struct{}

var errOpenFailed = errors.New("cannot reach the broker")

// The registry is global: the schemes of these tests start with "coretest-".
func init() {
	core.Register("coretest-ok", func(ctx context.Context, u *url.URL) (*core.Backend, error) {
		if ctx.Value(ctxKey{}) != "open" {
			return nil, errors.New("the opener did not get Open's context")
		}
		s := &closeCounter{}
		return &core.Backend{Storage: s, Index: s}, nil
	})
	core.Register("coretest-fail", func(context.Context, *url.URL) (*core.Backend, error) {
		return nil, errOpenFailed
	})
	for _, s := range []string{"coretest-e", "coretest-b", "coretest-d", "coretest-a", "coretest-c"} {
		core.Register(s, func(context.Context, *url.URL) (*core.Backend, error) { return nil, errOpenFailed })
	}
}

func TestRegisterMisuse(t *testing.T) {
	for _, tc := range []struct {
		name string
		open core.Opener
	}{
		{"coretest-ok", func(context.Context, *url.URL) (*core.Backend, error) { return nil, nil }}, // twice
		{"coretest-nil", nil},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q, %v) did not panic", tc.name, tc.open == nil)
				}
			}()
			core.Register(tc.name, tc.open)
		}()
	}
	if slices.Contains(core.Schemes(), "coretest-nil") {
		t.Error("a nil opener was registered")
	}
}

func TestSchemesSorted(t *testing.T) {
	for range 20 { // map order varies from call to call
		s := core.Schemes()
		if !slices.IsSorted(s) {
			t.Fatalf("Schemes() = %q, not sorted", s)
		}
		for _, want := range []string{"coretest-a", "coretest-e", "coretest-ok"} {
			if !slices.Contains(s, want) {
				t.Fatalf("Schemes() = %q, lacks %q", s, want)
			}
		}
	}
}

func TestOpen(t *testing.T) {
	ctx := context.WithValue(context.Background(), ctxKey{}, "open")
	b, err := core.Open(ctx, "coretest-ok://host/path")
	if err != nil || b == nil {
		t.Fatalf("Open = %v, %v", b, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := b.Storage.(*closeCounter).closes; n != 1 {
		t.Errorf("Backend.Close closed its storage, also its index storage, %d times, want once", n)
	}
	for _, tc := range []struct{ url, want string }{
		{"coretest-nosuch://x", "unknown backend"},
		{"no-scheme", "no scheme"},
		{"coretest-ok://%zz", "backend URL"},
	} {
		if _, err := core.Open(ctx, tc.url); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want ErrInvalidOption saying %q", tc.url, err, tc.want)
		}
		if err := core.CheckURL(tc.url); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckURL(%q) = %v, want ErrInvalidOption saying %q", tc.url, err, tc.want)
		}
	}
	if _, err := core.Open(ctx, "coretest-fail://x"); !errors.Is(err, errOpenFailed) || errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("Open of a failing backend = %v, want its error wrapped", err)
	}
	// CheckURL opens nothing: a registered scheme passes even when its backend would fail.
	if err := core.CheckURL("coretest-fail://x"); err != nil {
		t.Errorf("CheckURL of a registered scheme = %v, want nil", err)
	}
}

// TestURLErrorsHidePassword: the errors of a URL that is refused before anything is
// opened (a typo in the scheme, a bad escape) are printed and logged; they must not show the
// password the URL holds.
func TestURLErrorsHidePassword(t *testing.T) {
	for _, raw := range []string{
		"coretest-nosuch://user:s3cret@host:9092",
		"coretest-ok://user:s3cret@host%zz:9092",
	} {
		err := core.CheckURL(raw)
		if !errors.Is(err, core.ErrInvalidOption) {
			t.Fatalf("CheckURL(%q) = %v, want ErrInvalidOption", raw, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("CheckURL(%q) = %q: shows the password", raw, err)
		}
		if _, err := core.Open(context.Background(), raw); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) = %v: shows the password", raw, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"kafka://user:secret@127.0.0.1:9092?tls=1", "kafka://user:xxxxx@127.0.0.1:9092?tls=1"},
		{"kafka://user@127.0.0.1:9092", "kafka://user@127.0.0.1:9092"},
		{"bbolt:data", "bbolt:data"},
		{"%zz", "%zz"},
		{"kafka://user:s3cret@host%zz:9092/x?y=1", "kafka://user:xxxxx@host%zz:9092/x?y=1"}, // does not parse
		{"kafka://user:p@ss@host:9092", "kafka://user:xxxxx@host:9092"},
		// A backend URL given as a parameter (kinesis's index=) has its password hidden too.
		{"kinesis://us-east-1?index=kafka://u:secret@h:9092&prefix=p", "kinesis://us-east-1?index=" + url.QueryEscape("kafka://u:xxxxx@h:9092") + "&prefix=p"},
		{"kinesis://us-east-1?index=" + url.QueryEscape("kafka://u:secret@h:9092?sasl=plain"), "kinesis://us-east-1?index=" + url.QueryEscape("kafka://u:xxxxx@h:9092?sasl=plain")},
		{"kinesis://us-east-1?index=kafka://u:secret@h%zz:9092", "kinesis://us-east-1?index=kafka://u:xxxxx@h%zz:9092"},
		{"kinesis://us-east-1?index=bbolt:///var/lib/x&prefix=p", "kinesis://us-east-1?index=bbolt:///var/lib/x&prefix=p"},
	} {
		if got := core.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBackendClose(t *testing.T) {
	var order []string
	s, i := &closeCounter{log: &order, name: "storage"}, &closeCounter{log: &order, name: "index"}
	if err := (&core.Backend{Storage: s, Index: i}).Close(); err != nil {
		t.Fatal(err)
	}
	if s.closes != 1 || i.closes != 1 {
		t.Errorf("closed storage %d, index %d times; want each once", s.closes, i.closes)
	}
	// The storage first: its calls in flight may use the index storage (a stream's
	// deletion deletes its saved indexes), and its Close waits for them.
	if want := []string{"storage", "index"}; !slices.Equal(order, want) {
		t.Errorf("closed %v, want %v", order, want)
	}
	if err := (&core.Backend{Storage: s}).Close(); err != nil || s.closes != 2 {
		t.Errorf("Close without an index storage = %v, storage closed %d times in all, want 2", err, s.closes)
	}
}

func TestCapabilitiesString(t *testing.T) {
	for _, tc := range []struct {
		c    core.Capabilities
		want string
	}{
		{core.Capabilities{Name: "x", MaxMessageSize: 10, MaxPartitions: 4}, "x: max_message_size=10 max_partitions=4"},
		{core.Capabilities{Name: "x", MaxMessageSize: 10, MaxPartitions: 4, DenseIndex: true}, "x: max_message_size=10 max_partitions=4 dense_index"},
		{core.Capabilities{Name: "y", MaxMessageSize: 1, MaxPartitions: 2, Persistent: true, NativeIndexStorage: true}, "y: max_message_size=1 max_partitions=2 persistent native_index_storage"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestURLParams(t *testing.T) {
	u, err := url.Parse("x://h?a=1&b=&c=x%20y")
	if err != nil {
		t.Fatal(err)
	}
	got, err := core.URLParams(u)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "b": "", "c": "x y"}; !maps.Equal(got, want) {
		t.Errorf("URLParams = %v, want %v", got, want)
	}
	for raw, want := range map[string]string{
		"x://h?a=1&a=2":  `parameter "a" is given 2 times`,
		"x://h?a=%zz":    "invalid URL escape",
		"x://h?a=1;b=2":  "invalid semicolon",
		"x://u:pw@h?a&a": "xxxxx", // the password is not repeated in the error
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = core.URLParams(u)
		if !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "pw") {
			t.Errorf("URLParams(%q) = %v, want ErrInvalidOption saying %q", raw, err, want)
		}
	}
}
