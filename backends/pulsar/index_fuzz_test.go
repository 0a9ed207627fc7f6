package pulsar

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/sluicehq/sluice/core"
)

// FuzzToIndex: toIndex and endIndex never panic on broker ids, and toIndex is invertible
// (fromIndex) and order-preserving on what it accepts.
func FuzzToIndex(f *testing.F) {
	f.Add(int64(0), int64(0), int32(-1), int64(1), int64(0))
	f.Add(int64(MaxLedgerID), int64(MaxEntryID), int32(-1), int64(MaxLedgerID), int64(MaxEntryID-1))
	f.Add(int64(MaxLedgerID+1), int64(0), int32(2), int64(-1), int64(-1))
	f.Fuzz(func(t *testing.T, l1, e1 int64, batch int32, l2, e2 int64) {
		a := pulsar.NewMessageID(l1, e1, batch, 0)
		_, _, _ = endIndex(a)
		ia, erra := toIndex(a)
		ib, errb := toIndex(pulsar.NewMessageID(l2, e2, -1, 0))
		if back := fromIndex(ia, 0); erra == nil && (back.LedgerID() != l1 || back.EntryID() != e1) {
			t.Fatalf("fromIndex(toIndex(%d:%d)) = %v", l1, e1, back)
		}
		if erra == nil && errb == nil && (l1 < l2 || l1 == l2 && e1 < e2) != (ia < ib) {
			t.Fatalf("%d:%d, %d:%d map to %d, %d", l1, e1, l2, e2, ia, ib)
		}
	})
}

// FuzzAdminPartitions feeds arbitrary admin API answers to admin.partitions: a count it
// returns without error is 0 (no such topic) or one a stream can have.
func FuzzAdminPartitions(f *testing.F) {
	f.Add(200, []byte(`{"partitions":3}`))
	f.Add(200, []byte(`{"partitions":-1}`))
	f.Add(404, []byte(`{"reason":"Topic not found"}`))
	var answer atomic.Pointer[[]byte]
	var status atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write(*answer.Load())
	}))
	defer srv.Close()
	a := &admin{base: srv.URL, hc: srv.Client(), tenant: "public", ns: "default"}
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		status.Store(int64(min(max(code, 200), 599)))
		answer.Store(&body)
		if n, err := a.partitions(context.Background(), "s"); err == nil && (n < 0 || n > core.MaxPartitions) {
			t.Fatalf("partitions = %d from HTTP %d %q", n, status.Load(), body)
		}
	})
}

// FuzzPartitionEnd feeds arbitrary admin API answers to partitionEnd (the lastMessageId of
// a partition, read by every Fetch that catches up): it never panics, and an end it returns
// without error is 0 (nothing persisted) or one past an index that maps back to the
// ledger and entry of the answer.
func FuzzPartitionEnd(f *testing.F) {
	f.Add(200, []byte(`{"ledgerId":12,"entryId":3,"partitionIndex":0}`))
	f.Add(200, []byte(`{"ledgerId":12,"entryId":-1}`))
	f.Add(200, []byte(`{"ledgerId":68719476736,"entryId":0}`))
	f.Add(404, []byte(`{"reason":"Topic not found"}`))
	var answer atomic.Pointer[[]byte]
	var status atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write(*answer.Load())
	}))
	defer srv.Close()
	s := &Store{admin: &admin{base: srv.URL, hc: srv.Client(), tenant: "public", ns: "default"}}
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		status.Store(int64(min(max(code, 200), 599)))
		answer.Store(&body)
		end, err := s.partitionEnd(context.Background(), "s", 0)
		if err != nil || end == 0 {
			return
		}
		var last struct {
			LedgerID int64 `json:"ledgerId"`
			EntryID  int64 `json:"entryId"`
		}
		if jerr := json.Unmarshal(body, &last); jerr != nil {
			t.Fatalf("partitionEnd = %d from an answer that is not JSON: %q", end, body)
		}
		if id := fromIndex(end-1, 0); id.LedgerID() != last.LedgerID || id.EntryID() != last.EntryID {
			t.Fatalf("partitionEnd = %d (%d:%d) from %q", end, id.LedgerID(), id.EntryID(), body)
		}
	})
}
