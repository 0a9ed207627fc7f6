// Package memory is Sluice's in-memory reference backend: [core.Storage] and
// [core.IndexStorage] in one [Store], kept in process memory and lost on Close.
//
// It is for tests and examples only. It is the executable form of the storage contracts:
// it passes the whole conformance suite, and its behaviour is what every other backend
// must match.
//
// # Configuration
//
// Create a store with [New], or open one through the backend registry with the URL
// "memory://" (blank-import this package). The URL accepts one query parameter,
// max_message_size, the largest message in bytes (default [DefaultMaxMessageSize]):
//
//	memory://?max_message_size=65536
//
// Every [core.Open] of "memory://" returns a new, empty store.
//
// # Index semantics
//
// Indexes are dense: the messages of each partition get 0, 1, 2, ... in append order
// ([core.Capabilities].DenseIndex). Saved consumer indexes are kept per (client_id, stream,
// partition) and only ever grow.
//
// # Limitations
//
// Nothing is persistent: Close drops every stream and saved index. Memory grows with every
// message appended; nothing is ever trimmed. DeleteStream also drops the saved indexes of
// the deleted stream, so a stream created again under the same name starts fresh.
package memory

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/core"
)

// DefaultMaxMessageSize is the largest message a store accepts unless
// [Options].MaxMessageSize says otherwise: 1 MiB.
const DefaultMaxMessageSize = 1 << 20

// Options configures a [Store]. The zero value (or nil) means defaults.
type Options struct {
	// MaxMessageSize is the largest message, in bytes, Append accepts. Zero means
	// DefaultMaxMessageSize; a negative value is invalid.
	MaxMessageSize int
}

// Store is an in-memory stream and index store. It is safe for concurrent use. Its zero
// value is not usable; call [New].
type Store struct {
	caps core.Capabilities

	mu      sync.RWMutex
	closed  bool
	streams map[string][]*partition
	indexes map[indexKey]uint64
}

// partition holds one partition's messages; a message's index is its position.
type partition struct {
	msgs [][]byte
}

type indexKey struct {
	client, stream string
	partition      int
}

var (
	_ core.Storage          = (*Store)(nil)
	_ core.IndexStorage     = (*Store)(nil)
	_ core.StreamDeleter    = (*Store)(nil)
	_ core.PartitionCounter = (*Store)(nil)
	_ core.IndexDeleter     = (*Store)(nil)
)

func init() {
	core.Register("memory", openURL)
}

// New returns an empty store. nil opts means defaults. An invalid option returns an error
// matching [core.ErrInvalidOption].
func New(opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.MaxMessageSize < 0:
		return nil, fmt.Errorf("memory: %w: MaxMessageSize %d is negative; use 0 for the default (%d)", core.ErrInvalidOption, o.MaxMessageSize, DefaultMaxMessageSize)
	case o.MaxMessageSize == 0:
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	return &Store{
		caps: core.Capabilities{
			Name:           "memory",
			DenseIndex:     true,
			MaxMessageSize: o.MaxMessageSize,
			MaxPartitions:  core.MaxPartitions,
		},
		streams: make(map[string][]*partition),
		indexes: make(map[indexKey]uint64),
	}, nil
}

// openURL opens "memory://[?max_message_size=N]" for the backend registry.
func openURL(_ context.Context, u *url.URL) (*core.Backend, error) {
	if u.Host != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
		return nil, fmt.Errorf("memory: %w: URL %q names a location; use \"memory://\"", core.ErrInvalidOption, u.Redacted())
	}
	var opts Options
	if err := core.NoUserInfo(u); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	params, err := core.URLParams(u)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	for k, v := range params {
		switch k {
		case "max_message_size":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("memory: %w: max_message_size %q is not a positive integer", core.ErrInvalidOption, v)
			}
			opts.MaxMessageSize = n
		default:
			return nil, fmt.Errorf("memory: %w: unknown URL parameter %q; the only one is max_message_size", core.ErrInvalidOption, k)
		}
	}
	s, err := New(&opts)
	if err != nil {
		return nil, err
	}
	return &core.Backend{Storage: s, Index: s}, nil
}

// Capabilities reports dense indexes, the configured MaxMessageSize and
// MaxPartitions = core.MaxPartitions; the store is not persistent.
func (s *Store) Capabilities() core.Capabilities { return s.caps }

// check returns the error for a call with ctx on a store in state closed (held under s.mu).
func (s *Store) check(ctx context.Context, op, stream string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s %q: %w", op, stream, err)
	}
	if s.closed {
		return fmt.Errorf("memory: %s %q: %w", op, stream, core.ErrClosed)
	}
	return nil
}

