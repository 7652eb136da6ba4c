package fleet

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// driveOut runs events until every request has ended.
func driveOut(t *testing.T, s *sim) {
	t.Helper()
	for n := 0; s.open > 0; n++ {
		if s.events.Len() == 0 || n > 10_000_000 {
			t.Fatalf("%d requests open, %d events left after %d events", s.open, s.events.Len(), n)
		}
		if err := s.handle(s.events.pop()); err != nil {
			t.Fatal(err)
		}
	}
}

// outcomes is how a class's requests ended and how many attempts they
// took.
func outcomes(c ClassResult) ClassResult {
	return ClassResult{Requests: c.Requests, Completed: c.Completed, TimedOut: c.TimedOut, Failed: c.Failed,
		Evicted: c.Evicted, Retries: c.Retries, EvictedAttempts: c.EvictedAttempts}
}

// evictOne fills retrySim's pool with eight batch requests and sends a
// critical one 50 ms later, which evicts the newest batch request at
// 51 ms; it returns that request.
func evictOne(t *testing.T, s *sim) uint64 {
	t.Helper()
	for range 8 {
		inject(t, s, batch)
	}
	drive(t, s, 50*time.Millisecond)
	inject(t, s, critical)
	drive(t, s, 100*time.Millisecond)
	var evicted []uint64
	for i := range s.flights {
		if s.flights[i].status == flightEvicted {
			evicted = append(evicted, uint64(i))
		}
	}
	if len(evicted) != 1 {
		t.Fatalf("flights evicted %v, want one", evicted)
	}
	return evicted[0]
}

// TestRetryAfterEviction: an evicted batch request is sent again by a
// retrying client (same prompt and class, its arrival kept), waits in
// flow control since the pool is full, and completes, its TTFT from the
// first send; it counts as one request of two attempts. Clients that do
// not retry, or whose timeout comes first, lose it.
func TestRetryAfterEviction(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		retry   Retry
		timeout time.Duration
		want    ClassResult
	}{
		"no retries":      {want: ClassResult{Requests: 8, Completed: 7, Failed: 1, Evicted: 1, EvictedAttempts: 1}},
		"retry completes": {retry: RetryingClients(), want: ClassResult{Requests: 8, Completed: 8, Retries: 1, EvictedAttempts: 1}},
		// The retry would be due 0.5–1 s after the eviction.
		"timeout before the retry": {retry: RetryingClients(), timeout: 300 * time.Millisecond,
			want: ClassResult{Requests: 8, TimedOut: 7, Failed: 1, Evicted: 1, EvictedAttempts: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := retrySim(t, evictionYAML(1, true), tc.retry, tc.timeout)
			id := evictOne(t, s)
			f := s.flights[id]
			p := f.p
			drive(t, s, 1100*time.Millisecond)
			if got := len(s.flights); got != 9+tc.want.Retries {
				t.Fatalf("%d flights 1.1 s in, want %d", got, 9+tc.want.Retries)
			}
			if tc.want.Retries > 0 {
				r := &s.flights[9]
				if !f.retried || r.attempt != 1 || r.p != p || r.class != batch || r.arrival != f.arrival ||
					r.sent < f.end+500*time.Millisecond || r.sent >= f.end+time.Second || r.status != flightQueued {
					t.Fatalf("retry %+v of %+v: want the same prompt and arrival, sent 0.5–1 s after the eviction, held", r, f)
				}
			} else if s.flights[id].retried || s.flights[id].p != nil {
				t.Fatalf("evicted %+v: retried or kept its prompt without a retry", s.flights[id])
			}
			driveOut(t, s)
			if tc.want.Retries > 0 {
				if r := &s.flights[9]; r.status != flightDone || r.ttft <= r.sent-r.arrival {
					t.Errorf("retry %v, TTFT %v sent %v after its arrival; want done, TTFT from the arrival", r.status, r.ttft, r.sent-r.arrival)
				}
			}
			res := s.result()
			if diff := cmp.Diff(tc.want, outcomes(res.Classes[batch])); diff != "" {
				t.Errorf("batch (-want +got):\n%s", diff)
			}
			if res.Retries != tc.want.Retries || res.EvictedAttempts != 1 || res.Evicted != tc.want.Evicted {
				t.Errorf("stage: %d retries, %d evicted attempts, %d evicted", res.Retries, res.EvictedAttempts, res.Evicted)
			}
		})
	}
}

