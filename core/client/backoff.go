package client

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sluicehq/sluice/core"
)

// Backoff is an exponential backoff with jitter: the n-th retry (n >= 1) waits a random
// duration in [(1-Jitter)*d, d] where d = min(Max, Min * Factor^(n-1)).
type Backoff struct {
	// Min is the delay before the first retry (> 0).
	Min time.Duration
	// Max caps the delay (>= Min).
	Max time.Duration
	// Factor multiplies the delay after each failed attempt (>= 1).
	Factor float64
	// Jitter is the fraction of the delay that is randomized, in [0, 1]. With 1 ("full
	// jitter") the delay is uniform in [0, d].
	Jitter float64
}

// DefaultBackoff is used when no backoff option is given: 50ms doubling up to 5s, half of it
// random.
var DefaultBackoff = Backoff{Min: 50 * time.Millisecond, Max: 5 * time.Second, Factor: 2, Jitter: 0.5}

func (b Backoff) validate() error {
	if b.Min <= 0 || b.Max < b.Min || b.Factor < 1 || b.Jitter < 0 || b.Jitter > 1 {
		return fmt.Errorf("%w: client: backoff %+v: want Min > 0, Max >= Min, Factor >= 1, 0 <= Jitter <= 1", core.ErrInvalidOption, b)
	}
	return nil
}

// Delay returns the delay before retry number n (n >= 1; n < 1 is treated as 1).
func (b Backoff) Delay(n int) time.Duration {
	d := float64(b.Min)
	for i := 1; i < n && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d -= b.Jitter * d * rand.Float64()
	}
	return time.Duration(d)
}
