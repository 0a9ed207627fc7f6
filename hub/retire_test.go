package hub_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
	"github.com/sluicehq/sluice/hub/hubtest"
)

// retireGuard bounds the waits of the retirement tests; it is not a timing assertion.
const retireGuard = 20 * time.Second

// TestIdlePartitionWorkersRetire checks that the workers of partitions that were used and
// then left idle are retired, releasing their goroutines, and that the partitions work as
// before afterwards, with the indexes going on where they were.
func TestIdlePartitionWorkersRetire(t *testing.T) {
	const parts = 8
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithWorkerIdleTimeout(20*time.Millisecond))
	c := hubtest.Dial(t, addr)
	streams := c.CreatePartitioned(wire.ProtocolCreatePartitioned, "", parts)
	// No worker yet: a create registers none.
	idle := runtime.NumGoroutine()

	use := func(round uint64) {
		t.Helper()
		for i, s := range streams {
			data := fmt.Appendf(nil, "p%d-m%d", i, round)
			if pc := c.Push(s, round, data); pc.Status != wire.StatusOK || pc.Index != round {
				t.Fatalf("round %d: push to partition %d: %+v, want status OK, index %d", round, i, pc, round)
			}
			pr := c.Pull(s, round, 0, 100)
			if len(pr.Messages) != int(round)+1 {
				t.Fatalf("round %d: pull partition %d from 0: %d messages, want %d", round, i, len(pr.Messages), round+1)
			}
			for j, m := range pr.Messages {
				if want := fmt.Sprintf("p%d-m%d", i, j); m.Index != uint64(j) || string(m.Data) != want {
					t.Fatalf("round %d: partition %d message %d: index %d %q, want index %d %q", round, i, j, m.Index, m.Data, j, want)
				}
			}
		}
	}
	// waitRetired waits until every worker is retired and the goroutines of the used ones
	// (a mailbox goroutine and a writer each) have returned.
	waitRetired := func(round uint64) {
		t.Helper()
		deadline := time.Now().Add(retireGuard)
		for hub.Partitions(h) > 0 || runtime.NumGoroutine() > idle {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: after %v, %d partition workers and %d goroutines; want 0 workers and at most %d goroutines, as before the partitions were used", round, retireGuard, hub.Partitions(h), runtime.NumGoroutine(), idle)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	for round := range uint64(3) {
		use(round)
		waitRetired(round)
		// Each round created a worker per partition, and each was retired (a worker may
		// also have retired within a round, when the test ran slowly).
		if m := h.Metrics(); m.PartitionWorkers != 0 || m.PartitionWorkersRetired < parts*(round+1) {
			t.Fatalf("round %d: metrics partition_workers %d, partition_workers_retired %d; want 0 and at least %d", round, m.PartitionWorkers, m.PartitionWorkersRetired, parts*(round+1))
		}
	}

	// A parked long poll keeps its worker: the push that answers it must reach the worker
	// it is parked on, however long it waited.
	s := streams[0]
	c.Send(s.Route, wire.ProtocolPullWait, wire.PullWaitRequest{RequestID: 9, Index: 3, Limit: 10, WaitMS: uint64(retireGuard / time.Millisecond)})
	deadline := time.Now().Add(retireGuard)
	for hub.Partitions(h) == 0 { // the pull registers the worker
		if time.Now().After(deadline) {
			t.Fatal("no worker registered for the long poll")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * 20 * time.Millisecond) // ten idle periods: a chance to retire it wrongly
	if m := h.Metrics(); m.PartitionWorkers != 1 {
		t.Errorf("metrics partition_workers %d with one long poll parked, want 1", m.PartitionWorkers)
	}
	c2 := hubtest.Dial(t, addr)
	if pc := c2.Push(s, 10, []byte("p0-m3")); pc.Status != wire.StatusOK || pc.Index != 3 {
		t.Fatalf("push after the long poll parked: %+v", pc)
	}
	if pr := c.ExpectPull(wire.ProtocolPullWait); pr.RequestID != 9 || len(pr.Messages) != 1 || string(pr.Messages[0].Data) != "p0-m3" {
		t.Fatalf("parked long poll after a push: %+v, want the message pushed", pr)
	}
}

// TestPushesRaceRetirement pushes from several connections, in bursts with pauses that
// let the workers retire, so that pushes keep arriving while a worker is being retired:
// every push must be confirmed, and the indexes of each partition must be dense (the
// memory backend numbers from 0 without gaps), each message stored once.
func TestPushesRaceRetirement(t *testing.T) {
	const (
		parts   = 2
		conns   = 4
		bursts  = 60
		perPush = 3 // pushes per burst, pipelined
	)
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithWorkerIdleTimeout(200*time.Microsecond))
	streams := hubtest.Dial(t, addr).CreatePartitioned(wire.ProtocolCreatePartitioned, "", parts)

	// Sample the workers meanwhile, to check that retirement did race with the pushes.
	seen := make(map[any]bool)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, s := range streams {
				if w := hub.PartitionWorker(h, s.Name, int(s.Partition)); w != nil {
					seen[w] = true
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Microsecond):
			}
		}
	}()

	var mu sync.Mutex
	indexes := make([]map[uint64]string, parts) // by partition: index -> data confirmed there
	for i := range indexes {
		indexes[i] = make(map[uint64]string)
	}
	var wg sync.WaitGroup
	for ci := range conns {
		c := hubtest.Dial(t, addr)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(ci), 1))
			id := uint64(0)
			for burst := range bursts {
				s := streams[(ci+burst)%parts]
				sent := make(map[uint64]string)
				for range perPush {
					id++
					data := fmt.Sprintf("c%d-%d", ci, id)
					sent[id] = data
					c.Send(s.Route, wire.ProtocolPush, wire.PushRequest{RequestID: id, Data: []byte(data)})
				}
				for range perPush {
					r, err := c.TryRecv(retireGuard)
					if err != nil {
						t.Errorf("conn %d: waiting for a push confirm: %v (pushes %v unconfirmed)", ci, err, sent)
						return
					}
					if r.Protocol != wire.ProtocolPush {
						e, _ := wire.DecodeErrorPayload(r.Data)
						t.Errorf("conn %d: got a %q reply (%q), want a push confirm", ci, r.Protocol, e.Reason)
						return
					}
					pc, err := wire.DecodePushConfirm(r.Data)
					if err != nil {
						t.Errorf("conn %d: decode push confirm: %v", ci, err)
						return
					}
					data, ok := sent[pc.RequestID]
					if !ok || pc.Status != wire.StatusOK {
						t.Errorf("conn %d: confirm %+v for a request not waiting or failed", ci, pc)
						return
					}
					delete(sent, pc.RequestID)
					mu.Lock()
					if old, dup := indexes[s.Partition][pc.Index]; dup {
						t.Errorf("partition %d index %d confirmed for %q and %q", s.Partition, pc.Index, old, data)
					}
					indexes[s.Partition][pc.Index] = data
					mu.Unlock()
				}
				time.Sleep(time.Duration(rng.IntN(600)) * time.Microsecond) // 0 to 3 idle periods
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	if t.Failed() {
		return
	}

	c := hubtest.Dial(t, addr)
	total := 0
	for i, s := range streams {
		n := len(indexes[i])
		total += n
		for idx := range uint64(n) {
			if _, ok := indexes[i][idx]; !ok {
				t.Errorf("partition %d: %d pushes confirmed, but not index %d (indexes not dense)", i, n, idx)
			}
		}
		// Every message once, at the index confirmed for it.
		var got []wire.StreamMessage
		for from := uint64(0); ; {
			pr := c.Pull(s, from+1, from, 1000)
			if len(pr.Messages) == 0 {
				break
			}
			got = append(got, pr.Messages...)
			from = pr.Messages[len(pr.Messages)-1].Index + 1
		}
		if len(got) != n {
			t.Errorf("partition %d: fetched %d messages, %d pushes confirmed", i, len(got), n)
		}
		for j, m := range got {
			if m.Index != uint64(j) || indexes[i][m.Index] != string(m.Data) {
				t.Errorf("partition %d: fetched %q at index %d (position %d), confirmed %q there", i, m.Data, m.Index, j, indexes[i][m.Index])
				break
			}
		}
	}
	if total != conns*bursts*perPush {
		t.Errorf("%d pushes confirmed, want %d", total, conns*bursts*perPush)
	}
	if len(seen) <= parts {
		t.Errorf("%d workers seen for %d partitions: no worker was retired while pushes went on", len(seen), parts)
	}
	t.Logf("%d workers seen for %d partitions", len(seen), parts)
}

