// Package hubtest holds the hub's end-to-end tests as a reusable function, so every backend
// can run them: [Run] starts a hub on the backend, talks to it over real TCP on 127.0.0.1
// with hand-built protocol frames, and checks each service.
//
//	func TestHub(t *testing.T) {
//		hubtest.Run(t, func(t *testing.T) *core.Backend {
//			s, err := bbolt.New(context.Background(), filepath.Join(t.TempDir(), "hub.db"), nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return &core.Backend{Storage: s, Index: s}
//		})
//	}
package hubtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

// Run runs the hub's end-to-end tests as subtests of t. openBackend returns a backend
// for one subtest (a fresh one, or a shared broker: stream names are random); Run closes
// it when the subtest ends. The backend must accept messages of at least 4 KiB.
func Run(t *testing.T, openBackend func(t *testing.T) *core.Backend) {
	t.Helper()
	tests := []struct {
		name string
		f    func(t *testing.T, b *core.Backend)
	}{
		{"Create", testCreate},
		{"PushPull", testPushPull},
		{"Partitioned", testPartitioned},
		{"StreamInfo", testStreamInfo},
		{"Index", testIndex},
		{"IndexPartitioned", testIndexPartitioned},
		{"SluiceIndex", testSluiceIndex},
		{"PullOneFrame", testPullOneFrame},
		{"PushBatch", testPushBatch},
		{"PullWait", testPullWait},
		{"PipelinedPushes", testPipelinedPushes},
		{"MessageTooLarge", testMessageTooLarge},
		{"UnknownProtocol", testUnknownProtocol},
		{"Undecodable", testUndecodable},
		{"BackendFailure", testBackendFailure},
		{"MalformedFrame", testMalformedFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := openBackend(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("close backend: %v", err)
				}
			})
			tc.f(t, b)
		})
	}
}

// name returns a random stream name for a test.
func name(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "hubtest-" + prefix + "-" + hex.EncodeToString(b[:])
}

func testCreate(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	n := name("create")
	s := c.Create(n)
	if s.Name != n {
		t.Fatalf("Init stream_name = %q, want %q", s.Name, n)
	}
	if s.Route[0].Equal(wire.Local(hub.StreamAddress)) {
		t.Fatalf("Init return route [%s] is the stream service, want the partition worker", s.Route)
	}
	// Creating it again re-sends Init with the same route.
	again := c.Create(n)
	if again.Name != n || !again.Route.Equal(s.Route) {
		t.Fatalf("re-create: Init %q via [%s], want %q via [%s]", again.Name, again.Route, n, s.Route)
	}
	// No name: the hub generates one.
	g := c.Create("")
	if !strings.HasPrefix(g.Name, "generated_") || core.ValidateStreamName(g.Name) != nil {
		t.Fatalf("generated stream name %q, want a valid name starting with generated_", g.Name)
	}
	if g2 := c.Create(""); g2.Name == g.Name {
		t.Fatalf("two creates without a name both got %q", g.Name)
	}
	// The generated stream works.
	if pc := c.Push(g, 1, []byte("x")); pc.Status != wire.StatusOK {
		t.Fatalf("push to generated stream: status %v", pc.Status)
	}
	// An invalid name is an error reply, not a silent drop.
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some("bad name/x")})
	if reason := c.ExpectError(); !strings.Contains(reason, "bad name/x") {
		t.Errorf("error reason %q does not name the stream", reason)
	}
}

