package eviction

import (
	"math"
	"sync"
	"time"

	"github.com/openepp/openepp/pkg/flowcontrol"
)

// Defaults, as llm-d fixes them (they are properties of the deployment,
// not preferences, so neither is configurable there).
const (
	// DefaultTimeout retires a revocation whose stream never ends (a hung
	// client or proxy), so one wedged stream cannot stop eviction for good.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxPerDecision bounds the damage of a wrong footprint
	// estimate: sizing at the ceiling rarely asks for more.
	DefaultMaxPerDecision = 2
	// LeadingGrace is the grace for a detector that counts requests in
	// flight: it sees a revoked request gone when its stream ends, so only
	// a few dispatcher ticks of jitter separate confirmation from
	// visibility.
	LeadingGrace = 10 * time.Millisecond
	// EngineReclaimBudget is the engine's time to abort a revoked request
	// and free its KV cache before a scrape can show it.
	EngineReclaimBudget = 250 * time.Millisecond
)

// GraceFor is the confirmation grace for a detector: LeadingGrace when it
// counts requests in flight (concurrency-detector), else the time a scrape
// takes to show freed capacity (refresh interval + staleness threshold +
// EngineReclaimBudget).
func GraceFor(countsInFlight bool, refresh, staleness time.Duration) time.Duration {
	if countsInFlight {
		return LeadingGrace
	}
	return refresh + staleness + EngineReclaimBudget
}

// Outcomes of a revocation.
const (
	Confirmed = "confirmed" // its stream ended
	TimedOut  = "timed_out" // it did not end within the timeout
)

// Observer is told what the reclaimer does (for metrics); calls must be
// quick and are made under the reclaimer's lock.
type Observer interface {
	// Issued: a revocation was issued for demand of this priority.
	Issued(demandPriority int)
	// Retired: a revocation reached its outcome, took after it was issued.
	Retired(outcome string, took time.Duration)
	// Target: the last deficit computed (saturation - ceiling).
	Target(deficit float64)
	// Pending: the capacity credited to revocations not yet visible.
	Pending(sum float64)
}

// Settings tune a Reclaimer; zero values mean the defaults.
type Settings struct {
	Grace          time.Duration
	Timeout        time.Duration
	MaxPerDecision int
	Observer       Observer
}

// Reclaimer decides when to revoke leases and how many (see the package
// comment). Blocked runs on the flow-control dispatcher; confirmations come
// from request goroutines.
type Reclaimer struct {
	tracker *Tracker

	mu  sync.Mutex
	set Settings
	// debits are the revocations not yet visible in the saturation
	// signal: outstanding until confirmed or timed out, then cooling for
	// the grace. A new decision waits until there are none.
	debits map[*Lease]*debit
	target float64
}

type debit struct {
	credit  float64
	issued  time.Time
	retired time.Time // zero while outstanding
}

// NewReclaimer returns a reclaimer revoking t's leases and becomes t's
// confirmation listener.
func NewReclaimer(t *Tracker, s Settings) *Reclaimer {
	r := &Reclaimer{tracker: t, debits: map[*Lease]*debit{}}
	r.Configure(s)
	t.mu.Lock()
	t.onEnded = r.confirm
	t.mu.Unlock()
	return r
}

// Configure changes the settings (a config reload).
func (r *Reclaimer) Configure(s Settings) {
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MaxPerDecision <= 0 {
		s.MaxPerDecision = DefaultMaxPerDecision
	}
	r.mu.Lock()
	r.set = s
	r.mu.Unlock()
}

// Tracker is the tracker the reclaimer revokes from.
func (r *Reclaimer) Tracker() *Tracker { return r.tracker }

