package scorers

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// scPool is a handle whose pool is eps.
func scPool(eps []*endpoint.Endpoint) *scheduler.Handle {
	return scHandle(newSCClock(), func() []*endpoint.Endpoint { return eps })
}

// scCapped returns the per-endpoint map a dump shows when endpoint i of
// eps has 2 of something for i < DumpLimit and 1 otherwise: the first
// DumpLimit endpoints, by name, with value(2).
func scCapped(eps []*endpoint.Endpoint, value func(n int) any) map[string]any {
	out := map[string]any{}
	for _, e := range eps[:scheduler.DumpLimit] {
		out[e.Name] = value(2)
	}
	return out
}

func TestInflightScorersDumpState(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	for _, s := range bothInflight(t, scPool(eps[:2]), "") {
		t.Run(s.TypedName().Type, func(t *testing.T) {
			s.PreRequest(scCtx, scState(), scRequest(40, nil), scResult(eps[0]))
			s.PreRequest(scCtx, scState(), scRequest(40, nil), scResult(eps[2])) // left the pool
			done := scState()
			s.PreRequest(scCtx, done, scRequest(40, nil), scResult(eps[1]))
			s.ResponseComplete(scCtx, done, nil, &scheduler.Response{EndOfStream: true})
			tokens, tracked := 0.0, false
			if s.TypedName().Type == TokenLoadType {
				tokens, tracked = 25, true // 10 prompt tokens + 1.5 × 10 output
			}
			load := map[string]any{"requests": 1.0, "tokens": tokens}
			want := map[string]any{
				"requests": 2.0, "tokens": 2 * tokens, "tokensTracked": tracked, "requestTimeoutSeconds": 120.0,
				"endpoints": map[string]any{"ep-0": load, eps[2].HostPort: load}, "moreEndpoints": 0.0,
			}
			if diff := cmp.Diff(want, plugintest.Dumped(t, s.(scheduler.StateDumper))); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNoHitLRUDumpState(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(scheduler.DumpLimit+50, nil)
	cold := func(s *NoHitLRU, e *endpoint.Endpoint) {
		st := scState()
		s.Score(scCtx, st, nil, eps[:4])
		s.PreRequest(scCtx, st, nil, scResult(e))
	}

	small := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), `{"lruSize":3}`, scPool(eps[:3]))
	small.SetSource(coldSource())
	for _, i := range []int{0, 1, 2, 0, 3} { // ep-1 is evicted; eps[3] is not in the pool
		cold(small, eps[i])
	}
	small.SetSource(warmSource(eps[1]))
	cold(small, eps[1]) // warm: not recorded
	want := map[string]any{
		"prefixPluginName": "prefix-cache-scorer", "lruSize": 3.0, "size": 3.0,
		"mostRecentFirst": []any{eps[3].HostPort, "ep-0", "ep-2"}, "more": 0.0,
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, small)); diff != "" {
		t.Errorf("small LRU (-want +got):\n%s", diff)
	}

	big := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), "", scPool(eps))
	big.SetSource(coldSource())
	var recent []any
	for i, e := range eps {
		cold(big, e)
		if i >= len(eps)-scheduler.DumpLimit {
			recent = append([]any{e.Name}, recent...)
		}
	}
	want = map[string]any{
		"prefixPluginName": "prefix-cache-scorer", "lruSize": 1024.0, "size": float64(len(eps)),
		"mostRecentFirst": recent, "more": 50.0,
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, big)); diff != "" {
		t.Errorf("capped LRU (-want +got):\n%s", diff)
	}
}

func TestQueueDepthDumpState(t *testing.T) {
	t.Parallel()
	at := func(ms int) time.Time { return scEpoch.Add(time.Duration(ms) * time.Millisecond) } // scraped at 0
	eps := scEndpoints(scheduler.DumpLimit+50, nil)

	s := mustBuild[*QueueDepth](t, QueueDepthRegistration(), "", scPool(eps[:2]))
	for _, d := range []struct{ ep, ms int }{{0, 1}, {0, 2}, {0, -5}, {1, 3}, {2, 4}} {
		dispatchAt(s, eps[d.ep], at(d.ms))
	}
	want := map[string]any{
		"countUnscrapedDispatches": true, "totalUnscrapedDispatches": 4.0, "moreEndpoints": 0.0,
		"unscrapedDispatches": map[string]any{"ep-0": 2.0, "ep-1": 1.0, eps[2].HostPort: 1.0},
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, s)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	s.Score(scCtx, scState(), nil, eps[:3]) // a read, as scoring, changes no count
	if diff := cmp.Diff(want, plugintest.Dumped(t, s)); diff != "" {
		t.Errorf("after Score (-want +got):\n%s", diff)
	}

	capped := mustBuild[*QueueDepth](t, QueueDepthRegistration(), "", scPool(eps))
	for i, e := range eps {
		dispatchAt(capped, e, at(1))
		if i < scheduler.DumpLimit {
			dispatchAt(capped, e, at(2))
		}
	}
	want = map[string]any{
		"countUnscrapedDispatches": true, "totalUnscrapedDispatches": float64(len(eps) + scheduler.DumpLimit), "moreEndpoints": 50.0,
		"unscrapedDispatches": scCapped(eps, func(n int) any { return float64(n) }),
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, capped)); diff != "" {
		t.Errorf("capped (-want +got):\n%s", diff)
	}

	off := mustBuild[*QueueDepth](t, QueueDepthRegistration(), `{"countUnscrapedDispatches":false}`, scPool(eps))
	dispatchAt(off, eps[0], at(1))
	want = map[string]any{"countUnscrapedDispatches": false, "totalUnscrapedDispatches": 0.0, "moreEndpoints": 0.0, "unscrapedDispatches": map[string]any{}}
	if diff := cmp.Diff(want, plugintest.Dumped(t, off)); diff != "" {
		t.Errorf("off (-want +got):\n%s", diff)
	}
}