func testPushPull(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	s := c.Create(name("pushpull"))
	const n = 20
	var indexes []uint64
	for i := range n {
		pc := c.Push(s, uint64(100+i), fmt.Appendf(nil, "message %d", i))
		if pc.Status != wire.StatusOK {
			t.Fatalf("push %d: status %v", i, pc.Status)
		}
		if pc.RequestID != uint64(100+i) {
			t.Fatalf("push %d: confirm request_id %d, want %d", i, pc.RequestID, 100+i)
		}
		if i > 0 && pc.Index <= indexes[i-1] {
			t.Fatalf("push %d: index %d not above the previous %d", i, pc.Index, indexes[i-1])
		}
		indexes = append(indexes, pc.Index)
	}
	got := pullAll(t, c, s, indexes[0], n)
	for i, m := range got {
		if m.Index != indexes[i] || string(m.Data) != fmt.Sprintf("message %d", i) {
			t.Fatalf("message %d: index %d %q, want index %d %q", i, m.Index, m.Data, indexes[i], fmt.Sprintf("message %d", i))
		}
	}
	// Caught up: an empty response, not an error.
	if pr := c.Pull(s, 7, indexes[n-1]+1, 10); len(pr.Messages) != 0 || pr.RequestID != 7 {
		t.Fatalf("pull past the end: request_id %d, %d messages; want 7, 0", pr.RequestID, len(pr.Messages))
	}
	// A second connection sees the same messages through the route from its own Init.
	c2 := Dial(t, addr)
	s2 := c2.Create(s.Name)
	if pr := c2.Pull(s2, 1, indexes[0], 1); len(pr.Messages) != 1 || string(pr.Messages[0].Data) != "message 0" {
		t.Fatalf("pull from a second connection: %+v", pr.Messages)
	}
}

// pullAll pulls from index until it has n messages. An empty response is retried for up
// to ReplyTimeout, for backends whose reads lag their confirmed appends (see the
// conformance Harness.MaxWait); for the others the first pull already has the messages.
func pullAll(t *testing.T, c *Conn, s Stream, from uint64, n int) []wire.StreamMessage {
	t.Helper()
	var out []wire.StreamMessage
	deadline := time.Now().Add(ReplyTimeout)
	for id := uint64(1); len(out) < n; id++ {
		pr := c.Pull(s, id, from, uint64(n-len(out)))
		if pr.RequestID != id {
			t.Fatalf("pull response request_id %d, want %d", pr.RequestID, id)
		}
		if len(pr.Messages) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("pull from %d: no messages, want %d more", from, n-len(out))
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		for _, m := range pr.Messages {
			out = append(out, wire.StreamMessage{Index: m.Index, Data: bytes.Clone(m.Data)})
		}
		from = pr.Messages[len(pr.Messages)-1].Index + 1
	}
	return out
}

func testStreamInfo(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	n := name("info")
	// Asking does not create.
	if rep := c.StreamInfo(1, n); rep.Status != wire.StatusOK || rep.Partitions.Valid {
		t.Fatalf("stream info of a missing stream = %+v, want OK without partitions", rep)
	}
	if rep := c.StreamInfo(2, n); rep.Partitions.Valid {
		t.Fatalf("stream info created the stream: %+v", rep)
	}
	c.CreatePartitioned(wire.ProtocolCreatePartitioned, n, 3)
	if rep := c.StreamInfo(3, n); rep.Status != wire.StatusOK || rep.Partitions != wire.Some[uint64](3) || rep.Reason != "" {
		t.Fatalf("stream info of a 3-partition stream = %+v", rep)
	}
	rep := c.StreamInfo(4, "bad name/x")
	if rep.Status != wire.StatusError || rep.Partitions.Valid || !strings.Contains(rep.Reason, "bad name/x") {
		t.Fatalf("stream info of an invalid name = %+v, want ERROR naming it", rep)
	}
}

func testPartitioned(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	for _, protocol := range []string{wire.ProtocolCreatePartitioned, wire.ProtocolCreatePartitions} {
		t.Run(protocol, func(t *testing.T) {
			n := name("parts")
			parts := c.CreatePartitioned(protocol, n, 3)
			for i, p := range parts {
				if p.Name != n {
					t.Fatalf("partition %d: stream_name %q, want %q", i, p.Name, n)
				}
				for j := range i {
					if parts[j].Route.Equal(p.Route) {
						t.Fatalf("partitions %d and %d share the route [%s]", j, i, p.Route)
					}
				}
			}
			first := make([]uint64, len(parts))
			for i, p := range parts {
				for k := range 3 {
					pc := c.Push(p, uint64(k), fmt.Appendf(nil, "p%d-%d", i, k))
					if pc.Status != wire.StatusOK {
						t.Fatalf("push to partition %d: status %v", i, pc.Status)
					}
					if k == 0 {
						first[i] = pc.Index
					}
				}
			}
			for i, p := range parts {
				got := pullAll(t, c, p, first[i], 3)
				for k, m := range got {
					if want := fmt.Sprintf("p%d-%d", i, k); string(m.Data) != want {
						t.Fatalf("partition %d message %d = %q, want %q", i, k, m.Data, want)
					}
				}
				if pr := c.Pull(p, 9, got[2].Index+1, 10); len(pr.Messages) != 0 {
					t.Fatalf("partition %d holds %d messages after the 3 pushed to it", i, 3+len(pr.Messages))
				}
			}
		})
	}
}

