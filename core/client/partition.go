package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/wire"
)

// fatalError is the error of a session that found no stream, or a stream without the
// partition asked for, where the publisher or consumer must not create it: retrying cannot
// help. It ends a consumer's Run and fails a publisher's messages (see [WithPartition]). It
// matches core.ErrStreamNotFound or core.ErrInvalidArgument.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// partitionOpener finds the route to one partition of an existing stream, session after
// session, without ever creating the stream: a publisher or consumer of a partition above 0
// uses it, and a consumer with WithoutCreate of any partition. It is used by one goroutine.
type partitionOpener struct {
	role      string // "publisher" or "consumer", for errors
	stream    string
	partition int
	ids       uint64 // numbers its requests
	// worker is the local address of the partition's worker on the hub, from the first
	// Init (a hub that does not know sluice_stream_open: later sessions reuse it instead of
	// creating the stream again).
	worker *wire.Address
}

func (o *partitionOpener) nextID() uint64 { o.ids++; return o.ids }

// route returns the route to the partition on session s. It asks the hub for the routes
// with sluice_stream_open, which creates nothing; the route is the return route of the
// partition's reply (routes are opaque). A stream that does not exist, or has no such
// partition, returns a *fatalError. A hub that does not know sluice_stream_open is asked
// the old way (see routeByCreate).
func (o *partitionOpener) route(ctx context.Context, s *session, timeout time.Duration) (wire.Route, error) {
	routes, err := s.openStream(ctx, o.nextID(), o.stream, timeout)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return o.routeByCreate(ctx, s, timeout)
	case err != nil:
		return nil, fmt.Errorf("client: %s of %q: %w", o.role, o.stream, err)
	}
	if err := o.check(len(routes)); err != nil {
		return nil, err
	}
	return routes[o.partition], nil
}

// routeByCreate is route for a hub that does not know sluice_stream_open: it first asks
// the hub whether the stream exists and with how many partitions (sluice_stream_info), and
// returns a *fatalError when it does not or has too few; then it reuses the worker's address
// learned from an earlier Init, or learns the route from the Init of a create of the stream
// with the count the hub reported (stream_create for partition 0, as Ockam's clients send,
// else stream_create_partitioned), which for an existing stream creates nothing. With such
// a hub only, a stream deleted between that check and that create is created again.
func (o *partitionOpener) routeByCreate(ctx context.Context, s *session, timeout time.Duration) (wire.Route, error) {
	n, exists, err := s.streamInfo(ctx, o.nextID(), o.stream, timeout)
	if err != nil {
		return nil, fmt.Errorf("client: %s of %q: %w", o.role, o.stream, err)
	}
	if !exists {
		n = 0
	}
	if err := o.check(n); err != nil {
		return nil, err
	}
	if o.worker != nil {
		return s.route(string(o.worker.Value)), nil
	}
	var route wire.Route
	if o.partition == 0 {
		if route, err = s.createStream(ctx, o.stream, timeout); err != nil {
			return nil, err
		}
	} else {
		routes, err := s.createPartitioned(ctx, o.stream, n, o.nextID, timeout, DefaultCreateQuiet)
		if err != nil {
			return nil, err
		}
		if len(routes) != n { // created again in between, with another count
			return nil, fmt.Errorf("client: %s of %q: %w: the stream has %d partitions, then %d", o.role, o.stream, core.ErrUnavailable, n, len(routes))
		}
		route = routes[o.partition]
	}
	// The worker is a local address of the hub node (every Sluice hub's is); another kind
	// is not reused, and each session creates the stream to learn the route again.
	if w := route[len(route)-1]; w.Type == wire.AddressLocal {
		w.Value = append([]byte(nil), w.Value...)
		o.worker = &w
	}
	return route, nil
}

// check returns a *fatalError when a stream with n partitions (0: none, the stream does not
// exist) has no partition o.partition, saying what to do.
func (o *partitionOpener) check(n int) error {
	switch {
	case n == 0 && o.partition == 0: // a consumer with WithoutCreate
		return &fatalError{fmt.Errorf("client: consumer: stream %q does not exist on the hub, and the consumer does not create it (WithoutCreate): %w", o.stream, core.ErrStreamNotFound)}
	case n == 0:
		return &fatalError{fmt.Errorf("client: %s: stream %q does not exist on the hub, and a %s of partition %d does not create it: create it with at least %d partitions first (sluice create -partitions %d %s): %w",
			o.role, o.stream, o.role, o.partition, o.partition+1, o.partition+1, o.stream, core.ErrStreamNotFound)}
	case o.partition >= n:
		return &fatalError{fmt.Errorf("client: %s: %w; use a partition from 0 to %d, or a stream created with more partitions (sluice create -partitions %d NAME)",
			o.role, core.ValidatePartition(o.stream, o.partition, n), n-1, o.partition+1)}
	}
	return nil
}

// validPartition is the check of WithPartition and WithConsumerPartition.
func validPartition(p int) error {
	if p < 0 || p >= core.MaxPartitions {
		return fmt.Errorf("%w: client: partition %d outside [0, %d]", core.ErrInvalidOption, p, core.MaxPartitions-1)
	}
	return nil
}
