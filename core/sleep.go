package core

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx ends, whichever comes first, and returns ctx.Err() in the
// latter case (at once, without waiting, when d <= 0 and ctx has ended). Retry loops of
// backends and clients wait with it, so that Close or a cancelled call never waits out a
// backoff.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
