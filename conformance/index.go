package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/core"
)

// IndexStorageTests runs the IndexStorage conformance subtests against the backend h opens,
// as subtests of t. Streams are created through the backend's Storage first. A backend
// without IndexStorage (core.Backend.Index nil) has every subtest skipped.
func IndexStorageTests(t T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatalf("conformance: Harness.Open is nil")
	}
	if err := h.checkPrefix(); err != nil {
		t.Fatalf("%v", err)
	}
	for _, it := range indexTests {
		t.Run(it.name, func(t T) { it.fn(t, h) })
	}
}

var indexTests = []namedTest{
	{"NotFound", testIndexNotFound},
	{"RoundTrip", testIndexRoundTrip},
	{"Monotonic", testIndexMonotonic},
	{"ConcurrentSaves", testIndexConcurrentSaves},
	{"KeysIsolated", testIndexKeysIsolated},
	{"InvalidArgument", testIndexInvalidArgument},
	{"ValidClientIDs", testIndexValidClientIDs},
	{"Persistence", testIndexPersistence},
	{"IndexDeleter", testIndexDeleter},
	{"Cancelled", testIndexCancelled},
	{"Closed", testIndexClosed},
}

// client returns a fresh client id unique to this run and subtest: like stream names, it
// starts with the subtest's prefix (Harness.StreamPrefix and a random part).
func (e *env) client(label string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	return fmt.Sprintf("%sclient-%s-%d", e.prefix, label, e.seq)
}

// getIndex calls GetIndex and fails the test on any error.
func (e *env) getIndex(ix core.IndexStorage, client, stream string, p int) uint64 {
	e.t.Helper()
	got, err := ix.GetIndex(e.ctx, client, stream, p)
	if err != nil {
		e.t.Fatalf("GetIndex(%q, %q, %d): %v", client, stream, p, err)
	}
	return got
}

func (e *env) saveIndex(ix core.IndexStorage, client, stream string, p int, index uint64) {
	e.t.Helper()
	if err := ix.SaveIndex(e.ctx, client, stream, p, index); err != nil {
		e.t.Fatalf("SaveIndex(%q, %q, %d, %d): %v", client, stream, p, index, err)
	}
}

func (e *env) expectIndex(ix core.IndexStorage, what, client, stream string, p int, want uint64) {
	e.t.Helper()
	if got := e.getIndex(ix, client, stream, p); got != want {
		e.t.Errorf("%s: GetIndex(%q, %q, %d) = %d, want %d", what, client, stream, p, got, want)
	}
}

func testIndexNotFound(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	n := e.create("ixnf", 1)
	_, err := ix.GetIndex(e.ctx, e.client("nobody"), n, 0)
	expectErr(t, "GetIndex of a key never saved", err, core.ErrIndexNotFound)
}

func testIndexRoundTrip(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	n := e.create("ixrt", 1)
	c := e.client("rt")
	e.saveIndex(ix, c, n, 0, 0)
	e.expectIndex(ix, "saved 0 (distinct from not found)", c, n, 0, 0)
	e.saveIndex(ix, c, n, 0, 42)
	e.expectIndex(ix, "saved 42", c, n, 0, 42)
	big := uint64(1)<<63 + 12345
	e.saveIndex(ix, c, n, 0, big)
	e.expectIndex(ix, "saved a 64-bit index", c, n, 0, big)
}

func testIndexMonotonic(t T, h Harness) {
	sub(t, h, "LowerIgnored", func(t T, e *env) {
		ix := e.index()
		n := e.create("ixlow", 1)
		c := e.client("low")
		e.saveIndex(ix, c, n, 0, 10)
		e.saveIndex(ix, c, n, 0, 3)
		e.expectIndex(ix, "saved 10 then 3", c, n, 0, 10)
		e.saveIndex(ix, c, n, 0, 0)
		e.expectIndex(ix, "saved 10, 3 then 0", c, n, 0, 10)
	})
	sub(t, h, "EqualIdempotent", func(t T, e *env) {
		ix := e.index()
		n := e.create("ixeq", 1)
		c := e.client("eq")
		for range 3 {
			e.saveIndex(ix, c, n, 0, 7)
		}
		e.expectIndex(ix, "saved 7 three times", c, n, 0, 7)
		e.saveIndex(ix, c, n, 0, 8)
		e.expectIndex(ix, "saved 7 three times then 8", c, n, 0, 8)
	})
}

