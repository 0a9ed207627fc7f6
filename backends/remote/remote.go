package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
)

// Defaults of [Options].
const (
	DefaultTimeout = 10 * time.Second
)

// Options configure a [Store]. The zero value means defaults.
type Options struct {
	// Timeout bounds each request to the hub (default DefaultTimeout).
	Timeout time.Duration
	// DenseIndex and Persistent declare the capabilities of the hub's backend.
	DenseIndex, Persistent bool
	// MaxMessageSize is the largest message Append accepts (default and upper bound:
	// client.MaxMessageSize). Set it to the hub's limit when its backend's is lower.
	MaxMessageSize int
	// MaxPartitions is the largest partition count CreateStream accepts (default
	// core.MaxPartitions).
	MaxPartitions int
	// ClientOptions are passed to client.Dial.
	ClientOptions []client.Option
}

// Store is a [core.Storage] and [core.IndexStorage] backed by a hub. It is safe for
// concurrent use.
type Store struct {
	c    *client.Client
	opts Options
	caps core.Capabilities

	mu     sync.Mutex
	conn   *client.Conn
	closed bool
	// stale holds the streams whose routes conn knows but which the Store found deleted,
	// or with another partition count, since it learned them (another Store deleted or
	// created them again): the next call asks the hub again before it uses the routes.
	// A new conn starts with none.
	stale map[string]bool

	closeMu sync.Mutex // held by Close: a later Close waits until the first has finished
}

var (
	_ core.Storage      = (*Store)(nil)
	_ core.IndexStorage = (*Store)(nil)
)

func init() { core.Register("sluice", openURL) }

// New returns a Store that talks to the hub at addr ("host:port"). It connects lazily; ctx
// is not retained. nil opts means defaults; invalid options return an error matching
// core.ErrInvalidOption.
func New(ctx context.Context, addr string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.Timeout < 0:
		return nil, fmt.Errorf("remote: %w: negative timeout %v", core.ErrInvalidOption, o.Timeout)
	case o.MaxMessageSize < 0 || o.MaxMessageSize > client.MaxMessageSize:
		return nil, fmt.Errorf("remote: %w: max message size %d outside [0, %d]", core.ErrInvalidOption, o.MaxMessageSize, client.MaxMessageSize)
	case o.MaxPartitions < 0 || o.MaxPartitions > core.MaxPartitions:
		return nil, fmt.Errorf("remote: %w: max partitions %d outside [0, %d]", core.ErrInvalidOption, o.MaxPartitions, core.MaxPartitions)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = client.MaxMessageSize
	}
	if o.MaxPartitions == 0 {
		o.MaxPartitions = core.MaxPartitions
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := client.Dial(addr, o.ClientOptions...)
	if err != nil {
		return nil, fmt.Errorf("remote: %w", err)
	}
	return &Store{
		c:     c,
		opts:  o,
		stale: map[string]bool{},
		caps: core.Capabilities{
			Name:           "remote",
			DenseIndex:     o.DenseIndex,
			Persistent:     o.Persistent,
			MaxMessageSize: o.MaxMessageSize,
			MaxPartitions:  o.MaxPartitions,
		},
	}, nil
}

// openProbe is the stream whose partition count openURL asks the hub for: whether it
// exists does not matter, only that the hub answers.
const openProbe = "sluice-open-probe"