// CreateStream creates stream with the given number of partitions, or returns the
// partition count of the existing stream.
func (s *Store) CreateStream(ctx context.Context, stream string, partitions int) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("memory: create stream: %w", err)
	}
	if err := core.ValidatePartitionCount(partitions, s.caps.MaxPartitions); err != nil {
		return 0, fmt.Errorf("memory: create stream %q: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "create stream", stream); err != nil {
		return 0, err
	}
	if ps, ok := s.streams[stream]; ok {
		return len(ps), nil
	}
	ps := make([]*partition, partitions)
	for i := range ps {
		ps[i] = &partition{}
	}
	s.streams[stream] = ps
	return partitions, nil
}

// partition returns the partition p of stream (s.mu held).
func (s *Store) partition(op, stream string, p int) (*partition, error) {
	ps, ok := s.streams[stream]
	if !ok {
		return nil, fmt.Errorf("memory: %s %q: %w", op, stream, core.ErrStreamNotFound)
	}
	if err := core.ValidatePartition(stream, p, len(ps)); err != nil {
		return nil, fmt.Errorf("memory: %s: %w", op, err)
	}
	return ps[p], nil
}

// Append copies msgs to the end of the partition and returns their indexes, which are
// their positions in the partition.
func (s *Store) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("memory: append: %w", err)
	}
	if err := core.ValidateMessages(msgs, s.caps.MaxMessageSize); err != nil {
		return nil, fmt.Errorf("memory: append %q: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "append", stream); err != nil {
		return nil, err
	}
	p, err := s.partition("append", stream, partition)
	if err != nil {
		return nil, err
	}
	idx := make([]uint64, len(msgs))
	for i, m := range msgs {
		idx[i] = uint64(len(p.msgs))
		p.msgs = append(p.msgs, append([]byte{}, m...))
	}
	return idx, nil
}

// Fetch returns copies of up to limit messages with index >= from.
func (s *Store) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("memory: fetch: %w", err)
	}
	if err := core.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("memory: fetch %q: %w", stream, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx, "fetch", stream); err != nil {
		return nil, err
	}
	p, err := s.partition("fetch", stream, partition)
	if err != nil {
		return nil, err
	}
	n := uint64(len(p.msgs))
	if from >= n || limit == 0 {
		return []core.Message{}, nil
	}
	end := n
	if uint64(limit) < n-from {
		end = from + uint64(limit)
	}
	out := make([]core.Message, 0, end-from)
	for i := from; i < end; i++ {
		out = append(out, core.Message{Index: i, Data: append([]byte{}, p.msgs[i]...)})
	}
	return out, nil
}

// DeleteStream deletes stream, its messages and the indexes saved for it.
func (s *Store) DeleteStream(ctx context.Context, stream string) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return fmt.Errorf("memory: delete stream: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "delete stream", stream); err != nil {
		return err
	}
	if _, ok := s.streams[stream]; !ok {
		return fmt.Errorf("memory: delete stream %q: %w", stream, core.ErrStreamNotFound)
	}
	delete(s.streams, stream)
	s.deleteIndexes(stream)
	return nil
}

// DeleteIndexes deletes every index saved for stream, which need not exist.
func (s *Store) DeleteIndexes(ctx context.Context, stream string) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return fmt.Errorf("memory: delete indexes: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "delete indexes", stream); err != nil {
		return err
	}
	s.deleteIndexes(stream)
	return nil
}

// deleteIndexes deletes the indexes saved for stream. s.mu is held.
func (s *Store) deleteIndexes(stream string) {
	for k := range s.indexes {
		if k.stream == stream {
			delete(s.indexes, k)
		}
	}
}

// Partitions returns the partition count of an existing stream.
func (s *Store) Partitions(ctx context.Context, stream string) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("memory: partitions: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx, "partitions", stream); err != nil {
		return 0, err
	}
	ps, ok := s.streams[stream]
	if !ok {
		return 0, fmt.Errorf("memory: partitions %q: %w", stream, core.ErrStreamNotFound)
	}
	return len(ps), nil
}

// validateKey validates an index key.
func validateKey(op, client, stream string, partition int) error {
	if err := core.ValidateIndexKey(client, stream, partition); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

// GetIndex returns the index saved for (clientID, stream, partition). The stream need not
// exist.
func (s *Store) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if err := validateKey("get index", clientID, stream, partition); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx, "get index", stream); err != nil {
		return 0, err
	}
	i, ok := s.indexes[indexKey{clientID, stream, partition}]
	if !ok {
		return 0, fmt.Errorf("memory: get index %q of client %q, partition %d: %w", stream, clientID, partition, core.ErrIndexNotFound)
	}
	return i, nil
}

// SaveIndex saves index for (clientID, stream, partition) unless a higher one is saved.
// The stream need not exist.
func (s *Store) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	if err := validateKey("save index", clientID, stream, partition); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "save index", stream); err != nil {
		return err
	}
	k := indexKey{clientID, stream, partition}
	if cur, ok := s.indexes[k]; !ok || index > cur {
		s.indexes[k] = index
	}
	return nil
}

// Close drops every stream and saved index; afterwards every method returns an error
// matching [core.ErrClosed]. Closing again returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.streams, s.indexes = nil, nil
	return nil
}
