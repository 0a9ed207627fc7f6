package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/core"
)

// Metrics are the hub's counters. All fields but the gauges Connections and
// PartitionWorkers only grow; read them with [Hub.Metrics], which returns a
// consistent-enough snapshot (each field is read atomically, the set is not).
// [Metrics.String] renders them as JSON (for expvar), [Metrics.WritePrometheus] in
// Prometheus' text format.
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
	// partition already had [WithMaxParkedPulls] parked, or their connection
	// [WithMaxParkedPullsPerConnection].
	PullWaitsRefused uint64 `json:"pull_waits_refused"`
	// RetentionSkipped counts messages that pulls skipped because the backend's retention
	// had deleted them before they were read (a consumer further behind than the backend
	// keeps: bbolt's max_messages). Counted only on a backend with dense indexes
	// (Capabilities().DenseIndex), where such a gap shows; each pull counts the messages
	// it skipped, so a consumer that pulls from the same old index twice counts them twice.
	RetentionSkipped uint64 `json:"retention_skipped"`
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
	// replies: a connection of the hub's TCP transport that took none for 5 s, or let
	// thousands pile up, is closed, and counts once however many of its replies were
	// waiting (see the package doc, "Slow clients and bounds"). Replies to another
	// destination (a worker of a node given with [WithNode]) are dropped instead, and each
	// time they are counts.
	SlowConsumers uint64 `json:"slow_consumers"`
	// ConnectionsRefused counts TCP connections closed as soon as they were accepted
	// because the hub had [WithMaxConnections] open (see the package doc, "Metrics and
	// logs").
	ConnectionsRefused uint64 `json:"connections_refused"`
	// HTTPRequestsRefused counts TCP connections closed because they sent an HTTP request
	// (an HTTP client or health check pointed at the hub's port instead of its metrics
	// address); each was answered 400 (see the package doc, "Metrics and logs").
	HTTPRequestsRefused uint64 `json:"http_requests_refused"`
	// UndeliverableMessages counts messages read from the hub's TCP connections that had no
	// worker to go to: requests to a stream partition that does not exist (its stream was
	// deleted, or never had it, after the client learned the route), which are answered as
	// failed (a push with status ERROR, counted in PushErrors too; anything else with an
	// `error` or sluice_error, counted in Errors), and messages to any other unknown
	// address, which are dropped. Both are warned about in the log at most once every 10 s
	// (see the package doc, "Metrics and logs").
	UndeliverableMessages uint64 `json:"undeliverable_messages"`
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

// PrometheusContentType is the Content-Type of what [Metrics.WritePrometheus] writes: the
// Prometheus text exposition format, version 0.0.4.
const PrometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

// Prometheus metric types.
const (
	promCounter = "counter"
	promGauge   = "gauge"
)

