package fleet

import (
	"errors"
	"fmt"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Flow control in virtual time. A policy whose config turns on the
// flowControl gate holds requests in the EPP while its saturation detector
// rates the pool at or above the ceiling, and routes them, oldest first,
// as soon as it no longer does: after every completion, cancellation,
// scrape and arrival. Routing is synchronous here, so each released
// request's PreRequest has run before saturation is read again, as the
// live dispatcher's settle wait arranges. Workloads have one flow and one
// priority, so fairness and ordering policies do not matter: the queue is
// FIFO, bounded by the plan's request limits and TTL (bytes are not
// modelled).

// errQueueFull and errQueueTTL are the refusals a live EPP answers with
// 429.
var (
	errQueueFull = errors.New("flow control: the queue is full")
	errQueueTTL  = errors.New("flow control: waited longer than the request TTL")
)

// admission is a router's flow-control rule.
type admission struct {
	detector    scheduler.SaturationDetector
	eps         []*endpoint.Endpoint
	clock       scheduler.Clock
	ceiling     float64
	maxRequests int64 // 0: unlimited
	ttl         time.Duration
}

// newAdmission returns the rule of plan (nil when flow control is off).
func newAdmission(plan *config.FlowPlan, eps []*endpoint.Endpoint, clock scheduler.Clock) (*admission, error) {
	if plan == nil {
		return nil, nil
	}
	if plan.Detector == nil {
		return nil, fmt.Errorf("flow control needs a saturation detector")
	}
	a := &admission{detector: plan.Detector, eps: eps, clock: clock, ceiling: 1, ttl: plan.DefaultTTL}
	if plan.UsageLimit != nil {
		a.ceiling = plan.UsageLimit.Ceiling(0)
	}
	band := plan.DefaultBand
	if b, ok := plan.Bands[0]; ok {
		band = b
	}
	for _, m := range []int64{plan.MaxRequests, band.MaxRequests} {
		if m > 0 && (a.maxRequests == 0 || m < a.maxRequests) {
			a.maxRequests = m
		}
	}
	return a, nil
}

// open reports whether a request may be routed now.
func (a *admission) open() bool { return a.detector.Saturation(a.eps, a.clock.Now()) < a.ceiling }

// admissionOf returns r's flow-control rule, if it has one.
func admissionOf(r router) *admission {
	if sr, ok := r.(*schedRouter); ok {
		return sr.admission
	}
	return nil
}

// admit routes f at once or holds it.
func (s *sim) admit(f *flight) {
	a := s.admission
	if a == nil || (len(s.held) == s.heldHead && a.open()) {
		s.dispatch(f)
		return
	}
	if a.maxRequests > 0 && int64(s.heldN) >= a.maxRequests {
		s.fail(f, errQueueFull)
		return
	}
	f.status, f.waited = flightQueued, true
	s.held = append(s.held, f.id)
	s.heldN++
	if s.spec.Timeout > 0 {
		s.events.push(event{at: f.arrival + s.spec.Timeout, kind: evTimeout, id: f.id})
	}
	if a.ttl > 0 && (s.spec.Timeout == 0 || a.ttl < s.spec.Timeout) {
		s.events.push(event{at: f.arrival + a.ttl, kind: evExpire, id: f.id})
	}
}

// release routes held requests, oldest first, while the pool has room.
func (s *sim) release() {
	a := s.admission
	if a == nil {
		return
	}
	for s.heldN > 0 && a.open() {
		f := s.popHeld()
		f.status = flightRunning
		s.dispatch(f)
	}
	if s.heldHead == len(s.held) { // reuse the backing array
		s.held, s.heldHead = s.held[:0], 0
	}
}

// popHeld takes the oldest request still waiting; heldN > 0.
func (s *sim) popHeld() *flight {
	for {
		f := &s.flights[s.held[s.heldHead]]
		s.heldHead++
		if f.status == flightQueued {
			s.heldN--
			return f
		}
	}
}

// leaveQueue ends a held request that timed out or expired; it stays in
// s.held and is skipped when reached.
func (s *sim) leaveQueue(f *flight, status flightStatus, err error) {
	s.heldN--
	if status == flightFailed {
		s.fail(f, err)
		return
	}
	f.status, f.p = status, nil
	s.open--
}

// expire refuses a request that waited longer than the TTL.
func (s *sim) expire(id uint64) {
	if f := &s.flights[id]; f.status == flightQueued {
		s.leaveQueue(f, flightFailed, errQueueTTL)
	}
}
