package core

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Limits on names, enforced for every backend by the Validate functions below.
const (
	// MaxStreamNameLen is the longest stream name. It leaves room for a backend's topic
	// prefix within Kinesis's 128-character stream-name limit and Kafka's 249.
	MaxStreamNameLen = 100
	// MaxClientIDLen is the longest client id, in bytes.
	MaxClientIDLen = 255
	// MaxPartitions is the most partitions any stream may have; a backend may declare fewer.
	MaxPartitions = 1024
)

// ValidateStreamName reports whether name is a valid stream name: 1 to MaxStreamNameLen
// characters from [A-Za-z0-9._-], not "." or "..". These are the characters every supported
// broker accepts in a topic or stream name. The error matches [ErrInvalidArgument].
func ValidateStreamName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty stream name", ErrInvalidArgument)
	}
	if len(name) > MaxStreamNameLen {
		return fmt.Errorf("%w: stream name %.20q... is %d characters long, the limit is %d", ErrInvalidArgument, name, len(name), MaxStreamNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: stream name %q is reserved", ErrInvalidArgument, name)
	}
	for i, r := range name { // r is utf8.RuneError for a byte that is not UTF-8
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			what := fmt.Sprintf("%q", r)
			if r == utf8.RuneError {
				what = fmt.Sprintf("byte 0x%02x", name[i])
			}
			return fmt.Errorf("%w: stream name %q has %s at byte %d; use only ASCII letters, digits, '.', '_' and '-'", ErrInvalidArgument, name, what, i)
		}
	}
	return nil
}

// ValidateClientID reports whether id is a valid consumer client id: 1 to MaxClientIDLen
// bytes of valid UTF-8 without control characters. The error matches [ErrInvalidArgument].
func ValidateClientID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty client id", ErrInvalidArgument)
	}
	if len(id) > MaxClientIDLen {
		return fmt.Errorf("%w: client id is %d bytes long, the limit is %d", ErrInvalidArgument, len(id), MaxClientIDLen)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: client id %q is not valid UTF-8", ErrInvalidArgument, id)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: client id %q contains a control character", ErrInvalidArgument, id)
		}
	}
	return nil
}

// ValidatePartitionCount reports whether n is a valid partition count for a backend that
// allows at most max partitions (max <= 0 means MaxPartitions).
func ValidatePartitionCount(n, max int) error {
	if max <= 0 || max > MaxPartitions {
		max = MaxPartitions
	}
	if n < 1 || n > max {
		return fmt.Errorf("%w: partition count %d is outside [1, %d]", ErrInvalidArgument, n, max)
	}
	return nil
}

// ValidatePartition reports whether p is a partition of a stream with n partitions.
func ValidatePartition(stream string, p, n int) error {
	if p < 0 || p >= n {
		return fmt.Errorf("%w: stream %q has %d partition(s), partition %d does not exist", ErrInvalidArgument, stream, n, p)
	}
	return nil
}

// ValidateLimit reports whether limit is a valid Fetch limit (>= 0).
func ValidateLimit(limit int) error {
	if limit < 0 {
		return fmt.Errorf("%w: negative fetch limit %d", ErrInvalidArgument, limit)
	}
	return nil
}

// ValidateMessages reports whether every message fits in max bytes. The error names the
// first message that does not and matches [ErrMessageTooLarge].
func ValidateMessages(msgs [][]byte, max int) error {
	for i, m := range msgs {
		if len(m) > max {
			return fmt.Errorf("%w: message %d is %d bytes, the limit is %d", ErrMessageTooLarge, i, len(m), max)
		}
	}
	return nil
}

// ValidateIndexKey reports whether (clientID, stream, partition) is a valid IndexStorage key:
// a valid client id, a valid stream name and a partition in [0, MaxPartitions). Index
// storages check keys with it whether or not the stream exists.
func ValidateIndexKey(clientID, stream string, partition int) error {
	if err := ValidateClientID(clientID); err != nil {
		return err
	}
	if err := ValidateStreamName(stream); err != nil {
		return err
	}
	if partition < 0 || partition >= MaxPartitions {
		return fmt.Errorf("%w: partition %d of stream %q is outside [0, %d)", ErrInvalidArgument, partition, stream, MaxPartitions)
	}
	return nil
}
