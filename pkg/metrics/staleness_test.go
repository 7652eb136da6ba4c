package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStalenessTransitions drives one endpoint's scrapes by hand with a fake
// clock: every step advances the clock, sets the server's behavior, scrapes
// once and checks the verdict and the logs.
func TestStalenessTransitions(t *testing.T) {
	t.Parallel()
	type step struct {
		name        string
		advance     time.Duration
		serve       behavior
		wantStale   bool
		wantFailing int // cumulative "metrics scrape failing" logs
		wantRecover int // cumulative "metrics scrape recovered" logs
	}
	steps := []step{
		{name: "first scrape ok", serve: serveOK},
		{name: "failing but young", advance: 1500 * time.Millisecond, serve: serve500, wantFailing: 1},
		{name: "still failing, exactly at threshold", advance: 500 * time.Millisecond, serve: serve500, wantFailing: 1},
		{name: "failing past threshold", advance: time.Millisecond, serve: serve500, wantStale: true, wantFailing: 1},
		{name: "garbage keeps failing state, no new log", advance: time.Second, serve: serveGarbage, wantStale: true, wantFailing: 1},
		{name: "recovered", advance: time.Second, serve: serveOK, wantFailing: 1, wantRecover: 1},
		{name: "ok after long pause", advance: time.Hour, serve: serveOK, wantFailing: 1, wantRecover: 1},
		{name: "fails again", advance: 3 * time.Second, serve: serve500, wantStale: true, wantFailing: 2, wantRecover: 1},
	}
	ms := newModelServer(t, readPage(t, "vllm.txt"))
	clk, rec, _, tg := handDriven(t, ms.spec(t, "a", nil))
	ep := tg.ep
	tg.updateStale()
	if !ep.Stale() {
		t.Fatal("never-scraped endpoint not stale")
	}
	for _, sp := range steps {
		clk.Advance(sp.advance)
		ms.set(sp.serve)
		tg.poll(context.Background())
		got := step{name: sp.name, advance: sp.advance, serve: sp.serve, wantStale: ep.Stale(),
			wantFailing: rec.count("metrics scrape failing", ""), wantRecover: rec.count("metrics scrape recovered", "")}
		if diff := cmp.Diff(sp, got, cmp.AllowUnexported(step{})); diff != "" {
			t.Errorf("step %q mismatch (-want +got):\n%s", sp.name, diff)
		}
		if sp.serve == serveOK && ep.Metrics().UpdateTime != clk.Now() {
			t.Errorf("step %q: UpdateTime = %v, want the fake clock's %v", sp.name, ep.Metrics().UpdateTime, clk.Now())
		}
	}
}

// TestFreshnessCarriesOverRelabel checks that a label change, which gives the
// endpoint a new identity, keeps its last update time: a fresh endpoint stays
// fresh and a stale one stays stale until its next good scrape.
func TestFreshnessCarriesOverRelabel(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	ms := newModelServer(t, readPage(t, "vllm.txt"))
	st := newStoreWith(ms.spec(t, "a", nil))
	s, err := New(st, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	old := st.Snapshot()[0]
	s.newTarget(old).poll(context.Background())
	st.Upsert("test", ms.spec(t, "a", map[string]string{"tier": "gold"}))
	relabeled := st.Snapshot()[0]
	if relabeled == old {
		t.Fatal("datastore kept the old *Endpoint on a label change")
	}
	tg := s.newTarget(relabeled)
	clk.Advance(time.Second)
	tg.updateStale()
	if relabeled.Stale() {
		t.Error("relabeled endpoint stale one second after its last scrape")
	}
	clk.Advance(1500 * time.Millisecond)
	tg.updateStale()
	if !relabeled.Stale() {
		t.Error("relabeled endpoint not stale 2.5s after its last scrape")
	}
}

// TestFieldErrorsLoggedOnChange checks that a metric family missing from
// every scrape is logged when it goes missing and when it comes back, not
// once per scrape, while the other fields keep updating.
func TestFieldErrorsLoggedOnChange(t *testing.T) {
	t.Parallel()
	full := "vllm:num_requests_waiting 2\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n"
	noKV := "vllm:num_requests_waiting 4\nvllm:num_requests_running 1\n"
	noKV2 := "vllm:num_requests_waiting 6\nvllm:num_requests_running 1\n"
	ms := newModelServer(t, []byte(full))
	st := newStoreWith(ms.spec(t, "a", nil))
	rec := &recorder{}
	engines := []EngineConfig{{Name: EngineVLLM, QueuedRequestsSpec: "vllm:num_requests_waiting",
		RunningRequestsSpec: "vllm:num_requests_running", KVUsageSpec: "vllm:kv_cache_usage_perc"}}
	s, err := New(st, Options{Log: rec.logger(), Engines: engines})
	if err != nil {
		t.Fatal(err)
	}
	ep := st.Snapshot()[0]
	tg := s.newTarget(ep)
	for _, page := range []string{full, noKV, noKV, noKV2, noKV2, full, full} {
		ms.setPage([]byte(page))
		tg.poll(context.Background())
	}
	got := []int{rec.count("metric fields unavailable, keeping their previous values", ""), rec.count("all metric fields readable again", "")}
	if diff := cmp.Diff([]int{1, 1}, got); diff != "" {
		t.Errorf("(unavailable, readable again) log counts mismatch (-want +got):\n%s", diff)
	}
	if e := rec.find("metric fields unavailable, keeping their previous values"); len(e) == 1 {
		if diff := cmp.Diff([]string{"kvUsage"}, e[0].KV["fields"]); diff != "" {
			t.Errorf("logged fields mismatch (-want +got):\n%s", diff)
		}
	}
	if n := metricValue(t, s.tel.fieldErrors[fieldKVUsage]); n != 4 {
		t.Errorf("field errors{field=kvUsage} = %v, want 4 (one per scrape without it)", n)
	}
	if m := ep.Metrics(); m.WaitingQueueSize != 2 || m.KVCacheUsagePercent != 0.5 || ep.Stale() {
		t.Errorf("final metrics %+v stale=%v, want waiting 2, kv 0.5, fresh", m, ep.Stale())
	}
}
