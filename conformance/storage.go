package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
)

// maxTestedMessageSize caps the message the MaxMessageSize subtest allocates; a backend
// declaring more is tested at this size, and one byte over its declared limit is not tried.
const maxTestedMessageSize = 64 << 20

// mixedSizesBig caps the size of the large messages of the AppendFetch/MixedSizes subtest:
// its eight large messages then add up to more than the 1 MiB many brokers return per fetch.
const mixedSizesBig = 160 << 10

// readWritePoll is how long a reader of the ConcurrentReadWrite subtest waits when caught up
// before fetching again while the appenders still run.
const readWritePoll = 10 * time.Millisecond

// maxCreatedPartitions caps the partition count the MaxPartitions subtest creates.
const maxCreatedPartitions = 64

// orderBigBatch is how many messages the Order subtest appends in one batch.
const orderBigBatch = 600

// StorageTests runs the Storage conformance subtests against the backend h opens, as
// subtests of t. [RunStorage] is the `go test` entry point; [Run] the one for other programs.
func StorageTests(t T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatalf("conformance: Harness.Open is nil")
	}
	if err := h.checkPrefix(); err != nil {
		t.Fatalf("%v", err)
	}
	for _, st := range storageTests {
		t.Run(st.name, func(t T) { st.fn(t, h) })
	}
}

type namedTest struct {
	name string
	fn   func(t T, h Harness)
}

var storageTests = []namedTest{
	{"Capabilities", testCapabilities},
	{"CreateStream", testCreateStream},
	{"AppendFetch", testAppendFetch},
	{"Order", testOrder},
	{"Index", testIndex},
	{"Fetch", testFetch},
	{"Append", testAppend},
	{"MaxMessageSize", testMaxMessageSize},
	{"ConcurrentAppend", testConcurrentAppend},
	{"ConcurrentReaders", testConcurrentReaders},
	{"ConcurrentReadWrite", testConcurrentReadWrite},
	{"Isolation", testIsolation},
	{"Persistence", testPersistence},
	{"Cancelled", testCancelled},
	{"Closed", testClosed},
	{"StreamDeleter", testStreamDeleter},
	{"PartitionCounter", testPartitionCounter},
	{"AppendAsync", testAppendAsync},
}

// sub runs fn as a subtest with its own env (its own backend and streams).
func sub(t T, h Harness, name string, fn func(t T, e *env)) {
	t.Helper()
	t.Run(name, func(t T) { fn(t, newEnv(t, h)) })
}

func testCapabilities(t T, h Harness) {
	e := newEnv(t, h)
	c := e.caps()
	t.Logf("capabilities: %v", c)
	if c.Name == "" {
		t.Errorf("Capabilities().Name is empty; want the backend's short name")
	}
	if c.MaxMessageSize <= 0 {
		t.Errorf("Capabilities().MaxMessageSize = %d; want > 0", c.MaxMessageSize)
	}
	if c.MaxPartitions <= 0 || c.MaxPartitions > core.MaxPartitions {
		t.Errorf("Capabilities().MaxPartitions = %d; want 1..%d (core.MaxPartitions)", c.MaxPartitions, core.MaxPartitions)
	}
	if c.NativeIndexStorage && e.backend().Index == nil {
		t.Errorf("Capabilities().NativeIndexStorage is declared but the backend has no IndexStorage")
	}
}

