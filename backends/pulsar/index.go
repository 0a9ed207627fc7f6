package pulsar

import (
	"errors"
	"fmt"

	"github.com/apache/pulsar-client-go/pulsar"
)

// Bit budget of the index: the high LedgerBits bits hold the BookKeeper ledger id, the low
// EntryBits bits the entry id within that ledger. See the package doc, "Index semantics".
const (
	EntryBits  = 28
	LedgerBits = 64 - EntryBits

	// MaxEntryID is the largest entry id (per ledger) an index can hold: 268,435,455.
	MaxEntryID = 1<<EntryBits - 1
	// MaxLedgerID is the largest ledger id an index can hold: 68,719,476,735.
	MaxLedgerID = 1<<LedgerBits - 1
)

// ErrIndexOutOfRange reports a message id that the index mapping cannot represent: a
// ledger id above MaxLedgerID, an entry id above MaxEntryID, or a message inside a batch
// (written by a producer other than this backend with batching on).
var ErrIndexOutOfRange = errors.New("pulsar: message id outside the index mapping")

// toIndex maps the id of a persisted, non-batched message to its index:
// ledgerID<<EntryBits | entryID.
func toIndex(id pulsar.MessageID) (uint64, error) {
	l, e := id.LedgerID(), id.EntryID()
	switch {
	case l < 0 || l > MaxLedgerID:
		return 0, fmt.Errorf("%w: ledger id %d is outside [0, %d]", ErrIndexOutOfRange, l, int64(MaxLedgerID))
	case e < 0 || e > MaxEntryID:
		return 0, fmt.Errorf("%w: entry id %d (ledger %d) is outside [0, %d]", ErrIndexOutOfRange, e, l, MaxEntryID)
	case id.BatchIdx() > 0 || id.BatchSize() > 1:
		return 0, fmt.Errorf("%w: message %d:%d is message %d of a batch of %d; streams must be written without batching",
			ErrIndexOutOfRange, l, e, id.BatchIdx(), id.BatchSize())
	}
	return uint64(l)<<EntryBits | uint64(e), nil
}

// fromIndex returns the message id that index maps to, in partition partition. The id need
// not exist: a reader started at it inclusively begins at the first message whose index is
// >= index (see the package doc).
func fromIndex(index uint64, partition int) pulsar.MessageID {
	return pulsar.NewMessageID(int64(index>>EntryBits), int64(index&MaxEntryID), -1, int32(partition))
}

// endIndex returns one past the index of last, the id of the last persisted message that
// the broker reports, and false when last says the partition holds no message: an entry id
// of -1 (the broker's "nothing in this ledger", reported only when no earlier ledger holds a
// message either) or a negative ledger id.
func endIndex(last pulsar.MessageID) (uint64, bool, error) {
	if last == nil || last.LedgerID() < 0 || last.EntryID() < 0 {
		return 0, false, nil
	}
	i, err := toIndex(pulsar.NewMessageID(last.LedgerID(), last.EntryID(), -1, last.PartitionIdx()))
	if err != nil {
		return 0, false, err
	}
	return i + 1, true, nil
}
