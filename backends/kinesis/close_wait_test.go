package kinesis

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sluicehq/sluice/backends/internal/closetest"
)

// A second Close must not return while the first still waits for a call in flight. No
// request reaches Kinesis: the call in flight is registered directly.
func TestSecondCloseWaitsForFirst(t *testing.T) {
	s, err := New(kinesis.New(kinesis.Options{Region: "us-east-1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	closetest.SecondCloseWaits(t, &s.calls, s.Close)
}