func testIndexConcurrentSaves(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	n := e.create("ixconc", 1)
	c := e.client("conc")
	const savers, each = 16, 50
	const highest = savers*each - 1
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < savers; w++ {
		goTest(t, &wg, func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			var seen uint64 // the highest value this saver saved or read back
			for i := 0; i < each; i++ {
				// Each saver saves increasing values, interleaved with the other savers'
				// (the highest, saved once, by the last saver), and now and then a lower one.
				vs := []uint64{uint64(i*savers + w)}
				if i%5 == 4 {
					vs = append(vs, uint64(r.IntN(i*savers+1)))
				}
				for _, v := range vs {
					if err := ix.SaveIndex(ctx, c, n, 0, v); err != nil {
						if ctx.Err() == nil {
							t.Errorf("saver %d: SaveIndex(%d): %v", w, v, err)
							cancel()
						}
						return
					}
					seen = max(seen, v)
				}
				// Once SaveIndex(v) returned, the saved index is at least v for good.
				got, err := ix.GetIndex(ctx, c, n, 0)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("saver %d: GetIndex during concurrent saves: %v", w, err)
						cancel()
					}
					return
				}
				if got < seen {
					t.Errorf("saver %d: GetIndex returned %d after this saver saved or read %d; a lower value must never replace a higher one", w, got, seen)
					cancel()
					return
				}
				seen = got
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	e.expectIndex(ix, fmt.Sprintf("after %d concurrent savers", savers), c, n, 0, highest)
}

func testIndexKeysIsolated(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	parts := min(2, e.caps().MaxPartitions)
	s1, s2 := e.create("ixiso-a", parts), e.create("ixiso-b", parts)
	c1, c2 := e.client("a"), e.client("b")
	e.saveIndex(ix, c1, s1, 0, 11)
	e.saveIndex(ix, c2, s1, 0, 22)
	e.saveIndex(ix, c1, s2, 0, 33)
	e.expectIndex(ix, "client a, stream a", c1, s1, 0, 11)
	e.expectIndex(ix, "client b, stream a", c2, s1, 0, 22)
	e.expectIndex(ix, "client a, stream b", c1, s2, 0, 33)
	_, err := ix.GetIndex(e.ctx, c2, s2, 0)
	expectErr(t, "GetIndex of client b, stream b (never saved)", err, core.ErrIndexNotFound)
	// A client id that extends another must not share its key.
	_, err = ix.GetIndex(e.ctx, c1+"x", s1, 0)
	expectErr(t, "GetIndex of a client id extending a saved one", err, core.ErrIndexNotFound)
	// Keys whose client id and stream name, written one after the other in either order,
	// spell the same string are distinct. With P the subtest's prefix: (c1, P+s4) is not
	// (c1+P, s4), and (outer = P+"j"+inner, s4) is not (inner, s4+P+"j").
	s4 := e.create("ixiso-c", 1)
	inner := e.client("inner")
	outer := e.prefix + "j" + inner
	s5, s6 := e.prefix+s4, s4+e.prefix+"j"
	if max(len(s5), len(s6)) <= core.MaxStreamNameLen {
		e.track(s5)
		e.create2(s5, 1)
		e.track(s6)
		e.create2(s6, 1)
		e.saveIndex(ix, c1, s5, 0, 55)
		e.saveIndex(ix, outer, s4, 0, 66)
		_, err = ix.GetIndex(e.ctx, c1+e.prefix, s4, 0)
		expectErr(t, fmt.Sprintf("GetIndex(%q, %q) after saving (%q, %q) only", c1+e.prefix, s4, c1, s5), err, core.ErrIndexNotFound)
		_, err = ix.GetIndex(e.ctx, inner, s6, 0)
		expectErr(t, fmt.Sprintf("GetIndex(%q, %q) after saving (%q, %q) only", inner, s6, outer, s4), err, core.ErrIndexNotFound)
	} else {
		t.Logf("Harness.StreamPrefix is too long to check keys whose client id and stream name run together")
	}
	if parts < 2 {
		t.Logf("MaxPartitions is 1: partition isolation not checked")
		return
	}
	e.saveIndex(ix, c1, s1, 1, 44)
	e.expectIndex(ix, "client a, stream a, partition 1", c1, s1, 1, 44)
	e.expectIndex(ix, "client a, stream a, partition 0 after saving partition 1", c1, s1, 0, 11)
	_, err = ix.GetIndex(e.ctx, c2, s1, 1)
	expectErr(t, "GetIndex of client b, stream a, partition 1 (never saved)", err, core.ErrIndexNotFound)
}

func testIndexInvalidArgument(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	n := e.create("ixbad", 1)
	// Every invalid client id but the empty one starts with the subtest's prefix: a backend
	// that wrongly accepts one keeps it out of other runs' way.
	p := e.prefix
	long := p + strings.Repeat("c", core.MaxClientIDLen+1-len(p))
	for _, c := range []string{"", p + "ctl\x00char", p + "new\nline", p + "bad\xffutf8", long} {
		_, err := ix.GetIndex(e.ctx, c, n, 0)
		expectErr(t, fmt.Sprintf("GetIndex(client %.30q)", c), err, core.ErrInvalidArgument)
		expectErr(t, fmt.Sprintf("SaveIndex(client %.30q)", c), ix.SaveIndex(e.ctx, c, n, 0, 1), core.ErrInvalidArgument)
	}
	c := e.client("bad")
	for _, s := range invalidNames {
		_, err := ix.GetIndex(e.ctx, c, s, 0)
		expectErr(t, fmt.Sprintf("GetIndex(stream %.30q)", s), err, core.ErrInvalidArgument)
		expectErr(t, fmt.Sprintf("SaveIndex(stream %.30q)", s), ix.SaveIndex(e.ctx, c, s, 0, 1), core.ErrInvalidArgument)
	}
	_, err := ix.GetIndex(e.ctx, c, n, -1)
	expectErr(t, "GetIndex(partition -1)", err, core.ErrInvalidArgument)
	expectErr(t, "SaveIndex(partition -1)", ix.SaveIndex(e.ctx, c, n, -1, 1), core.ErrInvalidArgument)
}

// testIndexValidClientIDs checks that every client id core.ValidateClientID accepts works
// as its own key: spaces, punctuation, non-ASCII and core.MaxClientIDLen bytes.
func testIndexValidClientIDs(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	n := e.create("ixids", 1)
	p := e.prefix
	long := p + "long-"
	long += strings.Repeat("x", core.MaxClientIDLen-len(long))
	ids := []string{
		p + "space and/slash:colon@at",
		p + "ünïcode-日本",
		p + "dots_and-UPPER",
		long,
	}
	for i, c := range ids {
		e.saveIndex(ix, c, n, 0, uint64(100+i))
	}
	for i, c := range ids {
		e.expectIndex(ix, fmt.Sprintf("client id %d (%d bytes)", i, len(c)), c, n, 0, uint64(100+i))
	}
}

func testIndexPersistence(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	if c := e.caps(); !c.Persistent {
		t.Skipf("backend %q does not declare Persistent: saved indexes are not expected to survive Close", c.Name)
	}
	n := e.create("ixpersist", 1)
	c := e.client("persist")
	e.saveIndex(ix, c, n, 0, 5)
	e.saveIndex(ix, c, n, 0, 9)
	e.reopen()
	ix = e.index()
	e.expectIndex(ix, "after reopening", c, n, 0, 9)
	e.saveIndex(ix, c, n, 0, 4)
	e.expectIndex(ix, "saving a lower index after reopening", c, n, 0, 9)
	_, err := ix.GetIndex(e.ctx, e.client("other"), n, 0)
	expectErr(t, "GetIndex of a key never saved, after reopening", err, core.ErrIndexNotFound)
}

// testIndexDeleter checks the optional core.IndexDeleter: the indexes of one stream, every
// client and partition, are deleted, those of other streams (also one whose name extends it)
// are kept, and the stream's keys start afresh (a save lower than the deleted value counts).
func testIndexDeleter(t T, h Harness) {
	e := newEnv(t, h)
	d, ok := e.index().(core.IndexDeleter)
	if !ok {
		t.Skipf("the IndexStorage of backend %q does not implement core.IndexDeleter", e.caps().Name)
	}
	ix := e.index()
	parts := min(2, e.caps().MaxPartitions)
	s1 := e.create("ixdel", parts)
	s2 := e.create("ixdel-other", 1)
	s3 := s1 + "x"
	e.track(s3)
	e.create2(s3, 1)
	c1, c2 := e.client("a"), e.client("b")
	e.saveIndex(ix, c1, s1, 0, 5)
	e.saveIndex(ix, c2, s1, parts-1, 6)
	e.saveIndex(ix, c1, s2, 0, 7)
	e.saveIndex(ix, c1, s3, 0, 8)

	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := d.DeleteIndexes(ctx, s1); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteIndexes with a cancelled context: got %v, want an error matching context.Canceled", err)
	}
	e.expectIndex(ix, "after DeleteIndexes with a cancelled context", c1, s1, 0, 5)
	expectErr(t, "DeleteIndexes of an invalid name", d.DeleteIndexes(e.ctx, "bad name"), core.ErrInvalidArgument)

	if err := d.DeleteIndexes(e.ctx, s1); err != nil {
		t.Fatalf("DeleteIndexes(%q): %v", s1, err)
	}
	for _, k := range []struct {
		client string
		p      int
	}{{c1, 0}, {c2, parts - 1}} {
		_, err := ix.GetIndex(e.ctx, k.client, s1, k.p)
		expectErr(t, fmt.Sprintf("GetIndex(%q, %q, %d) after DeleteIndexes", k.client, s1, k.p), err, core.ErrIndexNotFound)
	}
	e.expectIndex(ix, "another stream after DeleteIndexes", c1, s2, 0, 7)
	e.expectIndex(ix, "a stream whose name extends the deleted one's", c1, s3, 0, 8)
	e.saveIndex(ix, c1, s1, 0, 1)
	e.expectIndex(ix, "a save lower than the deleted value", c1, s1, 0, 1)
	if err := d.DeleteIndexes(e.ctx, e.name("never")); err != nil {
		t.Errorf("DeleteIndexes of a stream without saved indexes: %v, want nil", err)
	}
}