// TestRetryTimeoutFromFirstArrival: a retry waiting in flow control is
// cancelled at the client's timeout counted from the first send.
func TestRetryTimeoutFromFirstArrival(t *testing.T) {
	t.Parallel()
	s := retrySim(t, evictionYAML(1, true), RetryingClients(), 1200*time.Millisecond)
	evictOne(t, s)
	drive(t, s, 1199*time.Millisecond)
	if len(s.flights) != 10 || s.flights[9].status != flightQueued {
		t.Fatalf("%d flights, the last %+v; want the retry held", len(s.flights), s.flights[len(s.flights)-1])
	}
	drive(t, s, 1200*time.Millisecond)
	if st := s.flights[9].status; st != flightTimedOut {
		t.Errorf("retry %v at the first attempt's timeout, want timed out", st)
	}
}

// TestRetryBounded: with one retry allowed, a request evicted on both
// attempts ends evicted, and its client sends no third.
func TestRetryBounded(t *testing.T) {
	t.Parallel()
	s := retrySim(t, evictionYAML(1, true), Retry{Max: 1, Backoff: 100 * time.Millisecond}, 0)
	evictOne(t, s)
	drive(t, s, 200*time.Millisecond)
	s.timeout(0) // a batch client gives up: its room goes to the held retry
	if r := &s.flights[9]; r.attempt != 1 || r.status != flightRunning {
		t.Fatalf("retry %+v after a batch request left, want routed", r)
	}
	drive(t, s, 300*time.Millisecond)
	inject(t, s, critical) // evicts the newest batch request: the retry
	drive(t, s, 400*time.Millisecond)
	if r := &s.flights[9]; r.status != flightEvicted || r.retried || r.p != nil {
		t.Fatalf("retry %+v, want evicted, not retried again", r)
	}
	driveOut(t, s)
	if len(s.flights) != 11 {
		t.Errorf("%d flights, want 11 (no third attempt)", len(s.flights))
	}
	want := ClassResult{Requests: 8, Completed: 6, TimedOut: 1, Failed: 1, Evicted: 1, Retries: 1, EvictedAttempts: 2}
	if diff := cmp.Diff(want, outcomes(s.result().Classes[batch])); diff != "" {
		t.Errorf("batch (-want +got):\n%s", diff)
	}
}

// TestRetryingArms: in a class study, a retrying arm's clients retry and
// the plain arm's do not, over the same arrivals; the retrying arm loses
// fewer requests, and runs are deterministic.
func TestRetryingArms(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Ladder, w.Duration, w.WarmupRequests, w.MinSeeds = []float64{200}, 2*time.Second, 50, 0
	classes, err := ParseClasses("critical:1:3,batch:3:-1")
	if err != nil {
		t.Fatal(err)
	}
	p := ConfigPolicy("evict", "", flowConfig(16, "  enableEviction: true\n"))
	arms := []ClassArm{{Policy: p}, retryingArm(p, RetryingClients())}
	run := func() *PriorityReport {
		t.Helper()
		rep, err := (&ClassStudy{Workload: w, Classes: classes, Arms: arms, Seeds: []uint64{7}, Workers: 2}).Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range rep.Workload.Policies {
			rep.Workload.Policies[i].Stages[0].WallSeconds = 0
		}
		rep.WallSeconds = 0
		return rep
	}
	rep := run()
	if got := []string{rep.Workload.Policies[0].Policy, rep.Workload.Policies[1].Policy}; !cmp.Equal(got, []string{"evict", "evict-retry"}) {
		t.Fatalf("arms %v", got)
	}
	plain, retried := rep.Workload.Policies[0].Stages[0].Classes[1], rep.Workload.Policies[1].Stages[0].Classes[1]
	if plain.Retries != 0 || plain.Evicted == 0 || retried.Retries == 0 || retried.EvictedAttempts < retried.Retries {
		t.Errorf("batch without retries %+v, with %+v", outcomes(plain), outcomes(retried))
	}
	if retried.Requests != plain.Requests || retried.Evicted >= plain.Evicted || retried.Completed <= plain.Completed {
		t.Errorf("batch without retries %+v, with %+v: want the same requests, fewer lost", outcomes(plain), outcomes(retried))
	}
	if !strings.Contains(rep.Policies["evict-retry"], "evict with clients that send an evicted request again, up to 3 times: after 0.5–1 s") {
		t.Errorf("retrying arm described as %q", rep.Policies["evict-retry"])
	}
	if again := run(); !cmp.Equal(rep, again) {
		t.Error("same seed, different results with retries")
	}
}