var indexService = wire.Route{wire.Local(hub.IndexAddress)}

func (c *Conn) indexGet(client, stream string) wire.IndexResponse {
	c.t.Helper()
	c.Send(indexService, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: client, StreamName: stream})
	r := c.Expect(wire.ProtocolIndex)
	resp, err := wire.DecodeIndexResponse(r.Data)
	if err != nil {
		c.t.Fatalf("decode IndexResponse: %v", err)
	}
	if resp.ClientID != client || resp.StreamName != stream {
		c.t.Fatalf("IndexResponse for (%q, %q), want (%q, %q)", resp.ClientID, resp.StreamName, client, stream)
	}
	return resp
}

func testIndex(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	s := c.Create(name("index"))
	if got := c.indexGet("reader", s.Name).Index; got.Valid {
		t.Fatalf("index of an unknown key = %d, want none", got.Value)
	}
	save := func(i uint64) {
		c.Send(indexService, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexSave, ClientID: "reader", StreamName: s.Name, Index: i})
	}
	// Ockam's save has no reply; the get that follows on the same connection is handled
	// after it (one index service, messages in order).
	save(5)
	if got := c.indexGet("reader", s.Name).Index; !got.Valid || got.Value != 5 {
		t.Fatalf("index after save 5 = %v, want 5", got)
	}
	save(3) // lower: ignored
	if got := c.indexGet("reader", s.Name).Index; !got.Valid || got.Value != 5 {
		t.Fatalf("index after save 3 = %v, want 5 (saves are monotonic)", got)
	}
	save(0)
	save(9)
	if got := c.indexGet("reader", s.Name).Index; !got.Valid || got.Value != 9 {
		t.Fatalf("index after save 9 = %v, want 9", got)
	}
	if got := c.indexGet("other", s.Name).Index; got.Valid {
		t.Fatalf("index of another client = %d, want none", got.Value)
	}
	// A bad client id is an error reply.
	c.Send(indexService, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "", StreamName: s.Name})
	c.ExpectError()
}

func testIndexPartitioned(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	n := name("indexp")
	c.CreatePartitioned(wire.ProtocolCreatePartitioned, n, 2)
	get := func(p uint64) wire.Optional[uint64] {
		c.Send(indexService, wire.ProtocolIndexPartitioned, wire.IndexRequestPartitioned{Op: wire.IndexGet, ClientID: "r", StreamName: n, Partition: p})
		r := c.Expect(wire.ProtocolIndexPartitioned)
		resp, err := wire.DecodeIndexResponsePartitioned(r.Data)
		if err != nil {
			t.Fatalf("decode IndexResponsePartitioned: %v", err)
		}
		if resp.Partition != p || resp.ClientID != "r" || resp.StreamName != n {
			t.Fatalf("response for (%q, %q, %d), want (r, %q, %d)", resp.ClientID, resp.StreamName, resp.Partition, n, p)
		}
		return resp.Index
	}
	save := func(p, i uint64) {
		c.Send(indexService, wire.ProtocolIndexPartitioned, wire.IndexRequestPartitioned{Op: wire.IndexSave, ClientID: "r", StreamName: n, Partition: p, Index: i})
	}
	if got := get(0); got.Valid {
		t.Fatalf("unknown partition 0 index = %d, want none", got.Value)
	}
	save(1, 7)
	save(1, 2)
	if got := get(1); !got.Valid || got.Value != 7 {
		t.Fatalf("partition 1 index = %v, want 7", got)
	}
	if got := get(0); got.Valid {
		t.Fatalf("partition 0 index = %d after saving partition 1, want none", got.Value)
	}
}

