package pulsar

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/core"
)

// indexTopic is the base name of the topic that holds saved consumer indexes. '=' cannot
// appear in a stream name, so it never collides with a stream's topic.
const indexTopic = "sluice=index"

// indexState is the in-memory view of the index topic: the highest index saved per key,
// from every record read so far.
type indexState struct {
	// sem serializes GetIndex, SaveIndex and DeleteIndexes: holding it is having sent into
	// it (capacity 1), so that a call waiting for another gives up when its ctx ends. Made
	// by newStore.
	sem   chan struct{}
	ready bool   // the index topic exists
	next  uint64 // index (in the index topic) of the next record to read
	saved map[string]uint64
}

func indexKey(clientID, stream string, partition int) string {
	return clientID + "\x00" + stream + "\x00" + strconv.Itoa(partition)
}

// GetIndex returns the highest index saved for the key by any Store on the same namespace:
// it first reads the index records appended since its last call.
func (s *Store) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if err := validateIndexKey(clientID, stream, partition); err != nil {
		return 0, s.mapErr(ctx, "get index", stream, err)
	}
	ctx, done, err := s.begin(ctx, "get index", stream)
	if err != nil {
		return 0, err
	}
	defer done()
	if err := s.index.lock(ctx); err != nil {
		return 0, s.mapErr(ctx, "get index", stream, err)
	}
	defer s.index.unlock()
	if err := s.catchUpIndex(ctx); err != nil {
		return 0, s.mapErr(ctx, "get index", stream, err)
	}
	i, ok := s.index.saved[indexKey(clientID, stream, partition)]
	if !ok {
		return 0, s.mapErr(ctx, "get index", stream, fmt.Errorf("%w: client %q, partition %d", core.ErrIndexNotFound, clientID, partition))
	}
	return i, nil
}

// SaveIndex appends a record (client_id, stream, partition, index) to the index topic and
// returns once the broker acknowledged it, unless the highest index known for the key is
// already >= index (then it does nothing). Readers take the maximum over all records, so a
// lower value never replaces a higher one, also when several Stores save concurrently.
func (s *Store) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	if err := validateIndexKey(clientID, stream, partition); err != nil {
		return s.mapErr(ctx, "save index", stream, err)
	}
	ctx, done, err := s.begin(ctx, "save index", stream)
	if err != nil {
		return err
	}
	defer done()
	if err := s.index.lock(ctx); err != nil {
		return s.mapErr(ctx, "save index", stream, err)
	}
	defer s.index.unlock()
	if err := s.catchUpIndex(ctx); err != nil {
		return s.mapErr(ctx, "save index", stream, err)
	}
	key := indexKey(clientID, stream, partition)
	if cur, ok := s.index.saved[key]; ok && cur >= index {
		return nil
	}
	rec := encodeIndexRecord(indexRecord{ClientID: clientID, Stream: stream, Partition: partition, Index: index})
	if _, err := s.appendTopic(ctx, indexTopic, 0, [][]byte{rec}); err != nil {
		return s.mapErr(ctx, "save index", stream, err)
	}
	s.index.saved[key] = index
	return nil
}

// DeleteIndexes deletes every index saved for stream, which need not exist: it appends a
// record that makes every reader of the index topic forget the stream's keys saved before it
// (a later save of a key starts afresh). Nothing is appended when no index of the stream is
// known. DeleteStream calls it before it deletes the topic.
func (s *Store) DeleteIndexes(ctx context.Context, stream string) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return s.mapErr(ctx, "delete indexes", stream, err)
	}
	ctx, done, err := s.begin(ctx, "delete indexes", stream)
	if err != nil {
		return err
	}
	defer done()
	return s.mapErr(ctx, "delete indexes", stream, s.deleteIndexes(ctx, stream))
}

