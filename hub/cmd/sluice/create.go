package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/core"
	"github.com/sluicehq/sluice/core/client"
	"github.com/sluicehq/sluice/core/wire"
	"github.com/sluicehq/sluice/hub"
)

func init() {
	register(&command{
		name:    "create",
		summary: "create a stream (or check that it exists)",
		usage:   "[flags] [STREAM]",
		help: `
Create a stream on a hub and print its name and partition count. Creating a stream that
exists is not an error: it reports the partitions it has, unless -partitions was given and
differs from them (the partition count of an existing stream cannot be changed): that exits
1. Without a name, the hub generates one ("generated_...").

While nothing listens at -hub yet (connection refused: a hub just started, or restarting),
create tries again until -timeout, saying so on stderr after a second; a script can run
"sluice hub &" and then "sluice create" at once. Ctrl-C stops it with exit status 130.

Examples:
  sluice create orders
  sluice create -partitions 4 telemetry
  sluice create -hub 10.0.0.5:4000
`,
		flags: createFlags,
	})
}

// hubFlag declares the -hub flag shared by the client commands.
func hubFlag(fs *flag.FlagSet) *string {
	return fs.String("hub", envOr("SLUICE_HUB", defaultListen), "hub address host:port (env SLUICE_HUB)")
}

func createFlags(fs *flag.FlagSet) func(context.Context, *stdio, []string) error {
	hubAddr := hubFlag(fs)
	partitions := fs.Int("partitions", 1, "number of partitions")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the hub to accept the connection and answer")
	return func(ctx context.Context, sio *stdio, args []string) error {
		if len(args) > 1 {
			for _, a := range args[1:] {
				if strings.HasPrefix(a, "-") {
					return usageErr("%q after the stream name looks like a flag: flags go before the stream name", a)
				}
			}
			return usageErr("at most one stream name, got %d arguments", len(args))
		}
		var name wire.Optional[string]
		if len(args) == 1 {
			if err := core.ValidateStreamName(args[0]); err != nil {
				return usageErr("%v", err)
			}
			name = wire.Some(args[0])
		}
		if err := core.ValidatePartitionCount(*partitions, 0); err != nil {
			return usageErr("-partitions: %v", err)
		}
		if *timeout <= 0 {
			return usageErr("-timeout %v: want more than 0", *timeout)
		}
		if err := checkHubAddr(*hubAddr); err != nil {
			return fromEnv(err, fs, "hub", "SLUICE_HUB")
		}
		partitionsSet := flagSet(fs, "partitions")
		parent := ctx
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		// The partitioned form also for one partition: the hub then answers with one Init
		// per partition the stream really has.
		protocol := wire.ProtocolCreatePartitioned
		req := wire.CreateStreamPartitionedRequest{StreamName: name, Partitions: uint64(*partitions)}
		r, err := sendCreate(ctx, sio, *hubAddr, *timeout, protocol, req)
		if err != nil {
			if parent.Err() != nil && !errors.Is(err, errInterrupted) {
				return interrupted("")
			}
			return err
		}
		defer r.Close()
		stream, n, err := createReplies(ctx, sio, r, protocol)
		if err != nil {
			if parent.Err() != nil {
				return interrupted(" before the hub answered: the stream may or may not have been created")
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return &hubError{*hubAddr, fmt.Errorf("%w: no reply within -timeout %v (is it a sluice hub?)", client.ErrTimeout, *timeout)}
			}
			if errors.Is(err, core.ErrUnavailable) {
				return &hubError{*hubAddr, err}
			}
			return err
		}
		fmt.Fprintf(sio.out, "stream %s: %d partition(s)\n", stream, n)
		if partitionsSet && n != *partitions {
			return fmt.Errorf("stream %s exists with %d partition(s), not %d; the partition count of an existing stream cannot be changed", stream, n, *partitions)
		}
		return nil
	}
}

