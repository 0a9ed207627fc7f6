package brokers

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestKillAllRemovesDataDirs: what runs when the current process gets SIGINT or SIGTERM
// (KillAll) kills the broker processes it started and removes their temporary data
// directories, which a Ctrl-C during a test run or a benchmark report used to leave behind
// (a Pulsar standalone leaves hundreds of MiB). A directory already removed is forgotten.
func TestKillAllRemovesDataDirs(t *testing.T) {
	dir, err := newDataDir("sluice-killall-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("broker data"), 0o644); err != nil {
		t.Fatal(err)
	}
	gone, err := newDataDir("sluice-killall-gone-")
	if err != nil {
		t.Fatal(err)
	}
	if err := removeDataDir(gone); err != nil {
		t.Fatal(err)
	}
	p, err := StartProcess("sleeper", exec.Command("sleep", "60"), filepath.Join(dir, "sleeper.log"))
	if err != nil {
		t.Fatal(err)
	}
	KillAll()
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		_ = p.Kill()
		t.Fatal("the process still runs 30 s after KillAll")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data directory after KillAll: stat = %v; want it removed", err)
	}
	live.Lock()
	n := len(live.dirs)
	live.Unlock()
	if n != 0 {
		t.Errorf("%d data directories still tracked after KillAll; want none", n)
	}
}
