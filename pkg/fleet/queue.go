package fleet

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Flow control in virtual time. A policy whose config turns on the
// flowControl gate holds requests in the EPP while its saturation detector
// rates the pool at or above the ceiling of their priority, and routes
// them as soon as it no longer does: after every completion, cancellation,
// scrape and arrival. Bands are strict, as in pkg/flowcontrol: the highest
// priority with a waiting request goes first, and while it may not go no
// lower one does; within a band the band's fairness policy picks the flow
// (a class: its fairness ID) and its ordering policy orders each flow and
// ranks the flows' heads for the chooser, on the deadlines the live EPP
// gives a request (queued). Routing is synchronous here, so each released
// request's PreRequest has run before saturation is read again, as the
// live dispatcher's settle wait arranges. Requests are refused past the
// config's request limits (global and per band) or its TTL; byte limits
// are not modelled. With several EPP replicas, each holds its own requests
// under its own detector and limits (flowQueue). With enableEviction, a
// release that stops at a band that may not go tells the replica's
// reclaimer (evict.go).

// errQueueFull and errQueueTTL are the refusals a live EPP answers with
// 429.
var (
	errQueueFull = errors.New("flow control: the queue is full")
	errQueueTTL  = errors.New("flow control: waited longer than the request TTL")
)

// admission is a router's flow-control rule.
type admission struct {
	plan  *config.FlowPlan
	eps   []*endpoint.Endpoint
	clock scheduler.Clock
	// seen are the priorities in use, for a banded usage-limit policy.
	seen flowcontrol.ActivePriorities
}

// newAdmission returns the rule of plan (nil when flow control is off).
func newAdmission(plan *config.FlowPlan, eps []*endpoint.Endpoint, clock scheduler.Clock) (*admission, error) {
	if plan == nil {
		return nil, nil
	}
	if plan.Detector == nil {
		return nil, fmt.Errorf("flow control needs a saturation detector")
	}
	return &admission{plan: plan, eps: eps, clock: clock}, nil
}

// open reports whether a request of priority p may be routed now.
func (a *admission) open(p int) bool {
	ok, _, _ := a.openAt(p)
	return ok
}

// openAt is open with the saturation it read and when.
func (a *admission) openAt(p int) (ok bool, saturation float64, now time.Time) {
	now = a.clock.Now()
	saturation = a.plan.Detector.Saturation(a.eps, now)
	return saturation < a.ceiling(p, saturation, now), saturation, now // false for NaN: hold
}

// ceiling is priority p's ceiling at saturation under the usage-limit
// policy (1 without one).
func (a *admission) ceiling(p int, saturation float64, now time.Time) float64 {
	switch u := a.plan.UsageLimit.(type) {
	case nil:
		return 1
	case scheduler.BandedUsageLimitPolicy:
		return u.CeilingAmong(p, saturation, a.seen.At(p, now))
	default:
		return u.Ceiling(p)
	}
}

// bandPlan is priority p's band's configuration.
func (a *admission) bandPlan(p int) config.BandPlan {
	if b, ok := a.plan.Bands[p]; ok {
		return b
	}
	if p < 0 && a.plan.NegativeBand != nil {
		return *a.plan.NegativeBand
	}
	return a.plan.DefaultBand
}

// bandLimit is the request limit of priority p's band (0: none).
func (a *admission) bandLimit(p int) int64 { return a.bandPlan(p).MaxRequests }

// admissionOf returns r's flow-control rule, if it has one.
func admissionOf(r router) *admission {
	if sr, ok := r.(*schedRouter); ok {
		return sr.admission
	}
	return nil
}

// flowQueue is one EPP replica's flow control: its rule (nil: none) and
// its waiting requests, by priority, highest band first; heldN counts them.
type flowQueue struct {
	adm   *admission
	bands []*heldBand
	heldN int
	// evict is its in-flight eviction (nil: off; evict.go).
	evict *evictor
}

// newQueues returns r's flow control, one queue per replica, or nil when
// no replica has any.
func newQueues(r router) []flowQueue {
	routers := []router{r}
	if rr, ok := r.(*replicated); ok {
		routers = rr.replicas
	}
	var out []flowQueue
	for i, rr := range routers {
		if a := admissionOf(rr); a != nil {
			if out == nil {
				out = make([]flowQueue, len(routers))
			}
			out[i].adm = a
		}
	}
	return out
}

