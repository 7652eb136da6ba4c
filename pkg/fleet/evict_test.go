package fleet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/eviction"
)

// Classes of the directed eviction tests, by index.
const (
	critical uint8 = iota // priority 3
	standard              // priority 0
	batch                 // priority -1
)

// evictionYAML is flow control at 4 requests per server (8 in the pool of
// evictionSim), batch held at hold, with or without in-flight eviction.
func evictionYAML(hold float64, evict bool) []byte {
	fc := ""
	if evict {
		fc = "  enableEviction: true\n"
	}
	return []byte(flowConfigWith(4, 0, fmt.Sprintf("- type: static-usage-limit-policy\n  parameters: {priorityThresholds: {\"-1\": %g}}\n", hold), fc))
}

// evictionSim is a two-server fleet with no arrivals of its own: the test
// injects requests and drives virtual time.
func evictionSim(t *testing.T, yaml []byte) *sim {
	t.Helper()
	return retrySim(t, yaml, Retry{}, 0)
}

// retrySim is evictionSim with clients that retry as r says and give up
// after timeout (0: the default).
func retrySim(t *testing.T, yaml []byte, r Retry, timeout time.Duration) *sim {
	t.Helper()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Servers = 2
	classes, err := ParseClasses("critical:1:3,standard:1:0,batch:1:-1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSim(RunSpec{Workload: w, Policy: ConfigPolicy("p", "", yaml), QPS: 1, Seed: 1, Classes: classes,
		Retry: r, Timeout: timeout}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.servers {
		s.publishMetrics(i)
	}
	return s
}

// inject makes a request of class c with a long output arrive now.
func inject(t *testing.T, s *sim, c uint8) uint64 {
	t.Helper()
	p, err := s.src.next(s.rng)
	if err != nil {
		t.Fatal(err)
	}
	p.maxTokens = 2000 // far longer than any test waits
	id := uint64(len(s.flights))
	s.open++
	s.send(flight{p: p, arrival: s.now(), measured: true, class: c})
	return id
}

// drive runs the events up to until and leaves the clock there.
func drive(t *testing.T, s *sim, until time.Duration) {
	t.Helper()
	for s.events.Len() > 0 && s.events.items[0].at <= until {
		if err := s.handle(s.events.pop()); err != nil {
			t.Fatal(err)
		}
	}
	s.clock.now = until
}

// classStatuses counts the flights of class c by status.
func classStatuses(s *sim, c uint8) map[flightStatus]int {
	out := map[flightStatus]int{}
	for i := range s.flights {
		if s.flights[i].class == c {
			out[s.flights[i].status]++
		}
	}
	return out
}

// TestEvictionFreesRoomForCritical: eight batch requests fill the pool;
// a critical request arriving 50 ms later is held. With eviction the
// newest batch request is ended on its server one round trip later, the
// critical request is routed at once, and the detector's books count the
// evicted request gone; without, it waits for a batch request to finish.
func TestEvictionFreesRoomForCritical(t *testing.T) {
	t.Parallel()
	arrive := 50 * time.Millisecond
	for _, evict := range []bool{true, false} {
		s := evictionSim(t, evictionYAML(1, evict))
		for range 8 {
			inject(t, s, batch)
		}
		drive(t, s, arrive)
		id := inject(t, s, critical)
		if f := &s.flights[id]; f.status != flightQueued {
			t.Fatalf("evict %v: critical request %v on arrival in a full pool, want held", evict, f.status)
		}
		drive(t, s, arrive+5*time.Millisecond)
		f := &s.flights[id]
		if !evict {
			if f.status != flightQueued || classStatuses(s, batch)[flightEvicted] != 0 {
				t.Fatalf("no eviction: critical %v, batch %v after 5 ms; want it still held, nothing evicted", f.status, classStatuses(s, batch))
			}
			drive(t, s, time.Minute)
			first := time.Duration(1 << 62)
			for i := range s.flights {
				if g := &s.flights[i]; g.class == batch && g.status == flightDone {
					first = min(first, g.end)
				}
			}
			if f.status != flightDone || f.arrival+f.ttft < first {
				t.Errorf("no eviction: critical %v, first token at %v, first batch completion at %v; want it after", f.status, f.arrival+f.ttft, first)
			}
			continue
		}
		if f.status != flightRunning {
			t.Fatalf("eviction: critical request %v 5 ms after it arrived, want routed", f.status)
		}
		if got := classStatuses(s, batch); got[flightEvicted] != 1 || got[flightRunning] != 7 {
			t.Errorf("eviction: batch requests %v, want one evicted, seven running", got)
		}
		ok, saturation, _ := s.queues[0].adm.openAt(3)
		if ok || saturation != 1 {
			t.Errorf("eviction: saturation %v with 7 batch and 1 critical in flight, want 1 (the evicted one released)", saturation)
		}
		if tracked, evictable := s.queues[0].evict.tracker.Len(); tracked != 8 || evictable != 7 {
			t.Errorf("eviction: %d leases tracked, %d evictable; want 8 and 7", tracked, evictable)
		}
		drive(t, s, arrive+2*time.Second)
		if f.status != flightRunning || f.ttft <= 0 || f.ttft > 200*time.Millisecond {
			t.Errorf("eviction: critical %v, TTFT %v; want a first token within 200 ms", f.status, f.ttft)
		}
	}
}