// openURL opens "sluice://host:port?dense=true&persistent=true&timeout=5s", connects to
// the hub and asks it for a stream's partition count, so that a hub whose upstream hub
// cannot be reached fails at start, as it does with the other backends.
func openURL(ctx context.Context, u *url.URL) (*core.Backend, error) {
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return nil, fmt.Errorf("remote: %w: URL %q: want sluice://host:port, the hub's address", core.ErrInvalidOption, u.Redacted())
	}
	if err := core.NoUserInfo(u); err != nil {
		return nil, fmt.Errorf("remote: %w (a hub does not authenticate its clients)", err)
	}
	params, err := core.URLParams(u)
	if err != nil {
		return nil, fmt.Errorf("remote: %w", err)
	}
	var o Options
	for k, v := range params {
		var err error
		switch k {
		case "dense":
			o.DenseIndex, err = strconv.ParseBool(v)
		case "persistent":
			o.Persistent, err = strconv.ParseBool(v)
		case "timeout":
			o.Timeout, err = time.ParseDuration(v)
		case "max_message_size":
			o.MaxMessageSize, err = strconv.Atoi(v)
		case "max_partitions":
			o.MaxPartitions, err = strconv.Atoi(v)
		default:
			err = errors.New("unknown parameter")
		}
		if err != nil {
			return nil, fmt.Errorf("remote: %w: URL parameter %s=%q: %v", core.ErrInvalidOption, k, v, err)
		}
	}
	s, err := New(ctx, u.Host, &o)
	if err != nil {
		return nil, err
	}
	// One request, not only a connection: an address where something other than a hub
	// listens (an HTTP server, such as a hub's -metrics-addr) fails here too.
	conn, err := s.session(ctx)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	if _, _, err := conn.StreamInfo(ctx, openProbe); err != nil {
		_ = s.Close()
		if !errors.Is(err, core.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", core.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("remote: hub %s: %w", u.Host, err)
	}
	return &core.Backend{Storage: s, Index: s}, nil
}

// Capabilities returns the capabilities given in Options.
func (s *Store) Capabilities() core.Capabilities { return s.caps }

// Close closes the connection to the hub and the client's node, and waits for their
// goroutines. Later calls wait until the first has finished and return nil.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conn := s.conn
	s.conn = nil
	s.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	return s.c.Close()
}

// session returns a working Conn, opening a new one when needed.
func (s *Store) session(ctx context.Context) (*client.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("remote: %w", core.ErrClosed)
	}
	if s.conn != nil && s.conn.Err() == nil {
		return s.conn, nil
	}
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	conn, err := s.c.Open(ctx, s.opts.Timeout)
	if err != nil {
		if !errors.Is(err, core.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", core.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("remote: %w", err)
	}
	s.conn = conn
	clear(s.stale) // the new Conn knows no routes yet
	return conn, nil
}

// begin checks ctx and closed-ness and returns a Conn.
func (s *Store) begin(ctx context.Context) (*client.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.session(ctx)
}

// retry runs op on a working Conn; when op fails with a lost session (not a context error,
// not a validation error) it runs op once more on a new Conn. Only idempotent operations
// use it.
func retry[T any](ctx context.Context, s *Store, op func(conn *client.Conn) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		conn, err := s.begin(ctx)
		if err != nil {
			return zero, err
		}
		v, err := op(conn)
		if err == nil || attempt > 0 || ctx.Err() != nil || conn.Err() == nil {
			return v, err
		}
	}
}

// fail maps an error of a Conn call: context errors stay as they are, ErrClosed after Close,
// everything else also matches core.ErrUnavailable.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("remote: %s: %w", op, ctx.Err())
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("remote: %s: %w", op, core.ErrClosed)
	}
	for _, sentinel := range []error{core.ErrInvalidArgument, core.ErrMessageTooLarge, core.ErrStreamNotFound, core.ErrIndexNotFound, core.ErrUnavailable} {
		if errors.Is(err, sentinel) {
			return fmt.Errorf("remote: %s: %w", op, err)
		}
	}
	return fmt.Errorf("remote: %s: %w: %w", op, core.ErrUnavailable, err)
}

// CreateStream creates stream on the hub (stream_create_partitioned) and returns its
// partition count.
func (s *Store) CreateStream(ctx context.Context, stream string, partitions int) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("remote: create stream: %w", err)
	}
	if err := core.ValidatePartitionCount(partitions, s.caps.MaxPartitions); err != nil {
		return 0, fmt.Errorf("remote: create stream %q: %w", stream, err)
	}
	n, err := retry(ctx, s, func(conn *client.Conn) (int, error) { return conn.CreateStream(ctx, stream, partitions) })
	if err != nil {
		return 0, s.fail(ctx, "create stream "+strconv.Quote(stream), err)
	}
	s.setStale(stream, false) // the Conn has just learned its routes
	return n, nil
}