func testSluiceIndex(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	n := name("sidx")
	c.Create(n)
	call := func(protocol string, e wire.Encoder, id uint64) wire.IndexReply {
		t.Helper()
		c.Send(indexService, protocol, e)
		r := c.Expect(protocol)
		rep, err := wire.DecodeIndexReply(r.Data)
		if err != nil {
			t.Fatalf("decode IndexReply: %v", err)
		}
		if rep.RequestID != id {
			t.Fatalf("%s reply request_id %d, want %d", protocol, rep.RequestID, id)
		}
		return rep
	}
	get := func(id uint64) wire.IndexReply {
		return call(wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: id, ClientID: "c", StreamName: n}, id)
	}
	save := func(id, i uint64) wire.IndexReply {
		return call(wire.ProtocolIndexSave, wire.IndexSaveRequest{RequestID: id, ClientID: "c", StreamName: n, Index: i}, id)
	}
	if r := get(1); r.Status != wire.StatusOK || r.Index.Valid {
		t.Fatalf("get unknown: %+v, want OK and none", r)
	}
	if r := save(2, 10); r.Status != wire.StatusOK || r.Index != wire.Some[uint64](10) {
		t.Fatalf("save 10: %+v, want OK 10", r)
	}
	if r := save(3, 4); r.Status != wire.StatusOK || r.Index != wire.Some[uint64](10) {
		t.Fatalf("save 4 after 10: %+v, want OK 10 (monotonic)", r)
	}
	if r := get(4); r.Status != wire.StatusOK || r.Index != wire.Some[uint64](10) {
		t.Fatalf("get: %+v, want OK 10", r)
	}
	if r := call(wire.ProtocolIndexGet, wire.IndexGetRequest{RequestID: 5, ClientID: "", StreamName: n}, 5); r.Status != wire.StatusError {
		t.Fatalf("get with an empty client id: status %v, want ERROR", r.Status)
	}
}

func testPullOneFrame(t *testing.T, b *core.Backend) {
	h, addr := Start(t, b)
	c := Dial(t, addr)
	s := c.Create(name("frame"))
	const n, size = 40, 4000 // 160 KB: about two and a half frames
	var first uint64
	for i := range n {
		data := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		pc := c.Push(s, uint64(i), data)
		if pc.Status != wire.StatusOK {
			t.Fatalf("push %d: status %v", i, pc.Status)
		}
		if i == 0 {
			first = pc.Index
		}
	}
	var got int
	from := first
	deadline := time.Now().Add(ReplyTimeout)
	for req := uint64(1); got < n; req++ {
		c.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: req, Index: from, Limit: 1000})
		r := c.Expect(wire.ProtocolPull)
		if r.FrameLen > wire.MaxFrame {
			t.Fatalf("pull response frame of %d bytes exceeds %d", r.FrameLen, wire.MaxFrame)
		}
		pr, err := wire.DecodePullResponse(r.Data)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(pr.Messages) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("pull from %d: empty, %d of %d messages read", from, got, n)
			}
			time.Sleep(20 * time.Millisecond) // a backend whose reads lag (see pullAll)
			continue
		}
		if len(pr.Messages) == n-got && got == 0 {
			t.Fatalf("one response held all %d messages (%d bytes): not capped to a frame", n, n*size)
		}
		for _, m := range pr.Messages {
			if want := bytes.Repeat([]byte{byte('a' + got%26)}, size); !bytes.Equal(m.Data, want) {
				t.Fatalf("message %d: %d bytes starting %q, want %d x %q", got, len(m.Data), m.Data[:min(len(m.Data), 4)], size, want[0])
			}
			got++
		}
		from = pr.Messages[len(pr.Messages)-1].Index + 1
	}
	if m := h.Metrics(); m.PulledMessages != n {
		t.Errorf("metrics: pulled_messages = %d, want %d", m.PulledMessages, n)
	}
}