func testCreateStream(t T, h Harness) {
	sub(t, h, "New", func(t T, e *env) {
		n := e.create("new", 1)
		if got := e.fetch(n, 0, 0, 10); len(got) != 0 {
			t.Errorf("Fetch of a new stream returned %d messages, want none", len(got))
		}
	})
	sub(t, h, "Idempotent", func(t T, e *env) {
		maxParts := e.caps().MaxPartitions
		parts := min(2, maxParts)
		n := e.create("idem", parts)
		last := parts - 1
		kept := [][]byte{[]byte("kept")}
		keptLast := [][]byte{[]byte("kept in the last partition")}
		idx := e.append(n, 0, kept...)
		idxLast := idx
		if last > 0 {
			idxLast = e.append(n, last, keptLast...)
		} else {
			keptLast = kept
		}
		// Asking for fewer or more partitions than the stream has changes nothing.
		asks := []int{1}
		if parts < maxParts {
			asks = append(asks, parts+1)
		}
		for _, ask := range asks {
			got, err := e.storage().CreateStream(e.ctx, n, ask)
			if err != nil {
				t.Fatalf("CreateStream(%q, %d) of an existing stream: %v; want the existing partition count and no error", n, ask, err)
			}
			if got != parts {
				t.Errorf("CreateStream(%q, %d) of an existing stream with %d partitions returned %d; want %d", n, ask, parts, got, parts)
			}
			what := fmt.Sprintf("after re-creating the stream with %d partition(s)", ask)
			e.expectMessages(what+", partition 0", e.readAll(n, 0, 0, 10, 1), idx, kept)
			e.expectMessages(fmt.Sprintf("%s, partition %d", what, last), e.readAll(n, last, 0, 10, 1), idxLast, keptLast)
			if parts < maxParts {
				_, err := e.storage().Fetch(e.ctx, n, parts, 0, 1)
				expectErr(t, fmt.Sprintf("%s: Fetch of partition %d of a %d-partition stream", what, parts, parts), err, core.ErrInvalidArgument)
			}
			if pc, ok := e.storage().(core.PartitionCounter); ok {
				if got, err := pc.Partitions(e.ctx, n); err != nil || got != parts {
					t.Errorf("%s: Partitions(%q) = %d, %v; want %d, nil", what, n, got, err, parts)
				}
			}
		}
	})
	sub(t, h, "Concurrent", func(t T, e *env) {
		// Creators race to create one new stream, asking for different partition counts,
		// and each appends a message as soon as its CreateStream returned: all must get the
		// same count, and no message may be lost to a creator that created it again.
		n := e.name("conccreate")
		const creators = 8
		asks := min(3, e.caps().MaxPartitions)
		counts := make([]int, creators)
		idx := make([]uint64, creators)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for c := range creators {
			goTest(t, &wg, func() {
				<-start
				got, err := e.storage().CreateStream(e.ctx, n, 1+c%asks)
				if err != nil {
					t.Errorf("creator %d: CreateStream(%q, %d): %v", c, n, 1+c%asks, err)
					return
				}
				counts[c] = got
				ix, err := e.storage().Append(e.ctx, n, 0, [][]byte{fmt.Appendf(nil, "creator-%d", c)})
				if err != nil {
					t.Errorf("creator %d: Append after CreateStream: %v", c, err)
					return
				}
				if len(ix) != 1 {
					t.Errorf("creator %d: Append of one message reported %d indexes", c, len(ix))
					return
				}
				idx[c] = ix[0]
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		for c := range counts {
			if counts[c] != counts[0] {
				t.Fatalf("concurrent CreateStream(%q) calls returned partition counts %v; want the same count from every call", n, counts)
			}
		}
		if counts[0] < 1 || counts[0] > asks {
			t.Errorf("concurrent CreateStream(%q) calls asking for 1..%d partitions all returned %d", n, asks, counts[0])
		}
		byIndex := make(map[uint64]int, creators)
		for c, ix := range idx {
			if prev, dup := byIndex[ix]; dup {
				t.Fatalf("index %d was reported to creator %d and to creator %d", ix, prev, c)
			}
			byIndex[ix] = c
		}
		got := e.readAll(n, 0, 0, 100, creators)
		if len(got) != creators {
			t.Fatalf("read %d message(s) after %d creators each appended one, want %d%s", len(got), creators, creators, describeGap(got, slices.Sorted(maps.Keys(byIndex))))
		}
		for _, m := range got {
			c, ok := byIndex[m.Index]
			if !ok || string(m.Data) != fmt.Sprintf("creator-%d", c) {
				t.Fatalf("Fetch returned %d:%q, which no creator's Append reported", m.Index, m.Data)
			}
		}
	})
	sub(t, h, "ValidNames", func(t T, e *env) {
		// Every name core.ValidateStreamName accepts must work: upper case, '.', '_' and
		// exactly core.MaxStreamNameLen characters.
		mixed := e.name("Mixed.Case_Name")
		long := e.name("long")
		if len(long) < core.MaxStreamNameLen {
			long += strings.Repeat("9", core.MaxStreamNameLen-len(long))
			e.track(long)
		}
		for _, name := range []string{mixed, long} {
			e.create2(name, 1)
			want := [][]byte{[]byte("in " + name)}
			idx := e.append(name, 0, want...)
			e.expectMessages(fmt.Sprintf("stream %.30q... (%d characters)", name, len(name)), e.readAll(name, 0, 0, 10, 1), idx, want)
		}
	})
	sub(t, h, "InvalidName", func(t T, e *env) {
		for _, name := range invalidNames {
			_, err := e.storage().CreateStream(e.ctx, name, 1)
			expectErr(t, fmt.Sprintf("CreateStream(%.30q, 1)", name), err, core.ErrInvalidArgument)
		}
	})
	sub(t, h, "InvalidPartitionCount", func(t T, e *env) {
		for _, n := range []int{0, -1, e.caps().MaxPartitions + 1} {
			name := e.name("badcount")
			_, err := e.storage().CreateStream(e.ctx, name, n)
			expectErr(t, fmt.Sprintf("CreateStream(%q, %d)", name, n), err, core.ErrInvalidArgument)
			_, err = e.storage().Fetch(e.ctx, name, 0, 0, 1)
			expectErr(t, fmt.Sprintf("Fetch of %q after a rejected CreateStream", name), err, core.ErrStreamNotFound)
		}
	})
	sub(t, h, "MaxPartitions", func(t T, e *env) {
		maxParts := e.caps().MaxPartitions
		if maxParts > maxCreatedPartitions && !h.CreateMaxPartitions {
			t.Skipf("MaxPartitions %d is more than the %d partitions this suite creates unless Harness.CreateMaxPartitions (sluice conformance -create-max-partitions) is set; the rejection of %d is checked by InvalidPartitionCount", maxParts, maxCreatedPartitions, maxParts+1)
		}
		n := e.create("maxparts", maxParts)
		last := maxParts - 1
		idx := e.append(n, last, []byte("last partition"))
		e.expectMessages("last partition", e.readAll(n, last, 0, 10, 1), idx, [][]byte{[]byte("last partition")})
	})
}

func testAppendFetch(t T, h Harness) {
	roundTrip := func(t T, e *env, label string, want [][]byte) {
		n := e.create(label, 1)
		idx := e.append(n, 0, want...)
		e.expectMessages("round trip", e.readAll(n, 0, 0, len(want)+1, len(want)), idx, want)
	}
	sub(t, h, "AllByteValues", func(t T, e *env) {
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		rev := bytes.Clone(all)
		for i := range rev {
			rev[i] = 255 - byte(i)
		}
		roundTrip(t, e, "bytes", [][]byte{all, rev, {0}, {0xff}, []byte("\x00\x00\r\n\x00")})
	})
	sub(t, h, "EmptyMessage", func(t T, e *env) {
		roundTrip(t, e, "empty", [][]byte{{}, []byte("x"), nil, {}})
	})
	sub(t, h, "SingleAppends", func(t T, e *env) {
		n := e.create("single", 1)
		want := msgs("single", 5)
		var idx []uint64
		for _, m := range want {
			idx = append(idx, e.append(n, 0, m)...)
		}
		e.expectMessages("single appends", e.readAll(n, 0, 0, 10, len(want)), idx, want)
	})
	sub(t, h, "EmptyBatch", func(t T, e *env) {
		n := e.create("emptybatch", 1)
		for _, batch := range [][][]byte{nil, {}} {
			idx, err := e.storage().Append(e.ctx, n, 0, batch)
			if err != nil {
				t.Fatalf("Append(%q, 0) of an empty batch: %v; want no error", n, err)
			}
			if len(idx) != 0 {
				t.Errorf("Append of an empty batch reported %d indexes, want none", len(idx))
			}
		}
		if got := e.fetch(n, 0, 0, 10); len(got) != 0 {
			t.Errorf("Fetch after empty-batch appends returned %d messages, want none", len(got))
		}
	})
	sub(t, h, "MixedSizes", func(t T, e *env) {
		// Large messages between small and empty ones, more bytes than one Fetch of many
		// brokers returns: a backend that bounds a Fetch by bytes must stop before a message
		// that does not fit, never skip it.
		big := min(e.caps().MaxMessageSize, mixedSizesBig)
		n := e.create("mixed", 1)
		var want [][]byte
		var idx []uint64
		for i := range 16 {
			size := big - i
			switch i % 4 {
			case 1:
				size = min(1+i, big)
			case 3:
				size = 0
			}
			m := bytes.Repeat([]byte{byte('a' + i)}, max(size, 0))
			want = append(want, m)
			idx = append(idx, e.append(n, 0, m)...) // one per Append: some brokers bound a batch's bytes
		}
		for _, limit := range []int{100, 3} {
			e.expectMessages(fmt.Sprintf("messages of %d bytes and less, read with limit %d", big, limit), e.readAll(n, 0, 0, limit, len(want)), idx, want)
		}
	})
	sub(t, h, "NotRetained", func(t T, e *env) {
		n := e.create("retain", 1)
		m := []byte("original")
		idx := e.append(n, 0, m)
		copy(m, "MUTATED!")
		got := e.readAll(n, 0, 0, 10, 1)
		e.expectMessages("after the caller changed its slice", got, idx, [][]byte{[]byte("original")})
		copy(got[0].Data, "MUTATED!")
		e.expectMessages("after the caller changed a fetched slice", e.readAll(n, 0, 0, 10, 1), idx, [][]byte{[]byte("original")})
	})
}

func testOrder(t T, h Harness) {
	e := newEnv(t, h)
	n := e.create("order", 1)
	want := msgs("order", 500)
	idx := e.fill(n, 0, len(want), func(i int) []byte { return want[i] })
	e.expectMessages("500 messages in 5 batches", e.readAll(n, 0, 0, 1000, len(want)), idx, want)
	// Append takes a batch of any length: one above the per-request record limits of
	// brokers (Kinesis PutRecords takes 500) must be split by the backend, not refused or cut.
	big := msgs("big", orderBigBatch)
	bigIdx := e.append(n, 0, big...)
	if bigIdx[0] <= idx[len(idx)-1] {
		t.Fatalf("Append of %d messages reported index %d after an earlier Append reported %d; indexes must be strictly increasing in append order", len(big), bigIdx[0], idx[len(idx)-1])
	}
	e.expectMessages(fmt.Sprintf("500 messages in 5 batches, then %d in one", len(big)), e.readAll(n, 0, 0, 1000, len(want)+len(big)), append(idx, bigIdx...), append(want, big...))
}

func testIndex(t T, h Harness) {
	sub(t, h, "StrictlyIncreasing", func(t T, e *env) {
		n := e.create("incr", 1)
		var all []uint64
		var returned [][]uint64 // the slices Append returned, as returned: the caller's
		for i := 0; i < 5; i++ {
			idx := e.append(n, 0, msgs(fmt.Sprint(i), i+1)...)
			if len(all) > 0 && idx[0] <= all[len(all)-1] {
				t.Fatalf("Append %d reported index %d after an earlier Append reported %d; indexes must be strictly increasing and unique", i, idx[0], all[len(all)-1])
			}
			returned = append(returned, idx)
			all = append(all, idx...)
		}
		for i, at := 0, 0; i < len(returned); i++ {
			if want := all[at : at+len(returned[i])]; !slices.Equal(returned[i], want) {
				t.Fatalf("the slice Append %d returned held %v, but after later Appends holds %v; it belongs to the caller: the backend must not reuse it", i, want, returned[i])
			}
			at += len(returned[i])
		}
		got := e.readAll(n, 0, 0, 100, len(all))
		if len(got) != len(all) {
			t.Fatalf("read %d messages, want %d%s", len(got), len(all), describeGap(got, all))
		}
		for i := range got {
			if got[i].Index != all[i] {
				t.Errorf("message %d: Fetch returned index %d, Append reported %d", i, got[i].Index, all[i])
			}
		}
	})
	sub(t, h, "FetchFromReportedIndex", func(t T, e *env) {
		n := e.create("fromidx", 1)
		want := msgs("m", 10)
		idx := e.append(n, 0, want...)
		e.readAll(n, 0, 0, 100, len(want)) // wait for visibility
		for i := range idx {
			got := e.fetch(n, 0, idx[i], 1)
			if len(got) != 1 || got[0].Index != idx[i] || !bytes.Equal(got[0].Data, want[i]) {
				t.Errorf("Fetch(from=%d, limit=1) = %v; want exactly message %d %q", idx[i], summary(got), i, want[i])
			}
		}
	})
	sub(t, h, "Dense", func(t T, e *env) {
		if !e.caps().DenseIndex {
			t.Skipf("backend %q does not declare DenseIndex: indexes may have gaps", e.caps().Name)
		}
		n := e.create("dense", 1)
		var all []uint64
		all = append(all, e.append(n, 0, msgs("a", 3)...)...)
		all = append(all, e.append(n, 0, []byte("b"))...)
		all = append(all, e.append(n, 0, msgs("c", 4)...)...)
		for i, ix := range all {
			if ix != uint64(i) {
				t.Fatalf("DenseIndex is declared but message %d of a new partition got index %d (all: %v); want 0, 1, 2, ...", i, ix, all)
			}
		}
		got := e.readAll(n, 0, 0, 100, len(all))
		for i, m := range got {
			if m.Index != uint64(i) {
				t.Fatalf("DenseIndex is declared but Fetch returned index %d for message %d; want %d", m.Index, i, i)
			}
		}
		// Every partition starts at 0, not only the first: each has indexes of its own,
		// also once another partition of the stream has messages.
		parts := min(3, e.caps().MaxPartitions)
		if parts < 2 {
			return
		}
		np := e.create("dense-parts", parts)
		for p := range parts {
			e.append(np, p, msgs(fmt.Sprintf("p%d", p), p+1)...)
		}
		for p := range parts {
			got := e.readAll(np, p, 0, 100, p+1)
			if len(got) != p+1 {
				t.Fatalf("partition %d: read %d message(s), want %d", p, len(got), p+1)
			}
			for i, m := range got {
				if m.Index != uint64(i) {
					t.Fatalf("DenseIndex is declared but message %d of partition %d (of %d, appended to in order) has index %d; want 0, 1, 2, ... in every partition", i, p, parts, m.Index)
				}
			}
		}
	})
}

// summary renders fetched messages for failure messages.
func summary(ms []core.Message) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i == 8 {
			fmt.Fprintf(&b, "... %d more", len(ms)-i)
			break
		}
		fmt.Fprintf(&b, "%d:%q", m.Index, preview(m.Data))
	}
	b.WriteByte(']')
	return b.String()
}

func testFetch(t T, h Harness) {
	sub(t, h, "EmptyStream", func(t T, e *env) {
		n := e.create("empty", 1)
		for _, from := range []uint64{0, 1, 1 << 40, 1 << 63, math.MaxUint64} {
			if got := e.fetch(n, 0, from, 10); len(got) != 0 {
				t.Errorf("Fetch(from=%d) of an empty stream returned %v, want nothing", from, summary(got))
			}
		}
	})
	sub(t, h, "StreamNotFound", func(t T, e *env) {
		n := e.name("never")
		_, err := e.storage().Fetch(e.ctx, n, 0, 0, 10)
		expectErr(t, fmt.Sprintf("Fetch of never-created stream %q", n), err, core.ErrStreamNotFound)
	})
	sub(t, h, "PastEnd", func(t T, e *env) {
		n := e.create("pastend", 1)
		idx := e.append(n, 0, msgs("m", 3)...)
		e.readAll(n, 0, 0, 10, 3) // wait for visibility
		last := idx[len(idx)-1]
		// Indexes are uint64: a from above math.MaxInt64 is past the end too. Converted to
		// an int64 it turns negative, which brokers read as "earliest" or "latest" (Kafka
		// offsets -2 and -1), and from+1 wraps around to 0 at math.MaxUint64.
		for _, from := range []uint64{last + 1, last + 2, last + 1000, 1 << 62, 1 << 63, math.MaxUint64 - 1, math.MaxUint64} {
			if got := e.fetch(n, 0, from, 10); len(got) != 0 {
				hint := ""
				if from > math.MaxInt64 {
					hint = "; from is above math.MaxInt64: does the backend convert it to a negative int64, or add 1 and wrap around?"
				}
				t.Errorf("Fetch(from=%d) past the last index %d returned %v, want nothing%s", from, last, summary(got), hint)
			}
		}
	})
	sub(t, h, "FromMiddle", func(t T, e *env) {
		n := e.create("middle", 1)
		want := msgs("m", 20)
		idx := e.append(n, 0, want...)
		e.readAll(n, 0, 0, 100, 20)
		for _, k := range []int{1, 7, 19} {
			e.expectMessages(fmt.Sprintf("Fetch from index %d (message %d)", idx[k], k), e.readAll(n, 0, idx[k], 100, 20-k), idx[k:], want[k:])
			// From between two indexes (sparse backends): the next message.
			if idx[k]-idx[k-1] > 1 {
				e.expectMessages(fmt.Sprintf("Fetch from index %d (between messages %d and %d)", idx[k-1]+1, k-1, k), e.readAll(n, 0, idx[k-1]+1, 100, 20-k), idx[k:], want[k:])
			}
		}
	})
	sub(t, h, "Limit", func(t T, e *env) {
		n := e.create("limit", 1)
		want := msgs("m", 10)
		idx := e.append(n, 0, want...)
		e.readAll(n, 0, 0, 100, 10)
		if got := e.fetch(n, 0, 0, 0); len(got) != 0 {
			t.Errorf("Fetch(limit=0) returned %v, want nothing", summary(got))
		}
		got := e.fetch(n, 0, 0, 1)
		if len(got) != 1 || got[0].Index != idx[0] || !bytes.Equal(got[0].Data, want[0]) {
			t.Errorf("Fetch(from=0, limit=1) = %v; want only the first message %d:%q", summary(got), idx[0], want[0])
		}
		got = e.fetch(n, 0, idx[9], 5)
		if len(got) != 1 || got[0].Index != idx[9] {
			t.Errorf("Fetch(from=%d, limit=5) of the last message = %v; want only it", idx[9], summary(got))
		}
		e.expectMessages("Fetch with a limit above the message count", e.readAll(n, 0, 0, 1000, 10), idx, want)
		// The limit is only a maximum: any limit works, also one no backend can allocate
		// or add an offset to without overflowing. readAll pages, so the Fetch after the
		// first starts past the first message.
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("Fetch with limit math.MaxInt panicked: %v; the limit is only a maximum, so clamp it before allocating for it or adding it to a position\n%s", p, debug.Stack())
				}
			}()
			e.expectMessages("Fetch with limit math.MaxInt", e.readAll(n, 0, 0, math.MaxInt, 10), idx, want)
			e.expectMessages("Fetch with limit math.MaxInt from the second message", e.readAll(n, 0, idx[1], math.MaxInt, 9), idx[1:], want[1:])
		}()
	})
	sub(t, h, "Paging", func(t T, e *env) {
		n := e.create("paging", 1)
		want := msgs("page", 500)
		idx := e.fill(n, 0, len(want), func(i int) []byte { return want[i] })
		for _, limit := range []int{1, 7, 100} {
			if limit == 1 {
				// 500 round trips: page through the first 50 only.
				e.expectMessages("paging with limit 1", e.readAll(n, 0, idx[450], 1, 50), idx[450:], want[450:])
				continue
			}
			e.expectMessages(fmt.Sprintf("paging with limit %d", limit), e.readAll(n, 0, 0, limit, 500), idx, want)
		}
		// A page belongs to the caller: the Fetches after it must not change it.
		first := e.fetch(n, 0, 0, 100)
		if len(first) == 0 {
			t.Fatalf("Fetch(from=0, limit=100) of a partition of 500 messages returned none")
		}
		e.readAll(n, 0, first[len(first)-1].Index+1, 100, len(want)-len(first))
		e.expectMessages("the first page, kept while paging on (the slice Fetch returns, and its messages, belong to the caller: the backend must not reuse them)", first, idx[:len(first)], want[:len(first)])
	})
	sub(t, h, "NegativeLimit", func(t T, e *env) {
		n := e.create("neglimit", 1)
		e.append(n, 0, []byte("m"))
		_, err := e.storage().Fetch(e.ctx, n, 0, 0, -1)
		expectErr(t, "Fetch(limit=-1)", err, core.ErrInvalidArgument)
	})
	sub(t, h, "InvalidPartition", func(t T, e *env) {
		n := e.create("badpart", 1)
		for _, p := range []int{-1, 1, 1000} {
			_, err := e.storage().Fetch(e.ctx, n, p, 0, 10)
			expectErr(t, fmt.Sprintf("Fetch(%q, partition %d) of a 1-partition stream", n, p), err, core.ErrInvalidArgument)
		}
	})
	sub(t, h, "InvalidName", func(t T, e *env) {
		for _, name := range invalidNames {
			_, err := e.storage().Fetch(e.ctx, name, 0, 0, 1)
			expectErr(t, fmt.Sprintf("Fetch(%.30q)", name), err, core.ErrInvalidArgument)
		}
	})
}