// TestWorkerIdleTimeoutZeroNeverRetires checks that WithWorkerIdleTimeout(0) keeps idle
// partition workers: none has a retirement timer, and an idle worker is still the same
// one after a while.
func TestWorkerIdleTimeoutZeroNeverRetires(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithWorkerIdleTimeout(0))
	c := hubtest.Dial(t, addr)
	s := c.Create("")
	if pc := c.Push(s, 1, []byte("a")); pc.Status != wire.StatusOK {
		t.Fatalf("push: %+v", pc)
	}
	w := hub.PartitionWorker(h, s.Name, int(s.Partition))
	if w == nil {
		t.Fatal("no partition worker after a push")
	}
	if hub.RetireTimerRunning(h, s.Name, int(s.Partition)) {
		t.Error("the worker has a retirement timer with WithWorkerIdleTimeout(0)")
	}
	time.Sleep(100 * time.Millisecond) // idle: a chance to retire it wrongly
	if got := hub.PartitionWorker(h, s.Name, int(s.Partition)); got != w {
		t.Errorf("the idle worker was replaced (%p, was %p) with WithWorkerIdleTimeout(0)", got, w)
	}
	if m := h.Metrics(); m.PartitionWorkers != 1 || m.PartitionWorkersRetired != 0 {
		t.Errorf("metrics partition_workers %d, partition_workers_retired %d; want 1 and 0", m.PartitionWorkers, m.PartitionWorkersRetired)
	}
}

