package fleet

import (
	"strconv"
	"time"

	"github.com/openepp/openepp/pkg/eviction"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/flowcontrol"
)

// In-flight eviction in virtual time (flowControl.enableEviction), decided
// by the EPP's own pkg/eviction Tracker and Reclaimer, one pair per EPP
// replica's flow control. A request is tracked from its routing (live:
// once it is scheduled) until it ends, however it ends. When a replica's
// release stops because its top band may not go, the reclaimer is told
// the saturation and every waiting band with its ceiling, as the live
// dispatcher tells it.
//
// A revocation reaches the engine evictionRoundTrip after the decision:
// the server cancels the request as it does when a client disconnects,
// the plugins see it end cancelled, and its lease ends, which confirms the
// revocation. The request fails with 429, reason evicted: llm-d leaves
// retries to clients, which RunSpec.Retry models (retry.go). The
// reclaimer decides again only once the grace has passed after the
// confirmation, so a re-check event then runs the replica's release, as
// the live dispatcher's 5 ms tick would; other releases (completions,
// scrapes, arrivals) may come first.

// evictionRoundTrip is the time from a decision to the engine's abort: the
// EPP's immediate response to Envoy, Envoy's reset of the upstream request
// and vLLM's abort, all in one cluster.
const evictionRoundTrip = time.Millisecond

// metricsStaleness is the EPP's default --metrics-staleness-threshold,
// which sizes the grace of a detector that reads scraped metrics.
const metricsStaleness = 2 * time.Second

// evictor is one replica's in-flight eviction.
type evictor struct {
	tracker   *eviction.Tracker
	reclaimer *eviction.Reclaimer
	grace     time.Duration
	block     flowcontrol.Blocked // blocked's scratch
}

// armEviction gives every replica whose plan enables eviction its evictor.
func (s *sim) armEviction() {
	for i := range s.queues {
		a := s.queues[i].adm
		if a == nil || !a.plan.Eviction {
			continue
		}
		counts := a.plan.Detector.TypedName().Type == filters.ConcurrencyDetectorType
		t := eviction.NewTracker(nil, nil)
		e := &evictor{tracker: t, grace: eviction.GraceFor(counts, s.spec.ScrapeInterval, metricsStaleness)}
		e.reclaimer = eviction.NewReclaimer(t, eviction.Settings{Grace: e.grace})
		s.queues[i].evict = e
	}
}

// track starts f's lease when its replica evicts; f has just been routed.
func (s *sim) track(f *flight) {
	q := s.queueOf(f)
	if q == nil || q.evict == nil {
		return
	}
	id := f.id // not f: s.flights may grow before the revocation
	f.lease = q.evict.tracker.Track(strconv.FormatUint(id, 10), s.priority(f), s.clock.Now(), func() {
		s.flights[id].revoked = true
		s.events.push(event{at: s.now() + evictionRoundTrip, kind: evEvict, id: id})
	})
}

// endLease ends f's lease, if it has one: its request ended. A revoked
// lease's end confirms the revocation, after which the reclaimer waits
// the grace: the re-check lets it decide again then.
func (s *sim) endLease(f *flight) {
	if f.lease == nil {
		return
	}
	q := s.queueOf(f)
	q.evict.tracker.End(f.lease, s.clock.Now())
	f.lease = nil
	if f.revoked {
		s.events.push(event{at: s.now() + q.evict.grace, kind: evRecheck, server: int32(f.replica)})
	}
}

// blocked tells q's reclaimer, when it has one, that q's top band may not
// go at saturation: every band with waiting requests, highest first, and
// their ceilings then when it asks.
func (s *sim) blocked(q *flowQueue, saturation float64, now time.Time) {
	e := q.evict
	if e == nil {
		return
	}
	b := &e.block
	b.Now, b.Saturation, b.Bands = now, saturation, b.Bands[:0]
	for _, hb := range q.bands {
		if hb.n > 0 {
			b.Bands = append(b.Bands, hb.priority)
		}
	}
	b.Ceiling = func(p int) float64 { return q.adm.ceiling(p, saturation, now) }
	e.reclaimer.Blocked(b)
}

// evict lands a revocation: the request's server aborts it, unless it
// ended first (its end then confirmed the revocation).
func (s *sim) evict(id uint64) {
	f := &s.flights[id]
	if f.status != flightRunning && f.status != flightPrefilling {
		return
	}
	f.end = s.now()
	if f.end >= s.start && f.end < s.end {
		s.windowEvicted[f.class]++
	}
	p := f.p
	s.abort(f, flightEvicted)
	s.retry(f, p)
}

// recheck is the dispatcher's next look at replica k's queue once a
// confirmed revocation's grace has passed.
func (s *sim) recheck(k int) {
	if k < len(s.queues) {
		s.releaseFrom(&s.queues[k])
	}
}
