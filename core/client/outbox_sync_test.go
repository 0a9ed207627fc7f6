package client

import (
	"path/filepath"
	"testing"
)

// TestOutboxIsSynced checks that the outbox database commits with fsync: Publish returns
// once a message is in the outbox, which must then survive a power loss, not only a crash
// of the process.
func TestOutboxIsSynced(t *testing.T) {
	ob, items, err := openOutbox(filepath.Join(t.TempDir(), "outbox.db"), "s", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.close()
	if len(items) != 0 {
		t.Fatalf("a new outbox holds %d messages", len(items))
	}
	if ob.db.NoSync {
		t.Fatal("the outbox database skips fsync (NoSync)")
	}
}
