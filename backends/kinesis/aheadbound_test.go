package kinesis

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/sluicehq/sluice/core"
)

// TestReadAheadBoundedOverPartitions: the messages that Fetches read past their limit and
// keep for the Fetch that continues are bounded over all partitions of a Store, not only
// per partition (8 positions of up to 4 MiB each): a Store reading many partitions, or
// readers that went away and never take what was kept, would hold memory without bound.
// What forget drops is given back. The fake endpoint lists the shards; no record is read.
func TestReadAheadBoundedOverPartitions(t *testing.T) {
	const shards = 32
	s := fakeStore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		var b strings.Builder
		for i := range shards {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"ShardId":"shardId-%012d","HashKeyRange":{"StartingHashKey":"%d","EndingHashKey":"%d"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}}`, i, i, i)
		}
		fmt.Fprintf(w, `{"Shards":[%s]}`, b.String())
	}), nil)
	st, err := s.state(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	// As a Fetch keeps them: at most maxAheadBytes per position, maxCachedIters positions.
	data := make([]byte, maxAheadBytes/2)
	ahead := []core.Message{{Index: 1, Data: data}, {Index: 2, Data: data}}
	for _, part := range st.parts {
		for next := range uint64(maxCachedIters) {
			part.iters.put(next, aws.String("it"), ahead)
		}
	}
	kept := 0
	for _, part := range st.parts {
		for next := range uint64(maxCachedIters) {
			if _, got, ok := part.iters.take(next); ok {
				for _, m := range got {
					kept += len(m.Data)
				}
				part.iters.put(next, aws.String("it"), got) // keep it for below
			}
		}
	}
	if kept > maxAheadTotal {
		t.Fatalf("%d partitions keep %d MiB read ahead; want at most %d MiB over all", shards, kept>>20, maxAheadTotal>>20)
	}
	// Forgetting the stream gives its read-ahead back: the state loaded next keeps again.
	s.forget("s", nil)
	st, err = s.state(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	st.parts[0].iters.put(0, aws.String("it"), ahead)
	if _, got, ok := st.parts[0].iters.take(0); !ok || len(got) != 2 {
		t.Fatalf("after forget, a partition of the stream loaded again keeps nothing read ahead (%v, %d messages): the forgotten state's bytes were not given back", ok, len(got))
	}
}
