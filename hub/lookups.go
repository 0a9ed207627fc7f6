package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sluicehq/sluice/core"
)

// lookupTTL is how long the fallback goes by a partition count the hub asked the backend for
// (see partitionLookups).
const lookupTTL = time.Second

// maxLookups bounds partitionLookups: when full, it forgets everything.
const maxLookups = 1024

// partitionLookups remembers, per stream, the last partition count the backend reported, or
// that the stream does not exist, for lookupTTL. The fallback goes by it, so that requests
// to partitions that do not exist (a stream deleted while clients still use its routes, or
// a partition number past the stream's count) cost the backend at most one lookup per
// stream and lookupTTL, however many come. Each lookup is a round trip to the broker (a
// Kafka metadata request, a Pulsar admin call, a Kinesis ListShards call, which AWS
// throttles), made on the reading goroutine of the connection the request came in on. A stream
// created by another hub or a tool meanwhile is found at the latest lookupTTL later, or at
// once when a client asks sluice_stream_open (always a fresh lookup, which refreshes the
// entry) or creates it through this hub. Failed lookups are not remembered: the next
// request asks again.
type partitionLookups struct {
	mu  sync.Mutex
	ttl time.Duration // lookupTTL; tests change it
	m   map[string]lookup
}

type lookup struct {
	n   int
	err error     // nil, or matching core.ErrStreamNotFound
	at  time.Time // when the lookup was made (asked)
}

// get returns the answer remembered for stream, if it is less than ttl old.
func (l *partitionLookups) get(stream string) (lookup, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[stream]
	if !ok || time.Since(e.at) >= l.ttl {
		return lookup{}, false
	}
	return e, true
}

// put remembers the backend's answer for stream to a lookup made at asked, when it is one (a
// count, or that the stream does not exist) and no lookup made later answered already: a
// slow lookup that found no stream must not replace the count a later one found (a
// sluice_stream_open after the stream was created).
func (l *partitionLookups) put(stream string, n int, err error, asked time.Time) {
	if err != nil && !errors.Is(err, core.ErrStreamNotFound) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.m[stream]; ok && e.at.After(asked) {
		return
	}
	if l.m == nil || len(l.m) >= maxLookups {
		l.m = make(map[string]lookup)
	}
	l.m[stream] = lookup{n: n, err: err, at: asked}
}

// recentPartitionCount is partitionCount, or the answer it gave less than lookupTTL ago.
func (h *Hub) recentPartitionCount(ctx context.Context, stream string) (int, error) {
	if e, ok := h.lookups.get(stream); ok {
		return e.n, e.err
	}
	return h.partitionCount(ctx, stream)
}

// setTTL changes how long the fallback goes by a lookup (tests).
func (l *partitionLookups) setTTL(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ttl = d
}
