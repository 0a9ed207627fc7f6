package client_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/transport/faultproxy"
)

// TestCloseSaysWhatBecameOfUnconfirmed: a Close whose close timeout ran out with messages
// unconfirmed (the hub's confirms are held) says so, names the option that bounds the wait,
// and says what became of the messages: kept in the outbox, or to be published again. It
// does not pass for a failed Flush of the caller's.
func TestCloseSaysWhatBecameOfUnconfirmed(t *testing.T) {
	for _, outbox := range []bool{false, true} {
		h := startHub(t)
		px := newProxy(t, h.Addr)
		c := dial(t, px.Addr())
		ctx := t.Context()
		opts := []client.PublisherOption{client.WithCloseTimeout(0), client.WithBackoff(fastBackoff)}
		want := "publish them again"
		if outbox {
			opts = append(opts, client.WithOutbox(filepath.Join(t.TempDir(), "outbox.db")))
			want = "stay in the outbox"
		}
		p, err := client.NewPublisher(ctx, c, "close-err", opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PublishSync(ctx, []byte("first")); err != nil { // the session is up
			_ = p.Close()
			t.Fatal(err)
		}
		px.PauseDirection(faultproxy.Down) // confirms are held
		if _, err := p.Publish(ctx, []byte("unconfirmed")); err != nil {
			_ = p.Close()
			t.Fatal(err)
		}
		err = p.Close()
		px.Resume()
		if err == nil {
			t.Fatalf("outbox %v: Close with an unconfirmed message returned nil", outbox)
		}
		for _, s := range []string{"1 unconfirmed message", "WithCloseTimeout", want} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("outbox %v: Close = %q, want it to say %q", outbox, err, s)
			}
		}
		if strings.Contains(err.Error(), "flush") {
			t.Errorf("outbox %v: Close = %q: it reports a Flush the caller did not call", outbox, err)
		}
	}
}
