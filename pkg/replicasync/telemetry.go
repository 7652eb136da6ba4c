package replicasync

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons an insertion was not delivered to a peer (the reason label of
// openepp_replica_sync_dropped_insertions_total).
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
}

func newTelemetry(reg prometheus.Registerer) (*telemetry, error) {
	if reg == nil {
		return nil, nil
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
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
	}
	for _, c := range []prometheus.Collector{t.peers, t.sent, t.dropped, t.sendErrors, t.received, t.applied, t.unknown, t.noProducer, t.rejected, t.bootIns, t.bootResult} {
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

// peerCounters are one peer's series, resolved once.
type peerCounters struct {
	sent, queueFull, sendFailed prometheus.Counter
}

func (t *telemetry) forPeer(addr string) peerCounters {
	if t == nil {
		return peerCounters{}
	}
	return peerCounters{
		sent:       t.sent.WithLabelValues(addr),
		queueFull:  t.dropped.WithLabelValues(addr, dropQueueFull),
		sendFailed: t.dropped.WithLabelValues(addr, dropSendFailed),
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