func testAppend(t T, h Harness) {
	sub(t, h, "StreamNotFound", func(t T, e *env) {
		n := e.name("never")
		_, err := e.storage().Append(e.ctx, n, 0, [][]byte{[]byte("m")})
		expectErr(t, fmt.Sprintf("Append to never-created stream %q", n), err, core.ErrStreamNotFound)
		_, err = e.storage().Fetch(e.ctx, n, 0, 0, 1)
		expectErr(t, fmt.Sprintf("Fetch of %q after a rejected Append", n), err, core.ErrStreamNotFound)
	})
	sub(t, h, "InvalidPartition", func(t T, e *env) {
		n := e.create("badpart", 1)
		for _, p := range []int{-1, 1, 1000} {
			_, err := e.storage().Append(e.ctx, n, p, [][]byte{[]byte("m")})
			expectErr(t, fmt.Sprintf("Append(%q, partition %d) to a 1-partition stream", n, p), err, core.ErrInvalidArgument)
		}
		if got := e.fetch(n, 0, 0, 10); len(got) != 0 {
			t.Errorf("rejected Appends left messages in partition 0: %v", summary(got))
		}
	})
	sub(t, h, "InvalidName", func(t T, e *env) {
		for _, name := range invalidNames {
			_, err := e.storage().Append(e.ctx, name, 0, [][]byte{[]byte("m")})
			expectErr(t, fmt.Sprintf("Append(%.30q)", name), err, core.ErrInvalidArgument)
		}
	})
}