func testPushBatch(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	s := c.Create(name("batch"))
	msgs := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 42, Messages: msgs})
	r := c.Expect(wire.ProtocolPushBatch)
	conf, err := wire.DecodePushBatchConfirm(r.Data)
	if err != nil {
		t.Fatalf("decode PushBatchConfirm: %v", err)
	}
	if conf.RequestID != 42 || conf.Status != wire.StatusOK || len(conf.Indexes) != 3 {
		t.Fatalf("confirm %+v, want request 42, OK, 3 indexes", conf)
	}
	got := pullAll(t, c, s, conf.Indexes[0], 3)
	for i, m := range got {
		if m.Index != conf.Indexes[i] || !bytes.Equal(m.Data, msgs[i]) {
			t.Fatalf("message %d = (%d, %q), want (%d, %q)", i, m.Index, m.Data, conf.Indexes[i], msgs[i])
		}
	}
	// An empty batch is confirmed with no indexes.
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 43})
	r = c.Expect(wire.ProtocolPushBatch)
	if conf, err = wire.DecodePushBatchConfirm(r.Data); err != nil || conf.Status != wire.StatusOK || len(conf.Indexes) != 0 {
		t.Fatalf("empty batch: %+v, %v", conf, err)
	}
}

func testPullWait(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	consumer := Dial(t, addr)
	producer := Dial(t, addr)
	n := name("wait")
	cs := consumer.Create(n)
	ps := producer.Create(n)
	pc := producer.Push(ps, 1, []byte("first"))
	next := pc.Index + 1

	// Messages already there: answered at once.
	consumer.Send(cs.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 1, Index: pc.Index, Limit: 10, WaitMS: 60_000})
	if pr := consumer.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 1 || len(pr.Messages) != 1 || string(pr.Messages[0].Data) != "first" {
		t.Fatalf("pull_wait with a message present: %+v", pr)
	}
	// Caught up with a long wait: parked until the next append lands. The push is sent
	// after the pull, on another connection; the wait (60 s) is far longer than the
	// reply timeout would allow if the hub answered only at expiry.
	consumer.Send(cs.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 2, Index: next, Limit: 10, WaitMS: 60_000})
	waitParked(t, consumer)
	if pc := producer.Push(ps, 2, []byte("second")); pc.Status != wire.StatusOK {
		t.Fatalf("push: %v", pc.Status)
	}
	if pr := consumer.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 2 || len(pr.Messages) != 1 || string(pr.Messages[0].Data) != "second" {
		t.Fatalf("parked pull_wait after a push: %+v", pr)
	}
	// Nothing arrives: an empty response after wait_ms.
	consumer.Send(cs.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 3, Index: next + 1, Limit: 10, WaitMS: 50})
	if pr := consumer.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 3 || len(pr.Messages) != 0 {
		t.Fatalf("expired pull_wait: %+v, want request 3 with no messages", pr)
	}
}

// waitParked gives the hub a moment to park a pull_wait: it checks that no reply arrives
// for a short while. The test is correct without it (a pull that fetches after the push
// finds the message); it only makes the parked path the one usually exercised.
func waitParked(t *testing.T, c *Conn) {
	t.Helper()
	if r, err := c.TryRecv(50 * time.Millisecond); err == nil {
		t.Fatalf("pull_wait answered at once while caught up: %q", r.Protocol)
	}
}

