package brokers

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestKinesisMockStartsAndRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := StartKinesis(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "kinesis-mock", err)
	}
	defer k.Stop()
	if err := kinesisPing(ctx, k.Endpoint); err != nil {
		t.Fatalf("ping %s: %v\n%s", k.Endpoint, err, k.LogTail(20))
	}
	if k.Process() == nil {
		return // external endpoint: nothing to restart
	}
	old := k.Process().Pid()
	if err := k.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if k.Process().Pid() == old {
		t.Fatalf("restart kept pid %d", old)
	}
	if err := kinesisPing(ctx, k.Endpoint); err != nil {
		t.Fatalf("ping after restart: %v\n%s", err, k.LogTail(20))
	}
}
