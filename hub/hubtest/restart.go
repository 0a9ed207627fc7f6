package hubtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
)

// Restartable is a hub on a bbolt file that a test stops and starts again, on the same file
// and address, as a hub process that restarts would be. Its methods are safe for concurrent
// use.
type Restartable struct {
	path    string
	options func() []hub.Option

	mu   sync.Mutex
	addr string // the address of the first start, kept across restarts
	h    *hub.Hub
	s    *bbolt.Store
}

// NewRestartable returns a stopped hub on the bbolt file path; options, when not nil, gives
// the hub options of each start (it may return different ones each time).
func NewRestartable(path string, options func() []hub.Option) *Restartable {
	return &Restartable{path: path, options: options}
}

// Start opens the bbolt file and starts the hub on 127.0.0.1 (a free port the first time,
// the same port afterwards: it retries for up to two seconds while the port is still taken
// by the stopped hub's connections). Every start must be followed by a Stop.
func (r *Restartable) Start(ctx context.Context) error {
	s, err := bbolt.New(ctx, r.path, nil)
	if err != nil {
		return err
	}
	var opts []hub.Option
	if r.options != nil {
		opts = r.options()
	}
	h, err := hub.New(&core.Backend{Storage: s, Index: s}, opts...)
	if err != nil {
		return fmt.Errorf("hubtest: restartable hub: %w (and close: %v)", err, s.Close())
	}
	r.mu.Lock()
	addr := r.addr
	r.mu.Unlock()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	for i := 0; ; i++ {
		a, err := h.Listen(addr)
		if err == nil {
			addr = a.String()
			break
		}
		if i == 100 || ctx.Err() != nil {
			return fmt.Errorf("hubtest: restartable hub: listen on %s: %w (and close: %v, %v)", addr, err, h.Close(), s.Close())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	r.addr, r.h, r.s = addr, h, s
	r.mu.Unlock()
	return nil
}

// Addr returns the hub's address (known after the first Start).
func (r *Restartable) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Store returns the running hub's bbolt store, nil while the hub is stopped.
func (r *Restartable) Store() *bbolt.Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s
}

// StopMode is how Stop stops the hub.
type StopMode int

// Ways to stop a hub.
const (
	// StopGraceful: Shutdown with five seconds to finish what is in flight.
	StopGraceful StopMode = iota
	// StopDeadline: Shutdown with the given grace, often too short to finish.
	StopDeadline
	// StopClose: Close, dropping what is in flight, as a crash would.
	StopClose
)

// Stop stops the hub as mode says (with grace for StopDeadline) and closes its bbolt file.
// It does nothing when the hub is stopped. It returns the errors of stopping the hub and
// closing the file; an expired grace is not an error.
func (r *Restartable) Stop(mode StopMode, grace time.Duration) error {
	r.mu.Lock()
	h, s := r.h, r.s
	r.h, r.s = nil, nil
	r.mu.Unlock()
	if h == nil {
		return nil
	}
	var err error
	switch mode {
	case StopGraceful, StopDeadline:
		if mode == StopGraceful {
			grace = 5 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if serr := h.Shutdown(ctx); serr != nil && ctx.Err() == nil {
			err = serr
		}
		cancel()
	default:
		err = h.Close()
	}
	if cerr := s.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// LockedRand returns a function that draws from [0, n) with a PCG source of seed and
// stream, safe for concurrent use: a randomized test's goroutines share one schedule that
// its seed repeats.
func LockedRand(seed, stream uint64) func(n int) int {
	rng := rand.New(rand.NewPCG(seed, stream))
	var mu sync.Mutex
	return func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(n)
	}
}

// ChaosSeeds returns the seeds of a randomized test's runs: SLUICE_CHAOS_SEED (default 1,
// or one from the clock when it is "random") and the SLUICE_CHAOS_RUNS seeds after it
// (default 1). A run should log its seed so that a failure can be repeated.
func ChaosSeeds(t testing.TB) []uint64 {
	t.Helper()
	first := uint64(1)
	switch s := os.Getenv("SLUICE_CHAOS_SEED"); s {
	case "":
	case "random":
		first = uint64(time.Now().UnixNano())
	default:
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_CHAOS_SEED=%q: want a number or random", s)
		}
		first = v
	}
	runs := 1
	if s := os.Getenv("SLUICE_CHAOS_RUNS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("SLUICE_CHAOS_RUNS=%q: want a number >= 1", s)
		}
		runs = v
	}
	seeds := make([]uint64, runs)
	for i := range seeds {
		seeds[i] = first + uint64(i)
	}
	return seeds
}