// queueOf is the flow control of f's replica (nil: none).
func (s *sim) queueOf(f *flight) *flowQueue {
	if s.queues == nil || s.queues[f.replica].adm == nil {
		return nil
	}
	return &s.queues[f.replica]
}

// heldBand is one priority's waiting requests by flow, flows in order of
// creation; n counts those still waiting. chooser is the band's fairness
// policy's, order its ordering policy.
type heldBand struct {
	priority int
	flows    []*heldFlow
	chooser  scheduler.FlowChooser
	order    scheduler.OrderingPolicy
	n        int
}

// heldFlow is one flow's waiting requests: ids from head on, in the band's
// order, including some that have left (n counts those still waiting).
type heldFlow struct {
	id      string
	ids     []uint64
	head, n int
}

// flow returns the band's flow id, creating it.
func (b *heldBand) flow(id string) *heldFlow {
	for _, fl := range b.flows {
		if fl.id == id {
			return fl
		}
	}
	fl := &heldFlow{id: id}
	b.flows = append(b.flows, fl)
	return fl
}

// flowID is the fairness ID a flight is routed with: its class's name.
func (s *sim) flowID(f *flight) string {
	if len(s.spec.Classes) == 0 {
		return flowcontrol.DefaultFlowID
	}
	return s.spec.Classes[f.class].Name
}

// priority is the priority a flight is routed with.
func (s *sim) priority(f *flight) int {
	if len(s.spec.Classes) == 0 {
		return 0
	}
	return s.spec.Classes[f.class].Priority
}

// band returns priority p's band, creating it in q.bands (highest first).
func (q *flowQueue) band(p int) *heldBand {
	i, found := slices.BinarySearchFunc(q.bands, p, func(b *heldBand, p int) int { return p - b.priority })
	if !found {
		bp := q.adm.bandPlan(p)
		fairness, order := bp.Fairness, bp.Ordering
		if fairness == nil {
			fairness = flowcontrol.NewGlobalStrict("")
		}
		if order == nil {
			order = fcfs
		}
		q.bands = slices.Insert(q.bands, i, &heldBand{priority: p, chooser: fairness.NewChooser(), order: order})
	}
	return q.bands[i]
}

// admit routes f at once or holds it in its replica's queue.
func (s *sim) admit(f *flight) {
	q, p := s.queueOf(f), s.priority(f)
	if q != nil {
		q.adm.seen.Touch(p, q.adm.clock.Now())
	}
	if q == nil || (q.heldN == 0 && q.adm.open(p)) {
		s.dispatch(f)
		return
	}
	a, b := q.adm, q.band(p)
	if m := a.plan.MaxRequests; m > 0 && int64(q.heldN) >= m {
		s.fail(f, errQueueFull)
		return
	}
	if m := a.bandLimit(p); m > 0 && int64(b.n) >= m {
		s.fail(f, errQueueFull)
		return
	}
	f.status, f.waited = flightQueued, true
	fl := b.flow(s.flowID(f))
	s.enqueue(b, fl, f)
	fl.n++
	b.n++
	q.heldN++
	if s.spec.Timeout > 0 {
		s.events.push(event{at: f.arrival + s.spec.Timeout, kind: evTimeout, id: f.id})
	}
	// The TTL runs from this attempt's send, the client's timeout from
	// its first.
	if ttl := a.plan.DefaultTTL; ttl > 0 && (s.spec.Timeout == 0 || f.sent+ttl < f.arrival+s.spec.Timeout) {
		s.events.push(event{at: f.sent + ttl, kind: evExpire, id: f.id})
	}
}

// release routes held requests, replica by replica, while the highest
// waiting band of the replica may go.
func (s *sim) release() {
	for i := range s.queues {
		s.releaseFrom(&s.queues[i])
	}
}

