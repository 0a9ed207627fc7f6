package pulsar

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestAdminTimeoutIsUnavailable: an admin API that does not answer within the HTTP client's
// own Timeout fails every call with core.ErrUnavailable, not with an error matching
// context.DeadlineExceeded (net/http's timeout error matches it), which a caller whose own
// context has not ended would take for its deadline and give up on. errors.As still finds
// the *url.Error. The calls' context has no deadline.
func TestAdminTimeoutIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	t.Cleanup(srv.Close)
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: "pulsar://127.0.0.1:1", Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	s, err := New(t.Context(), cl, srv.URL, &Options{HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"CreateStream":  func() error { _, err := s.CreateStream(ctx, "s", 1); return err },
		"Partitions":    func() error { _, err := s.Partitions(ctx, "s"); return err },
		"DeleteStream":  func() error { return s.DeleteStream(ctx, "s") },
		"Append":        func() error { _, err := s.Append(ctx, "s", 0, [][]byte{[]byte("m")}); return err },
		"Fetch":         func() error { _, err := s.Fetch(ctx, "s", 0, 0, 10); return err },
		"GetIndex":      func() error { _, err := s.GetIndex(ctx, "c", "s", 0); return err },
		"SaveIndex":     func() error { return s.SaveIndex(ctx, "c", "s", 0, 1) },
		"DeleteIndexes": func() error { return s.DeleteIndexes(ctx, "s") },
	} {
		err := call()
		var uerr *url.Error
		if !errors.Is(err, core.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &uerr) {
			t.Errorf("%s with an admin API that does not answer: %v; want core.ErrUnavailable, not context.DeadlineExceeded, the *url.Error in the chain", name, err)
		}
	}
}

// TestClientTimeoutIsUnavailable: pulsar-client-go's own operation timeout (here, creating a
// reader whose lookups keep failing) ends in an error joined with context.DeadlineExceeded;
// Fetch reports it as core.ErrUnavailable, not as the caller's deadline.
func TestClientTimeoutIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(&fakeAdmin{partitions: []int{1}})
	t.Cleanup(srv.Close)
	s := quickTimeoutStore(t, srv.URL)
	_, err := s.Fetch(t.Context(), "s", 0, 0, 10)
	if !errors.Is(err, core.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch whose reader creation timed out: %v; want core.ErrUnavailable, not context.DeadlineExceeded", err)
	}
}

// quickTimeoutStore returns a Store on the admin API at adminURL whose client (its own, closed
// by Close) reaches no broker and gives up on each operation after 300 ms, so that the
// creations of producers and readers it leaves running end soon: the test waits for them,
// so that none is left for the tests that look for goroutines of the client.
func quickTimeoutStore(t *testing.T, adminURL string) *Store {
	t.Helper()
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: "pulsar://" + hubtest.RefusedAddr(t), OperationTimeout: 300 * time.Millisecond,
		Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newStore(cl, true, adminURL, nil)
	if err != nil {
		cl.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		waitSDK(t, s)
		s.Close()
	})
	return s
}
