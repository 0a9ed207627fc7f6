package kafka_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestFetchBelowLogStart deletes the oldest records of a partition (as retention does) and
// fetches from index 0: Fetch must return the messages left, from the log start offset on,
// not an empty "caught up" result that would stall a consumer behind retention for good.
func TestFetchBelowLogStart(t *testing.T) {
	s := dial(t)
	name := fmt.Sprintf("logstart-%d", time.Now().UnixNano())
	createStream(t, s, name, 1)
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, fmt.Appendf(nil, "m%d", i))
	}
	idx, err := s.Append(t.Context(), name, 0, msgs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	adm := kadm.NewClient(s.Client())
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: s.Topic(name), Partition: 0, At: int64(idx[5])})
	resps, err := adm.DeleteRecords(t.Context(), os)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	for _, from := range []uint64{0, idx[2]} {
		got, err := s.Fetch(t.Context(), name, 0, from, 100)
		if err != nil {
			t.Fatalf("Fetch(%d): %v", from, err)
		}
		if len(got) != 5 || got[0].Index != idx[5] || string(got[0].Data) != "m5" {
			t.Fatalf("Fetch(%d) after the records below %d were deleted returned %d messages (first %v); want the 5 left, from index %d", from, idx[5], len(got), got, idx[5])
		}
	}
}
