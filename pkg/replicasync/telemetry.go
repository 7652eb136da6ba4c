package replicasync

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons an insertion or dispatch was not delivered to a peer (the reason
// label of openepp_replica_sync_dropped_insertions_total and
// openepp_replica_sync_dropped_dispatches_total).
const (
	dropQueueFull  = "queue_full"
	dropSendFailed = "send_failed"
)

// telemetry holds the node's collectors; nil records nothing.
type telemetry struct {
	peers      prometheus.Gauge
	sent       *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	sendErrors *prometheus.CounterVec
	received   prometheus.Counter
	applied    prometheus.Counter
	unknown    prometheus.Counter
	noProducer prometheus.Counter
	rejected   *prometheus.CounterVec
	bootIns    prometheus.Counter
	bootResult *prometheus.CounterVec
	disp       dispatchTelemetry
}

// dispatchTelemetry are the collectors of shared dispatches.
type dispatchTelemetry struct {
	sent, dropped                               *prometheus.CounterVec
	received, applied, stale, clamped, noPlugin prometheus.Counter
}

func newTelemetry(reg prometheus.Registerer) (*telemetry, error) {
	if reg == nil {
		return nil, nil
	}
	t := &telemetry{
		peers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "openepp_replica_sync_peers",
			Help: "EPP replicas this one sends its prefix-cache insertions to (itself excluded)."}),
		sent: vec("openepp_replica_sync_sent_insertions_total",
			"Prefix-cache insertions delivered to a peer replica.", "peer"),
		dropped: vec("openepp_replica_sync_dropped_insertions_total",
			"Prefix-cache insertions not delivered to a peer replica, by reason (queue_full, send_failed).", "peer", "reason"),
		sendErrors: vec("openepp_replica_sync_send_errors_total",
			"Failed batch POSTs to a peer replica, by reason.", "peer", "reason"),
		received: counter("openepp_replica_sync_received_insertions_total",
			"Prefix-cache insertions received from peer replicas."),
		applied: counter("openepp_replica_sync_applied_insertions_total",
			"Received insertions recorded in a prefix-cache index."),
		unknown: counter("openepp_replica_sync_unknown_endpoint_insertions_total",
			"Received insertions naming an endpoint not in this replica's pool."),
		noProducer: counter("openepp_replica_sync_no_producer_insertions_total",
			"Received insertions naming a producer this replica's configuration does not have."),
		rejected: vec("openepp_replica_sync_rejected_batches_total",
			"Batches refused from peers, by reason (bad_token, too_large, malformed, version).", "reason"),
		bootIns: counter("openepp_replica_sync_bootstrap_insertions_total",
			"Prefix-cache insertions applied from the snapshot of a peer's index this replica copied at start."),
		bootResult: vec("openepp_replica_sync_bootstrap_total",
			"Copies of a peer's prefix-cache index at start, by result (done, failed, timeout, too_large, no_peer).", "result"),
		disp: newDispatchTelemetry(),
	}
	d := &t.disp
	for _, c := range []prometheus.Collector{t.peers, t.sent, t.dropped, t.sendErrors, t.received, t.applied, t.unknown, t.noProducer, t.rejected, t.bootIns, t.bootResult,
		d.sent, d.dropped, d.received, d.applied, d.stale, d.clamped, d.noPlugin} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics (one Node per registry): %w", err)
		}
	}
	for _, r := range []string{rejectBadToken, rejectTooLarge, rejectMalformed, rejectVersion} {
		t.rejected.WithLabelValues(r)
	}
	for _, r := range bootResults {
		t.bootResult.WithLabelValues(r)
	}
	return t, nil
}

