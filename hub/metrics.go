package hub

import (
	"encoding/json"
	"sync/atomic"
)

// Metrics are the hub's counters. All fields but the gauges Connections and
// PartitionWorkers only grow; read them with [Hub.Metrics], which returns a
// consistent-enough snapshot (each field is read atomically, the set is not).
type Metrics struct {
	// Creates counts stream_create / stream_create_partitioned requests answered with Init.
	Creates uint64 `json:"creates"`
	// Pushes counts messages confirmed OK (a sluice_push_batch of n messages counts n).
	Pushes uint64 `json:"pushes"`
	// PushErrors counts messages confirmed with status ERROR.
	PushErrors uint64 `json:"push_errors"`
	// Pulls counts answered pull requests (stream_pull, sluice_pull_wait and
	// sluice_pull_batch, whose parts count once).
	Pulls uint64 `json:"pulls"`
	// PulledMessages counts messages sent in pull responses.
	PulledMessages uint64 `json:"pulled_messages"`
	// PullWaits counts long polls (sluice_pull_wait and sluice_pull_batch requests) that
	// were parked until an append or expiry.
	PullWaits uint64 `json:"pull_waits"`
	// PullWaitsRefused counts long polls answered at once, with no messages, because their
	// partition already had [WithMaxParkedPulls] parked.
	PullWaitsRefused uint64 `json:"pull_waits_refused"`
	// Appends counts backend Append calls; AppendedMessages / Appends is the mean batch size.
	Appends uint64 `json:"appends"`
	// AppendedMessages counts messages durably appended.
	AppendedMessages uint64 `json:"appended_messages"`
	// MaxBatch is the largest number of messages written by one backend Append.
	MaxBatch uint64 `json:"max_batch"`
	// IndexGets and IndexSaves count index service requests.
	IndexGets  uint64 `json:"index_gets"`
	IndexSaves uint64 `json:"index_saves"`
	// StreamInfos counts sluice_stream_info requests answered.
	StreamInfos uint64 `json:"stream_infos"`
	// StreamOpens counts sluice_stream_open requests answered.
	StreamOpens uint64 `json:"stream_opens"`
	// Errors counts `error` and `sluice_error` replies sent (unknown protocol, undecodable
	// payload, backend failure, shutdown).
	Errors uint64 `json:"errors"`
	// SlowConsumers counts reply destinations given up because they did not take their
	// replies: a connection that took none for 5 s, or let thousands pile up, is closed
	// (see the package doc, "Slow clients and bounds").
	SlowConsumers uint64 `json:"slow_consumers"`
	// ConnectionsRefused counts TCP connections closed as soon as they were accepted
	// because the hub had [WithMaxConnections] open (see the package doc, "Metrics and
	// logs").
	ConnectionsRefused uint64 `json:"connections_refused"`
	// Connections is a gauge: the TCP connections open now (the hub's own transport, from
	// [Hub.Listen]); [WithMaxConnections] limits it.
	Connections uint64 `json:"connections"`
	// PartitionWorkers is a gauge: the partition workers the hub has now. A worker is
	// created on the first message for its partition and retired after
	// [WithWorkerIdleTimeout] without use.
	PartitionWorkers uint64 `json:"partition_workers"`
	// PartitionWorkersRetired counts partition workers retired because they were idle;
	// a partition used again gets a new worker.
	PartitionWorkersRetired uint64 `json:"partition_workers_retired"`
}

// String renders the metrics as JSON, so a *Metrics value can be published with expvar.
func (m Metrics) String() string {
	b, _ := json.Marshal(m)
	return string(b)
}

// counters is the live, atomically updated form of Metrics.
type counters struct {
	creates, pushes, pushErrors, pulls, pulledMessages, pullWaits      atomic.Uint64
	appends, appendedMessages, maxBatch, indexGets, indexSaves, errors atomic.Uint64
	streamInfos, pullWaitsRefused, slowConsumers, connsRefused         atomic.Uint64
	workersRetired, streamOpens                                        atomic.Uint64
	partitionWorkers                                                   atomic.Int64 // a gauge, changed under Hub.mu
}

func (c *counters) batch(n int) {
	c.appends.Add(1)
	c.appendedMessages.Add(uint64(n))
	for {
		cur := c.maxBatch.Load()
		if uint64(n) <= cur || c.maxBatch.CompareAndSwap(cur, uint64(n)) {
			return
		}
	}
}

func (c *counters) snapshot() Metrics {
	return Metrics{
		Creates:                 c.creates.Load(),
		Pushes:                  c.pushes.Load(),
		PushErrors:              c.pushErrors.Load(),
		Pulls:                   c.pulls.Load(),
		PulledMessages:          c.pulledMessages.Load(),
		PullWaits:               c.pullWaits.Load(),
		Appends:                 c.appends.Load(),
		AppendedMessages:        c.appendedMessages.Load(),
		MaxBatch:                c.maxBatch.Load(),
		IndexGets:               c.indexGets.Load(),
		IndexSaves:              c.indexSaves.Load(),
		StreamInfos:             c.streamInfos.Load(),
		StreamOpens:             c.streamOpens.Load(),
		Errors:                  c.errors.Load(),
		PullWaitsRefused:        c.pullWaitsRefused.Load(),
		SlowConsumers:           c.slowConsumers.Load(),
		ConnectionsRefused:      c.connsRefused.Load(),
		PartitionWorkers:        uint64(max(c.partitionWorkers.Load(), 0)),
		PartitionWorkersRetired: c.workersRetired.Load(),
	}
}