// Partitions implements core.PartitionCounter: it asks the hub how many partitions stream
// has (sluice_stream_info), which creates nothing. A stream that does not exist returns an
// error matching core.ErrStreamNotFound. With it, a hub whose backend is this Store serves
// pulls of streams created elsewhere (through the other hub, or by another of its Stores).
func (s *Store) Partitions(ctx context.Context, stream string) (int, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return 0, fmt.Errorf("remote: partitions: %w", err)
	}
	op := "partitions " + strconv.Quote(stream)
	type info struct {
		n      int
		exists bool
	}
	r, err := retry(ctx, s, func(conn *client.Conn) (info, error) {
		n, exists, err := conn.StreamInfo(ctx, stream)
		return info{n, exists}, err
	})
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	if !r.exists {
		return 0, fmt.Errorf("remote: %s: %w", op, core.ErrStreamNotFound)
	}
	return r.n, nil
}

// known makes sure conn knows the routes of stream and checks partition against its count.
// A stream that does not exist returns an error matching core.ErrStreamNotFound.
//
// Routes are learned once per Conn, with sluice_stream_open, which never creates the
// stream. They are learned again when the Store found the stream deleted or changed since
// (see recheck), and before a partition beyond the known count is refused (another Store
// may have created the stream again with more partitions). A hub that does not know
// sluice_stream_open is asked the old way (see knownByCreate).
func (s *Store) known(ctx context.Context, conn *client.Conn, stream string, partition int) error {
	if err := core.ValidateStreamName(stream); err != nil {
		return err
	}
	n, ok := conn.Partitions(stream)
	s.mu.Lock()
	stale := s.stale[stream]
	s.mu.Unlock()
	if ok && !stale && partition < n {
		return nil
	}
	got, exists, err := conn.OpenStream(ctx, stream)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return s.knownByCreate(ctx, conn, stream, partition, n, ok, stale)
	case err != nil:
		return err
	case !exists: // conn forgot the stream's routes: the next call asks again
		s.setStale(stream, false)
		return fmt.Errorf("%w: stream %q", core.ErrStreamNotFound, stream)
	}
	s.setStale(stream, false)
	return core.ValidatePartition(stream, partition, got)
}

// knownByCreate is known for a hub that does not know sluice_stream_open: it asks whether
// the stream exists, and with how many partitions (sluice_stream_info), then learns the
// routes with stream_create_partitioned, which for an existing stream creates nothing but
// for one deleted between the two requests creates it again. n and ok are conn's known
// partition count, stale whether the Store found it changed.
func (s *Store) knownByCreate(ctx context.Context, conn *client.Conn, stream string, partition, n int, ok, stale bool) error {
	want, exists, err := conn.StreamInfo(ctx, stream)
	if err != nil {
		return err
	}
	if !exists {
		if ok {
			s.setStale(stream, true)
		}
		return fmt.Errorf("%w: stream %q", core.ErrStreamNotFound, stream)
	}
	if !ok || stale || want != n {
		got, err := conn.CreateStream(ctx, stream, want)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%w: stream %q has %d partitions, then %d", core.ErrUnavailable, stream, want, got)
		}
		s.setStale(stream, false)
		n = got
	}
	return core.ValidatePartition(stream, partition, n)
}

func (s *Store) setStale(stream string, stale bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stale {
		s.stale[stream] = true
	} else {
		delete(s.stale, stream)
	}
}