// newDispatchTelemetry returns the collectors of shared dispatches,
// unregistered.
func newDispatchTelemetry() dispatchTelemetry {
	return dispatchTelemetry{
		sent: vec("openepp_replica_sync_sent_dispatches_total",
			"Dispatches (requests routed, as a dispatch-sharing plugin such as the queue-scorer counts them) delivered to a peer replica.", "peer"),
		dropped: vec("openepp_replica_sync_dropped_dispatches_total",
			"Dispatches not delivered to a peer replica, by reason (queue_full, send_failed).", "peer", "reason"),
		received: counter("openepp_replica_sync_received_dispatches_total",
			"Dispatches received from peer replicas."),
		applied: counter("openepp_replica_sync_applied_dispatches_total",
			"Received dispatches handed to this replica's plugin of the same name."),
		stale: counter("openepp_replica_sync_stale_dispatches_total", fmt.Sprintf(
			"Received dispatches dropped as more than %s old by this replica's clock: too old to matter, or the replicas' clocks disagree.", maxDispatchAge)),
		clamped: counter("openepp_replica_sync_clamped_dispatches_total", fmt.Sprintf(
			"Received dispatches more than %s ahead of this replica's clock, counted as made now: the replicas' clocks disagree.", maxDispatchLead)),
		noPlugin: counter("openepp_replica_sync_no_plugin_dispatches_total",
			"Received dispatches naming a plugin this replica's configuration does not have, or that does not share dispatches."),
	}
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func vec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// peerCounters are one peer's series, resolved once.
type peerCounters struct {
	sent, queueFull, sendFailed             prometheus.Counter
	sentDisp, queueFullDisp, sendFailedDisp prometheus.Counter
}

func (t *telemetry) forPeer(addr string) peerCounters {
	if t == nil {
		return peerCounters{}
	}
	return peerCounters{
		sent:       t.sent.WithLabelValues(addr),
		queueFull:  t.dropped.WithLabelValues(addr, dropQueueFull),
		sendFailed: t.dropped.WithLabelValues(addr, dropSendFailed),

		sentDisp:       t.disp.sent.WithLabelValues(addr),
		queueFullDisp:  t.disp.dropped.WithLabelValues(addr, dropQueueFull),
		sendFailedDisp: t.disp.dropped.WithLabelValues(addr, dropSendFailed),
	}
}

// forget removes every series of a peer that went away.
func (t *telemetry) forget(addr string) {
	if t == nil {
		return
	}
	l := prometheus.Labels{"peer": addr}
	t.sent.DeletePartialMatch(l)
	t.dropped.DeletePartialMatch(l)
	t.sendErrors.DeletePartialMatch(l)
	t.disp.sent.DeletePartialMatch(l)
	t.disp.dropped.DeletePartialMatch(l)
}

func (t *telemetry) sendError(addr, reason string) {
	if t != nil {
		t.sendErrors.WithLabelValues(addr, reason).Inc()
	}
}

func (t *telemetry) setPeers(n int) {
	if t != nil {
		t.peers.Set(float64(n))
	}
}

func (t *telemetry) reject(reason string) {
	if t != nil {
		t.rejected.WithLabelValues(reason).Inc()
	}
}

// receivedBatch records one applied batch's outcome.
func (t *telemetry) receivedBatch(received, applied, unknown, noProducer int) {
	if t == nil {
		return
	}
	t.received.Add(float64(received))
	t.applied.Add(float64(applied))
	t.unknown.Add(float64(unknown))
	t.noProducer.Add(float64(noProducer))
}

// receivedDispatches records one batch's dispatches.
func (t *telemetry) receivedDispatches(s dispatchStats) {
	if t == nil {
		return
	}
	d := &t.disp
	d.received.Add(float64(s.Received))
	d.applied.Add(float64(s.Applied))
	d.stale.Add(float64(s.Stale))
	d.clamped.Add(float64(s.Clamped))
	d.noPlugin.Add(float64(s.NoPlugin))
}

func (t *telemetry) bootstrapApplied(n int) {
	if t != nil {
		t.bootIns.Add(float64(n))
	}
}

func (t *telemetry) bootstrapResult(result string) {
	if t != nil {
		t.bootResult.WithLabelValues(result).Inc()
	}
}

func add(c prometheus.Counter, n int) {
	if c != nil {
		c.Add(float64(n))
	}
}
