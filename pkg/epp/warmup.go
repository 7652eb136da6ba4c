package epp

import (
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
)

// metricsWarmup holds readiness back, once the endpoints are synced, until
// every endpoint has been scraped once (or failed to be), bounded by the
// staleness threshold: a replica that a rollout or a restart brings up then
// takes traffic with metrics to route and admit by, not a pool that looks
// idle (every queue 0) or saturated (every endpoint stale, so legacy
// admission sheds sheddable requests). Once warm it stays warm: endpoints
// that join later do not make the replica unready.
type metricsWarmup struct {
	warm  atomic.Bool
	since atomic.Int64 // Unix ns of the first check with the endpoints synced
}

// done reports whether the warm-up is over at now for the endpoints eps.
func (w *metricsWarmup) done(now time.Time, eps []*endpoint.Endpoint, limit time.Duration) bool {
	if w.warm.Load() {
		return true
	}
	w.since.CompareAndSwap(0, now.UnixNano())
	if now.Sub(time.Unix(0, w.since.Load())) < limit && !allScraped(eps) {
		return false
	}
	w.warm.Store(true)
	return true
}

// allScraped reports whether every endpoint has a scrape behind it, a
// successful one or a recorded failure.
func allScraped(eps []*endpoint.Endpoint) bool {
	for _, e := range eps {
		if e.Stale() && e.ScrapeFailure() == nil {
			return false
		}
	}
	return true
}
