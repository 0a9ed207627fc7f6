package kinesis_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// TestRecoverAfterForeignNewestRecord: a store appends indexes n..n+4 and closes; then a
// record it did not write lands last in the shard. A store opened then must not hand out
// an index again (a consumer that saved n+5 would skip messages, and a Fetch would return
// two messages under one index): after a corrupt record in Sluice's format, which may hold
// indexes from n+5 on, and after a well-formed one whose index is below the last, numbering
// continues at the current time in nanoseconds, as in an empty shard. A record in another
// format is skipped as before: numbering continues at n+5.
func TestRecoverAfterForeignNewestRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   []byte
		nowSeq bool // the next index is the time in nanoseconds, else 5
	}{
		{"corrupt", []byte{1, 0, 0, 0, 0, 0, 0, 0, 5, 0xff}, true},       // version 1, first 5, a truncated length
		{"lower index", []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'x'}, true}, // version 1, first 1, one message "x"
		{"other format", []byte(`{"not":"sluice"}`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c := client(t, nil)
			s1, name := newStreamToReopen(t, ctx, c, "foreign-")
			idx, err := s1.Append(ctx, name, 0, [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d"), []byte("e")})
			if err != nil || idx[4] != idx[0]+4 {
				t.Fatalf("Append = %v, %v; want 5 consecutive indexes", idx, err)
			}
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.PutRecord(ctx, &awskinesis.PutRecordInput{
				StreamName: aws.String("sluice-" + name), Data: tc.data, PartitionKey: aws.String("someone-else"),
			}); err != nil {
				t.Fatal(err)
			}

			before := uint64(time.Now().UnixNano())
			s2 := openStore(t, c, nil)
			got, err := s2.Append(ctx, name, 0, [][]byte{[]byte("f")})
			if err != nil {
				t.Fatal(err)
			}
			if tc.nowSeq && got[0] < before {
				t.Fatalf("Append after a foreign newest record got index %d; want the time in nanoseconds, at least %d", got[0], before)
			}
			if !tc.nowSeq && got[0] != idx[4]+1 {
				t.Fatalf("Append after a record in another format got index %d; want %d", got[0], idx[4]+1)
			}
			msgs, err := s2.Fetch(ctx, name, 0, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var seen []uint64
			for _, m := range msgs {
				seen = append(seen, m.Index)
			}
			if len(msgs) != 6 || msgs[0].Index != idx[0] || msgs[4].Index != idx[4] || string(msgs[5].Data) != "f" || msgs[5].Index != got[0] {
				t.Fatalf("Fetch from 0 = indexes %v; want %v and %d (\"f\")", seen, idx, got[0])
			}
		})
	}
}