func TestSessionAffinityDumpState(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(scheduler.DumpLimit+50, nil)
	bind := func(s *SessionAffinity, id string, e *endpoint.Endpoint) {
		roundTrip(s, eps[:2], map[string]string{"x-session-id": id}, scResult(e), "")
	}
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), `{"strategy":"session_id","sessionIdConfig":{"maxSessions":3}}`, scPool(eps[:2]))
	bind(s, "a", eps[0])
	bind(s, "b", eps[1])
	bind(s, "b", eps[0]) // rebound
	bind(s, "c", eps[2]) // left the pool
	want := map[string]any{
		"strategy": "session_id", "sessions": 3.0, "maxSessions": 3.0, "evictionTtlSeconds": 300.0, "full": false,
		"sessionsByEndpoint": map[string]any{"ep-0": 2.0, eps[2].HostPort: 1.0}, "moreEndpoints": 0.0,
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, s)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	bind(s, "d", eps[1]) // replaces "a", the least recently used
	want["full"], want["sessionsByEndpoint"] = true, map[string]any{"ep-0": 1.0, "ep-1": 1.0, eps[2].HostPort: 1.0}
	if diff := cmp.Diff(want, plugintest.Dumped(t, s)); diff != "" {
		t.Errorf("full (-want +got):\n%s", diff)
	}

	token := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", scPool(eps))
	roundTrip(token, eps, nil, scResult(eps[0]), "")
	want = map[string]any{
		"strategy": "encoded_endpoint_header", "sessions": 0.0, "maxSessions": 100000.0, "evictionTtlSeconds": 300.0,
		"full": false, "sessionsByEndpoint": map[string]any{}, "moreEndpoints": 0.0,
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, token)); diff != "" {
		t.Errorf("token strategy (-want +got):\n%s", diff)
	}
}

// TestSessionAffinityDumpStateCapped binds more sessions than one counting
// batch holds, over more endpoints than a dump lists.
func TestSessionAffinityDumpStateCapped(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(scheduler.DumpLimit+50, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), `{"strategy":"session_id"}`, scPool(eps))
	const rounds = dumpBatch/(scheduler.DumpLimit+50) + 1
	sessions := 0
	for i, e := range eps {
		n := rounds
		if i < scheduler.DumpLimit {
			n++ // the busiest, listed
		}
		for r := range n {
			st := scState()
			s.PreRequest(scCtx, st, scRequest(10, map[string]string{"x-session-id": fmt.Sprint(i, "/", r)}), scResult(e))
			sessions++
		}
	}
	if sessions <= dumpBatch {
		t.Fatalf("only %d sessions: the test must span several batches", sessions)
	}
	got := plugintest.Dumped(t, s)
	want := scCapped(eps, func(int) any { return float64(rounds + 1) })
	if diff := cmp.Diff(want, got["sessionsByEndpoint"]); diff != "" {
		t.Errorf("sessionsByEndpoint (-want +got):\n%s", diff)
	}
	if got["sessions"] != float64(sessions) || got["moreEndpoints"] != 50.0 {
		t.Errorf("sessions %v (want %d), moreEndpoints %v (want 50)", got["sessions"], sessions, got["moreEndpoints"])
	}
}

// TestSessionAffinityDumpWhileBinding dumps while sessions are bound,
// rebound and swept (run with -race).
func TestSessionAffinityDumpWhileBinding(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(10, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), `{"strategy":"session_id","sessionIdConfig":{"maxSessions":4}}`, scPool(eps))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() { hammerSession(s, eps, g) })
	}
	wg.Go(func() {
		for range 50 {
			s.sweep(scEpoch.Add(time.Hour))
		}
	})
	for range 50 {
		st := s.DumpState().(SessionAffinityState)
		if st.Sessions > 4 || len(st.SessionsByEndpoint) > len(eps) {
			t.Fatalf("dump beyond the bounds: %+v", st)
		}
	}
	wg.Wait()
}

func TestPrefixCacheDumpState(t *testing.T) {
	t.Parallel()
	producer, err := prefix.NewProducer("index", prefix.DefaultParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := pxScorer(t, `{"prefixMatchInfoProducerName":"index"}`)
	want := map[string]any{"prefixMatchInfoProducerName": "index", "sourceType": ""}
	if diff := cmp.Diff(want, plugintest.Dumped(t, s)); diff != "" {
		t.Errorf("before Resolve (-want +got):\n%s", diff)
	}
	if err := s.Resolve(pxHandle(producer)); err != nil {
		t.Fatal(err)
	}
	want["sourceType"] = prefix.ProducerType
	if diff := cmp.Diff(want, plugintest.Dumped(t, s)); diff != "" {
		t.Errorf("after Resolve (-want +got):\n%s", diff)
	}
}
