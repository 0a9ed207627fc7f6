package client

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, Factor: 2, Jitter: 0.5}
	for n, want := range map[int]time.Duration{0: 10, 1: 10, 2: 20, 3: 40, 4: 80, 5: 100, 50: 100} {
		want *= time.Millisecond
		for range 100 {
			d := b.Delay(n)
			if d > want || d < want/2 {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
	exact := Backoff{Min: time.Second, Max: time.Second, Factor: 1}
	if d := exact.Delay(7); d != time.Second {
		t.Fatalf("Delay without jitter = %v, want 1s", d)
	}
	if err := exact.validate(); err != nil {
		t.Errorf("validate(%+v) = %v, want nil: Max may equal Min", exact, err)
	}
	for _, bad := range []Backoff{{}, {Min: 2, Max: 1, Factor: 1}, {Min: 1, Max: 1, Factor: 0.5}, {Min: 1, Max: 1, Factor: 1, Jitter: 2}} {
		if bad.validate() == nil {
			t.Errorf("validate(%+v) = nil, want an error", bad)
		}
	}
}
