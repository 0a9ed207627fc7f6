package bbolt

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	benchWriters = 64
	benchMsgSize = 1 << 10
)

// oneTxPerMessage holds the msgs/s of the one_tx_per_message runs so far, so group_commit
// can report its ratio to their median in the same run.
var oneTxPerMessage struct {
	sync.Mutex
	rates []float64
}

func medianOneTx() float64 {
	oneTxPerMessage.Lock()
	defer oneTxPerMessage.Unlock()
	r := slices.Clone(oneTxPerMessage.rates)
	if len(r) == 0 {
		return 0
	}
	slices.Sort(r)
	return r[len(r)/2]
}

// BenchmarkGroupCommit compares, side by side on the same disk, 1 KiB messages written
// with fsync by benchWriters goroutines:
//
//   - one_tx_per_message: raw bbolt, one Update (one commit, one fsync) per message;
//   - group_commit: Store.Append of one message per call, group-committed.
//
// Both report msgs/s; group_commit also reports x_one_tx, its ratio to the median of the
// one_tx_per_message runs so far (go test runs the -count repetitions of one sub-benchmark
// back to back, so with -count 5 all five baseline runs come first). Compare medians.
func BenchmarkGroupCommit(b *testing.B) {
	msg := make([]byte, benchMsgSize)
	for i := range msg {
		msg[i] = byte(i)
	}
	par := (benchWriters + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)

	b.Run("one_tx_per_message", func(b *testing.B) {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		name := []byte("p")
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(name); return err }); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(benchMsgSize)
		b.SetParallelism(par)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				err := db.Update(func(tx *bolt.Tx) error {
					bk := tx.Bucket(name)
					seq, err := bk.NextSequence()
					if err != nil {
						return err
					}
					return bk.Put(binary.BigEndian.AppendUint64(nil, seq), msg)
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		rate := float64(b.N) / b.Elapsed().Seconds()
		oneTxPerMessage.Lock()
		oneTxPerMessage.rates = append(oneTxPerMessage.rates, rate)
		oneTxPerMessage.Unlock()
		b.ReportMetric(rate, "msgs/s")
	})

	b.Run("group_commit", func(b *testing.B) {
		ctx := context.Background()
		s, err := New(ctx, b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if _, err := s.CreateStream(ctx, "bench", 1); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(benchMsgSize)
		b.SetParallelism(par)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			msgs := [][]byte{msg}
			for pb.Next() {
				if _, err := s.Append(ctx, "bench", 0, msgs); err != nil {
					b.Error(err)
					return
				}
			}
		})
		rate := float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "msgs/s")
		if base := medianOneTx(); base > 0 {
			b.ReportMetric(rate/base, "x_one_tx")
		}
	})
}

// retentionBench is the MaxMessagesPerPartition of BenchmarkRetention, and the number of
// messages its partitions hold before the timing starts.
const retentionBench = 10000

// retentionChunk is how many messages one path of BenchmarkRetention appends per turn.
const retentionChunk = 2000

// BenchmarkRetention measures what Options.MaxMessagesPerPartition costs the append path.
// benchWriters goroutines append 1 KiB messages, one per Store.Append, group-committed, to a
// partition holding retentionBench messages when the timing starts, in two Stores side by
// side on the same disk:
//
//   - unlimited: no retention (the default), the partition grows;
//   - max_messages: MaxMessagesPerPartition retentionBench, so every commit deletes as many
//     messages as it appends.
//
// The two take turns in chunks of retentionChunk messages until b.N each, every pair of
// turns in the opposite order of the last, so that a change in the machine's load affects
// both alike. It reports the msgs/s of each and x_unlimited, max_messages over unlimited,
// with fsync (the default) and with NoSync, where fsync does not hide the work retention
// adds. Compare medians (-count 5). max_messages may come out faster: the unlimited file
// grows, so bbolt allocates its new pages at the end and remaps the file, while with
// retention it reuses the pages that the deletions freed.
func BenchmarkRetention(b *testing.B) {
	msg := make([]byte, benchMsgSize)
	for i := range msg {
		msg[i] = byte(i)
	}
	prefill := make([][]byte, 1000)
	for i := range prefill {
		prefill[i] = msg
	}
	ctx := context.Background()
	open := func(b *testing.B, o *Options) *Store {
		s, err := New(ctx, b.TempDir(), o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		if _, err := s.CreateStream(ctx, "bench", 1); err != nil {
			b.Fatal(err)
		}
		for range retentionBench / len(prefill) {
			if _, err := s.Append(ctx, "bench", 0, prefill); err != nil {
				b.Fatal(err)
			}
		}
		return s
	}
	// appendN has benchWriters goroutines append n messages to s, one per Append, and
	// returns the time it took.
	appendN := func(b *testing.B, s *Store, n int) time.Duration {
		var left atomic.Int64
		left.Store(int64(n))
		var wg sync.WaitGroup
		start := time.Now()
		for range benchWriters {
			wg.Go(func() {
				msgs := [][]byte{msg}
				for left.Add(-1) >= 0 {
					if _, err := s.Append(ctx, "bench", 0, msgs); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			unlimited := open(b, &Options{NoSync: mode.noSync})
			retained := open(b, &Options{NoSync: mode.noSync, MaxMessagesPerPartition: retentionBench})
			b.SetBytes(2 * benchMsgSize) // b.N messages to each Store
			var tUnlimited, tRetained time.Duration
			b.ResetTimer()
			for pair := 0; pair*retentionChunk < b.N; pair++ {
				n := min(retentionChunk, b.N-pair*retentionChunk)
				if pair%2 == 0 {
					tUnlimited += appendN(b, unlimited, n)
					tRetained += appendN(b, retained, n)
				} else {
					tRetained += appendN(b, retained, n)
					tUnlimited += appendN(b, unlimited, n)
				}
			}
			b.StopTimer()
			rUnlimited := float64(b.N) / tUnlimited.Seconds()
			rRetained := float64(b.N) / tRetained.Seconds()
			b.ReportMetric(rUnlimited, "unlimited-msgs/s")
			b.ReportMetric(rRetained, "max_messages-msgs/s")
			b.ReportMetric(rRetained/rUnlimited, "x_unlimited")
		})
	}
}

// BenchmarkOpenFreelist measures what Options.SyncFreelist trades: the time New takes to
// open a file of about 345 MB that holds a deleted stream's 40,000 free pages, when the
// free-page list was written by every commit (synced) and when bbolt rebuilds it on open by
// reading every page (default). The file is in the page cache; from a cold disk the
// default costs more. The file is written once per mode, outside the timing.
func BenchmarkOpenFreelist(b *testing.B) {
	for _, mode := range []struct {
		name string
		sync bool
	}{{"default", false}, {"synced", true}} {
		b.Run(mode.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "f.db")
			o := &Options{NoSync: true, SyncFreelist: mode.sync}
			s, err := New(context.Background(), path, o)
			if err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, 3000)
			batch := make([][]byte, 1000)
			for i := range batch {
				batch[i] = msg
			}
			for _, stream := range []string{"kept", "deleted"} {
				if _, err := s.CreateStream(context.Background(), stream, 1); err != nil {
					b.Fatal(err)
				}
				for range 40 {
					if _, err := s.Append(context.Background(), stream, 0, batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := s.DeleteStream(context.Background(), "deleted"); err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				s, err := New(context.Background(), path, o)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
