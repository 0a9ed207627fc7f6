package core

import (
	"bytes"
	"testing"
)

func TestCopyMessages(t *testing.T) {
	in := [][]byte{[]byte("ab"), {}, []byte("cde")}
	out := CopyMessages(in)
	if len(out) != len(in) {
		t.Fatalf("%d messages, want %d", len(out), len(in))
	}
	for i := range in {
		if !bytes.Equal(out[i], in[i]) {
			t.Fatalf("message %d = %q, want %q", i, out[i], in[i])
		}
	}
	in[0][0] = 'X' // the copy does not share the caller's bytes
	if out[0][0] != 'a' {
		t.Fatal("the copy changed with the original")
	}
	_ = append(out[0], 'Z') // capped: cannot write over the next message
	if string(out[2]) != "cde" || cap(out[0]) != 2 {
		t.Fatalf("append to message 0 reached the others: %q (cap %d)", out[2], cap(out[0]))
	}
}

// TestCopyMessagesOneAllocation checks that the bytes of all the copies take one allocation
// (and the slice of them another), however many messages there are.
func TestCopyMessagesOneAllocation(t *testing.T) {
	in := [][]byte{[]byte("ab"), {}, []byte("cde"), []byte("f"), bytes.Repeat([]byte("g"), 100)}
	if n := testing.AllocsPerRun(100, func() { copySink = CopyMessages(in) }); n != 2 {
		t.Fatalf("CopyMessages made %v allocations, want 2", n)
	}
}

var copySink [][]byte // keeps the compiler from putting the copies on the stack
