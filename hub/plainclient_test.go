package hub_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluicehq/sluice/hub/hubtest"
)

// plainClient is what a device written against the Ockam stream protocol does: frames built
// by hand with the test's own BARE encoder (bare_test.go), no Sluice code at all.
type plainClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

var appRoute = []plainAddr{local("app")}

func (c *plainClient) send(onward []plainAddr, protocol string, data []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(encodeFrame(onward, appRoute, protocol, data)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *plainClient) recv(wantProtocol string) plainMsg {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	m, err := decodeTransport(body)
	if err != nil {
		c.t.Fatalf("decode transport message: %v", err)
	}
	if len(m.onward) != 1 || m.onward[0].String() != "0#app" {
		c.t.Fatalf("reply onward route %v, want [0#app]", m.onward)
	}
	if m.protocol != wantProtocol {
		reason := ""
		if m.protocol == "error" {
			reason = ": " + (&bareR{b: m.data}).str()
		}
		c.t.Fatalf("got protocol %q%s, want %q", m.protocol, reason, wantProtocol)
	}
	return m
}

func TestPlainOckamClient(t *testing.T) {
	_, addr := hubtest.Start(t, openBbolt(t))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &plainClient{t: t, nc: nc, r: bufio.NewReader(nc)}
	streamSvc := []plainAddr{local("stream")}
	indexSvc := []plainAddr{local("stream_index")}

	// stream_create {stream_name: optional<string>} -> Init {stream_name}, from the stream
	// worker: its return route is the route to use for push and pull.
	name := "plain-ockam"
	c.send(streamSvc, "stream_create", (&bareW{}).optStr(&name).b)
	m := c.recv("stream_create")
	r := &bareR{b: m.data}
	if got := r.str(); r.err != nil || len(r.b) != 0 || got != name {
		t.Fatalf("Init = %q (err %v, %d trailing bytes), want %q", got, r.err, len(r.b), name)
	}
	if len(m.ret) == 0 || m.ret[0].String() == "0#stream" {
		t.Fatalf("Init return route %v: want the stream worker", m.ret)
	}
	worker := m.ret

	// stream_push {request_id, data} -> PushConfirm {request_id, status, index}.
	var indexes []uint64
	for i := range 3 {
		c.send(worker, "stream_push", (&bareW{}).uint(uint64(10+i)).data(fmt.Appendf(nil, "hello %d", i)).b)
		m := c.recv("stream_push")
		r := &bareR{b: m.data}
		id, status, index := r.uint(), r.uint(), r.uint()
		if r.err != nil || len(r.b) != 0 || id != uint64(10+i) || status != 0 {
			t.Fatalf("PushConfirm = {%d, %d, %d} (err %v), want {%d, OK, _}", id, status, index, r.err, 10+i)
		}
		indexes = append(indexes, index)
	}

	// stream_pull {request_id, index, limit} -> {request_id, messages: []{index, data}}.
	c.send(worker, "stream_pull", (&bareW{}).uint(77).uint(indexes[0]).uint(10).b)
	m = c.recv("stream_pull")
	r = &bareR{b: m.data}
	if id := r.uint(); id != 77 {
		t.Fatalf("PullResponse request_id = %d, want 77", id)
	}
	if n := r.uint(); n != 3 {
		t.Fatalf("PullResponse has %d messages, want 3", n)
	}
	for i := range 3 {
		idx, data := r.uint(), r.str()
		if idx != indexes[i] || data != fmt.Sprintf("hello %d", i) {
			t.Fatalf("message %d = {%d, %q}, want {%d, %q}", i, idx, data, indexes[i], fmt.Sprintf("hello %d", i))
		}
	}
	if r.err != nil || len(r.b) != 0 {
		t.Fatalf("PullResponse: err %v, %d trailing bytes", r.err, len(r.b))
	}

	// stream_index: Save=1 {client_id, stream_name, index} (no reply), then
	// Get=0 {client_id, stream_name} -> {client_id, stream_name, index: optional<uint>}.
	c.send(indexSvc, "stream_index", (&bareW{}).uint(0).str("dev1").str(name).b)
	m = c.recv("stream_index")
	r = &bareR{b: m.data}
	if cid, sn := r.str(), r.str(); cid != "dev1" || sn != name {
		t.Fatalf("IndexResponse for (%q, %q)", cid, sn)
	}
	if _, ok := r.optUint(); ok || r.err != nil {
		t.Fatalf("index of a new client is present (err %v), want none", r.err)
	}
	c.send(indexSvc, "stream_index", (&bareW{}).uint(1).str("dev1").str(name).uint(indexes[2]+1).b)
	c.send(indexSvc, "stream_index", (&bareW{}).uint(0).str("dev1").str(name).b)
	m = c.recv("stream_index")
	r = &bareR{b: m.data}
	r.str()
	r.str()
	if idx, ok := r.optUint(); !ok || idx != indexes[2]+1 || r.err != nil || len(r.b) != 0 {
		t.Fatalf("saved index = %d present=%v (err %v), want %d", idx, ok, r.err, indexes[2]+1)
	}

	// The proposal's stream_create_partitions {stream_name, partitions} -> one
	// {stream_name, partition} per partition, each from its own worker, under the same name.
	pname := "plain-parts"
	c.send(streamSvc, "stream_create_partitions", (&bareW{}).optStr(&pname).uint(2).b)
	seen := map[uint64]string{}
	for range 2 {
		m := c.recv("stream_create_partitions")
		r := &bareR{b: m.data}
		sn, p := r.str(), r.uint()
		if r.err != nil || sn != pname || p > 1 {
			t.Fatalf("partitioned Init = {%q, %d} (err %v)", sn, p, r.err)
		}
		seen[p] = fmt.Sprint(m.ret)
	}
	if len(seen) != 2 || seen[0] == seen[1] {
		t.Fatalf("partition Inits: %v, want two partitions with different routes", seen)
	}

	// An unknown protocol gets an `error` {reason}.
	c.send(streamSvc, "stream_frobnicate", nil)
	m = c.recv("error")
	if reason := (&bareR{b: m.data}).str(); reason == "" {
		t.Fatal("error reply without a reason")
	}
}