func testPipelinedPushes(t *testing.T, b *core.Backend) {
	h, addr := Start(t, b)
	const conns, per = 4, 100
	n := name("pipe")
	cs := make([]*Conn, conns)
	ss := make([]Stream, conns)
	for i := range cs {
		cs[i] = Dial(t, addr)
		ss[i] = cs[i].Create(n)
	}
	// Every connection sends all its pushes before reading a confirm.
	for i, c := range cs {
		for k := range per {
			c.Send(ss[i].Route, wire.ProtocolPush, wire.PushRequest{RequestID: uint64(k), Data: fmt.Appendf(nil, "%d/%d", i, k)})
		}
	}
	seen := make(map[uint64]string)
	for i, c := range cs {
		last := -1
		for range per {
			pc := c.ExpectConfirm()
			if pc.Status != wire.StatusOK {
				t.Fatalf("conn %d request %d: status %v", i, pc.RequestID, pc.Status)
			}
			if int(pc.RequestID) <= last {
				t.Fatalf("conn %d: confirm %d after %d: confirms out of order", i, pc.RequestID, last)
			}
			last = int(pc.RequestID)
			if prev, dup := seen[pc.Index]; dup {
				t.Fatalf("index %d confirmed twice (%s and %d/%d)", pc.Index, prev, i, pc.RequestID)
			}
			seen[pc.Index] = fmt.Sprintf("%d/%d", i, pc.RequestID)
		}
	}
	// Every message is stored under the index its confirm reported.
	var lo uint64 = ^uint64(0)
	for i := range seen {
		lo = min(lo, i)
	}
	for _, m := range pullAll(t, cs[0], ss[0], lo, conns*per) {
		if want := seen[m.Index]; string(m.Data) != want {
			t.Fatalf("index %d holds %q, its confirm was for %q", m.Index, m.Data, want)
		}
	}
	m := h.Metrics()
	if m.Pushes != conns*per || m.AppendedMessages != conns*per {
		t.Errorf("metrics: pushes %d, appended %d; want %d each", m.Pushes, m.AppendedMessages, conns*per)
	}
	if m.Appends == 0 || m.Appends > m.AppendedMessages || m.MaxBatch == 0 {
		t.Errorf("metrics: %d appends for %d messages, max batch %d", m.Appends, m.AppendedMessages, m.MaxBatch)
	}
	t.Logf("%d pushes in %d backend appends (max batch %d)", m.Pushes, m.Appends, m.MaxBatch)
}

func testMessageTooLarge(t *testing.T, b *core.Backend) {
	h, addr := Start(t, b, hub.WithMaxMessageSize(1000))
	if h.MaxMessageSize() != 1000 {
		t.Fatalf("MaxMessageSize() = %d, want 1000", h.MaxMessageSize())
	}
	c := Dial(t, addr)
	s := c.Create(name("large"))
	if pc := c.Push(s, 1, make([]byte, 1001)); pc.Status != wire.StatusError || pc.RequestID != 1 {
		t.Fatalf("push of 1001 bytes: %+v, want request 1 status ERROR", pc)
	}
	c.Send(s.Route, wire.ProtocolPushBatch, wire.PushBatchRequest{RequestID: 2, Messages: [][]byte{[]byte("ok"), make([]byte, 1001)}})
	r := c.Expect(wire.ProtocolPushBatch)
	if conf, err := wire.DecodePushBatchConfirm(r.Data); err != nil || conf.Status != wire.StatusError || len(conf.Indexes) != 0 {
		t.Fatalf("batch with a large message: %+v %v, want ERROR", conf, err)
	}
	pc := c.Push(s, 3, make([]byte, 1000))
	if pc.Status != wire.StatusOK {
		t.Fatalf("push of 1000 bytes: %v", pc.Status)
	}
	// Nothing of the refused requests was stored: the only message is the last one.
	if pr := c.Pull(s, 4, 0, 10); len(pr.Messages) != 1 || pr.Messages[0].Index != pc.Index {
		t.Fatalf("stream holds %d messages, want only the 1000-byte one", len(pr.Messages))
	}
}

func testUnknownProtocol(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	s := c.Create(name("unknown"))
	for _, to := range []wire.Route{{wire.Local(hub.StreamAddress)}, {wire.Local(hub.IndexAddress)}, s.Route} {
		c.Send(to, "no_such_protocol", wire.Binary{Data: []byte("x")})
		if reason := c.ExpectError(); !strings.Contains(reason, "no_such_protocol") {
			t.Errorf("to [%s]: reason %q does not name the protocol", to, reason)
		}
	}
	// The connection still works.
	if pc := c.Push(s, 1, []byte("ok")); pc.Status != wire.StatusOK {
		t.Fatalf("push after the errors: %v", pc.Status)
	}
}