func testIndexCancelled(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	n := e.create("ixcancel", 1)
	for _, d := range doneContexts(e.ctx) {
		c := e.client("cancel")
		if _, err := ix.GetIndex(d.ctx, c, n, 0); !errors.Is(err, d.err) {
			t.Errorf("GetIndex with %s: got %v, want an error matching %v (the context's error, possibly wrapped)", d.what, err, d.err)
		}
		if err := ix.SaveIndex(d.ctx, c, n, 0, 1); !errors.Is(err, d.err) {
			t.Errorf("SaveIndex with %s: got %v, want an error matching %v (the context's error, possibly wrapped)", d.what, err, d.err)
		}
		// Nothing saved: a consumer that believes its save failed must not find it applied.
		_, err := ix.GetIndex(e.ctx, c, n, 0)
		expectErr(t, "GetIndex after a SaveIndex with "+d.what, err, core.ErrIndexNotFound)
	}
}

func testIndexClosed(t T, h Harness) {
	e := newEnv(t, h)
	ix := e.index()
	n := e.create("ixclosed", 1)
	c := e.client("closed")
	e.saveIndex(ix, c, n, 0, 1)
	if err := e.close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := ix.GetIndex(e.ctx, c, n, 0)
	expectErr(t, "GetIndex after Close", err, core.ErrClosed)
	expectErr(t, "SaveIndex after Close", ix.SaveIndex(e.ctx, c, n, 0, 2), core.ErrClosed)
	if d, ok := ix.(core.IndexDeleter); ok {
		expectErr(t, "DeleteIndexes after Close", d.DeleteIndexes(e.ctx, n), core.ErrClosed)
	}
	if err := e.closeStep("second IndexStorage.Close", ix.Close); err != nil {
		t.Errorf("second IndexStorage.Close: %v; want nil", err)
	}
}