// createReplies reads the hub's answer to the create request sent on r and returns the
// stream's name and partition count.
//
// The hub sends one Init per partition of the stream as it exists, which may differ from
// the count asked for when it existed already, and nothing says which Init is the last.
// So once the first Init has come (the stream exists), create asks the hub for the count
// with sluice_stream_info. A hub that does not know it (older, or an Ockam node: an `error`
// reply), cannot tell (StatusError or a sluice_error), or does not answer it within
// -timeout, is counted the old way: its Inits, until initQuiet passes without one.
func createReplies(ctx context.Context, sio *stdio, r *rpc, protocol string) (stream string, partitions int, err error) {
	const infoID = 1
	seen := map[uint64]bool{}
	infoSent, quiet := false, false // quiet: count the Inits until a quiet period
	for {
		rctx, rcancel := ctx, context.CancelFunc(func() {})
		if quiet {
			rctx, rcancel = context.WithTimeout(ctx, initQuiet)
		}
		rep, err := r.recv(rctx)
		rcancel()
		switch {
		case err == nil:
		case len(seen) > 0 && quiet && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			return stream, len(seen), nil // quiet: all Inits are in
		case len(seen) > 0 && !quiet && errors.Is(ctx.Err(), context.DeadlineExceeded):
			fmt.Fprintf(sio.err, "sluice create: the hub did not answer %s within -timeout; counting the %d Init replies that came\n", wire.ProtocolStreamInfo, len(seen))
			return stream, len(seen), nil
		case infoSent && !quiet && ctx.Err() == nil && !errors.Is(err, core.ErrUnavailable):
			// Not the connection nor the context: an `error` reply (see rpc.recv), which
			// after an Init can only answer sluice_stream_info: a hub that does not know it.
			quiet = true
			continue
		default:
			return "", 0, err
		}
		switch rep.bp.Protocol {
		case protocol:
			init, err := wire.DecodeInitPartitioned(rep.bp.Data)
			if err != nil {
				return "", 0, err
			}
			stream, seen[init.Partition] = init.StreamName, true
			if !infoSent {
				infoSent = true
				if err := r.send(ctx, hub.StreamAddress, wire.ProtocolStreamInfo, wire.StreamInfoRequest{RequestID: infoID, StreamName: stream}); err != nil {
					return "", 0, err
				}
			}
		case wire.ProtocolStreamInfo:
			info, err := wire.DecodeStreamInfoReply(rep.bp.Data)
			if err != nil || info.RequestID != infoID {
				return "", 0, fmt.Errorf("unexpected %q reply from the hub", rep.bp.Protocol)
			}
			if info.Status != wire.StatusOK || !info.Partitions.Valid || info.Partitions.Value < 1 || info.Partitions.Value > core.MaxPartitions {
				quiet = true // it cannot tell (or the stream went meanwhile): count the Inits
				continue
			}
			return stream, int(info.Partitions.Value), nil
		case wire.ProtocolRequestError:
			if e, err := wire.DecodeRequestError(rep.bp.Data); err != nil || e.RequestID != infoID || e.Protocol != wire.ProtocolStreamInfo {
				return "", 0, fmt.Errorf("unexpected %q reply from the hub", rep.bp.Protocol)
			}
			quiet = true // the hub could not serve sluice_stream_info (stopping, say)
		default:
			return "", 0, fmt.Errorf("unexpected %q reply from the hub", rep.bp.Protocol)
		}
	}
}

// initQuiet is how long create waits for more InitPartitioned replies after the last one,
// when the hub does not report the partition count (see createReplies).
const initQuiet = 300 * time.Millisecond

// createWarnAfter is how long create retries a hub that refuses connections before it says
// so on stderr: a hub started just before ("sluice hub &" in a script) is quietly waited
// for.
const createWarnAfter = time.Second

// sendCreate connects to the hub and sends the create request. While nothing listens at
// addr yet (connection refused), it tries again until ctx ends (-timeout), saying so once
// on stderr when that lasts createWarnAfter, so that a create right after starting a hub
// does not fail before the hub listens.
func sendCreate(ctx context.Context, sio *stdio, addr string, timeout time.Duration, protocol string, req wire.Encoder) (*rpc, error) {
	start := time.Now()
	warned := false
	var refused error // the latest connection refused
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		r, err := dialRPC(addr)
		if err != nil {
			return nil, err
		}
		err = r.send(ctx, hub.StreamAddress, protocol, req)
		if err == nil {
			return r, nil
		}
		r.Close()
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			refused = err
		case refused == nil || ctx.Err() == nil:
			return nil, &hubError{addr, err}
		}
		// Refused, or ctx ended while connecting again after a refusal.
		if ctx.Err() == nil {
			if !warned && time.Since(start) >= createWarnAfter {
				warned = true
				fmt.Fprintf(sio.err, "sluice create: %s; retrying for up to -timeout %v\n", cliMessage(&hubError{addr, refused}), timeout)
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
				continue
			}
		}
		if errors.Is(ctx.Err(), context.Canceled) { // Ctrl-C, not -timeout
			return nil, fmt.Errorf("%w; last error: %w", errInterrupted, &hubError{addr, refused})
		}
		return nil, &hubError{addr, refused}
	}
}
