package kinesis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Record packing. Each Kinesis record carries one or more consecutive messages of one
// partition:
//
//	version  u8  = 1
//	first    u64 big endian: the index of the first message in the record
//	messages repeated until the end: uvarint length, then that many bytes
//
// The i-th message of a record has index first+i. The largest index is maxIndex: the next
// index after it, which a consumer saves, must fit a uint64 too. A record holding a larger
// one is refused whole.

const (
	recordVersion = 1
	recordHeader  = 1 + 8
	// maxRecordSize is Kinesis's limit for a record's data plus partition key.
	maxRecordSize = 1 << 20
	// partitionKeyRoom is reserved for the partition key ("p" + up to 4 digits).
	partitionKeyRoom = 8
	// maxMessageSize is the largest single message: a record holding only it.
	maxMessageSize = maxRecordSize - partitionKeyRoom - recordHeader - binary.MaxVarintLen32
	// maxIndex is the largest index handed out, so that index+1 never wraps to 0.
	maxIndex = math.MaxUint64 - 1
)

// errBadRecord marks a record that Sluice did not write (or that is corrupt).
var errBadRecord = errors.New("kinesis: record is not a Sluice record")

// packRecords splits msgs into as few records as fit maxRecordSize, numbering messages from
// first. It returns the record bodies and, for each, the index of its first message.
func packRecords(first uint64, msgs [][]byte) (records [][]byte, firsts []uint64) {
	var cur []byte
	for i, m := range msgs {
		need := binary.MaxVarintLen32 + len(m)
		if cur != nil && len(cur)+need > maxRecordSize-partitionKeyRoom {
			records = append(records, cur)
			cur = nil
		}
		if cur == nil {
			idx := first + uint64(i)
			cur = make([]byte, recordHeader, recordHeader+need)
			cur[0] = recordVersion
			binary.BigEndian.PutUint64(cur[1:], idx)
			firsts = append(firsts, idx)
		}
		cur = binary.AppendUvarint(cur, uint64(len(m)))
		cur = append(cur, m...)
	}
	if cur != nil {
		records = append(records, cur)
	}
	return records, firsts
}

// unpackRecord calls fn for each message of a record with its index. The data slices alias b.
func unpackRecord(b []byte, fn func(index uint64, data []byte) bool) error {
	if len(b) < recordHeader || b[0] != recordVersion {
		return errBadRecord
	}
	idx := binary.BigEndian.Uint64(b[1:])
	b = b[recordHeader:]
	if len(b) == 0 {
		return fmt.Errorf("%w: no messages", errBadRecord)
	}
	// Check the whole record first: fn sees all of it or nothing.
	last := idx
	for rest := b; len(rest) > 0; last++ {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return fmt.Errorf("%w: truncated message at index %d", errBadRecord, last)
		}
		if last > maxIndex {
			return fmt.Errorf("%w: index %d is past the largest, %d", errBadRecord, last, uint64(maxIndex))
		}
		rest = rest[w+int(n):]
	}
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return fmt.Errorf("%w: truncated message at index %d", errBadRecord, idx)
		}
		b = b[w:]
		if !fn(idx, b[:n:n]) {
			return nil
		}
		b = b[n:]
		idx++
	}
	return nil
}

// recordFirstIndex returns the index of a record's first message.
func recordFirstIndex(b []byte) (uint64, error) {
	if len(b) < recordHeader || b[0] != recordVersion {
		return 0, errBadRecord
	}
	return binary.BigEndian.Uint64(b[1:]), nil
}
