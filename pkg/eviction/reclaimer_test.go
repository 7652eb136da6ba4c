package eviction

import (
	"math"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/flowcontrol"
)

// recorder is an Observer keeping what it was told.
type recorder struct {
	issued   []int
	outcomes []string
	target   float64
	pending  float64
}

func (r *recorder) Issued(p int)                      { r.issued = append(r.issued, p) }
func (r *recorder) Retired(o string, _ time.Duration) { r.outcomes = append(r.outcomes, o) }
func (r *recorder) Target(d float64)                  { r.target = d }
func (r *recorder) Pending(s float64)                 { r.pending = s }

// pool is a tracker with leases whose revocations are recorded.
type pool struct {
	t       *Tracker
	r       *Reclaimer
	obs     *recorder
	revoked []string
	leases  map[string]*Lease
	now     time.Time
}

func newPool(grace time.Duration) *pool {
	p := &pool{t: NewTracker(nil, nil), obs: &recorder{}, leases: map[string]*Lease{}, now: time.Unix(1000, 0)}
	p.r = NewReclaimer(p.t, Settings{Grace: grace, Observer: p.obs})
	return p
}

// dispatch tracks a lease dispatched after the ones before it.
func (p *pool) dispatch(id string, priority int) {
	p.now = p.now.Add(time.Millisecond)
	p.leases[id] = p.t.Track(id, priority, p.now, func() { p.revoked = append(p.revoked, id) })
}

func (p *pool) end(id string) { p.t.End(p.leases[id], p.now) }

// demand is a band waiting with its ceiling.
type demand struct {
	priority int
	ceiling  float64
}

func band(priority int, ceiling float64) demand { return demand{priority, ceiling} }

func (p *pool) blocked(saturation float64, bands ...demand) int {
	b := &flowcontrol.Blocked{Now: p.now, Saturation: saturation}
	ceilings := map[int]float64{}
	for _, d := range bands {
		b.Bands = append(b.Bands, d.priority)
		ceilings[d.priority] = d.ceiling
	}
	b.Ceiling = func(priority int) float64 { return ceilings[priority] }
	return p.r.Blocked(b)
}

func TestVictimsGoLowestPriorityThenNewest(t *testing.T) {
	p := newPool(0)
	p.dispatch("old-1", -1)
	p.dispatch("new-1", -1)
	p.dispatch("critical", 5)
	p.dispatch("old-2", -2)
	p.dispatch("new-2", -2)
	if tracked, evictable := p.t.Len(); tracked != 5 || evictable != 4 {
		t.Fatalf("tracked %d evictable %d, want 5 and 4 (priority 5 is not sheddable)", tracked, evictable)
	}
	got := p.t.revokeUpTo(10, 0, p.now)
	var ids []string
	for _, l := range got {
		ids = append(ids, l.ID)
	}
	want := []string{"new-2", "old-2", "new-1", "old-1"}
	if len(ids) != len(want) {
		t.Fatalf("revoked %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] || p.revoked[i] != want[i] {
			t.Fatalf("revoked %v (actuated %v), want %v", ids, p.revoked, want)
		}
	}
}

func TestTriggerNeedsBlockedDemandAboveTheVictim(t *testing.T) {
	for _, tc := range []struct {
		name       string
		saturation float64
		demand     []demand
		want       int
	}{
		{"no demand", 1.2, nil, 0},
		{"demand at the victim's priority", 1.2, []demand{band(-1, 1)}, 0},
		{"demand below saturation's reach", 0.9, []demand{band(0, 1)}, 0},
		{"zero ceiling is never dispatchable", 1.2, []demand{band(3, 0), band(-1, 1)}, 0},
		{"zero ceiling skipped, next band blocked", 1.2, []demand{band(3, 0), band(0, 1)}, 1},
		{"unknown saturation", math.NaN(), []demand{band(0, 1)}, 0},
		{"at the ceiling exactly revokes one", 1.0, []demand{band(0, 1)}, 1},
		{"higher band not blocked, lower one is", 0.95, []demand{band(5, 1), band(0, 0.9)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(0)
			for _, id := range []string{"a", "b", "c", "d"} {
				p.dispatch(id, -1)
			}
			if got := p.blocked(tc.saturation, tc.demand...); got != tc.want {
				t.Errorf("revoked %d, want %d", got, tc.want)
			}
		})
	}
}

// TestSizingFromTheDeficit: n = ceil((saturation - ceiling) / (saturation /
// leases)), at least one, at most the cap and what is revocable.
func TestSizingFromTheDeficit(t *testing.T) {
	p := newPool(0)
	p.r.Configure(Settings{MaxPerDecision: 10, Observer: p.obs})
	for i := range 10 {
		p.dispatch(string(rune('a'+i)), -1)
	}
	// credit 1.25/10 = 0.125, deficit 0.25: two leases.
	if got := p.blocked(1.25, band(0, 1)); got != 2 {
		t.Fatalf("revoked %d, want 2", got)
	}
	if p.obs.target != 0.25 || math.Abs(p.obs.pending-0.25) > 1e-9 {
		t.Errorf("target %v pending %v, want 0.25 and 0.25", p.obs.target, p.obs.pending)
	}
	if len(p.obs.issued) != 2 || p.obs.issued[0] != 0 {
		t.Errorf("issued %v, want two for priority 0", p.obs.issued)
	}
}