func testUndecodable(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	c := Dial(t, addr)
	s := c.Create(name("undecodable"))
	// A payload that is not a BasePayload.
	c.SendPayload(s.Route, []byte{0xff, 0xff})
	c.ExpectError()
	// A BasePayload whose data is not a PushRequest (trailing bytes).
	c.SendPayload(s.Route, wire.EncodePayload(wire.ProtocolPush, wire.Binary{Data: []byte{1, 2, 3}}))
	c.ExpectError()
	c.SendPayload(s.Route, wire.EncodePayload(wire.ProtocolPull, wire.Binary{Data: []byte{0x80}}))
	if reason := c.ExpectError(); !strings.Contains(reason, wire.ProtocolPull) {
		t.Errorf("reason %q does not name %s", reason, wire.ProtocolPull)
	}
	// A Sluice extension request whose request id reads is answered by a sluice_error
	// naming it; one whose request id does not read by an `error`.
	for _, p := range []string{wire.ProtocolPullWait, wire.ProtocolPushBatch} {
		c.SendPayload(s.Route, wire.EncodePayload(p, wire.Binary{Data: []byte{0x80}})) // id 1, then a truncated uint
		if reason := c.ExpectRequestError(p, 1); !strings.Contains(reason, p) {
			t.Errorf("reason %q does not name %s", reason, p)
		}
		c.SendPayload(s.Route, wire.Encode(wire.BasePayload{Protocol: p})) // no request id
		if reason := c.ExpectError(); !strings.Contains(reason, p) {
			t.Errorf("reason %q does not name %s", reason, p)
		}
	}
	for _, p := range []string{wire.ProtocolIndexGet, wire.ProtocolIndexSave} {
		c.SendPayload(indexService, wire.EncodePayload(p, wire.Binary{Data: []byte{0x80}}))
		c.ExpectRequestError(p, 1)
	}
	c.SendPayload(wire.Route{wire.Local(hub.StreamAddress)}, wire.EncodePayload(wire.ProtocolStreamInfo, wire.Binary{Data: []byte{0x80}}))
	c.ExpectRequestError(wire.ProtocolStreamInfo, 1)
	c.SendPayload(wire.Route{wire.Local(hub.StreamAddress)}, wire.EncodePayload(wire.ProtocolCreate, wire.Binary{Data: []byte{7, 7}}))
	c.ExpectError()
	c.SendPayload(indexService, wire.EncodePayload(wire.ProtocolIndex, wire.Binary{Data: []byte{9}}))
	c.ExpectError()
	if pc := c.Push(s, 1, []byte("ok")); pc.Status != wire.StatusOK {
		t.Fatalf("push after the errors: %v", pc.Status)
	}
}

// errInjected is what the failing backend returns.
var errInjected = fmt.Errorf("%w: hubtest: injected failure", core.ErrUnavailable)

// failing wraps a backend and fails every call while fail is set.
type failing struct {
	core.Storage
	index core.IndexStorage
	fail  atomic.Bool
}

func (f *failing) err() error {
	if f.fail.Load() {
		return errInjected
	}
	return nil
}

func (f *failing) CreateStream(ctx context.Context, s string, n int) (int, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.Storage.CreateStream(ctx, s, n)
}

func (f *failing) Append(ctx context.Context, s string, p int, msgs [][]byte) ([]uint64, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Storage.Append(ctx, s, p, msgs)
}

func (f *failing) Fetch(ctx context.Context, s string, p int, from uint64, limit int) ([]core.Message, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Storage.Fetch(ctx, s, p, from, limit)
}

func (f *failing) GetIndex(ctx context.Context, c, s string, p int) (uint64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.index.GetIndex(ctx, c, s, p)
}

func (f *failing) SaveIndex(ctx context.Context, c, s string, p int, i uint64) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.index.SaveIndex(ctx, c, s, p, i)
}

// failingIndex exposes the index half of failing (Storage and IndexStorage both have Close).
type failingIndex struct{ *failing }

func (f failingIndex) Close() error { return nil } // the wrapped backend is closed by Run

