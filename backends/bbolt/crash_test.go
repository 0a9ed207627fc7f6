//go:build unix

package bbolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv switches the test binary into the crash child (see TestMain): its value is
// the database path.
const crashChildEnv = "SLUICE_BBOLT_CRASH_CHILD"

const (
	crashStream     = "crash"
	crashPartitions = 4
	// crashKillAfter is how many confirmed indexes the parent reads before it kills the child.
	crashKillAfter = 400
	crashRounds    = 3
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

// crashPayload is the message at index i of partition p: derivable from (p, i) alone, of
// varying length.
func crashPayload(p int, i uint64) []byte {
	b := fmt.Appendf(nil, "p%d-i%d|", p, i)
	for j := range 16 + int(i%500) {
		b = append(b, byte(uint64(j)*31+i*7+uint64(p)))
	}
	return b
}

// crashChild appends to every partition of the crash stream from one goroutine per
// partition, in batches of 1-3, with fsync, and prints "p index" on stdout for each index
// after Append confirmed it. It checks what earlier rounds left first. It runs until it is
// killed (or, as a safety net, for at most a minute).
func crashChild(path string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := New(ctx, path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: New:", err)
		return 2
	}
	if _, err := s.CreateStream(ctx, crashStream, crashPartitions); err != nil {
		fmt.Fprintln(os.Stderr, "child: CreateStream:", err)
		return 2
	}
	var (
		out sync.Mutex
		wg  sync.WaitGroup
		bad = make(chan string, crashPartitions)
	)
	for p := range crashPartitions {
		wg.Go(func() {
			next, err := verifyPartition(ctx, s, p)
			if err != nil {
				bad <- err.Error()
				return
			}
			for ctx.Err() == nil {
				msgs := make([][]byte, 1+next%3)
				for i := range msgs {
					msgs[i] = crashPayload(p, next+uint64(i))
				}
				idx, err := s.Append(ctx, crashStream, p, msgs)
				if err != nil {
					if ctx.Err() == nil {
						bad <- fmt.Sprintf("Append(%d): %v", p, err)
					}
					return
				}
				var line []byte
				for i, x := range idx {
					if x != next+uint64(i) {
						bad <- fmt.Sprintf("partition %d: Append reported %v, want indexes from %d", p, idx, next)
						return
					}
					line = fmt.Appendf(line, "%d %d\n", p, x)
				}
				out.Lock()
				_, err = os.Stdout.Write(line)
				out.Unlock()
				if err != nil {
					return
				}
				next += uint64(len(idx))
			}
		})
	}
	wg.Wait()
	close(bad)
	code := 0
	for msg := range bad {
		fmt.Fprintln(os.Stderr, "child:", msg)
		code = 3
	}
	_ = s.Close()
	return code
}

// verifyPartition reads partition p from 0, checks that the indexes are dense and every
// message is crashPayload(p, index), and returns the number of messages.
func verifyPartition(ctx context.Context, s *Store, p int) (uint64, error) {
	var next uint64
	for {
		msgs, err := s.Fetch(ctx, crashStream, p, next, 1000)
		if err != nil {
			return 0, fmt.Errorf("Fetch(%d, from %d): %w", p, next, err)
		}
		if len(msgs) == 0 {
			return next, nil
		}
		for _, m := range msgs {
			if m.Index != next {
				return 0, fmt.Errorf("partition %d: index %d follows %d; want dense indexes", p, m.Index, next-1)
			}
			if want := crashPayload(p, m.Index); !bytes.Equal(m.Data, want) {
				return 0, fmt.Errorf("partition %d index %d holds %q, want %q", p, m.Index, m.Data, want)
			}
			next++
		}
	}
}

// TestCrash runs the crash child (this test binary, re-executed), SIGKILLs it while it
// appends, and checks in this process that every index the child saw confirmed is in the
// file with its bytes, that the partitions are dense, and that the next Append gets a larger
// index. It repeats for several rounds on the same file.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary; skipped with -short")
	}
	path := t.TempDir()
	for round := range crashRounds {
		seen := runCrashChild(t, path)
		ctx := context.Background()
		s, err := New(ctx, path, nil)
		if err != nil {
			t.Fatalf("round %d: reopen after the crash: %v", round, err)
		}
		for p := range crashPartitions {
			n, err := verifyPartition(ctx, s, p)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			// Every index the child reported is below n: verifyPartition has checked
			// its bytes.
			if c := seen[p]; c.n > 0 && c.max >= n {
				t.Fatalf("round %d: the child saw index %d of partition %d confirmed, the file holds %d messages", round, c.max, p, n)
			}
			idx, err := s.Append(ctx, crashStream, p, [][]byte{crashPayload(p, n)})
			if err != nil {
				t.Fatalf("round %d: Append after the crash: %v", round, err)
			}
			if idx[0] != n {
				t.Fatalf("round %d: Append to partition %d after the crash got index %d, want %d", round, p, idx[0], n)
			}
			t.Logf("round %d: partition %d: %d indexes confirmed by the child (last %d), %d messages in the file", round, p, seen[p].n, seen[p].max, n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// confirmed is what the crash child confirmed of one partition: n indexes, the last max.
type confirmed struct {
	max uint64
	n   int
}

// runCrashChild starts the crash child on path, SIGKILLs it after crashKillAfter confirmed
// indexes, and returns what the child confirmed per partition.
func runCrashChild(t *testing.T, path string) map[int]confirmed {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The deadline only guards against a hung child; it is not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := map[int]confirmed{}
	lines := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var p int
		var i uint64
		if _, err := fmt.Sscanf(sc.Text(), "%d %d", &p, &i); err != nil {
			t.Errorf("child printed %q: %v", sc.Text(), err)
			continue
		}
		if c := seen[p]; c.n > 0 && i <= c.max {
			t.Errorf("child confirmed index %d of partition %d after %d", i, p, c.max)
		}
		seen[p] = confirmed{max: i, n: seen[p].n + 1}
		lines++
		if lines == crashKillAfter {
			// Lines already in the pipe are still read below: they were confirmed
			// before the kill.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill the child: %v", err)
			}
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL || ctx.Err() != nil {
		t.Fatalf("child ended with %v after %d confirmed indexes, want killed by the test after %d; stderr:\n%s", err, lines, crashKillAfter, stderr.String())
	}
	if lines < crashKillAfter {
		t.Fatalf("child confirmed only %d indexes before it was killed", lines)
	}
	return seen
}
