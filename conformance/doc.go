// Package conformance is the one suite that certifies every Sluice backend: it checks a
// [core.Storage] and its [core.IndexStorage] against the contracts written in package core,
// against the real broker, and cross-checks each capability the backend declares.
//
// # Using it from a backend's tests
//
// Give the suite a [Harness] whose Open opens the backend on the same underlying data
// every time (the same bbolt file, the same Kafka cluster), then call [RunStorage] and
// [RunIndexStorage] from the backend's own test, and [BenchmarkStorage] from its benchmark:
//
//	func harness(tb testing.TB) conformance.Harness {
//		path := filepath.Join(tb.TempDir(), "sluice.db")
//		return conformance.Harness{Open: func(ctx context.Context) (*core.Backend, error) {
//			s, err := bbolt.New(ctx, path, nil)
//			if err != nil {
//				return nil, err
//			}
//			return &core.Backend{Storage: s, Index: s}, nil
//		}}
//	}
//
//	func TestConformance(t *testing.T) {
//		t.Run("Storage", func(t *testing.T) { conformance.RunStorage(t, harness(t)) })
//		t.Run("IndexStorage", func(t *testing.T) { conformance.RunIndexStorage(t, harness(t)) })
//	}
//
//	func BenchmarkStorage(b *testing.B) { conformance.BenchmarkStorage(b, harness(b)) }
//
// Run the two suites under their own t.Run, as above: both have subtests called
// Persistence, Cancelled and Closed, which would otherwise collide (go test renames the
// second ones Closed#01, ...). The names then match those [Run] reports.
//
// Always run it with -race. A backend for a real broker starts the broker with package
// [github.com/sluicehq/sluice/conformance/brokers] first (which fails rather than skips
// under CI=true).
//
// # What the suite checks
//
// Storage: exact round trips (binary, empty messages, all 256 byte values, large messages
// between small ones), order (also in a batch of 600 messages), indexes strictly
// increasing, unique and reported per message, Fetch from the start, the middle and past
// the end (up to the largest uint64), limits (up to the largest int) and paging,
// never-created streams, invalid names and the most unusual valid ones, partitions,
// partition counts and limits, MaxMessageSize and one byte over it (anywhere in a batch),
// concurrent appenders (nothing lost, no duplicate index, each appender's order kept),
// concurrent readers, readers paging while appenders append, isolation of streams (also
// names differing only in case) and partitions (also partitions 10 and 11 beside 1, and
// while appenders append to several at once), idempotent CreateStream (asking for fewer or
// more partitions changes nothing; concurrent creators agree), contexts already cancelled
// or past their deadline (the context's error, and nothing changed), Close, and the
// optional [core.StreamDeleter] (a deleted stream is not found by Fetch, Append,
// AppendAsync or Partitions, which must not create it again), [core.PartitionCounter] and
// [core.AsyncAppender] (AppendAsync started in sequence: done order, index order, fetch
// order, no retention of the caller's slices).
//
// IndexStorage: the distinct not-found, round trips, monotonic saves (lower ignored, equal
// a no-op), concurrent saves (the saved value never goes down), keys isolated by client_id,
// stream and partition, invalid arguments and the most unusual valid client ids, the
// optional [core.IndexDeleter], contexts already cancelled or past their deadline (the
// context's error, and nothing saved) and Close.
//
// Subtests run one after another; each opens its own backend, uses fresh stream names and
// client ids (both "conf-<random>-...", under [Harness].StreamPrefix, so runs against a
// shared long-lived broker never collide, in topics or in consumer groups), closes what it
// opened and, when the backend implements [core.StreamDeleter], deletes its streams. Each
// subtest's context expires after [Harness].Timeout, and so do, separately, its cleanup's
// deletions and its cleanup's Close; a Close still running when its context ends fails the
// subtest, which stops waiting for it (see [Harness].Timeout).
//
// # Capabilities
//
// Every capability a backend declares in [core.Capabilities] is verified: DenseIndex
// (indexes 0, 1, 2, ... in a new partition), Persistent (messages in every partition,
// partition counts, saved indexes, index growth and, with [core.StreamDeleter], deletions
// survive Close and reopening through [Harness].Reopen or Open), MaxMessageSize (a message
// of exactly that size round-trips; one byte more is rejected with
// [core.ErrMessageTooLarge] and appends nothing) and MaxPartitions. Declaring a capability
// the backend lacks fails; a capability not declared is skipped with the reason. The suite
// never assumes dense indexes otherwise: it pages with the last returned index + 1 and
// tolerates Fetch returning fewer messages than the limit; only an empty result means
// caught up.
//
// # Eventually consistent reads
//
// By default an appended message must be visible to the next Fetch. A broker documented as
// eventually consistent sets [Harness].MaxWait: the suite then polls Fetch for that long
// before deciding a message is missing.
//
// # Running outside go test
//
// The subtests are written against the small interface [T], not *testing.T. [Run] (and
// [RunSuites]) implements T itself, so a program such as `sluice conformance` runs the very
// same checks against a deployed broker and shows one progress line per subtest through a
// [Reporter]:
//
//	res := conformance.Run(ctx, conformance.Harness{Open: open}, conformance.ReportFunc(
//		func(r conformance.TestResult) {
//			if r.Leaf {
//				fmt.Printf("%s %s (%v) %s%s\n", r.Outcome, r.Name, r.Duration, r.SkipReason, strings.Join(r.Failures, "; "))
//			}
//		}))
//	if !res.OK() || res.Incomplete {
//		os.Exit(1)
//	}
//
// When ctx ends (Ctrl-C), the test running is [Interrupted], not failed (unless it failed
// before), the tests not reached are not run, and the Result is Incomplete: an operator's
// interruption is no verdict on the backend.
//
// Package [github.com/sluicehq/sluice/conformance/certify] is `sluice conformance` as a
// library: a certifier for a backend outside the sluice binary is a main that imports the
// backend and calls certify.Main. Package [github.com/sluicehq/sluice/conformance/report]
// writes the reports.
//
// Package [github.com/sluicehq/sluice/conformance/conformancetest] holds deliberately broken
// backends that the suite must fail, for testing such programs.
//
// # Benchmarks
//
// [BenchmarkStorage] measures Append (64 B and 1 KiB messages, batches of 1 and 64, and
// concurrent appenders) and Fetch (limit 100), reporting bytes/s and msgs/s. Each run of a
// sub-benchmark gets a context that expires after [Harness].Timeout, so keep -benchtime well
// below it. Machines are noisy: compare medians of several runs (-count=5), never one.
package conformance
