package hub_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/backends/bbolt"
	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// TestRetentionSkipped checks what an operator sees when a consumer is further behind than
// the backend keeps (bbolt with max_messages): the pull answers from the oldest message
// kept, the messages deleted before they were read are counted in
// Metrics.RetentionSkipped, and one warning names the stream, the partition, the index
// asked for and how many were skipped. A consumer that keeps up skips nothing.
func TestRetentionSkipped(t *testing.T) {
	const keep, pushed = 3, 10
	s, err := bbolt.New(context.Background(), filepath.Join(t.TempDir(), "hub.db"), &bbolt.Options{MaxMessagesPerPartition: keep})
	if err != nil {
		t.Fatal(err)
	}
	b := &core.Backend{Storage: s, Index: s}
	defer b.Close()
	var logs hubtest.LogBuffer
	h, addr := hubtest.Start(t, b, hub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	hub.SetWarnEvery(h, time.Hour) // one warning in this test, however slow
	c := hubtest.Dial(t, addr)

	kept := c.Create("")
	for i := range pushed {
		if pc := c.Push(kept, uint64(i), []byte(fmt.Sprint(i))); pc.Status != 0 {
			t.Fatalf("push %d: %+v", i, pc)
		}
	}
	// A consumer that read each message as it came skips nothing.
	caughtUp := c.Create("")
	for i := range pushed {
		c.Push(caughtUp, uint64(i), []byte(fmt.Sprint(i)))
		if r := c.Pull(caughtUp, uint64(i), uint64(i), 10); len(r.Messages) != 1 || r.Messages[0].Index != uint64(i) {
			t.Fatalf("caught-up pull %d: %+v", i, r.Messages)
		}
	}
	if got := h.Metrics().RetentionSkipped; got != 0 {
		t.Fatalf("metrics retention_skipped = %d after pulls that kept up, want 0", got)
	}

	r := c.Pull(kept, 100, 2, 10) // indexes 2..6 were deleted
	if len(r.Messages) != keep || r.Messages[0].Index != pushed-keep {
		t.Fatalf("pull from 2 got %+v, want the %d kept messages from %d", r.Messages, keep, pushed-keep)
	}
	if got, want := h.Metrics().RetentionSkipped, uint64(pushed-keep-2); got != want {
		t.Errorf("metrics retention_skipped = %d, want %d", got, want)
	}
	c.Pull(kept, 101, 0, 10) // the same consumer again, from further back: counted again
	if got, want := h.Metrics().RetentionSkipped, uint64(pushed-keep-2+pushed-keep); got != want {
		t.Errorf("metrics retention_skipped = %d after a second pull, want %d", got, want)
	}
	var warned []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") {
			warned = append(warned, line)
		}
	}
	if want := fmt.Sprintf("stream=%s partition=0 from=2 skipped=%d pulls=1 ", kept.Name, pushed-keep-2); len(warned) != 1 ||
		!strings.Contains(warned[0], "retention") || !strings.Contains(warned[0], want) {
		t.Fatalf("warnings %q, want one about retention with %q", warned, want)
	}
}
