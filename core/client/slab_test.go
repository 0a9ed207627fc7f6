package client

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestSlabsKeepQueuedData copies messages of random sizes into the publisher's slabs while
// entries leave the queue from the front at random moments, as confirms pop them, and
// checks after every step that each entry still queued holds exactly its message: a slab
// goes back to the pool, and is written again, only once no queued entry is in it.
func TestSlabsKeepQueuedData(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := &Publisher{}
	type queued struct {
		e    *entry
		want []byte
	}
	var q []queued
	recycled := 0
	for i := range 5000 {
		n := 1 + rng.IntN(slabSize/8+64) // some above slabSize/8: allocations of their own
		want := make([]byte, n)
		for j := range want {
			want[j] = byte(i + j*13)
		}
		e := &entry{}
		p.mu.Lock()
		before := p.slab
		p.copyLocked(e, want)
		if before != nil && p.slab != before {
			recycled++ // counts slab changes; reuse itself is up to the pool
		}
		p.mu.Unlock()
		if (e.slab == nil) != (n > slabSize/8) {
			t.Fatalf("message of %d bytes: in a slab %v", n, e.slab != nil)
		}
		q = append(q, queued{e, want})
		for len(q) > 0 && rng.IntN(3) == 0 { // confirms pop entries from the front
			p.mu.Lock()
			p.releaseLocked(q[0].e)
			p.mu.Unlock()
			if q[0].e.data != nil {
				t.Fatal("a released entry still holds its data")
			}
			q = q[1:]
		}
		if len(q) > 100 { // a window: the oldest are confirmed
			for _, x := range q[:30] {
				p.releaseLocked(x.e)
			}
			q = q[30:]
		}
		for _, x := range q {
			if !bytes.Equal(x.e.data, x.want) {
				t.Fatalf("step %d: a queued %d-byte message was overwritten", i, len(x.want))
			}
		}
	}
	if recycled == 0 {
		t.Fatal("the test never moved to another slab")
	}
}