func testMaxMessageSize(t T, h Harness) {
	sub(t, h, "Accepted", func(t T, e *env) {
		size := e.caps().MaxMessageSize
		if size > maxTestedMessageSize {
			t.Logf("MaxMessageSize %d is above %d; testing a %d-byte message", size, maxTestedMessageSize, maxTestedMessageSize)
			size = maxTestedMessageSize
		}
		n := e.create("maxsize", 1)
		big := make([]byte, size)
		for i := range big {
			big[i] = byte(i*7 + i>>8)
		}
		idx := e.append(n, 0, big)
		e.expectMessages(fmt.Sprintf("a %d-byte message (MaxMessageSize)", size), e.readAll(n, 0, 0, 1, 1), idx, [][]byte{big})
	})
	sub(t, h, "OneByteOver", func(t T, e *env) {
		size := e.caps().MaxMessageSize
		if size >= maxTestedMessageSize {
			t.Skipf("MaxMessageSize %d is too large to allocate one byte more in a conformance run", size)
		}
		n := e.create("oversize", 1)
		over := make([]byte, size+1)
		_, err := e.storage().Append(e.ctx, n, 0, [][]byte{[]byte("small, first in batch"), over})
		expectErr(t, fmt.Sprintf("Append of a batch holding a %d-byte message (MaxMessageSize %d)", size+1, size), err, core.ErrMessageTooLarge)
		_, err = e.storage().Append(e.ctx, n, 0, [][]byte{over, []byte("small, last in batch")})
		expectErr(t, fmt.Sprintf("Append of a batch starting with a %d-byte message (MaxMessageSize %d)", size+1, size), err, core.ErrMessageTooLarge)
		_, err = e.storage().Append(e.ctx, n, 0, [][]byte{over})
		expectErr(t, fmt.Sprintf("Append of a %d-byte message (MaxMessageSize %d)", size+1, size), err, core.ErrMessageTooLarge)
		if got := e.fetch(n, 0, 0, 10); len(got) != 0 {
			t.Errorf("rejected oversized Appends left messages: %v; want nothing appended", summary(got))
		}
	})
}

