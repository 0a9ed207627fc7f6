package pulsar

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestOpenChecksServiceOnBroker: with the broker's admin API, Open fails with an error that
// names the service URL when that URL is wrong: nothing listening on its port (it fails at
// the dial), or a port that does not speak Pulsar's binary protocol, here the admin API's own
// (it fails at the lookup). Both used to succeed, leaving the first Append to time out after
// DefaultOperationTimeout. The right URL opens (every other test).
func TestOpenChecksServiceOnBroker(t *testing.T) {
	p := broker(t)
	admin, err := url.Parse(p.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, service string }{
		{"closed port", "pulsar://" + hubtest.RefusedAddr(t)},
		{"admin port", "pulsar://" + admin.Host},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A bound, not a timing assert: longer than serviceCheckTimeout, so the error
			// must come from the check and not from this deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			s, err := Open(ctx, tc.service+"?admin="+p.AdminURL)
			if err == nil {
				s.Close()
				t.Fatalf("Open with service URL %s succeeded", tc.service)
			}
			if !errors.Is(err, core.ErrUnavailable) || ctx.Err() != nil || !strings.Contains(err.Error(), tc.service) {
				t.Fatalf("Open with service URL %s: %v, want ErrUnavailable naming it", tc.service, err)
			}
			t.Logf("%v", err)
		})
	}
}
