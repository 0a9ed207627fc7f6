package hubtest

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
)

// ProxyFaults injects random faults into px until ctx ends, drawing from rnd (see
// LockedRand): after a gap of 5 ms to 5 ms + gap, it resets every connection, pauses one
// direction or both for up to 300 ms (then resumes, sometimes resetting the connections
// first: replies held back, then lost), delays every chunk by up to maxDelay, refuses new
// connections for up to 100 ms, or stays quiet for up to 200 ms. It leaves px passing
// everything through again and returns how many faults it injected.
func ProxyFaults(ctx context.Context, px *faultproxy.Proxy, rnd func(int) int, gap, maxDelay time.Duration) int {
	defer func() {
		px.Resume()
		px.SetDelay(0)
		px.SetRefuse(false)
	}()
	faults := 0
	for ctx.Err() == nil {
		if core.Sleep(ctx, 5*time.Millisecond+time.Duration(rnd(int(gap/time.Millisecond)+1))*time.Millisecond) != nil {
			break
		}
		faults++
		switch rnd(6) {
		case 0, 1:
			px.ResetAll()
		case 2:
			dirs := []faultproxy.Direction{faultproxy.Up, faultproxy.Down, faultproxy.Both}
			px.PauseDirection(dirs[rnd(3)])
			_ = core.Sleep(ctx, time.Duration(rnd(300))*time.Millisecond)
			if rnd(2) == 0 {
				px.ResetAll()
			}
			px.Resume()
		case 3:
			px.SetDelay(time.Duration(rnd(int(maxDelay/time.Millisecond)+1)) * time.Millisecond)
		case 4:
			px.SetRefuse(true)
			_ = core.Sleep(ctx, time.Duration(rnd(100))*time.Millisecond)
			px.SetRefuse(false)
		case 5:
			_ = core.Sleep(ctx, time.Duration(rnd(200))*time.Millisecond)
		}
	}
	return faults
}

// Restarts restarts r at random until ctx ends, drawing from rnd: every every to
// every + spread, it stops r in a random StopMode (a StopDeadline grace of up to 20 ms),
// leaves it down for up to 100 ms, and starts it again. It returns how many restarts it made
// and the first error of a start (which ends it); a stop's errors are expected (a grace
// that expires, a Close that drops work) and are not returned. r is running when it returns
// without an error.
func (r *Restartable) Restarts(ctx context.Context, rnd func(int) int, every, spread time.Duration) (int, error) {
	restarts := 0
	for ctx.Err() == nil {
		if core.Sleep(ctx, every+time.Duration(rnd(int(spread/time.Millisecond)+1))*time.Millisecond) != nil {
			break
		}
		restarts++
		mode, grace := StopMode(rnd(3)), time.Duration(rnd(20))*time.Millisecond
		down := time.Duration(rnd(100)) * time.Millisecond
		_ = r.Stop(mode, grace)
		time.Sleep(down)
		if err := r.Start(context.Background()); err != nil {
			return restarts, fmt.Errorf("hubtest: restart %d: %w", restarts, err)
		}
	}
	return restarts, nil
}
