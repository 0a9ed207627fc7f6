package main

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// failingWriter accepts the first ok writes, then fails every write.
type failingWriter struct {
	mu  sync.Mutex
	ok  int
	buf bytes.Buffer
}

var errOutputGone = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ok == 0 {
		return 0, errOutputGone
	}
	w.ok--
	return w.buf.Write(p)
}

// pull -client-id saves the next index only after printing ("sluice pull -help"): when
// standard output cannot be written (a full disk, a closed descriptor), pull exits 1 and the
// saved position stays at the first message it could not print, so the next pull prints it.
func TestPullOutputErrorDoesNotSkipMessages(t *testing.T) {
	for _, format := range []string{"default", "-raw", "-json"} {
		t.Run(format, func(t *testing.T) {
			args := []string{"pull", "-hub", "", "-client-id", "p", "-idle", "300ms", "s"}
			if format != "default" {
				args = append(args[:len(args)-1], format, "s")
			}
			addr, b := startMemHub(t, "127.0.0.1:0")
			args[2] = addr
			mustRun(t, "", "push", "-hub", addr, "s", "one", "two", "three")
			out := &failingWriter{ok: 1}
			var errb bytes.Buffer
			code := run(t.Context(), args, &stdio{in: strings.NewReader(""), out: out, err: &errb})
			if code != 1 || !strings.Contains(errb.String(), errOutputGone.Error()) {
				t.Errorf("pull with a failing stdout: exit %d, stderr:\n%s\nwant exit 1 naming the write error", code, errb.String())
			}
			if !strings.Contains(errb.String(), "stopped after 1 message(s)") {
				t.Errorf("stderr %q does not say how many messages were printed", errb.String())
			}
			// The consumer saves asynchronously; give a wrong save time to land.
			time.Sleep(100 * time.Millisecond)
			if i, err := b.Index.GetIndex(t.Context(), "p", "s", 0); err != nil || i != 1 {
				t.Errorf("saved index %d (err %v), want 1: the messages not printed must not be skipped", i, err)
			}
			got := mustRun(t, "", "pull", "-hub", addr, "-client-id", "p", "-idle", "300ms", "-raw", "s")
			if got != "two\nthree\n" {
				t.Errorf("next pull printed %q, want the two messages the failed pull could not print", got)
			}
		})
	}
}