func testBackendFailure(t *testing.T, b *core.Backend) {
	f := &failing{Storage: b.Storage, index: b.Index}
	wrapped := &core.Backend{Storage: f, Index: failingIndex{f}}
	_, addr := Start(t, wrapped)
	c := Dial(t, addr)
	s := c.Create(name("fail"))
	DeleteAtEnd(t, b, s.Name) // the wrapper is no StreamDeleter: delete through the backend
	pc := c.Push(s, 1, []byte("before"))
	if pc.Status != wire.StatusOK {
		t.Fatalf("push before failure: %v", pc.Status)
	}
	f.fail.Store(true)

	if pc := c.Push(s, 2, []byte("during")); pc.Status != wire.StatusError || pc.RequestID != 2 {
		t.Fatalf("push while the backend fails: %+v, want request 2 status ERROR", pc)
	}
	// A failed fetch is an error reply, never an empty list.
	c.Send(s.Route, wire.ProtocolPull, wire.PullRequest{RequestID: 3, Index: pc.Index, Limit: 10})
	if reason := c.ExpectError(); !strings.Contains(reason, "injected failure") {
		t.Errorf("pull error reason %q does not carry the backend's error", reason)
	}
	// The same for a long poll, answered by a sluice_error that names the request.
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 4, Index: pc.Index, Limit: 10, WaitMS: 10_000})
	if reason := c.ExpectRequestError(wire.ProtocolPullWait, 4); !strings.Contains(reason, "injected failure") {
		t.Errorf("sluice_pull_wait error reason %q does not carry the backend's error", reason)
	}
	c.Send(indexService, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexGet, ClientID: "r", StreamName: s.Name})
	c.ExpectError()
	c.Send(indexService, wire.ProtocolIndex, wire.IndexRequest{Op: wire.IndexSave, ClientID: "r", StreamName: s.Name, Index: 1})
	c.ExpectError()
	c.Send(indexService, wire.ProtocolIndexSave, wire.IndexSaveRequest{RequestID: 5, ClientID: "r", StreamName: s.Name, Index: 1})
	r := c.Expect(wire.ProtocolIndexSave)
	if rep, err := wire.DecodeIndexReply(r.Data); err != nil || rep.Status != wire.StatusError || rep.RequestID != 5 {
		t.Fatalf("sluice_index_save while failing: %+v %v, want request 5 ERROR", rep, err)
	}
	c.Send(wire.Route{wire.Local(hub.StreamAddress)}, wire.ProtocolCreate, wire.CreateStreamRequest{StreamName: wire.Some(name("fail2"))})
	c.ExpectError()
	// The wrapper hides the backend's PartitionCounter: the hub answers from the streams it
	// created, and cannot tell about others.
	if rep := c.StreamInfo(8, s.Name); rep.Status != wire.StatusOK || rep.Partitions != wire.Some[uint64](1) {
		t.Fatalf("stream info of a stream created through the hub = %+v, want 1 partition", rep)
	}
	if rep := c.StreamInfo(9, name("other")); rep.Status != wire.StatusError || rep.Reason == "" {
		t.Fatalf("stream info of a stream the hub cannot know = %+v, want ERROR with a reason", rep)
	}

	// Recovery: the same connection and stream work again, and nothing of the failed push
	// was stored.
	f.fail.Store(false)
	pr := c.Pull(s, 6, pc.Index, 10)
	if len(pr.Messages) != 1 || string(pr.Messages[0].Data) != "before" {
		t.Fatalf("after recovery the stream holds %d messages, want only \"before\"", len(pr.Messages))
	}
	if pc := c.Push(s, 7, []byte("after")); pc.Status != wire.StatusOK {
		t.Fatalf("push after recovery: %v", pc.Status)
	}
}

func testMalformedFrame(t *testing.T, b *core.Backend) {
	_, addr := Start(t, b)
	good := Dial(t, addr)
	s := good.Create(name("malformed"))
	for _, raw := range [][]byte{
		{0, 3, 9, 9, 9},    // version 9
		{0, 2, 1, 5},       // truncated route
		{0, 0},             // zero length
		{0, 4, 1, 0, 0, 5}, // payload length past the frame
	} {
		bad := Dial(t, addr)
		if err := bad.write(raw); err != nil {
			t.Fatalf("write: %v", err)
		}
		bad.ExpectClosed()
	}
	// Only the bad connections were closed.
	if pc := good.Push(s, 1, []byte("still here")); pc.Status != wire.StatusOK {
		t.Fatalf("push on the good connection: %v", pc.Status)
	}
}
