package pulsar

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/sluicehq/sluice/core"
)

// TestMissingNamespaceIsInvalidOption: a Store built by New (which does no I/O, so nothing
// checks its namespace) on a tenant or namespace that does not exist must say so: its calls
// fail with core.ErrInvalidOption naming the namespace, not with core.ErrStreamNotFound
// (the broker answers 404 "Namespace not found", which was read as a missing stream, so a
// CreateStream said that the stream it was creating did not exist).
func TestMissingNamespaceIsInvalidOption(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := broker(t)
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: b.URL, Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, o := range []Options{{Namespace: "sluice-no-such-namespace"}, {Tenant: "sluice-no-such-tenant"}} {
		s, err := New(ctx, cl, b.AdminURL, &o)
		if err != nil {
			t.Fatal(err)
		}
		calls := map[string]func() error{
			"CreateStream": func() error { _, err := s.CreateStream(ctx, "s", 1); return err },
			"Fetch":        func() error { _, err := s.Fetch(ctx, "s", 0, 0, 1); return err },
			"GetIndex":     func() error { _, err := s.GetIndex(ctx, "c", "s", 0); return err },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, core.ErrInvalidOption) || errors.Is(err, core.ErrStreamNotFound) {
				t.Errorf("%s in %s/%s: %v; want core.ErrInvalidOption only", name, s.opts.Tenant, s.opts.Namespace, err)
			}
		}
		s.Close()
	}
}