// TestDecisionNeverRevokesAtTheDemandsPriority: with victims at -2 and -1
// and demand at -1, only the -2 lease may go.
func TestDecisionNeverRevokesAtTheDemandsPriority(t *testing.T) {
	p := newPool(0)
	p.dispatch("low", -2)
	p.dispatch("mid", -1)
	if got := p.blocked(2, band(-1, 1)); got != 1 || p.revoked[0] != "low" {
		t.Fatalf("revoked %d %v, want only low", got, p.revoked)
	}
}

// TestPacingWaitsForConfirmationAndGrace: no new decision while a
// revocation is outstanding, nor until the grace has passed since the last
// confirmation.
func TestPacingWaitsForConfirmationAndGrace(t *testing.T) {
	const grace = 100 * time.Millisecond
	p := newPool(grace)
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		p.dispatch(id, -1)
	}
	if got := p.blocked(2, band(0, 1)); got != 2 {
		t.Fatalf("first decision revoked %d, want 2", got)
	}
	p.now = p.now.Add(time.Second)
	if got := p.blocked(2, band(0, 1)); got != 0 {
		t.Fatalf("decided again with revocations outstanding")
	}
	p.end(p.revoked[0])
	p.end(p.revoked[1])
	p.end("a") // an ordinary end confirms nothing
	if len(p.obs.outcomes) != 2 || p.obs.outcomes[0] != Confirmed {
		t.Fatalf("outcomes %v, want two confirmed", p.obs.outcomes)
	}
	p.now = p.now.Add(grace - time.Nanosecond)
	if got := p.blocked(2, band(0, 1)); got != 0 {
		t.Fatalf("decided again within the grace")
	}
	p.now = p.now.Add(time.Nanosecond)
	// Two leases left: credit 2/2, deficit 1, one revocation.
	if got := p.blocked(2, band(0, 1)); got != 1 {
		t.Fatalf("after the grace revoked %d, want 1", got)
	}
	if p.obs.pending <= 0 {
		t.Errorf("pending reclaim %v after a new decision", p.obs.pending)
	}
}

// TestWedgedRevocationTimesOut: a revoked stream that never ends is
// retired after the timeout, once, and its late end is not counted again.
func TestWedgedRevocationTimesOut(t *testing.T) {
	p := newPool(0)
	p.dispatch("a", -1)
	p.dispatch("b", -1)
	if got := p.blocked(1, band(0, 1)); got != 1 {
		t.Fatalf("revoked %d, want 1", got)
	}
	p.now = p.now.Add(DefaultTimeout - time.Millisecond)
	if p.blocked(1, band(0, 1)) != 0 {
		t.Fatal("decided again before the timeout")
	}
	p.now = p.now.Add(time.Millisecond)
	if got := p.blocked(1, band(0, 1)); got != 1 || p.revoked[1] == p.revoked[0] {
		t.Fatalf("after the timeout revoked %d (%v), want the other lease", got, p.revoked)
	}
	p.end(p.revoked[0])
	if len(p.obs.outcomes) != 1 || p.obs.outcomes[0] != TimedOut {
		t.Errorf("outcomes %v, want only timed_out", p.obs.outcomes)
	}
	if s := p.r.State(p.now); s.Outstanding != 1 || s.Tracked != 1 || s.Evictable != 0 {
		t.Errorf("state %+v, want one outstanding, one tracked, none revocable", s)
	}
}

// TestSweepWithoutDemand: with nothing blocked any more, a periodic sweep
// alone times out a wedged revocation and, after the grace, clears the
// pending reclaim.
func TestSweepWithoutDemand(t *testing.T) {
	p := newPool(time.Second)
	p.dispatch("a", -1)
	p.dispatch("b", -1)
	if got := p.blocked(1, band(0, 1)); got != 1 {
		t.Fatalf("revoked %d, want 1", got)
	}
	if p.obs.pending <= 0 {
		t.Fatalf("pending reclaim %v after a revocation, want > 0", p.obs.pending)
	}
	p.r.Sweep(p.now.Add(DefaultTimeout))
	if len(p.obs.outcomes) != 1 || p.obs.outcomes[0] != TimedOut || p.obs.pending <= 0 {
		t.Fatalf("at the timeout: outcomes %v, pending %v; want timed_out, still pending through the grace", p.obs.outcomes, p.obs.pending)
	}
	p.r.Sweep(p.now.Add(DefaultTimeout + time.Second))
	if p.obs.pending != 0 {
		t.Errorf("after the grace pending reclaim %v, want 0", p.obs.pending)
	}
}

func TestEndIsIdempotent(t *testing.T) {
	p := newPool(0)
	p.dispatch("a", -1)
	p.end("a")
	p.end("a")
	if tracked, evictable := p.t.Len(); tracked != 0 || evictable != 0 {
		t.Errorf("tracked %d evictable %d after end, want 0", tracked, evictable)
	}
}

func TestGraceFollowsTheDetector(t *testing.T) {
	if g := GraceFor(true, 50*time.Millisecond, 2*time.Second); g != LeadingGrace {
		t.Errorf("in-flight detector grace %v", g)
	}
	if g := GraceFor(false, 50*time.Millisecond, 2*time.Second); g != 2300*time.Millisecond {
		t.Errorf("scraped detector grace %v, want 2.3s", g)
	}
}