// Blocked is flow control's head-of-line hook (flowcontrol.Config.OnBlocked):
// the bands with waiting requests may not go at this saturation. It
// revokes leases when a band strictly above the next victim's priority is
// blocked by saturation (ceiling > 0, saturation at or over it) and no
// earlier revocation is still pending, and returns how many it revoked.
// Ceilings are asked only past the pacing gate, so a gated pass costs one
// comparison.
func (r *Reclaimer) Blocked(b *flowcontrol.Blocked) int {
	if math.IsNaN(b.Saturation) || math.IsInf(b.Saturation, 0) {
		return 0 // an unknown pool cannot size a deficit
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(b.Now)
	if len(r.debits) > 0 {
		return 0 // the signal does not yet show what was revoked
	}
	victim, ok := r.tracker.next()
	if !ok {
		return 0
	}
	for _, p := range b.Bands {
		if p <= victim {
			return 0 // no lower band can outrank the victim either
		}
		ceiling := b.Ceiling(p)
		if ceiling <= 0 || b.Saturation < ceiling {
			continue // never dispatchable, or not blocked by saturation
		}
		return r.decide(b.Now, b.Saturation, p, ceiling)
	}
	return 0
}

// decide sizes and issues the revocations for the blocked band of
// priority demand.
func (r *Reclaimer) decide(now time.Time, saturation float64, demand int, ceiling float64) int {
	deficit := saturation - ceiling
	r.target = deficit
	if o := r.set.Observer; o != nil {
		o.Target(deficit)
	}
	tracked, evictable := r.tracker.Len()
	if tracked == 0 || evictable == 0 {
		return 0
	}
	// The mean lease's share of the saturation: crude, and biased low for
	// the newest sheddable leases revoked first, so sizing errs towards
	// revoking too few, which the next decision corrects.
	credit := saturation / float64(tracked)
	net := deficit - r.pending()
	if net < 0 || (net == 0 && len(r.debits) > 0) {
		return 0
	}
	n := 1
	if credit > 0 {
		n = max(1, int(math.Ceil(net/credit)))
	}
	n = min(n, r.set.MaxPerDecision, evictable)
	revoked := r.tracker.revokeUpTo(n, demand, now)
	for _, l := range revoked {
		r.debits[l] = &debit{credit: credit, issued: now}
		if o := r.set.Observer; o != nil {
			o.Issued(demand)
		}
	}
	r.observePending()
	return len(revoked)
}

// confirm is the tracker's listener: a revoked lease's stream ended.
func (r *Reclaimer) confirm(l *Lease, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(now)
	d, ok := r.debits[l]
	if !ok || !d.retired.IsZero() {
		return // timed out already: the outcome stands
	}
	d.retired = now
	if o := r.set.Observer; o != nil {
		o.Retired(Confirmed, now.Sub(d.issued))
	}
}

// Sweep times out revocations whose streams never ended and forgets
// cooled ones. Blocked, confirmations and State sweep too; call it
// periodically so that the outcome metrics and the pending reclaim follow
// the clock while nothing is blocked.
func (r *Reclaimer) Sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(now)
}

// sweep times out outstanding revocations and drops cooled ones.
func (r *Reclaimer) sweep(now time.Time) {
	changed := false
	for l, d := range r.debits {
		if d.retired.IsZero() && now.Sub(d.issued) >= r.set.Timeout {
			d.retired = now
			if o := r.set.Observer; o != nil {
				o.Retired(TimedOut, now.Sub(d.issued))
			}
		}
		if !d.retired.IsZero() && now.Sub(d.retired) >= r.set.Grace {
			delete(r.debits, l)
			changed = true
		}
	}
	if changed {
		r.observePending()
	}
}

func (r *Reclaimer) pending() float64 {
	sum := 0.0
	for _, d := range r.debits {
		sum += d.credit
	}
	return sum
}

func (r *Reclaimer) observePending() {
	if o := r.set.Observer; o != nil {
		o.Pending(r.pending())
	}
}

// State is the reclaimer's state for the debug page.
type State struct {
	Tracked     int     `json:"tracked"`
	Evictable   int     `json:"evictable"`
	Outstanding int     `json:"outstanding"`
	Cooling     int     `json:"cooling"`
	Pending     float64 `json:"pendingReclaim"`
	Target      float64 `json:"reclaimTarget"`
	GraceMillis float64 `json:"confirmationGraceMillis"`
}

// State reports the reclaimer's state at now (cooled debits dropped).
func (r *Reclaimer) State(now time.Time) State {
	tracked, evictable := r.tracker.Len()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(now)
	s := State{Tracked: tracked, Evictable: evictable, Pending: r.pending(), Target: r.target,
		GraceMillis: float64(r.set.Grace) / float64(time.Millisecond)}
	for _, d := range r.debits {
		if d.retired.IsZero() {
			s.Outstanding++
		} else {
			s.Cooling++
		}
	}
	return s
}
