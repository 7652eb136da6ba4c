package scorers

import (
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// hotPathCase is one scorer set up as in production at n endpoints, with
// the request it is scored for.
type hotPathCase struct {
	scorer scheduler.Scorer
	req    *scheduler.Request
}

// hotPathCases builds every scorer with realistic state for eps: requests in
// flight on most endpoints, a bound session, a full cold-request LRU.
func hotPathCases(tb testing.TB, eps []*endpoint.Endpoint) []hotPathCase {
	h := scHandle(newSCClock(), nil)
	active := mustBuild[*ActiveRequests](tb, ActiveRequestsRegistration(), "", h)
	tokens := mustBuild[*TokenLoad](tb, TokenLoadRegistration(), "", h)
	token := mustBuild[*SessionAffinity](tb, SessionAffinityRegistration(), "", h)
	byID := mustBuild[*SessionAffinity](tb, SessionAffinityRegistration(), `{"strategy":"session_id"}`, h)
	cold := mustBuild[*NoHitLRU](tb, NoHitLRURegistration(), "", h)
	cold.SetSource(coldSource()) // every request cold: the expensive case
	queue := NewQueueDepth("q")
	backlog := mustBuild[*PrefillBacklog](tb, PrefillBacklogRegistration(), "", h)
	match := prefix.NewMatch(250, 16) // a 4,000-byte prompt, held in part by most endpoints
	for i, e := range eps {
		match.Set(e, i%200)
		for range i % 5 {
			backlog.PreRequest(scCtx, scState(), scRequest(4000, nil), scResult(e))
		}
		for range i % 3 { // routed since the endpoint's last scrape
			queue.PreRequest(scCtx, scState(), nil, scResult(e))
		}
		for range i % 7 {
			st := scState()
			active.PreRequest(scCtx, st, nil, scResult(e))
			tokens.PreRequest(scCtx, st, scRequest(4000, nil), scResult(e))
		}
		cold.PreRequest(scCtx, scState(), nil, scResult(e))
	}
	backlog.source = &scSource{name: scheduler.TypedName{Type: "p", Name: "p"}, match: match}
	target := eps[len(eps)/2]
	byID.PreRequest(scCtx, scState(), scRequest(10, map[string]string{"x-session-id": "conversation-42"}), scResult(target))
	plain := plugintest.Request("lora-1", 4000)
	withToken := scRequest(4000, map[string]string{"x-session-token": endpointToken(target, "")})
	withID := scRequest(4000, map[string]string{"x-session-id": "conversation-42"})
	loadAware, err := NewLoadAware("la", LoadAwareParams{Threshold: 128})
	if err != nil {
		tb.Fatal(err)
	}
	return []hotPathCase{
		{queue, plain},
		{NewKVCacheUtilization("kv"), plain},
		{NewRunningRequests("r"), plain},
		{NewLoRAAffinity("lora"), plain},
		{mustBuild[*LoRALoadState](tb, LoRALoadStateRegistration(), "", h), plain},
		{loadAware, plain},
		{active, plain},
		{tokens, plain},
		{token, withToken},
		{byID, withID},
		{cold, plain},
		{backlog, plain},
	}
}

// caseName distinguishes the two session strategies.
func caseName(c hotPathCase) string {
	if s, ok := c.scorer.(*SessionAffinity); ok && s.byID {
		return SessionAffinityType + "/session_id"
	}
	return c.scorer.TypedName().Type
}

// BenchmarkScore measures one Score call per scorer at 100 endpoints.
func BenchmarkScore(b *testing.B) {
	eps := plugintest.Endpoints(100, 1)
	for _, c := range hotPathCases(b, eps) {
		b.Run(caseName(c), func(b *testing.B) {
			st := scState()
			b.ReportAllocs()
			for b.Loop() {
				c.scorer.Score(scCtx, st, c.req, eps)
			}
		})
	}
}

// TestScoreAllocations is the hot-path allocation budget: one allocation
// per Score call, the result slice, and none per ScoreInto.
func TestScoreAllocations(t *testing.T) {
	eps := plugintest.Endpoints(100, 1)
	for _, c := range hotPathCases(t, eps) {
		st := scState()
		allocs := testing.AllocsPerRun(50, func() { c.scorer.Score(scCtx, st, c.req, eps) })
		if allocs > 1 {
			t.Errorf("%s: %v allocations per Score, want 1", caseName(c), allocs)
		}
		if w, ok := c.scorer.(scheduler.ScoreWriter); ok {
			out := make([]float64, len(eps))
			allocs := testing.AllocsPerRun(50, func() { clear(out); w.ScoreInto(scCtx, st, c.req, eps, out) })
			if allocs > 0 {
				t.Errorf("%s: %v allocations per ScoreInto, want 0", caseName(c), allocs)
			}
		}
	}
}
