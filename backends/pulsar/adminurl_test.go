package pulsar

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/sluicehq/sluice/core"
)

// TestNewRejectsBadAdminURLs: New and Open refuse an admin URL that names no host, or that
// has a query or fragment, which the admin paths would be appended after, with
// core.ErrInvalidOption naming it, instead of building requests to "http:/admin/..." or
// "http://h:8080?x=1/admin/..." that fail at the first call with a misleading error.
func TestNewRejectsBadAdminURLs(t *testing.T) {
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: "pulsar://127.0.0.1:1", Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, admin := range []string{"http://", "https:///", "http:///admin", "http://h:8080?x=1", "http://h:8080#top", "http://h:8080/%zz", "http://h:port"} {
		if s, err := New(t.Context(), cl, admin, nil); !errors.Is(err, core.ErrInvalidOption) {
			if s != nil {
				s.Close()
			}
			t.Errorf("New with admin URL %q: %v; want core.ErrInvalidOption", admin, err)
		}
		if strings.Contains(admin, "#") {
			continue // in Open's URL, the fragment is the pulsar:// URL's, not admin's
		}
		if s, err := Open(context.Background(), "pulsar://127.0.0.1:1?admin="+admin); !errors.Is(err, core.ErrInvalidOption) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open with admin=%q: %v; want core.ErrInvalidOption", admin, err)
		}
	}
	for _, admin := range []string{"http://h:8080", "http://h:8080/", "https://[::1]:8443/pulsar/", "http://h"} {
		s, err := New(t.Context(), cl, admin, nil)
		if err != nil {
			t.Errorf("New with admin URL %q: %v", admin, err)
			continue
		}
		s.Close()
	}
}