// TestEvictionSparesPriorityZero: with four standard (priority 0) and four
// batch requests running, eight critical requests evict the four batch
// ones and no standard one; the other four critical requests wait.
func TestEvictionSparesPriorityZero(t *testing.T) {
	t.Parallel()
	s := evictionSim(t, evictionYAML(1, true))
	for range 4 {
		inject(t, s, standard)
		inject(t, s, batch)
	}
	drive(t, s, 50*time.Millisecond)
	for range 8 {
		inject(t, s, critical)
	}
	drive(t, s, 500*time.Millisecond)
	if got := classStatuses(s, standard); got[flightRunning] != 4 {
		t.Errorf("standard requests %v, want all 4 running", got)
	}
	if got := classStatuses(s, batch); got[flightEvicted] != 4 {
		t.Errorf("batch requests %v, want all 4 evicted", got)
	}
	if got := classStatuses(s, critical); got[flightRunning] != 4 || got[flightQueued] != 4 {
		t.Errorf("critical requests %v, want 4 running and 4 held", got)
	}
	if _, evictable := s.queues[0].evict.tracker.Len(); evictable != 0 {
		t.Errorf("%d leases still evictable, want none", evictable)
	}
}

// pacing records the reclaimer's revocations in virtual time.
type pacing struct {
	s                 *sim
	issued, confirmed []time.Duration
	timedOut          int
}

func (p *pacing) Issued(int) { p.issued = append(p.issued, p.s.now()) }
func (p *pacing) Retired(outcome string, took time.Duration) {
	if outcome != eviction.Confirmed {
		p.timedOut++
		return
	}
	p.confirmed = append(p.confirmed, p.s.now())
}
func (p *pacing) Target(float64)  {}
func (p *pacing) Pending(float64) {}

