package client_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core/client"
)

// TestDamagedOutboxIsAnError: an outbox file cut short (a torn copy, a damaged disk) must
// make NewPublisher return an error that says so, not kill the process (bbolt reads the
// file through a memory map, and reading past its end faults), which would happen again at
// every start of the device.
func TestDamagedOutboxIsAnError(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	path := filepath.Join(t.TempDir(), "outbox.db")
	p, err := client.NewPublisher(t.Context(), c, "damaged", client.WithOutbox(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() <= 8192 {
		t.Fatalf("outbox file of %d bytes: too small to cut", st.Size())
	}
	if err := os.Truncate(path, 8192); err != nil { // its meta pages survive, the rest is gone
		t.Fatal(err)
	}
	p, err = client.NewPublisher(t.Context(), c, "damaged", client.WithOutbox(path))
	if err == nil {
		_ = p.Close()
		t.Fatal("NewPublisher on an outbox file cut short returned no error")
	}
	t.Logf("NewPublisher on a damaged outbox: %v", err)
}

// TestOutboxInUseIsAnError: a second publisher on an outbox file another one holds open
// fails after the lock wait, with an error that says what is wrong and what to do (bbolt
// says only "timeout").
func TestOutboxInUseIsAnError(t *testing.T) {
	h := startHub(t)
	c := dial(t, h.Addr)
	path := filepath.Join(t.TempDir(), "shared.outbox")
	p, err := client.NewPublisher(t.Context(), c, "shared", client.WithOutbox(path))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p2, err := client.NewPublisher(t.Context(), c, "shared", client.WithOutbox(path))
	if err == nil {
		_ = p2.Close()
		t.Fatal("a second publisher opened an outbox the first one holds")
	}
	if !strings.Contains(err.Error(), "another publisher has it open") {
		t.Errorf("error %q does not say that another publisher holds the outbox", err)
	}
}