// TestRetirementChecksAgainAfterUnregister checks the second idle check of retirement: a
// pull that a handler started before the node let the worker go, but whose goroutine began
// only after that (as when the handler returned just before the check), keeps the worker.
// The worker is registered again and serves the partition, and it is retired once the pull
// has finished.
func TestRetirementChecksAgainAfterUnregister(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithWorkerIdleTimeout(time.Millisecond))
	c := hubtest.Dial(t, addr)
	s := c.Create("")

	var (
		w     any // the worker the hook made busy
		began = make(chan struct{})
		once  sync.Once
	)
	hub.SetRetireHook(h, func(worker any) {
		once.Do(func() {
			w = worker
			hub.BeginPull(worker) // a pull goroutine begins between the two checks
			close(began)
		})
	})
	if pc := c.Push(s, 1, []byte("a")); pc.Status != wire.StatusOK || pc.Index != 0 {
		t.Fatalf("push: %+v", pc)
	}
	select {
	case <-began:
	case <-time.After(retireGuard):
		t.Fatalf("the worker was not let go by the node within %v of being idle", retireGuard)
	}
	hub.SetRetireHook(h, nil)
	if m := h.Metrics(); m.PartitionWorkersRetired != 0 || m.PartitionWorkers != 1 {
		t.Fatalf("metrics partition_workers %d, partition_workers_retired %d with a pull under way; want 1 and 0", m.PartitionWorkers, m.PartitionWorkersRetired)
	}
	if got := hub.PartitionWorker(h, s.Name, int(s.Partition)); got != w {
		t.Fatalf("worker %p after the second check, want the busy worker %p kept", got, w)
	}
	// It is registered again: the next push reaches it rather than a new worker.
	if pc := c.Push(s, 2, []byte("b")); pc.Status != wire.StatusOK || pc.Index != 1 {
		t.Fatalf("push after the second check: %+v", pc)
	}
	if got := hub.PartitionWorker(h, s.Name, int(s.Partition)); got != w {
		t.Fatalf("worker %p after a push, want the kept worker %p", got, w)
	}
	if m := h.Metrics(); m.PartitionWorkers != 1 {
		t.Fatalf("metrics partition_workers %d after a push, want 1", m.PartitionWorkers)
	}
	hub.EndPull(w)
	deadline := time.Now().Add(retireGuard)
	for h.Metrics().PartitionWorkersRetired == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the worker was not retired within %v of its pull finishing", retireGuard)
		}
		time.Sleep(time.Millisecond)
	}
	if got := hub.PartitionWorker(h, s.Name, int(s.Partition)); got != nil {
		t.Fatalf("worker %p still registered after it was retired", got)
	}
}

// TestWorkerUsedSinceLastCheckNotRetired checks that a worker is retired only when it was
// idle for a whole period: one that is idle at a check but served a push since the previous
// check is kept; the next check, with no use in between, retires it. The checks are run by
// the test (the timer's period is an hour).
func TestWorkerUsedSinceLastCheckNotRetired(t *testing.T) {
	b := openMemory(t)
	defer b.Close()
	h, addr := hubtest.Start(t, b, hub.WithLogger(quietLogger), hub.WithWorkerIdleTimeout(time.Hour))
	c := hubtest.Dial(t, addr)
	s := c.Create("used")
	if pc := c.Push(s, 1, []byte("a")); pc.Status != wire.StatusOK {
		t.Fatalf("push: %+v", pc)
	}
	// The push ends just after its confirm is sent. A first check before that finds it
	// under way, and the second, finding it ended since, keeps the worker too.
	if !waitFor(20*time.Second, func() bool { return hub.Settled(h, s.Name, 0) }) {
		t.Fatal("the push was confirmed but never ended")
	}
	hub.CheckRetire(h, s.Name, 0)
	if m := h.Metrics(); m.PartitionWorkersRetired != 0 || m.PartitionWorkers != 1 {
		t.Fatalf("after a check following a push: partition_workers %d, partition_workers_retired %d; want 1 and 0", m.PartitionWorkers, m.PartitionWorkersRetired)
	}
	hub.CheckRetire(h, s.Name, 0)
	if m := h.Metrics(); m.PartitionWorkersRetired != 1 || m.PartitionWorkers != 0 {
		t.Fatalf("after a check following an idle period: partition_workers %d, partition_workers_retired %d; want 0 and 1", m.PartitionWorkers, m.PartitionWorkersRetired)
	}
}