// TestEvictionPacing: four critical requests arrive at once in a pool full
// of batch requests. Each decision (saturation at the ceiling: a deficit
// of 0, one eviction) waits until the previous eviction is confirmed and
// the 10 ms grace of concurrency-detector has passed; with no other event
// in the fleet, the re-check event is what makes the next decision.
func TestEvictionPacing(t *testing.T) {
	t.Parallel()
	s := evictionSim(t, evictionYAML(1, true))
	e := s.queues[0].evict
	if e.grace != eviction.LeadingGrace {
		t.Fatalf("grace %v with concurrency-detector, want %v", e.grace, eviction.LeadingGrace)
	}
	rec := &pacing{s: s}
	e.reclaimer.Configure(eviction.Settings{Grace: e.grace, Observer: rec})
	for range 8 {
		inject(t, s, batch)
	}
	drive(t, s, 50*time.Millisecond)
	for range 4 {
		inject(t, s, critical)
	}
	drive(t, s, 300*time.Millisecond)
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	wantIssued := []time.Duration{ms(50), ms(61), ms(72), ms(83)}
	wantConfirmed := []time.Duration{ms(51), ms(62), ms(73), ms(84)}
	if diff := cmp.Diff(wantIssued, rec.issued); diff != "" {
		t.Errorf("evictions issued at (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantConfirmed, rec.confirmed); diff != "" || rec.timedOut != 0 {
		t.Errorf("evictions confirmed at (-want +got), %d timed out:\n%s", rec.timedOut, diff)
	}
	for i := 1; i < len(rec.issued) && i <= len(rec.confirmed); i++ {
		if rec.issued[i] < rec.confirmed[i-1]+e.grace {
			t.Errorf("decision %d at %v, before the previous confirmation (%v) plus the grace", i, rec.issued[i], rec.confirmed[i-1])
		}
	}
	if got := classStatuses(s, critical); got[flightRunning] != 4 {
		t.Errorf("critical requests %v, want all 4 routed", got)
	}
}

// TestEvictionCountedByClass: an overloaded fleet with eviction evicts
// batch requests only, counts them per class and in the stage (as failed,
// not successes), serves critical requests sooner than without eviction,
// and stays deterministic.
func TestEvictionCountedByClass(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration, w.WarmupRequests = 2*time.Second, 50
	classes, err := ParseClasses("critical:1:3,standard:1:0,batch:3:-1")
	if err != nil {
		t.Fatal(err)
	}
	run := func(yaml []byte) *StageResult {
		t.Helper()
		r, err := Run(context.Background(), RunSpec{Workload: w, Policy: ConfigPolicy("p", "", yaml), QPS: 200, Seed: 7, Classes: classes})
		if err != nil {
			t.Fatal(err)
		}
		r.WallSeconds = 0
		return r
	}
	// 16 per server: critical traffic alone fits, so batch requests run
	// whenever it leaves room.
	evicting := flowConfig(16, "  enableEviction: true\n")
	with, without := run(evicting), run(flowConfig(16, "  maxRequests: 0\n"))
	c, st, b := with.Classes[0], with.Classes[1], with.Classes[2]
	if c.Evicted+c.WindowEvicted != 0 || st.Evicted+st.WindowEvicted != 0 || b.Evicted == 0 || b.WindowEvicted == 0 {
		t.Errorf("evicted (in window): critical %d (%d), standard %d (%d), batch %d (%d); want batch only",
			c.Evicted, c.WindowEvicted, st.Evicted, st.WindowEvicted, b.Evicted, b.WindowEvicted)
	}
	if with.Evicted != b.Evicted || with.Failed < with.Evicted || b.Completed+b.Failed+b.TimedOut != b.Requests {
		t.Errorf("stage: %d evicted, %d failed; batch %+v", with.Evicted, with.Failed, b)
	}
	if want := 100 * float64(b.Evicted) / float64(b.Requests); b.EvictedPct != want {
		t.Errorf("batch evicted %.2f %%, want %.2f", b.EvictedPct, want)
	}
	if without.Evicted != 0 || !(c.TTFT.P90 < without.Classes[0].TTFT.P90) {
		t.Errorf("critical TTFT p90 %.0f ms with eviction, %.0f without (%d evicted); want lower with",
			c.TTFT.P90, without.Classes[0].TTFT.P90, without.Evicted)
	}
	if again := run(evicting); !cmp.Equal(*with, *again) {
		t.Error("same seed, different results with eviction")
	}
}

// TestEvictionInReport: the class table shows an evicted column for each
// class some scheme evicted, and the report says which commit measured a
// re-run study and which the rest.
func TestEvictionInReport(t *testing.T) {
	t.Parallel()
	stage := func(evicted float64) StageResult {
		return StageResult{QPS: 240, Classes: []ClassResult{
			{Name: "critical", Priority: 3, SuccessPct: 100},
			{Name: "batch", Priority: -1, SuccessPct: 100 - evicted, EvictedPct: evicted, Evicted: int(evicted), WindowEvicted: 2 * int(evicted)},
		}}
	}
	p := &PriorityReport{
		Classes: []Class{{Name: "critical", Share: 0.2, Priority: 3}, {Name: "batch", Share: 0.8, Priority: -1}},
		Workload: WorkloadReport{Name: "shared-prefix", Policies: []PolicyLadder{
			{Policy: "flow-96", Stages: []StageResult{stage(0)}},
			{Policy: "flow-96-evict", Stages: []StageResult{stage(12.5)}},
		}},
	}
	rep := &Report{Priorities: p, Commit: "aaa", Reruns: []Rerun{{Study: "priorities", Commit: "bbb", WallSeconds: 95, Workers: 2}}}
	var b strings.Builder
	if err := Markdown(&b, rep, ""); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"The priority study was re-run at commit bbb (95 s, 2 workers). The rest is from commit aaa.",
		"| critical ok % | critical TTFT p50 | critical TTFT p90 | batch ok % | batch evicted % (in window) | batch TTFT p50 |",
		"| flow-96-evict | 240 | 0 | 100.0 | 0 ms | 0 ms | 87.5 | 12.5 (24) | 0 ms | 0 ms |",
		"Evicted is the share",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	rep.Reruns, rep.Commit = nil, ""
	p.Workload.Policies = p.Workload.Policies[:1]
	b.Reset()
	if err := Markdown(&b, rep, ""); err != nil {
		t.Fatal(err)
	}
	if md := b.String(); strings.Contains(md, "evicted") || strings.Contains(md, "re-run") || strings.Contains(md, "commit") {
		t.Errorf("a report without evictions or re-runs mentions them:\n%s", md)
	}
}
