package client

import (
	"runtime"
	"testing"

	"github.com/sluicehq/sluice/core/wire"
)

// TestDecodePullAllocatesForWhatArrived: decodePull sets aside room for the messages of a
// sluice_pull_batch reply before it decodes them. A guess from the first part's message
// count times the number of parts must not be taken as is: a hub that sends a first part of
// many empty messages and then many parts of one message each (all well within what the
// session keeps of a reply) would make the consumer allocate their product: gigabytes for
// a first frame of 16000 empty messages and 30000 parts after it, and the process dies. The
// room set aside stays within what the reply's bytes can hold.
func TestDecodePullAllocatesForWhatArrived(t *testing.T) {
	const first, parts = 2000, 2000
	msgs := make([]wire.StreamMessage, first)
	for i := range msgs {
		msgs[i].Index = uint64(i)
	}
	r := reply{protocol: wire.ProtocolPullBatch}
	r.parts = append(r.parts, wire.PullBatchPart{RequestID: 1, More: true, Messages: msgs}.Append(nil))
	size := len(r.parts[0])
	for i := range parts {
		p := wire.PullBatchPart{RequestID: 1, More: true, Messages: []wire.StreamMessage{{Index: uint64(first + i)}}}.Append(nil)
		r.parts = append(r.parts, p)
		size += len(p)
	}
	r.data = wire.PullBatchPart{RequestID: 1}.Append(nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := decodePull(r, 0)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != first+parts {
		t.Fatalf("decoded %d messages, want %d", len(out), first+parts)
	}
	// The decoded messages themselves take some 32 bytes each, twice over while decoding.
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(10<<20); got > limit {
		t.Fatalf("decoding a reply of %d bytes in %d parts allocated %d bytes, more than %d", size, len(r.parts)+1, got, limit)
	}
}
