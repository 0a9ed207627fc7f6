package kinesis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sluicehq/sluice/backends/kinesis"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// openStore returns a Store on c with opts, closed at the end of the test.
func openStore(t testing.TB, c *awskinesis.Client, opts *kinesis.Options) *kinesis.Store {
	t.Helper()
	s, err := kinesis.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newStream creates with s a one-partition stream named prefix followed by the time in
// nanoseconds, and returns its name. s deletes the stream at the end of the test (before
// it is closed, when openStore opened it).
func newStream(t *testing.T, ctx context.Context, s *kinesis.Store, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d", prefix, time.Now().UnixNano())
	if _, err := s.CreateStream(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DeleteStream(context.Background(), name) })
	return name
}

// newStreamToReopen is newStream with a new Store on c, for a test that closes that Store
// and opens another on the stream: a Store of its own deletes the stream at the end of the
// test. It returns the first Store and the stream's name.
func newStreamToReopen(t *testing.T, ctx context.Context, c *awskinesis.Client, prefix string) (*kinesis.Store, string) {
	t.Helper()
	s := openStore(t, c, nil)
	name := fmt.Sprintf("%s%d", prefix, time.Now().UnixNano())
	if _, err := s.CreateStream(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s, err := kinesis.New(c, nil)
		if err != nil {
			t.Errorf("delete stream %s: %v", name, err)
			return
		}
		_ = s.DeleteStream(context.Background(), name)
		s.Close()
	})
	return s, name
}
