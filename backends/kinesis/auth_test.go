package kinesis_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/core"
)

// TestUnsignedRequestsRefusedOnMock: kinesis-mock refuses a request that carries no
// credentials (MissingAuthenticationTokenException), as AWS does. Every call of a Store on
// such a client then fails with an error matching core.ErrInvalidOption that keeps the SDK
// error and says to check the credentials, not with a bare SDK error; and it is not
// retried as if the service were unavailable.
func TestUnsignedRequestsRefusedOnMock(t *testing.T) {
	c := client(t, nil)
	ctx := context.Background()
	// The stream exists, so that only the credentials can be the reason of the failures.
	good := openStore(t, c, nil)
	stream := "auth" + strings.ReplaceAll(t.Name(), "/", "-")
	if _, err := good.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}
	defer good.DeleteStream(ctx, stream)

	anon := awskinesis.New(c.Options(), func(o *awskinesis.Options) { o.Credentials = aws.AnonymousCredentials{} })
	s := openStore(t, anon, nil)
	calls := map[string]func() error{
		"CreateStream": func() error { _, err := s.CreateStream(ctx, stream, 1); return err },
		"Partitions":   func() error { _, err := s.Partitions(ctx, stream); return err },
		"Append":       func() error { _, err := s.Append(ctx, stream, 0, [][]byte{[]byte("m")}); return err },
		"Fetch":        func() error { _, err := s.Fetch(ctx, stream, 0, 0, 10); return err },
		"DeleteStream": func() error { return s.DeleteStream(ctx, stream) },
	}
	for name, call := range calls {
		err := call()
		var api smithy.APIError
		if !errors.Is(err, core.ErrInvalidOption) || errors.Is(err, core.ErrUnavailable) || !errors.As(err, &api) ||
			!strings.Contains(err.Error(), "authentication failed") || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("%s with an unsigned request: %v; want core.ErrInvalidOption with the SDK error, saying to check the credentials", name, err)
			continue
		}
		t.Logf("%s: %s: %v", name, api.ErrorCode(), err)
	}
	// The stream is still there: the refused DeleteStream did nothing.
	if n, err := good.Partitions(ctx, stream); err != nil || n != 1 {
		t.Fatalf("Partitions after the refused calls = %d, %v", n, err)
	}
}