// recheck is called when a push or pull of a stream whose routes the Store knew failed
// with err. Another Store may have deleted the stream since, or created it again with
// another partition count: the hub's backend then refuses the request, and the hub says
// no more than that it failed (a push confirm with status ERROR, or a sluice_error). So
// when the hub refused the request (client.ErrRejected), recheck asks it whether the stream
// still exists. A stream that no longer exists returns an error matching
// core.ErrStreamNotFound, a partition it no longer has core.ErrInvalidArgument; otherwise
// err is returned as it is. When the stream changed, its routes are learned again on the
// next call.
func (s *Store) recheck(ctx context.Context, stream string, partition int, err error) error {
	if !errors.Is(err, client.ErrRejected) || ctx.Err() != nil {
		return err
	}
	conn, cerr := s.begin(ctx) // a new Conn when an `error` reply failed the request's
	if cerr != nil {
		return err
	}
	want, exists, ierr := conn.StreamInfo(ctx, stream)
	if ierr != nil {
		return err
	}
	n, ok := conn.Partitions(stream)
	switch {
	case !exists:
		s.setStale(stream, true)
		return fmt.Errorf("%w: stream %q no longer exists (deleted by another Store?); the request failed: %v", core.ErrStreamNotFound, stream, err)
	case ok && want != n:
		s.setStale(stream, true)
		if perr := core.ValidatePartition(stream, partition, want); perr != nil {
			return fmt.Errorf("%w (created again by another Store?); the request failed: %v", perr, err)
		}
	}
	return err
}

// Append appends msgs to a partition through the hub and returns their indexes.
func (s *Store) Append(ctx context.Context, stream string, partition int, msgs [][]byte) ([]uint64, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("remote: append: %w", err)
	}
	if partition < 0 {
		return nil, fmt.Errorf("remote: append to %q: %w", stream, core.ValidatePartition(stream, partition, 1))
	}
	if err := core.ValidateMessages(msgs, s.caps.MaxMessageSize); err != nil {
		return nil, fmt.Errorf("remote: append to %q: %w", stream, err)
	}
	conn, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("append to %q partition %d", stream, partition)
	if err := s.known(ctx, conn, stream, partition); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if len(msgs) == 0 {
		return []uint64{}, nil
	}
	idx, err := conn.Push(ctx, stream, partition, msgs)
	if err != nil {
		return nil, s.fail(ctx, op, s.recheck(ctx, stream, partition, err))
	}
	return idx, nil
}

// Fetch returns up to limit messages with index >= from through the hub (without waiting).
func (s *Store) Fetch(ctx context.Context, stream string, partition int, from uint64, limit int) ([]core.Message, error) {
	if err := core.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("remote: fetch: %w", err)
	}
	if err := core.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("remote: fetch %q: %w", stream, err)
	}
	if partition < 0 {
		return nil, fmt.Errorf("remote: fetch %q: %w", stream, core.ValidatePartition(stream, partition, 1))
	}
	msgs, err := retry(ctx, s, func(conn *client.Conn) ([]core.Message, error) {
		if err := s.known(ctx, conn, stream, partition); err != nil {
			return nil, err
		}
		if limit == 0 {
			return []core.Message{}, nil
		}
		return conn.Pull(ctx, stream, partition, from, limit, 0)
	})
	if err != nil {
		return nil, s.fail(ctx, fmt.Sprintf("fetch %q partition %d from %d", stream, partition, from), s.recheck(ctx, stream, partition, err))
	}
	return msgs, nil
}

func validateIndexKey(clientID, stream string, partition int) error {
	return core.ValidateIndexKey(clientID, stream, partition)
}

// GetIndex returns the index saved on the hub, or an error matching core.ErrIndexNotFound.
func (s *Store) GetIndex(ctx context.Context, clientID, stream string, partition int) (uint64, error) {
	if err := validateIndexKey(clientID, stream, partition); err != nil {
		return 0, fmt.Errorf("remote: get index: %w", err)
	}
	i, err := retry(ctx, s, func(conn *client.Conn) (uint64, error) { return conn.GetIndex(ctx, clientID, stream, partition) })
	if err != nil {
		return 0, s.fail(ctx, "get index", err)
	}
	return i, nil
}

// SaveIndex saves index on the hub; the hub keeps the highest value saved.
func (s *Store) SaveIndex(ctx context.Context, clientID, stream string, partition int, index uint64) error {
	if err := validateIndexKey(clientID, stream, partition); err != nil {
		return fmt.Errorf("remote: save index: %w", err)
	}
	_, err := retry(ctx, s, func(conn *client.Conn) (uint64, error) {
		return conn.SaveIndex(ctx, clientID, stream, partition, index)
	})
	if err != nil {
		return s.fail(ctx, "save index", err)
	}
	return nil
}