func (s *sim) releaseFrom(q *flowQueue) {
	for q.adm != nil && q.heldN > 0 {
		var top *heldBand
		for _, b := range q.bands {
			if b.n > 0 {
				top = b
				break
			}
		}
		if ok, saturation, now := q.adm.openAt(top.priority); !ok {
			s.blocked(q, saturation, now)
			return
		}
		f := s.pop(q, top)
		f.status = flightRunning
		s.dispatch(f)
	}
}

// pop takes the next request of the flow b's fairness policy chooses
// (its first still waiting in b's order); b.n > 0.
func (s *sim) pop(q *flowQueue, b *heldBand) *flight {
	var waiting []*heldFlow
	for _, fl := range b.flows {
		if fl.n > 0 {
			waiting = append(waiting, fl)
		}
	}
	fl := waiting[0]
	if len(waiting) > 1 {
		heads := make([]*scheduler.QueuedRequest, len(waiting))
		for i, w := range waiting {
			head := s.queued(s.headOf(w), b.priority)
			heads[i] = &head
		}
		fl = waiting[b.chooser.Choose(heads, b.order)]
	}
	f := s.headOf(fl)
	fl.head++
	if fl.head == len(fl.ids) { // reuse the backing array
		fl.ids, fl.head = fl.ids[:0], 0
	}
	fl.n--
	b.n--
	q.heldN--
	return f
}

// fcfs orders a band whose plan names no ordering policy.
var fcfs = flowcontrol.NewFCFS("")

// enqueue puts held f into fl in b's order. Each flow is one class, so it
// shares one TTFT objective, and ids grow with sends: FCFS and SLO order
// put every request last, as a FIFO would. EDF need not (a retry's client
// deadline runs from its first send), so a request that ranks before the
// last goes where its order puts it.
func (s *sim) enqueue(b *heldBand, fl *heldFlow, f *flight) {
	n := len(fl.ids)
	if n == fl.head || !s.less(b, f, &s.flights[fl.ids[n-1]]) {
		fl.ids = append(fl.ids, f.id)
		return
	}
	i := fl.head + sort.Search(n-fl.head, func(i int) bool { return s.less(b, f, &s.flights[fl.ids[fl.head+i]]) })
	fl.ids = slices.Insert(fl.ids, i, f.id)
}

// less reports whether b's ordering policy ranks x before y.
func (s *sim) less(b *heldBand, x, y *flight) bool {
	qx, qy := s.queued(x, b.priority), s.queued(y, b.priority)
	return b.order.Less(&qx, &qy)
}

// queued is what flow-control policies see of held f, as the live
// controller builds it: enqueued at this attempt's send (Seq its id, which
// grows with sends); Deadline the sooner of the TTL from then and the
// client's timeout from its first send; SLODeadline the send plus its
// class's TTFT objective, as the EPP reads x-slo-ttft-ms.
func (s *sim) queued(f *flight, priority int) scheduler.QueuedRequest {
	r := scheduler.QueuedRequest{FlowID: s.flowID(f), Priority: priority, Enqueued: epoch.Add(f.sent), Seq: f.id}
	var d time.Duration
	if ttl := s.queueOf(f).adm.plan.DefaultTTL; ttl > 0 {
		d = f.sent + ttl
	}
	if t := s.spec.Timeout; t > 0 && (d == 0 || f.arrival+t < d) {
		d = f.arrival + t
	}
	if d > 0 {
		r.Deadline = epoch.Add(d)
	}
	if len(s.spec.Classes) > 0 {
		if obj := s.spec.Classes[f.class].TTFTSLOMs; obj > 0 {
			r.SLODeadline = epoch.Add(f.sent + time.Duration(obj*float64(time.Millisecond)))
		}
	}
	return r
}

// headOf returns fl's first request still waiting, dropping the ones
// before it that left; fl.n > 0.
func (s *sim) headOf(fl *heldFlow) *flight {
	for {
		if f := &s.flights[fl.ids[fl.head]]; f.status == flightQueued {
			return f
		}
		fl.head++
	}
}

// leaveQueue ends a held request that timed out or expired; it stays in
// its band's ids and is skipped when reached.
func (s *sim) leaveQueue(f *flight, status flightStatus, err error) {
	q := s.queueOf(f)
	b := q.band(s.priority(f))
	b.flow(s.flowID(f)).n--
	b.n--
	q.heldN--
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
