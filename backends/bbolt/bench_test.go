package bbolt

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

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
