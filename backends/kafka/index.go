package kafka

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/core"
)

// indexMetaPrefix starts the metadata of every offset commit SaveIndex makes; the full
// uint64 index follows in decimal (a Kafka offset is an int64).
const indexMetaPrefix = "sluice:"

// maxSaveAttempts bounds the compare-and-commit loop of SaveIndex.
const maxSaveAttempts = 5

// Group returns the consumer group id that holds clientID's saved indexes.
func (s *Store) Group(clientID string) string { return s.opts.Prefix + clientID }

// GetIndex returns the offset committed by consumer group Prefix+clientID for the
// stream's partition: the next index the consumer will read. A group, topic or partition
// without a committed offset returns [core.ErrIndexNotFound].
func (s *Store) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if err := validateKey(clientID, stream, partition); err != nil {
		return 0, fmt.Errorf("kafka: get index: %w", err)
	}
	ctx, end, err := s.begin(ctx, "get index", stream)
	if err != nil {
		return 0, err
	}
	defer end()
	v, ok, err := s.committed(ctx, clientID, stream, partition)
	if err != nil {
		return 0, s.mapErr(ctx, "get index", stream, err)
	}
	if !ok {
		return 0, fmt.Errorf("kafka: get index %q partition %d of client %q: %w", stream, partition, clientID, core.ErrIndexNotFound)
	}
	return v, nil
}

// SaveIndex commits index as the offset of consumer group Prefix+clientID for the
// stream's partition, unless the committed offset is already at least index (Kafka itself
// accepts any commit, so monotonicity is enforced here).
//
// Saves of one key are serialized within the Store. Each save reads the committed
// offset, commits only if index is higher, then reads it back and commits again (up to
// five times) if a concurrent writer left a lower value. See the package doc, # Index
// storage, for what two hubs saving the same key concurrently can observe.
func (s *Store) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	if err := validateKey(clientID, stream, partition); err != nil {
		return fmt.Errorf("kafka: save index: %w", err)
	}
	ctx, end, err := s.begin(ctx, "save index", stream)
	if err != nil {
		return err
	}
	defer end()
	unlock, err := s.lockKey(ctx, clientID, stream, partition)
	if err != nil {
		return s.mapErr(ctx, "save index", stream, err)
	}
	defer unlock()
	group, topic := s.Group(clientID), s.Topic(stream)
	for range maxSaveAttempts {
		cur, ok, err := s.committed(ctx, clientID, stream, partition)
		if err != nil {
			return s.mapErr(ctx, "save index", stream, err)
		}
		if ok && cur >= index {
			return nil
		}
		at := int64(math.MaxInt64)
		if index <= math.MaxInt64 {
			at = int64(index)
		}
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: topic, Partition: int32(partition), At: at, LeaderEpoch: -1,
			Metadata: indexMetaPrefix + strconv.FormatUint(index, 10)})
		err = retryCoordinator(ctx, func() error {
			resps, err := s.adm.CommitOffsets(ctx, group, os)
			if err == nil {
				err = resps.Error()
			}
			return err
		})
		if err != nil {
			return s.mapErr(ctx, "save index", stream, err)
		}
	}
	return fmt.Errorf("kafka: save index %q partition %d of client %q: %w: another writer kept committing lower offsets (%d attempts)", stream, partition, clientID, core.ErrUnavailable, maxSaveAttempts)
}

// committed reads the committed offset of the key; ok is false if there is none.
func (s *Store) committed(ctx context.Context, clientID, stream string, partition int) (v uint64, ok bool, err error) {
	var resps kadm.OffsetResponses
	err = retryCoordinator(ctx, func() (err error) {
		resps, err = s.adm.FetchOffsets(ctx, s.Group(clientID))
		return err
	})
	if err != nil {
		if errors.Is(err, kerr.GroupIDNotFound) {
			return 0, false, nil
		}
		return 0, false, err
	}
	r, found := resps.Lookup(s.Topic(stream), int32(partition))
	if !found {
		return 0, false, nil
	}
	if r.Err != nil {
		return 0, false, r.Err
	}
	v, ok = decodeCommitted(r.At, r.Metadata)
	return v, ok, nil
}

// decodeCommitted turns a committed offset and its metadata into a saved index. An offset
// below 0 means none. Metadata written by SaveIndex carries the full uint64; it is used
// only if it agrees with the offset (an offset committed by another tool wins).
func decodeCommitted(at int64, metadata string) (uint64, bool) {
	if at < 0 {
		return 0, false
	}
	if rest, ok := strings.CutPrefix(metadata, indexMetaPrefix); ok {
		if v, err := strconv.ParseUint(rest, 10, 64); err == nil {
			if v == uint64(at) || (at == math.MaxInt64 && v > math.MaxInt64) {
				return v, true
			}
		}
	}
	return uint64(at), true
}

// retryCoordinator calls fn until it succeeds, fails with an error other than a group
// coordinator that is not ready (the __consumer_offsets topic is created on first use and
// loaded after a broker restart), 30 seconds pass, or ctx ends.
func retryCoordinator(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		err := fn()
		if err == nil || time.Now().After(deadline) ||
			!(errors.Is(err, kerr.CoordinatorNotAvailable) || errors.Is(err, kerr.CoordinatorLoadInProgress) || errors.Is(err, kerr.NotCoordinator)) {
			return err
		}
		if serr := core.Sleep(ctx, wait); serr != nil {
			return err
		}
	}
}

// lockKey serializes SaveIndex calls of one key (keys share 64 lock stripes).
func (s *Store) lockKey(ctx context.Context, clientID, stream string, partition int) (func(), error) {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d\x00%s\x00%s", partition, stream, clientID)
	ch := s.keyLocks[h.Sum32()%uint32(len(s.keyLocks))]
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func validateKey(clientID, stream string, partition int) error {
	return core.ValidateIndexKey(clientID, stream, partition)
}
