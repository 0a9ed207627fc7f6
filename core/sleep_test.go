package core

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled ctx = %v, want context.Canceled", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(0) on a cancelled ctx = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Fatalf("Sleep(negative) = %v, want nil", err)
	}
}

// TestSleepZeroCancelled checks that Sleep(0) on an ended ctx always reports it: it must not
// race a zero timer against ctx.Done.
func TestSleepZeroCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 200 {
		if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("attempt %d: Sleep(0) on a cancelled ctx = %v, want context.Canceled", i, err)
		}
	}
}
