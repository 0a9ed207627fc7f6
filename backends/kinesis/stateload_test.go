package kinesis

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// TestStateLoadRacingForget: a shard list loaded while forget ran (another call found the
// stream deleted, or deleted and created again) may be the old stream's. state must not
// cache it: it lists the shards again and caches what it finds then. Before, the old list
// stayed cached until a later call failed on it.
func TestStateLoadRacingForget(t *testing.T) {
	isolateAWSConfig(t)
	var lists atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if r.Header.Get("X-Amz-Target") != "Kinesis_20131202.ListShards" {
			_, _ = w.Write([]byte(`{"StreamNames":[],"HasMoreStreams":false}`)) // Open's check
			return
		}
		// The first list is the old stream's shard, the later ones the new stream's.
		fmt.Fprintf(w, `{"Shards":[{"ShardId":"shardId-00000000000%d","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}}]}`, lists.Add(1))
	}))
	defer srv.Close()
	b, err := core.Open(t.Context(), "kinesis://us-east-1?endpoint="+url.QueryEscape(srv.URL)+"&index=memory://")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	s := b.Storage.(*Store)
	var raced atomic.Bool
	s.hooks.listed = func(stream string) {
		if raced.CompareAndSwap(false, true) {
			s.forget(stream, nil) // as a call that found the stream gone does, meanwhile
		}
	}

	st, err := s.state(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	cached := s.streams["x"]
	s.mu.Unlock()
	if got := st.parts[0].shardID; got != "shardId-000000000002" || cached != st || lists.Load() != 2 {
		t.Fatalf("state returned shard %s after %d lists, cached %p (returned %p); want the shard of the second list, cached", got, lists.Load(), cached, st)
	}
}
