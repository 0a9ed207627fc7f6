package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core"
)

// partitionData returns the data of the messages of a partition in b.
func partitionData(t *testing.T, b *core.Backend, stream string, partition int) []string {
	t.Helper()
	msgs, err := b.Storage.Fetch(t.Context(), stream, partition, 0, 100)
	if err != nil {
		t.Fatalf("Fetch %q partition %d: %v", stream, partition, err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Data))
	}
	return out
}

// push, pull and tail -partition N reach partition N only; a client id saves an index per
// partition.
func TestCLIPartition(t *testing.T) {
	addr, b := startMemHub(t, "127.0.0.1:0")
	mustRun(t, "", "create", "-hub", addr, "-partitions", "3", "orders")
	if out := mustRun(t, "", "push", "-hub", addr, "-partition", "2", "orders", "a", "b"); out != "0\n1\n" {
		t.Fatalf("push -partition 2 printed %q", out)
	}
	if out := mustRun(t, "", "push", "-hub", addr, "-partition", "1", "orders", "x"); out != "0\n" {
		t.Fatalf("push -partition 1 printed %q", out)
	}
	mustRun(t, "", "push", "-hub", addr, "orders", "z")
	for part, want := range [][]string{{"z"}, {"x"}, {"a", "b"}} {
		if got := partitionData(t, b, "orders", part); !slices.Equal(got, want) {
			t.Errorf("partition %d holds %q, want %q", part, got, want)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-partition", "2"}, "0\ta\n1\tb\n"},
		{[]string{"-partition", "1", "-raw"}, "x\n"},
		{nil, "0\tz\n"},
		{[]string{"-partition", "2", "-client-id", "c"}, "0\ta\n1\tb\n"},
		{[]string{"-partition", "2", "-client-id", "c"}, ""}, // resumes after b
		{[]string{"-partition", "1", "-client-id", "c"}, "0\tx\n"},
	} {
		args := append(append([]string{"pull", "-hub", addr, "-idle", "200ms"}, tc.args...), "orders")
		if out := mustRun(t, "", args...); out != tc.want {
			t.Errorf("sluice %q printed %q, want %q", args, out, tc.want)
		}
	}
	for part, want := range []uint64{0, 1, 2} {
		i, err := b.Index.GetIndex(t.Context(), "c", "orders", part)
		if part == 0 && !errors.Is(err, core.ErrIndexNotFound) || part > 0 && (err != nil || i != want) {
			t.Errorf("saved index of partition %d = %d, %v", part, i, err)
		}
	}

	// tail -partition 1 prints partition 1's messages and saves its index.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := runAsync(ctx, strings.NewReader(""), "tail", "-hub", addr, "-partition", "1", "-client-id", "t", "-raw", "orders")
	mustRun(t, "", "push", "-hub", addr, "-partition", "1", "orders", "y")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if i, err := b.Index.GetIndex(t.Context(), "t", "orders", 1); err == nil && i == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tail did not save index 2 of partition 1 within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if r := <-done; r.code != exitInterrupted || r.out != "x\ny\n" {
		t.Fatalf("tail -partition 1: exit %d, stdout %q, stderr %s", r.code, r.out, r.err)
	}
}

// A -partition the stream does not have, or a stream that does not exist, is an error
// (exit 1) that says what to do; a negative or impossible -partition is a usage error
// (exit 2). Nothing is created.
func TestCLIPartitionErrors(t *testing.T) {
	addr, b := startMemHub(t, "127.0.0.1:0")
	mustRun(t, "", "create", "-hub", addr, "-partitions", "2", "orders")
	outOfRange := []string{`stream "orders" has 2 partition(s)`, "partition 2 does not exist", "sluice create -partitions 3"}
	wantRun(t, 1, append(outOfRange, "0 of 1 message(s) confirmed"), "", "push", "-hub", addr, "-partition", "2", "orders", "m")
	wantRun(t, 1, []string{`-partition 2: stream "orders" has 2 partition(s)`, "use -partition 0 to 1"}, "", "pull", "-hub", addr, "-partition", "2", "orders")
	wantRun(t, 1, outOfRange, "", "tail", "-hub", addr, "-partition", "2", "orders")

	missing := []string{`stream "absent" does not exist`, "sluice create -partitions 4 absent"}
	wantRun(t, 1, missing, "", "push", "-hub", addr, "-partition", "3", "absent", "m")
	wantRun(t, 1, missing, "", "pull", "-hub", addr, "-partition", "3", "absent")
	wantRun(t, 1, missing, "", "tail", "-hub", addr, "-partition", "3", "absent")
	if _, err := b.Storage.Fetch(t.Context(), "absent", 0, 0, 1); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Fetch(absent) = %v: the stream was created", err)
	}
	for _, p := range []string{"-1", "1024"} {
		for _, cmd := range [][]string{{"push", "orders", "m"}, {"pull", "orders"}, {"tail", "orders"}} {
			args := append([]string{cmd[0], "-hub", addr, "-partition", p}, cmd[1:]...)
			wantRun(t, 2, []string{"-partition " + p + ": want 0 to 1023"}, "", args...)
		}
	}
	if got := partitionData(t, b, "orders", 0); len(got) != 0 {
		t.Errorf("partition 0 holds %q, want nothing", got)
	}
}

// push -key K pushes to the partition Kafka's default partitioner gives K for the stream's
// partition count, and says which; it needs the stream, and excludes -partition.
func TestCLIPushKey(t *testing.T) {
	addr, b := startMemHub(t, "127.0.0.1:0")
	mustRun(t, "", "create", "-hub", addr, "-partitions", "7", "readings")
	// murmur2("21") is -973932308: Kafka puts key "21" in partition 1173551340 % 7 = 3 of 7.
	code, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "-key", "21", "readings", "a", "b")
	if code != 0 || out != "0\n1\n" || !strings.Contains(errs, `key "21" is partition 3 of 7`) {
		t.Fatalf("push -key 21: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for p := range 7 {
		var want []string
		if p == 3 {
			want = []string{"a", "b"}
		}
		if got := partitionData(t, b, "readings", p); !slices.Equal(got, want) {
			t.Errorf("partition %d holds %q, want %q", p, got, want)
		}
	}
	// -quiet prints neither the indexes nor the partition.
	if code, out, errs := runIO(t.Context(), "", "push", "-hub", addr, "-quiet", "-key", "21", "readings", "c"); code != 0 || out != "" || errs != "" {
		t.Errorf("push -quiet -key: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	wantRun(t, 1, []string{`stream "absent" does not exist`, "-key needs the stream", "sluice create -partitions N absent"}, "", "push", "-hub", addr, "-key", "k", "absent", "m")
	if _, err := b.Storage.Fetch(t.Context(), "absent", 0, 0, 1); !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("Fetch(absent) = %v: the stream was created", err)
	}
	wantRun(t, 2, []string{"-key and -partition exclude each other"}, "", "push", "-hub", addr, "-key", "k", "-partition", "0", "readings", "m")
}
