package pulsar

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRestartKeepsAppended appends one message at a time while the broker is killed
// (SIGKILL) and restarted on the same data; every message whose Append returned an index
// must be readable at that index afterwards, indexes must keep increasing across the restart
// (a new ledger), and a Fetch from just past the last message before the restart (an index
// no message has: past the end of the old ledger) must seek to the first message after it.
//
// Under the race detector the appender pauses for the restart and continues on a new
// Store (see race_on_test.go): messages in flight at the kill are then not covered.
func TestRestartKeepsAppended(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the Pulsar broker")
	}
	p := broker(t)
	if !p.CanRestart() {
		t.Skipf("the %s Pulsar cannot be restarted by the test", p.Kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s, err := openStore(t, ctx, "prefix=restart-")
	if err != nil {
		t.Fatal(err)
	}
	var stream string
	defer func() { // s is the Store in use at the end
		_ = s.DeleteStream(context.Background(), stream)
		_ = s.Close()
	}()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	stream = "restart-" + hex.EncodeToString(b)
	if _, err := s.CreateStream(ctx, stream, 1); err != nil {
		t.Fatal(err)
	}

	type acked struct {
		index uint64
		data  []byte
	}
	var (
		mu       sync.Mutex
		ok       []acked
		failures int
		pause    sync.RWMutex // held for writing while the appender must not send
	)
	cur := s // the Store the appender uses; guarded by pause
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(ok) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by the test: ends when stop is closed
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := []byte(fmt.Sprintf("message %06d", i))
			actx, acancel := context.WithTimeout(ctx, time.Minute)
			pause.RLock()
			idx, err := cur.Append(actx, stream, 0, [][]byte{data})
			pause.RUnlock()
			acancel()
			mu.Lock()
			if err == nil {
				ok = append(ok, acked{idx[0], data})
			} else {
				failures++
			}
			mu.Unlock()
			if err != nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	waitFor := func(n int, what string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for count() < n {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("%s: only %d appends succeeded (%d failed)", what, count(), failures)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(50, "before the restart")
	mu.Lock()
	lastBefore := ok[len(ok)-1].index // acknowledged before the kill
	mu.Unlock()
	if raceEnabled {
		pause.Lock()
		mu.Lock()
		lastBefore = ok[len(ok)-1].index
		mu.Unlock()
	}
	if err := p.Restart(ctx); err != nil {
		if raceEnabled {
			pause.Unlock()
		}
		close(stop)
		wg.Wait()
		t.Fatalf("restart: %v", err)
	}
	if raceEnabled {
		if err := s.Close(); err != nil {
			t.Errorf("close the Store used before the restart: %v", err)
		}
		if s, err = openStore(t, ctx, "prefix=restart-"); err != nil {
			pause.Unlock()
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		cur = s
		pause.Unlock()
	}
	waitFor(count()+50, "after the restart")
	close(stop)
	wg.Wait()
	t.Logf("%d appends acknowledged, %d failed across the restart", len(ok), failures)

	for i := 1; i < len(ok); i++ {
		if ok[i].index <= ok[i-1].index {
			t.Fatalf("append %d got index %d, not above append %d's %d", i, ok[i].index, i-1, ok[i-1].index)
		}
	}
	stored := map[uint64][]byte{}
	var prev uint64
	for from := uint64(0); ; {
		msgs, err := s.Fetch(ctx, stream, 0, from, 100)
		if err != nil {
			t.Fatalf("Fetch(from=%d): %v", from, err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if len(stored) > 0 && m.Index <= prev {
				t.Fatalf("Fetch returned index %d after %d", m.Index, prev)
			}
			prev = m.Index
			stored[m.Index] = m.Data
		}
		from = msgs[len(msgs)-1].Index + 1
	}
	for _, a := range ok {
		got, found := stored[a.index]
		if !found {
			t.Errorf("acknowledged message %q at index %d is lost", a.data, a.index)
		} else if !bytes.Equal(got, a.data) {
			t.Errorf("index %d holds %q, Append acknowledged %q", a.index, got, a.data)
		}
	}

	// Seek past the last message acknowledged before the kill. At most one more message (in
	// flight at the kill) went to that ledger; everything acknowledged after the restart is
	// in a new, larger ledger.
	var firstAfter uint64
	for _, a := range ok {
		if a.index>>EntryBits > lastBefore>>EntryBits {
			firstAfter = a.index
			break
		}
	}
	if firstAfter == 0 {
		t.Fatalf("no acknowledged message is in a ledger after %d's", lastBefore>>EntryBits)
	}
	msgs, err := s.Fetch(ctx, stream, 0, lastBefore+1, 1)
	if err != nil {
		t.Fatalf("Fetch(from=%d): %v", lastBefore+1, err)
	}
	if len(msgs) != 1 || msgs[0].Index <= lastBefore || msgs[0].Index > firstAfter {
		t.Errorf("Fetch(from=%d, limit=1) = %v; want a message in (%d, %d]", lastBefore+1, msgs, lastBefore, firstAfter)
	}
	// An index no message has, between the two ledgers' entries: seek lands on firstAfter
	// or an unacknowledged copy just before it.
	gap := firstAfter&^uint64(MaxEntryID) - 1 // the last possible entry of the ledger before
	if gap > lastBefore+1 {
		msgs, err := s.Fetch(ctx, stream, 0, gap, 1)
		if err != nil || len(msgs) != 1 || msgs[0].Index != firstAfter {
			t.Errorf("Fetch(from=%d, limit=1) = %v, %v; want the message at %d", gap, msgs, err, firstAfter)
		}
	}
}
