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