// TestPriorityArms: each eviction scheme of the priority study is
// followed by itself with retrying clients; no other arm retries.
func TestPriorityArms(t *testing.T) {
	t.Parallel()
	var names []string
	for _, a := range PriorityArms() {
		names = append(names, a.Policy.Name)
		if retries := strings.HasSuffix(a.Policy.Name, "-retry"); retries != (a.Retry == RetryingClients()) {
			t.Errorf("arm %s: retry %+v", a.Policy.Name, a.Retry)
		}
		if engine := strings.HasSuffix(a.Policy.Name, "-engine"); engine != a.Policy.EnginePriority {
			t.Errorf("arm %s: engine priority %v", a.Policy.Name, a.Policy.EnginePriority)
		}
	}
	want := []string{"legacy-shedding", "legacy-shedding-engine", "flow-256", "flow-256-engine", "flow-96", "flow-96-engine",
		"flow-96-evict", "flow-96-evict-retry", "flow-96-evict-engine", "flow-96-hold", "flow-96-hold-evict", "flow-96-hold-evict-retry",
		"flow-kv-hold", "flow-kv-hold-engine", "flow-96-soft"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("arms (-want +got):\n%s", diff)
	}
}

// TestRetryInReport: the class table gains an attempts column for a
// class whose clients retried, and the text table lists evictions.
func TestRetryInReport(t *testing.T) {
	t.Parallel()
	stage := func(evicted, retries int) StageResult {
		return StageResult{QPS: 240, Requests: 200, Evicted: evicted, EvictedAttempts: evicted + retries, Retries: retries,
			Classes: []ClassResult{
				{Name: "critical", Priority: 3, Requests: 40, SuccessPct: 100},
				{Name: "batch", Priority: -1, Requests: 160, Retries: retries, SuccessPct: 100 - 100*float64(evicted)/160,
					EvictedPct: 100 * float64(evicted) / 160, Evicted: evicted, WindowEvicted: evicted + retries},
			}}
	}
	p := &PriorityReport{
		Classes: []Class{{Name: "critical", Share: 0.2, Priority: 3}, {Name: "batch", Share: 0.8, Priority: -1}},
		Workload: WorkloadReport{Name: "shared-prefix", Policies: []PolicyLadder{
			{Policy: "flow-96-evict", Stages: []StageResult{stage(16, 0)}},
			{Policy: "flow-96-evict-retry", Stages: []StageResult{stage(2, 32)}},
		}},
	}
	var b strings.Builder
	if err := Markdown(&b, &Report{Priorities: p}, ""); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| batch ok % | batch evicted % (in window) | batch attempts | batch TTFT p50 |",
		"| flow-96-evict | 240 | 0 | 100.0 | 0 ms | 0 ms | 90.0 | 10.0 (16) | 1.00 | 0 ms | 0 ms |",
		"| flow-96-evict-retry | 240 | 0 | 100.0 | 0 ms | 0 ms | 98.8 | 1.2 (34) | 1.20 | 0 ms | 0 ms |",
		"its TTFT runs from the client's first send",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	rep := &Report{Workloads: []WorkloadReport{p.Workload}}
	b.Reset()
	if err := WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "in-flight eviction (") || !regexp.MustCompile(`flow-96-evict-retry\s+240\s+34\s+32\s+1\.0`).MatchString(b.String()) {
		t.Errorf("text table lacks the evictions:\n%s", b.String())
	}
	rep.Workloads[0].Policies = []PolicyLadder{{Policy: "flow-96", Stages: []StageResult{{QPS: 240, Requests: 200}}}}
	b.Reset()
	if err := WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "evict") {
		t.Errorf("a table without evictions mentions them:\n%s", b.String())
	}
}
