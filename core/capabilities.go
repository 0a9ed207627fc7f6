package core

import (
	"fmt"
	"strings"
)

// Capabilities describes what a backend guarantees. The conformance suite cross-checks each
// declared capability against the backend's behaviour: declaring one the backend lacks fails.
type Capabilities struct {
	// Name is the backend's short name ("bbolt", "kafka", ...), used in reports.
	Name string
	// DenseIndex: indexes in a partition are consecutive, starting at 0 (0, 1, 2, ...). A
	// backend with retention may declare it: retention deletes only a partition's oldest
	// messages, so the messages left are consecutive from the oldest one, and the only gap
	// a Fetch shows is between a from below that message and the first message returned.
	DenseIndex bool
	// Persistent: messages and saved indexes survive Close and reopening the same backend.
	Persistent bool
	// MaxMessageSize is the largest message, in bytes, Append accepts (> 0).
	MaxMessageSize int
	// MaxPartitions is the largest partition count CreateStream accepts (> 0).
	MaxPartitions int
	// NativeIndexStorage: the backend's IndexStorage keeps consumer indexes in the same store
	// as the messages (Kafka committed offsets, the same bbolt file), not in another backend
	// (Kinesis, whose indexes live in the backend its index= names). Informational: the
	// conformance suite checks only that an IndexStorage exists.
	NativeIndexStorage bool
}

// String renders the capabilities on one line, for logs and reports.
func (c Capabilities) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: max_message_size=%d max_partitions=%d", c.Name, c.MaxMessageSize, c.MaxPartitions)
	for _, f := range []struct {
		name string
		on   bool
	}{{"dense_index", c.DenseIndex}, {"persistent", c.Persistent}, {"native_index_storage", c.NativeIndexStorage}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	return b.String()
}