func testConcurrentAppend(t T, h Harness) {
	e := newEnv(t, h)
	n := e.create("concurrent", 1)
	appenders, per := h.appenders()
	type sent struct {
		w, seq int
		index  uint64
	}
	results := make([][]sent, appenders)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	for w := 0; w < appenders; w++ {
		goTest(t, &wg, func() {
			for seq := 0; seq < per; seq++ {
				idx, err := e.storage().Append(ctx, n, 0, [][]byte{fmt.Appendf(nil, "w%03d-%06d", w, seq)})
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("appender %d, message %d: Append: %v", w, seq, err)
						cancel()
					}
					return
				}
				if len(idx) != 1 {
					t.Errorf("appender %d: Append of one message reported %d indexes", w, len(idx))
					cancel()
					return
				}
				results[w] = append(results[w], sent{w, seq, idx[0]})
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	byIndex := make(map[uint64]sent, appenders*per)
	for _, rs := range results {
		for i, s := range rs {
			if prev, dup := byIndex[s.index]; dup {
				t.Fatalf("index %d was reported for appender %d message %d and for appender %d message %d", s.index, prev.w, prev.seq, s.w, s.seq)
			}
			byIndex[s.index] = s
			if i > 0 && s.index <= rs[i-1].index {
				t.Errorf("appender %d: message %d got index %d after message %d got %d; one appender's messages must get increasing indexes", s.w, s.seq, s.index, s.seq-1, rs[i-1].index)
			}
		}
	}
	got := e.readAll(n, 0, 0, 1000, appenders*per)
	if len(got) != appenders*per {
		all := make([]uint64, 0, len(byIndex))
		for i := range byIndex {
			all = append(all, i)
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		t.Fatalf("read %d messages after %d appenders appended %d each, want %d%s", len(got), appenders, per, appenders*per, describeGap(got, all))
	}
	next := make([]int, appenders)
	for _, m := range got {
		s, ok := byIndex[m.Index]
		if !ok {
			t.Fatalf("Fetch returned index %d (%q), which no Append reported", m.Index, m.Data)
		}
		if want := fmt.Sprintf("w%03d-%06d", s.w, s.seq); string(m.Data) != want {
			t.Fatalf("index %d holds %q, but Append reported it for %q", m.Index, m.Data, want)
		}
		if s.seq != next[s.w] {
			t.Fatalf("appender %d: message %d is stored after message %d; one appender's order must be kept", s.w, s.seq, next[s.w]-1)
		}
		next[s.w]++
	}
}

func testConcurrentReaders(t T, h Harness) {
	e := newEnv(t, h)
	n := e.create("readers", 1)
	want := msgs("r", 500)
	idx := e.fill(n, 0, len(want), func(i int) []byte { return want[i] })
	e.readAll(n, 0, 0, 1000, len(want)) // wait for visibility
	const readers = 8
	var wg sync.WaitGroup
	for r := 0; r < readers; r++ {
		goTest(t, &wg, func() {
			limit := 13 + r*17
			var got []core.Message
			for from := uint64(0); ; {
				ms, err := e.storage().Fetch(e.ctx, n, 0, from, limit)
				if err != nil {
					t.Errorf("reader %d: Fetch(from=%d, limit=%d): %v", r, from, limit, err)
					return
				}
				if len(ms) == 0 {
					break
				}
				got = append(got, ms...)
				from = ms[len(ms)-1].Index + 1
			}
			if len(got) != len(want) {
				t.Errorf("reader %d (limit %d) read %d messages, want %d%s", r, limit, len(got), len(want), describeGap(got, idx))
				return
			}
			for i := range got {
				if got[i].Index != idx[i] || !bytes.Equal(got[i].Data, want[i]) {
					t.Errorf("reader %d: message %d is %d:%q, want %d:%q", r, i, got[i].Index, got[i].Data, idx[i], want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

// testConcurrentReadWrite has readers page through a partition while appenders append to
// it. Every Fetch must meet its invariants; without Harness.MaxWait (read-your-writes),
// each reader, going on until caught up after the appenders finished, must have read every
// message exactly once, in index order: a message never becomes visible below an index
// Fetch already returned.
func testConcurrentReadWrite(t T, h Harness) {
	e := newEnv(t, h)
	n := e.create("readwrite", 1)
	appenders, per := h.appenders()
	appenders, per = min(appenders, 4), min(per, 100)
	const readers = 4
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var appending, reading sync.WaitGroup
	for w := range appenders {
		goTest(t, &appending, func() {
			for seq := range per {
				if _, err := e.storage().Append(ctx, n, 0, [][]byte{fmt.Appendf(nil, "w%03d-%06d", w, seq)}); err != nil {
					if ctx.Err() == nil {
						t.Errorf("appender %d, message %d: Append: %v", w, seq, err)
						cancel()
					}
					return
				}
			}
		})
	}
	appended := make(chan struct{})
	go func() {
		appending.Wait()
		close(appended)
	}()
	seen := make([][]core.Message, readers)
	for r := range readers {
		goTest(t, &reading, func() {
			limit := 3 + r*11
			var from uint64
			done := false // the appenders had finished before the last Fetch started
			for {
				finished := done
				ms, err := e.storage().Fetch(ctx, n, 0, from, limit)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("reader %d: Fetch(from=%d, limit=%d) during appends: %v", r, from, limit, err)
						cancel()
					}
					return
				}
				if len(ms) > limit {
					t.Errorf("reader %d: Fetch(from=%d, limit=%d) returned %d messages", r, from, limit, len(ms))
					cancel()
					return
				}
				for i, m := range ms {
					if m.Index < from || (i > 0 && m.Index <= ms[i-1].Index) {
						t.Errorf("reader %d: Fetch(from=%d) during appends returned indexes %v; want them >= from and strictly increasing", r, from, summary(ms))
						cancel()
						return
					}
				}
				if len(ms) > 0 {
					seen[r] = append(seen[r], ms...)
					from = ms[len(ms)-1].Index + 1
					continue
				}
				if finished {
					return
				}
				select {
				case <-appended:
					done = true
				case <-ctx.Done():
					return
				case <-time.After(readWritePoll): // caught up for now: let the appenders run
				}
			}
		})
	}
	reading.Wait()
	if t.Failed() {
		return
	}
	all := e.readAll(n, 0, 0, 1000, appenders*per)
	if len(all) != appenders*per {
		t.Fatalf("read %d messages after %d appenders appended %d each, want %d", len(all), appenders, per, appenders*per)
	}
	if h.MaxWait > 0 {
		return // reads may lag behind appends: a reader may have stopped early
	}
	for r, got := range seen {
		if len(got) != len(all) {
			t.Errorf("reader %d, paging while appenders appended, read %d messages; want all %d%s", r, len(got), len(all), describeGap(got, indexesOf(all)))
			continue
		}
		for i := range got {
			if got[i].Index != all[i].Index || !bytes.Equal(got[i].Data, all[i].Data) {
				t.Errorf("reader %d: message %d is %d:%q, but the partition holds %d:%q there", r, i, got[i].Index, got[i].Data, all[i].Index, all[i].Data)
				break
			}
		}
	}
}

// indexesOf returns the indexes of ms.
func indexesOf(ms []core.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Index
	}
	return out
}

func testIsolation(t T, h Harness) {
	sub(t, h, "Streams", func(t T, e *env) {
		a, b := e.create("iso-a", 1), e.create("iso-b", 1)
		ia := e.append(a, 0, []byte("a0"), []byte("a1"))
		ib := e.append(b, 0, []byte("b0"))
		e.expectMessages("stream a", e.readAll(a, 0, 0, 10, 2), ia, [][]byte{[]byte("a0"), []byte("a1")})
		e.expectMessages("stream b", e.readAll(b, 0, 0, 10, 1), ib, [][]byte{[]byte("b0")})
		// A stream whose name extends another's must not see its messages.
		c := a + "x"
		e.track(c)
		e.create2(c, 1)
		if got := e.fetch(c, 0, 0, 10); len(got) != 0 {
			t.Errorf("new stream %q sees %v, messages of %q", c, summary(got), a)
		}
		// Stream names are case-sensitive: one that differs from another only in case is
		// another stream (after the prefix, which keeps its case so that the name stays
		// under Harness.StreamPrefix).
		upper := e.prefix + strings.ToUpper(strings.TrimPrefix(a, e.prefix))
		e.track(upper)
		e.create2(upper, 1)
		if got := e.fetch(upper, 0, 0, 10); len(got) != 0 {
			t.Errorf("new stream %q sees %v, messages of %q; stream names are case-sensitive, a backend that stores them where case does not count must encode them", upper, summary(got), a)
		}
		iu := e.append(upper, 0, []byte("A0"))
		e.expectMessages(fmt.Sprintf("stream %q", upper), e.readAll(upper, 0, 0, 10, 1), iu, [][]byte{[]byte("A0")})
		e.expectMessages(fmt.Sprintf("stream %q after appending to %q", a, upper), e.readAll(a, 0, 0, 10, 2), ia, [][]byte{[]byte("a0"), []byte("a1")})
	})
	sub(t, h, "Partitions", func(t T, e *env) {
		if e.caps().MaxPartitions < 3 {
			t.Skipf("MaxPartitions is %d; partition isolation needs 3", e.caps().MaxPartitions)
		}
		n := e.create("parts", 3)
		i0 := e.append(n, 0, []byte("p0-a"), []byte("p0-b"))
		i2 := e.append(n, 2, []byte("p2-a"))
		e.expectMessages("partition 0", e.readAll(n, 0, 0, 10, 2), i0, [][]byte{[]byte("p0-a"), []byte("p0-b")})
		e.expectMessages("partition 2", e.readAll(n, 2, 0, 10, 1), i2, [][]byte{[]byte("p2-a")})
		if got := e.fetch(n, 1, 0, 10); len(got) != 0 {
			t.Errorf("partition 1, never appended to, returned %v", summary(got))
		}
		// Partitions whose numbers extend another's (10 and 11 extend 1) are other
		// partitions: a backend keying messages by "<stream>/<partition>/..." must not find
		// theirs in a scan of partition 1.
		if e.caps().MaxPartitions < isolationExtendedPartitions {
			t.Logf("MaxPartitions is %d: partitions whose numbers extend another's (10, 11) not checked", e.caps().MaxPartitions)
			return
		}
		nx := e.create("parts-ext", isolationExtendedPartitions)
		i1 := e.append(nx, 1, []byte("p1"))
		i10 := e.append(nx, 10, []byte("p10"))
		i11 := e.append(nx, 11, []byte("p11-a"), []byte("p11-b"))
		e.expectMessages(fmt.Sprintf("partition 1 of a %d-partition stream, partitions 10 and 11 appended to", isolationExtendedPartitions), e.readAll(nx, 1, 0, 10, 1), i1, [][]byte{[]byte("p1")})
		e.expectMessages("partition 10", e.readAll(nx, 10, 0, 10, 1), i10, [][]byte{[]byte("p10")})
		e.expectMessages("partition 11", e.readAll(nx, 11, 0, 10, 2), i11, [][]byte{[]byte("p11-a"), []byte("p11-b")})
	})
	sub(t, h, "Concurrent", testIsolationConcurrent)
}

// isolationExtendedPartitions is the partition count of the Isolation/Partitions stream
// whose partitions 10 and 11 extend the number of partition 1.
const isolationExtendedPartitions = 12

// isolationAppends is how many messages each appender of Isolation/Concurrent appends.
const isolationAppends = 50

// testIsolationConcurrent has appenders append at the same time, each to a partition of its
// own, in two streams: each partition must hold exactly its appender's messages, in order.
func testIsolationConcurrent(t T, e *env) {
	parts := min(2, e.caps().MaxPartitions)
	type target struct {
		stream string
		p      int
	}
	var targets []target
	for _, label := range []string{"iso-conc-a", "iso-conc-b"} {
		n := e.create(label, parts)
		for p := range parts {
			targets = append(targets, target{n, p})
		}
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	idx := make([][]uint64, len(targets))
	want := make([][][]byte, len(targets))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w, tg := range targets {
		want[w] = msgs(fmt.Sprintf("%s-p%d", tg.stream, tg.p), isolationAppends)
		goTest(t, &wg, func() {
			<-start
			for _, m := range want[w] {
				ix, err := e.storage().Append(ctx, tg.stream, tg.p, [][]byte{m})
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("appender to %q partition %d: Append: %v", tg.stream, tg.p, err)
						cancel()
					}
					return
				}
				if len(ix) != 1 {
					t.Errorf("appender to %q partition %d: Append of one message reported %d indexes", tg.stream, tg.p, len(ix))
					cancel()
					return
				}
				idx[w] = append(idx[w], ix[0])
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	for w, tg := range targets {
		e.expectMessages(fmt.Sprintf("stream %q partition %d, appended to while %d other appenders appended to other partitions and streams", tg.stream, tg.p, len(targets)-1),
			e.readAll(tg.stream, tg.p, 0, 100, isolationAppends), idx[w], want[w])
	}
}

// track records name as a stream to delete when the subtest ends.
func (e *env) track(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.streams = append(e.streams, name)
}

// create2 creates stream name (already recorded for cleanup) with the given partitions.
func (e *env) create2(name string, partitions int) {
	e.t.Helper()
	got, err := e.storage().CreateStream(e.ctx, name, partitions)
	if err != nil {
		e.t.Fatalf("CreateStream(%q, %d): %v", name, partitions, err)
	}
	if got != partitions {
		e.t.Fatalf("CreateStream(%q, %d) of a new stream returned %d partitions", name, partitions, got)
	}
}

func testPersistence(t T, h Harness) {
	e := newEnv(t, h)
	c := e.caps()
	if !c.Persistent {
		t.Skipf("backend %q does not declare Persistent: data is not expected to survive Close", c.Name)
	}
	parts := min(2, c.MaxPartitions)
	n := e.create("persist", parts)
	want := msgs("before", 5)
	idx := e.append(n, 0, want...)
	e.readAll(n, 0, 0, 10, len(want))
	last := parts - 1
	wantLast := [][]byte{[]byte("before, in the last partition")}
	var idxLast []uint64
	if last > 0 {
		idxLast = e.append(n, last, wantLast...)
		e.readAll(n, last, 0, 10, 1)
	}
	ix := e.backend().Index
	client := e.client("persist")
	if ix != nil {
		if err := ix.SaveIndex(e.ctx, client, n, 0, idx[2]); err != nil {
			t.Fatalf("SaveIndex: %v", err)
		}
	}

	// A deletion survives reopening too: a deleted stream does not come back.
	var deleted string
	if d, ok := e.storage().(core.StreamDeleter); ok {
		deleted = e.create("persist-deleted", 1)
		e.append(deleted, 0, []byte("deleted before reopening"))
		if err := d.DeleteStream(e.ctx, deleted); err != nil {
			t.Fatalf("DeleteStream(%q): %v", deleted, err)
		}
	}

	e.reopen()
	e.expectMessages("after reopening", e.readAll(n, 0, 0, 10, len(want)), idx, want)
	if deleted != "" {
		ms, err := e.storage().Fetch(e.ctx, deleted, 0, 0, 10)
		if !errors.Is(err, core.ErrStreamNotFound) {
			t.Errorf("Fetch of stream %q, deleted before reopening, after reopening = %v, %v; want an error matching %v: DeleteStream must be durable", deleted, summary(ms), err, core.ErrStreamNotFound)
		}
	}
	if last > 0 {
		e.expectMessages(fmt.Sprintf("partition %d after reopening", last), e.readAll(n, last, 0, 10, 1), idxLast, wantLast)
	}
	// The partition count survives too: asking for another count changes nothing.
	asks := []int{parts}
	if other := parts%c.MaxPartitions + 1; other != parts {
		asks = []int{other, parts}
	}
	for _, ask := range asks {
		got, err := e.storage().CreateStream(e.ctx, n, ask)
		if err != nil || got != parts {
			t.Errorf("CreateStream(%q, %d) of the existing %d-partition stream after reopening = %d, %v; want %d, nil: the partition count must survive reopening", n, ask, parts, got, err, parts)
		}
	}
	if pc, ok := e.storage().(core.PartitionCounter); ok {
		if got, err := pc.Partitions(e.ctx, n); err != nil || got != parts {
			t.Errorf("Partitions(%q) after reopening = %d, %v; want %d, nil", n, got, err, parts)
		}
	}
	if ix := e.backend().Index; ix != nil {
		got, err := ix.GetIndex(e.ctx, client, n, 0)
		if err != nil || got != idx[2] {
			t.Errorf("GetIndex after reopening = %d, %v; want %d, nil", got, err, idx[2])
		}
	}
	more := e.append(n, 0, []byte("after"))
	if more[0] <= idx[len(idx)-1] {
		t.Fatalf("Append after reopening reported index %d, not above %d reported before; indexes must stay strictly increasing across reopen", more[0], idx[len(idx)-1])
	}
	e.expectMessages("after appending once reopened", e.readAll(n, 0, 0, 10, len(want)+1), append(idx, more...), append(want, []byte("after")))
}

// testCancelled checks that every call made with a context that is already done, cancelled
// or past its deadline, returns an error matching the context's (context.Canceled or
// context.DeadlineExceeded) and changes nothing.
func testCancelled(t T, h Harness) {
	e := newEnv(t, h)
	n := e.create("cancel", 1)
	idx := e.append(n, 0, []byte("m"))
	for _, d := range doneContexts(e.ctx) {
		s := e.storage()
		check := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, d.err) {
				t.Errorf("%s with %s: got %v, want an error matching %v (the context's error, possibly wrapped)", what, d.what, err, d.err)
			}
		}
		created := e.name("cancel-new")
		e.track(created) // deleted at the end if the call created it after all
		_, err := s.CreateStream(d.ctx, created, 1)
		check("CreateStream", err)
		_, err = s.Append(d.ctx, n, 0, [][]byte{[]byte("x")})
		check("Append", err)
		_, err = s.Fetch(d.ctx, n, 0, 0, 10)
		check("Fetch", err)
		if aa, ok := s.(core.AsyncAppender); ok {
			check("AppendAsync (the error done reports)", e.appendAsync(d.ctx, aa, "AppendAsync with "+d.what, n, 0, [][]byte{[]byte("x")}))
		}
		if del, ok := s.(core.StreamDeleter); ok {
			check("DeleteStream", del.DeleteStream(d.ctx, n))
		}
		if pc, ok := s.(core.PartitionCounter); ok {
			_, err = pc.Partitions(d.ctx, n)
			check("Partitions", err)
		}
		var c string
		ix := e.backend().Index
		if ix != nil {
			c = e.client("cancel")
			_, err = ix.GetIndex(d.ctx, c, n, 0)
			check("GetIndex", err)
			check("SaveIndex", ix.SaveIndex(d.ctx, c, n, 0, 1))
		}

		// Nothing changed: no stream created, nothing appended, the stream not deleted, no index saved.
		_, err = s.Fetch(e.ctx, created, 0, 0, 10)
		expectErr(t, fmt.Sprintf("Fetch of %q after a CreateStream with %s", created, d.what), err, core.ErrStreamNotFound)
		e.expectMessages("after calls with "+d.what, e.readAll(n, 0, 0, 10, 1), idx, [][]byte{[]byte("m")})
		if ix != nil {
			_, err = ix.GetIndex(e.ctx, c, n, 0)
			expectErr(t, "GetIndex after a SaveIndex with "+d.what, err, core.ErrIndexNotFound)
		}
	}
}

// doneContext is a context that is already done, and the error it ends with.
type doneContext struct {
	what string
	ctx  context.Context
	err  error
}

// doneContexts returns contexts derived from parent that are already done: one cancelled,
// one whose deadline has passed. Both are cancelled when parent is.
func doneContexts(parent context.Context) []doneContext {
	cancelled, cancel := context.WithCancel(parent)
	cancel()
	expired, cancel := context.WithDeadline(parent, time.Now().Add(-time.Minute))
	cancel() // releases its resources; its error stays DeadlineExceeded
	return []doneContext{
		{"a cancelled context", cancelled, context.Canceled},
		{"a context past its deadline", expired, context.DeadlineExceeded},
	}
}

func testClosed(t T, h Harness) {
	e := newEnv(t, h)
	n := e.create("closed", 1)
	e.append(n, 0, []byte("m"))
	b := e.backend()
	if err := e.close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := func(what string, err error) {
		t.Helper()
		expectErr(t, what+" after Close", err, core.ErrClosed)
	}
	s := b.Storage
	_, err := s.CreateStream(e.ctx, e.name("closed-new"), 1)
	check("CreateStream", err)
	_, err = s.Append(e.ctx, n, 0, [][]byte{[]byte("x")})
	check("Append", err)
	_, err = s.Fetch(e.ctx, n, 0, 0, 10)
	check("Fetch", err)
	if aa, ok := s.(core.AsyncAppender); ok {
		check("AppendAsync (the error done reports)", e.appendAsync(e.ctx, aa, "AppendAsync after Close", n, 0, [][]byte{[]byte("x")}))
	}
	if d, ok := s.(core.StreamDeleter); ok {
		check("DeleteStream", d.DeleteStream(e.ctx, n))
	}
	if pc, ok := s.(core.PartitionCounter); ok {
		_, err = pc.Partitions(e.ctx, n)
		check("Partitions", err)
	}
	if ix := b.Index; ix != nil {
		c := e.client("closed")
		_, err = ix.GetIndex(e.ctx, c, n, 0)
		check("GetIndex", err)
		check("SaveIndex", ix.SaveIndex(e.ctx, c, n, 0, 1))
	}
	_ = s.Capabilities() // must still work: it does no I/O
	if err := e.closeStep("second Backend.Close", b.Close); err != nil {
		t.Errorf("second Backend.Close: %v; want nil", err)
	}
	if err := e.closeStep("Storage.Close after Close", s.Close); err != nil {
		t.Errorf("Storage.Close after Close: %v; want nil", err)
	}
	if b.Index != nil {
		if err := e.closeStep("IndexStorage.Close after Close", b.Index.Close); err != nil {
			t.Errorf("IndexStorage.Close after Close: %v; want nil", err)
		}
	}
}

func testStreamDeleter(t T, h Harness) {
	e := newEnv(t, h)
	d, ok := e.storage().(core.StreamDeleter)
	if !ok {
		t.Skipf("backend %q does not implement core.StreamDeleter", e.caps().Name)
	}
	parts := min(2, e.caps().MaxPartitions)
	n := e.create("delete", parts)
	for p := range parts {
		e.append(n, p, fmt.Appendf(nil, "old-%d", p))
	}
	// A stream whose name extends the deleted one's is another stream: a backend deleting
	// by name prefix (topics by pattern, keys by prefix scan) must not take it along.
	ext := n + "x"
	e.track(ext)
	e.create2(ext, 1)
	extIdx := e.append(ext, 0, []byte("kept"))
	e.readAll(ext, 0, 0, 10, 1) // wait for visibility
	ix := e.backend().Index
	var c string
	if ix != nil {
		c = e.client("delete")
		e.saveIndex(ix, c, n, 0, 1)
		e.saveIndex(ix, c, ext, 0, 1)
	}
	if err := d.DeleteStream(e.ctx, n); err != nil {
		t.Fatalf("DeleteStream(%q): %v", n, err)
	}
	if ms, err := e.storage().Fetch(e.ctx, ext, 0, 0, 10); err != nil || len(ms) != 1 || ms[0].Index != extIdx[0] || string(ms[0].Data) != "kept" {
		t.Errorf("after DeleteStream(%q), Fetch of stream %q = %v, %v; want its message %d:\"kept\": DeleteStream deletes the stream named, not every stream whose name starts with it", n, ext, summary(ms), err, extIdx[0])
	}
	if ix != nil {
		if got, err := ix.GetIndex(e.ctx, c, ext, 0); err != nil || got != 1 {
			t.Errorf("after DeleteStream(%q), GetIndex(%q, %q, 0) = %d, %v; want 1, saved before: DeleteStream deletes the indexes of the stream named, not of every stream whose name starts with it", n, c, ext, got, err)
		}
	}
	_, err := e.storage().Fetch(e.ctx, n, 0, 0, 10)
	expectErr(t, "Fetch of a deleted stream", err, core.ErrStreamNotFound)
	// A deleted stream is as if never created, also to a backend that cached its partition
	// count: appending must not create it again (as a broker auto-creating topics on
	// produce would), nor may it still be counted.
	_, err = e.storage().Append(e.ctx, n, 0, [][]byte{[]byte("after delete")})
	expectErr(t, "Append to a deleted stream", err, core.ErrStreamNotFound)
	if aa, ok := e.storage().(core.AsyncAppender); ok {
		expectErr(t, "AppendAsync to a deleted stream (the error done reports)", e.appendAsync(e.ctx, aa, "AppendAsync to a deleted stream", n, 0, [][]byte{[]byte("after delete")}), core.ErrStreamNotFound)
	}
	if pc, ok := e.storage().(core.PartitionCounter); ok {
		_, err = pc.Partitions(e.ctx, n)
		expectErr(t, "Partitions of a deleted stream", err, core.ErrStreamNotFound)
	}
	_, err = e.storage().Fetch(e.ctx, n, 0, 0, 10)
	expectErr(t, "Fetch of a deleted stream after appending to it", err, core.ErrStreamNotFound)
	expectErr(t, "DeleteStream of a deleted stream", d.DeleteStream(e.ctx, n), core.ErrStreamNotFound)
	expectErr(t, "DeleteStream of a never-created stream", d.DeleteStream(e.ctx, e.name("never")), core.ErrStreamNotFound)
	expectErr(t, "DeleteStream of an invalid name", d.DeleteStream(e.ctx, "bad name"), core.ErrInvalidArgument)

	// The name can be created again, as a new stream: its own partition count, none of the
	// old messages in any partition.
	again := min(3, e.caps().MaxPartitions)
	got, err := e.storage().CreateStream(e.ctx, n, again)
	if err != nil || got != again {
		t.Fatalf("CreateStream(%q, %d) after DeleteStream = %d, %v; want %d, nil", n, again, got, err, again)
	}
	if ix != nil {
		// A consumer index saved for the old stream would skip the new stream's first
		// messages: it went with the stream.
		_, err := ix.GetIndex(e.ctx, c, n, 0)
		expectErr(t, "GetIndex, saved before DeleteStream, of the re-created stream", err, core.ErrIndexNotFound)
	}
	idx := e.append(n, 0, []byte("again"))
	e.expectMessages("the re-created stream, partition 0", e.readAll(n, 0, 0, 10, 1), idx, [][]byte{[]byte("again")})
	for p := 1; p < again; p++ {
		if ms := e.fetch(n, p, 0, 10); len(ms) != 0 {
			t.Errorf("partition %d of the re-created stream holds %v, want nothing", p, summary(ms))
		}
	}
}

func testPartitionCounter(t T, h Harness) {
	e := newEnv(t, h)
	pc, ok := e.storage().(core.PartitionCounter)
	if !ok {
		t.Skipf("backend %q does not implement core.PartitionCounter", e.caps().Name)
	}
	parts := min(3, e.caps().MaxPartitions)
	n := e.create("count", parts)
	got, err := pc.Partitions(e.ctx, n)
	if err != nil || got != parts {
		t.Errorf("Partitions(%q) = %d, %v; want %d, nil", n, got, err, parts)
	}
	_, err = pc.Partitions(e.ctx, e.name("never"))
	expectErr(t, "Partitions of a never-created stream", err, core.ErrStreamNotFound)
	_, err = pc.Partitions(e.ctx, "bad name")
	expectErr(t, "Partitions of an invalid name", err, core.ErrInvalidArgument)
}
