package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
)

// pollInterval is how often readAll polls for messages a Harness.MaxWait allows to appear late.
const pollInterval = 50 * time.Millisecond

// append appends msgs to stream/partition, checks the reported indexes (one per message,
// strictly increasing) and returns them.
func (e *env) append(stream string, p int, msgs ...[]byte) []uint64 {
	e.t.Helper()
	idx, err := e.storage().Append(e.ctx, stream, p, msgs)
	if err != nil {
		e.t.Fatalf("Append(%q, %d, %d message(s)): %v", stream, p, len(msgs), err)
	}
	if len(idx) != len(msgs) {
		e.t.Fatalf("Append(%q, %d) of %d message(s) reported %d index(es); want one per message", stream, p, len(msgs), len(idx))
	}
	for i := 1; i < len(idx); i++ {
		if idx[i] <= idx[i-1] {
			e.t.Fatalf("Append(%q, %d) reported index %d for message %d after index %d for message %d; indexes must be strictly increasing in append order", stream, p, idx[i], i, idx[i-1], i-1)
		}
	}
	return idx
}

// fill appends n messages made by msg(i) in batches of up to 100 and returns their indexes.
func (e *env) fill(stream string, p, n int, msg func(i int) []byte) []uint64 {
	e.t.Helper()
	var all []uint64
	for i := 0; i < n; {
		batch := make([][]byte, 0, 100)
		for ; i < n && len(batch) < 100; i++ {
			batch = append(batch, msg(i))
		}
		idx := e.append(stream, p, batch...)
		if len(all) > 0 && idx[0] <= all[len(all)-1] {
			e.t.Fatalf("Append(%q, %d) reported index %d after an earlier Append reported %d; indexes must be strictly increasing in append order", stream, p, idx[0], all[len(all)-1])
		}
		all = append(all, idx...)
	}
	return all
}

// fetch calls Fetch and checks the invariants every result must meet: at most limit
// messages, indexes >= from and strictly increasing.
func (e *env) fetch(stream string, p int, from uint64, limit int) []core.Message {
	e.t.Helper()
	ms, err := e.storage().Fetch(e.ctx, stream, p, from, limit)
	if err != nil {
		e.t.Fatalf("Fetch(%q, %d, from=%d, limit=%d): %v", stream, p, from, limit, err)
	}
	if len(ms) > limit {
		e.t.Fatalf("Fetch(%q, %d, from=%d, limit=%d) returned %d messages, more than the limit", stream, p, from, limit, len(ms))
	}
	for i, m := range ms {
		if m.Index < from {
			e.t.Fatalf("Fetch(%q, %d, from=%d) returned index %d, below from", stream, p, from, m.Index)
		}
		if i > 0 && m.Index <= ms[i-1].Index {
			e.t.Fatalf("Fetch(%q, %d, from=%d) returned index %d after index %d; indexes must be strictly increasing", stream, p, from, m.Index, ms[i-1].Index)
		}
	}
	return ms
}

// readAll pages through stream/partition from `from`, limit messages per Fetch, until an
// empty result, and returns everything read. With Harness.MaxWait it keeps polling until
// it has read at least want messages or MaxWait has passed.
func (e *env) readAll(stream string, p int, from uint64, limit, want int) []core.Message {
	e.t.Helper()
	var all []core.Message
	deadline := time.Now().Add(e.h.MaxWait)
	for {
		ms := e.fetch(stream, p, from, limit)
		if len(ms) == 0 {
			if len(all) >= want || e.h.MaxWait <= 0 || time.Now().After(deadline) {
				return all
			}
			select {
			case <-e.ctx.Done():
				e.t.Fatalf("reading %q partition %d: %v", stream, p, e.ctx.Err())
			case <-time.After(pollInterval):
			}
			continue
		}
		all = append(all, ms...)
		from = ms[len(ms)-1].Index + 1
	}
}

// expectMessages checks that got holds exactly want's messages, in order, with the indexes
// Append reported.
func (e *env) expectMessages(what string, got []core.Message, wantIdx []uint64, want [][]byte) {
	e.t.Helper()
	if len(got) != len(want) {
		e.t.Fatalf("%s: read %d message(s), want %d%s", what, len(got), len(want), describeGap(got, wantIdx))
	}
	for i := range got {
		if got[i].Index != wantIdx[i] {
			e.t.Fatalf("%s: message %d has index %d, but Append reported %d", what, i, got[i].Index, wantIdx[i])
		}
		if !bytes.Equal(got[i].Data, want[i]) {
			e.t.Fatalf("%s: message %d (index %d) has %d bytes %s, want %d bytes %s", what, i, got[i].Index, len(got[i].Data), preview(got[i].Data), len(want[i]), preview(want[i]))
		}
	}
}

// describeGap names the first reported index missing from got, to make a lost-message failure readable.
func describeGap(got []core.Message, wantIdx []uint64) string {
	have := make(map[uint64]bool, len(got))
	for _, m := range got {
		have[m.Index] = true
	}
	for _, i := range wantIdx {
		if !have[i] {
			return fmt.Sprintf(" (first missing: index %d)", i)
		}
	}
	return ""
}

// preview renders the start of b for failure messages.
func preview(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%x...", b[:16])
	}
	return fmt.Sprintf("%x", b)
}

// expectErr checks that err matches target.
func expectErr(t T, what string, err, target error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error, want one matching %v", what, target)
		return
	}
	if !errors.Is(err, target) {
		hint := ""
		if strings.Contains(err.Error(), target.Error()) {
			hint = "; its text contains it, but errors.Is does not find it: wrap the sentinel with %w"
		}
		t.Errorf("%s: got error %q, want one matching %v (errors.Is)%s", what, err, target, hint)
	}
}

// msgs returns n messages "<label>-<i>".
func msgs(label string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%d", label, i)
	}
	return out
}

// invalidNames are stream names every backend must reject with ErrInvalidArgument.
var invalidNames = []string{
	"",
	".",
	"..",
	"has space",
	"slash/inside",
	"ünïcode",
	"nul\x00byte",
	string(bytes.Repeat([]byte("a"), core.MaxStreamNameLen+1)),
}

// goTest runs f on a new goroutine of wg, as the concurrent tests run backend calls: a
// panic there fails t with the panic value and stack, as one in the test's own goroutine
// does, instead of ending the process (and, under `sluice conformance`, the report).
func goTest(t T, wg *sync.WaitGroup, f func()) {
	wg.Go(func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("panic in a backend call: %v\n%s", p, debug.Stack())
			}
		}()
		f()
	})
}