// promMetrics is every field of Metrics as WritePrometheus writes it, in declaration
// order: name is the field's JSON name (WritePrometheus adds "sluice_hub_" before it, and
// "_total" after a counter's). MaxBatch is a gauge: a high-water mark, not a count of
// events. A field added to Metrics must be added here too: TestWritePrometheus fails when
// one is missing or misnamed.
var promMetrics = []struct {
	name, kind, help string
	value            func(Metrics) uint64
}{
	{"creates", promCounter, "stream_create and stream_create_partitioned requests answered with Init.", func(m Metrics) uint64 { return m.Creates }},
	{"pushes", promCounter, "Messages confirmed OK (a sluice_push_batch of n messages counts n).", func(m Metrics) uint64 { return m.Pushes }},
	{"push_errors", promCounter, "Messages confirmed with status ERROR.", func(m Metrics) uint64 { return m.PushErrors }},
	{"pulls", promCounter, "Pull requests answered (stream_pull, sluice_pull_wait and sluice_pull_batch).", func(m Metrics) uint64 { return m.Pulls }},
	{"pulled_messages", promCounter, "Messages sent in pull responses.", func(m Metrics) uint64 { return m.PulledMessages }},
	{"pull_waits", promCounter, "Long polls parked until an append or expiry.", func(m Metrics) uint64 { return m.PullWaits }},
	{"pull_waits_refused", promCounter, "Long polls answered at once with no messages because their partition or connection had the most parked already.", func(m Metrics) uint64 { return m.PullWaitsRefused }},
	{"retention_skipped", promCounter, "Messages pulls skipped because retention deleted them before they were read.", func(m Metrics) uint64 { return m.RetentionSkipped }},
	{"appends", promCounter, "Backend Append calls (appended messages / appends is the mean batch size).", func(m Metrics) uint64 { return m.Appends }},
	{"appended_messages", promCounter, "Messages durably appended.", func(m Metrics) uint64 { return m.AppendedMessages }},
	{"max_batch", promGauge, "The most messages written by one backend Append since the hub started.", func(m Metrics) uint64 { return m.MaxBatch }},
	{"index_gets", promCounter, "Index service get requests.", func(m Metrics) uint64 { return m.IndexGets }},
	{"index_saves", promCounter, "Index service save requests.", func(m Metrics) uint64 { return m.IndexSaves }},
	{"stream_infos", promCounter, "sluice_stream_info requests answered.", func(m Metrics) uint64 { return m.StreamInfos }},
	{"stream_opens", promCounter, "sluice_stream_open requests answered.", func(m Metrics) uint64 { return m.StreamOpens }},
	{"errors", promCounter, "error and sluice_error replies sent.", func(m Metrics) uint64 { return m.Errors }},
	{"slow_consumers", promCounter, "Reply destinations given up because they did not take their replies.", func(m Metrics) uint64 { return m.SlowConsumers }},
	{"connections_refused", promCounter, "TCP connections closed as soon as accepted because the hub had its most open.", func(m Metrics) uint64 { return m.ConnectionsRefused }},
	{"http_requests_refused", promCounter, "TCP connections answered 400 and closed because they sent an HTTP request.", func(m Metrics) uint64 { return m.HTTPRequestsRefused }},
	{"undeliverable_messages", promCounter, "Messages with no worker at their address: requests to a stream partition that does not exist (answered as failed) and messages to unknown addresses (dropped).", func(m Metrics) uint64 { return m.UndeliverableMessages }},
	{"connections", promGauge, "TCP connections open now.", func(m Metrics) uint64 { return m.Connections }},
	{"partition_workers", promGauge, "Partition workers the hub has now.", func(m Metrics) uint64 { return m.PartitionWorkers }},
	{"partition_workers_retired", promCounter, "Partition workers retired because they were idle.", func(m Metrics) uint64 { return m.PartitionWorkersRetired }},
}

// WritePrometheus writes m to w in the Prometheus text exposition format 0.0.4 (serve it
// with Content-Type [PrometheusContentType]): each field as sluice_hub_NAME, where NAME is
// its JSON name, with "_total" after a counter's (the gauges are connections,
// partition_workers and max_batch), each after its # HELP and # TYPE lines; then
// sluice_build_info{version="..."} 1, with the version of Sluice ([core.Version]). It
// writes with one Write call and returns its error.
func (m Metrics) WritePrometheus(w io.Writer) error {
	var b bytes.Buffer
	for _, p := range promMetrics {
		name := "sluice_hub_" + p.name
		if p.kind == promCounter {
			name += "_total"
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, p.help, name, p.kind, name, p.value(m))
	}
	fmt.Fprintf(&b, "# HELP sluice_build_info The version of Sluice, in the label version; always 1.\n# TYPE sluice_build_info gauge\nsluice_build_info{version=\"%s\"} 1\n", promLabelValue(sluiceVersion()))
	_, err := w.Write(b.Bytes())
	return err
}

// sluiceVersion is core.Version, read once: it does not change while the program runs.
var sluiceVersion = sync.OnceValue(core.Version)

// promLabelValue escapes s for a label value in Prometheus' text format.
func promLabelValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// counters is the live, atomically updated form of Metrics.
type counters struct {
	creates, pushes, pushErrors, pulls, pulledMessages, pullWaits      atomic.Uint64
	appends, appendedMessages, maxBatch, indexGets, indexSaves, errors atomic.Uint64
	streamInfos, pullWaitsRefused, slowConsumers, connsRefused         atomic.Uint64
	workersRetired, streamOpens, httpRefused, retentionSkipped         atomic.Uint64
	undeliverable                                                      atomic.Uint64
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
		HTTPRequestsRefused:     c.httpRefused.Load(),
		RetentionSkipped:        c.retentionSkipped.Load(),
		UndeliverableMessages:   c.undeliverable.Load(),
		PartitionWorkers:        uint64(max(c.partitionWorkers.Load(), 0)),
		PartitionWorkersRetired: c.workersRetired.Load(),
	}
}
