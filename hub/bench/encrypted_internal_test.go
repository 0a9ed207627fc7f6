package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestSendForCountsDistinctMessages: the plain path of e2e-encrypted delivers at least once,
// so a message can arrive twice, where the secure channel drops such a duplicate itself. For
// the two paths to count the same thing, sendFor must wait for every distinct message (not
// for as many arrivals, which duplicates would reach before the last messages arrived),
// count each once and report the duplicates.
func TestSendForCountsDistinctMessages(t *testing.T) {
	const size = 64
	got := newTally()
	var sent [][]byte
	s, err := sendFor(context.Background(), Config{Batch: 4, Duration: 20 * time.Millisecond}, size, got, func(msg []byte) error {
		sent = append(sent, msg)
		got.add(msg, size)
		if len(sent)%2 == 0 {
			got.add(msg, size) // every second message is delivered twice
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) < 3 {
		t.Fatalf("sendFor sent %d messages in 20ms; want enough to check", len(sent))
	}
	if want := len(sent) - 1; s.Messages != want { // the warm-up message is not counted
		t.Errorf("sample counts %d messages, want %d (one per distinct timed message)", s.Messages, want)
	}
	if want := len(sent) / 2; s.Duplicates != want {
		t.Errorf("sample counts %d duplicates, want %d", s.Duplicates, want)
	}
	// Each message sent is distinct (its own copy, a sequence number in front), so no
	// layer could drop or merge them.
	for i := 1; i < len(sent); i++ {
		if bytes.Equal(sent[i-1], sent[i]) || &sent[i-1][0] == &sent[i][0] {
			t.Fatalf("messages %d and %d are alike or share memory", i-1, i)
		}
	}
}

// TestTallyWaitsForDistinctMessages: a duplicate must not end a wait for the next message,
// and a wait that ends early says what arrived.
func TestTallyWaitsForDistinctMessages(t *testing.T) {
	const size = 16
	got := newTally()
	msg := func(seq byte) []byte {
		m := make([]byte, size)
		m[7] = seq
		got.sending(uint64(seq))
		return m
	}
	first, second := msg(1), msg(2)
	got.add(first, size)
	got.add(first, size)
	done, cancel := context.WithCancel(context.Background())
	cancel() // wait must decide from what arrived, not wait for more
	err := got.wait(done, 2)
	if err == nil {
		t.Fatal("wait(2) returned after one message and its duplicate; want it to wait for the second message")
	}
	if !strings.Contains(err.Error(), "B received 1 of 2 messages (and 1 duplicates)") {
		t.Errorf("wait error %q does not say what arrived", err)
	}
	got.add(second, size)
	if err := got.wait(done, 2); err != nil {
		t.Fatalf("wait(2) after two distinct messages: %v", err)
	}
	if d := got.duplicates(); d != 1 {
		t.Errorf("duplicates() = %d, want 1", d)
	}
}

// TestTallyRefusesWhatWasNotSent: a message of the wrong size, or with a sequence number
// never sent, fails the wait instead of being counted.
func TestTallyRefusesWhatWasNotSent(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		m          []byte
	}{
		{"size", "B received a 8-byte message, want 16", make([]byte, 8)},
		{"sequence", "B received sequence number 72057594037927936, above the highest sent (0)", append([]byte{1}, make([]byte, 15)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := newTally()
			got.add(tc.m, 16)
			err := got.wait(context.Background(), 1)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("wait: %v, want %q", err, tc.want)
			}
		})
	}
}