// deleteIndexes is DeleteIndexes inside calls.Begin. It does not create the index topic: when
// there is none, no index was saved.
func (s *Store) deleteIndexes(ctx context.Context, stream string) error {
	if err := s.index.lock(ctx); err != nil {
		return err
	}
	defer s.index.unlock()
	if !s.index.ready {
		n, err := s.admin.partitions(ctx, s.topic(indexTopic))
		if err != nil {
			return fmt.Errorf("look up index topic: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
	if err := s.catchUpIndex(ctx); err != nil {
		return err
	}
	if !s.index.has(stream) {
		return nil
	}
	if _, err := s.appendTopic(ctx, indexTopic, 0, [][]byte{encodeIndexRecord(indexRecord{Stream: stream, Forget: true})}); err != nil {
		return err
	}
	s.index.forget(stream)
	return nil
}

// lock takes ix for the caller, or returns ctx's error when ctx ends first: another call
// holding it may wait for the broker as long as its own ctx lets it.
func (ix *indexState) lock(ctx context.Context) error {
	select {
	case ix.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unlock releases ix, taken by lock.
func (ix *indexState) unlock() { <-ix.sem }

// has reports whether an index of stream is saved. The caller holds ix (lock).
func (ix *indexState) has(stream string) bool {
	for k := range ix.saved {
		if keyStream(k) == stream {
			return true
		}
	}
	return false
}

// forget deletes the indexes saved for stream. The caller holds ix (lock).
func (ix *indexState) forget(stream string) {
	for k := range ix.saved {
		if keyStream(k) == stream {
			delete(ix.saved, k)
		}
	}
}

// keyStream returns the stream of an indexKey.
func keyStream(k string) string {
	_, rest, _ := strings.Cut(k, "\x00")
	stream, _, _ := strings.Cut(rest, "\x00")
	return stream
}

func validateIndexKey(clientID, stream string, partition int) error {
	return core.ValidateIndexKey(clientID, stream, partition)
}

// catchUpIndex creates the index topic on first use and reads the records appended since the
// last call. The caller holds s.index (lock).
func (s *Store) catchUpIndex(ctx context.Context) error {
	if !s.index.ready {
		if _, err := s.createTopic(ctx, indexTopic, 1); err != nil {
			return fmt.Errorf("create index topic: %w", err)
		}
		s.index.ready = true
		s.index.saved = map[string]uint64{}
	}
	for {
		msgs, err := s.fetchTopic(ctx, indexTopic, 0, s.index.next, 1000)
		if err != nil {
			return fmt.Errorf("read index topic: %w", err)
		}
		if len(msgs) == 0 {
			return nil
		}
		for _, m := range msgs {
			r, err := decodeIndexRecord(m.Data)
			if err != nil {
				// A record this version cannot read is skipped, never guessed at.
				continue
			}
			if r.Forget {
				s.index.forget(r.Stream)
				continue
			}
			k := indexKey(r.ClientID, r.Stream, r.Partition)
			if cur, ok := s.index.saved[k]; !ok || r.Index > cur {
				s.index.saved[k] = r.Index
			}
		}
		s.index.next = msgs[len(msgs)-1].Index + 1
	}
}

// indexRecord is the payload of one message of the index topic: one saved index, or (Forget)
// the deletion of every index of Stream saved before it.
type indexRecord struct {
	ClientID  string
	Stream    string
	Partition int
	Index     uint64
	Forget    bool // only Stream is set
}

// The first byte of every record: its kind. A reader skips a kind it does not know.
const (
	indexRecordVersion = 1 // a saved index
	indexRecordForget  = 2 // the stream's saved indexes are deleted
)

var errBadIndexRecord = errors.New("pulsar: malformed index record")

// encodeIndexRecord encodes r as: byte 1, uvarint length + client id, uvarint length +
// stream name, uvarint partition, uvarint index; or, when r.Forget, as byte 2, uvarint length
// + stream name.
func encodeIndexRecord(r indexRecord) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(r.ClientID)+len(r.Stream)+binary.MaxVarintLen64)
	if r.Forget {
		b = append(b, indexRecordForget)
		b = binary.AppendUvarint(b, uint64(len(r.Stream)))
		return append(b, r.Stream...)
	}
	b = append(b, indexRecordVersion)
	b = binary.AppendUvarint(b, uint64(len(r.ClientID)))
	b = append(b, r.ClientID...)
	b = binary.AppendUvarint(b, uint64(len(r.Stream)))
	b = append(b, r.Stream...)
	b = binary.AppendUvarint(b, uint64(r.Partition))
	b = binary.AppendUvarint(b, r.Index)
	return b
}

// decodeIndexRecord decodes a record written by encodeIndexRecord. It rejects a wrong
// version, truncated or trailing bytes, non-minimal varints, lengths beyond the name limits
// and an invalid key, so every record it accepts has exactly one encoding.
func decodeIndexRecord(b []byte) (indexRecord, error) {
	var r indexRecord
	if len(b) == 0 || (b[0] != indexRecordVersion && b[0] != indexRecordForget) {
		return r, fmt.Errorf("%w: unknown version", errBadIndexRecord)
	}
	r.Forget = b[0] == indexRecordForget
	b = b[1:]
	str := func(max int) (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || k != uvarintLen(n) || n > uint64(max) || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	num := func() (uint64, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || k != uvarintLen(n) {
			return 0, false
		}
		b = b[k:]
		return n, true
	}
	var ok bool
	if r.Forget {
		if r.Stream, ok = str(core.MaxStreamNameLen); !ok {
			return r, fmt.Errorf("%w: stream", errBadIndexRecord)
		}
		if len(b) != 0 {
			return r, fmt.Errorf("%w: %d trailing bytes", errBadIndexRecord, len(b))
		}
		if err := core.ValidateStreamName(r.Stream); err != nil {
			return r, fmt.Errorf("%w: %w", errBadIndexRecord, err)
		}
		return r, nil
	}
	if r.ClientID, ok = str(core.MaxClientIDLen); !ok {
		return r, fmt.Errorf("%w: client id", errBadIndexRecord)
	}
	if r.Stream, ok = str(core.MaxStreamNameLen); !ok {
		return r, fmt.Errorf("%w: stream", errBadIndexRecord)
	}
	p, ok := num()
	if !ok || p >= core.MaxPartitions {
		return r, fmt.Errorf("%w: partition", errBadIndexRecord)
	}
	r.Partition = int(p)
	if r.Index, ok = num(); !ok {
		return r, fmt.Errorf("%w: index", errBadIndexRecord)
	}
	if len(b) != 0 {
		return r, fmt.Errorf("%w: %d trailing bytes", errBadIndexRecord, len(b))
	}
	if err := validateIndexKey(r.ClientID, r.Stream, r.Partition); err != nil {
		return r, fmt.Errorf("%w: %w", errBadIndexRecord, err)
	}
	return r, nil
}

// uvarintLen is the length of the minimal uvarint encoding of n.
func uvarintLen(n uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], n)
}
