package pulsar

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/conformance/brokers"
	"github.com/sluicehq/sluice/core"
)

// shared is the one Pulsar of this test binary, started on first use and stopped by
// TestMain.
var shared struct {
	once sync.Once
	p    *brokers.Pulsar
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.p != nil {
		if err := shared.p.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pulsar: stop: %v\n", err)
		}
	}
	os.Exit(code)
}

// broker returns the shared Pulsar, starting it on first use. A Pulsar that cannot start
// skips the test, or fails it under CI=true (brokers.Unavailable).
func broker(tb testing.TB) *brokers.Pulsar {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		shared.p, shared.err = brokers.StartPulsar(ctx, os.Stderr)
	})
	if shared.err != nil {
		brokers.Unavailable(tb, "pulsar", shared.err)
	}
	return shared.p
}

// openStore opens a Store on the shared broker with a URL, as a hub would.
func openStore(tb testing.TB, ctx context.Context, query string) (*Store, error) {
	tb.Helper()
	p := broker(tb)
	u := p.URL + "?admin=" + p.AdminURL
	if query != "" {
		u += "&" + query
	}
	return Open(ctx, u)
}

func backendOf(s *Store) *core.Backend { return &core.Backend{Storage: s, Index: s} }
