package p2psource

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// fixedSource is a prefix source answering one match for every request.
type fixedSource struct{ m *prefix.Match }

func (fixedSource) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: prefix.ProducerType, Name: "fixed"}
}
func (s fixedSource) Match(*scheduler.State) (*prefix.Match, bool) { return s.m, s.m != nil }

// pool returns n endpoints with the given waiting queues (0 beyond them).
func pool(n int, queues ...int) []*endpoint.Endpoint {
	eps := plugintest.Endpoints(n, 1)
	for i, e := range eps {
		m := *e.Metrics()
		m.WaitingQueueSize = 0
		if i < len(queues) {
			m.WaitingQueueSize = queues[i]
		}
		e.SetMetrics(&m)
	}
	return eps
}

// matchOf is a match of a 100-block prompt (16 tokens a block) where
// eps[i] holds blocks[i] blocks.
func matchOf(eps []*endpoint.Endpoint, blocks ...int) *prefix.Match {
	m := prefix.NewMatch(100, 16)
	for i, b := range blocks {
		m.Set(eps[i], b)
	}
	return m
}

// decide runs Produce and PreRequest for one request routed to target
// (and, when prefill is not nil, prefilled there).
func decide(t *testing.T, p *Producer, eps []*endpoint.Endpoint, id string, target, prefill *endpoint.Endpoint) *scheduler.Result {
	t.Helper()
	state := plugintest.State(1)
	req := &scheduler.Request{ID: id, Model: "m"}
	p.Produce(context.Background(), state, req, eps)
	res := &scheduler.Result{Primary: "decode", Profiles: map[string]*scheduler.ProfileResult{
		"decode": {Targets: []*endpoint.Endpoint{target}},
	}}
	if prefill != nil {
		res.Profiles["prefill"] = &scheduler.ProfileResult{Targets: []*endpoint.Endpoint{prefill}}
	}
	p.PreRequest(context.Background(), state, req, res)
	return res
}

func newProducer(t *testing.T, p Params, m *prefix.Match, reg prometheus.Registerer) *Producer {
	t.Helper()
	pr, err := New("p2p", p, fixedSource{m}, reg)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

func TestNamesTheHolderWhenTheTargetLacksThePrefix(t *testing.T) {
	eps := pool(4)
	reg := prometheus.NewRegistry()
	p := newProducer(t, DefaultParams(), matchOf(eps, 0, 40, 2), reg)
	res := decide(t, p, eps, "r1", eps[2], nil)
	if got := res.Headers[Header]; got != eps[1].HostPort {
		t.Fatalf("header %q, want the holder %s", got, eps[1].HostPort)
	}
	if !slices.Contains(res.RemovedHeaders, Header) {
		t.Error("a client's own header value is not stripped")
	}
	res = decide(t, p, eps, "r2", eps[1], nil)
	if _, set := res.Headers[Header]; set || !slices.Contains(res.RemovedHeaders, Header) {
		t.Fatalf("routed to the holder itself: headers %v, removed %v; want none set and the header stripped", res.Headers, res.RemovedHeaders)
	}
	want := `
		# HELP openepp_p2p_source_decisions_total Requests p2p-source-producer decided on, by outcome: header (a source named), no_match (no candidate holds a block), computing_holds (the server computing the prompt is the source drawn), below_delta (the source's lead is under minCachedTokenDelta), no_target.
		# TYPE openepp_p2p_source_decisions_total counter
		openepp_p2p_source_decisions_total{outcome="computing_holds",plugin="p2p"} 1
		openepp_p2p_source_decisions_total{outcome="header",plugin="p2p"} 1
	`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "openepp_p2p_source_decisions_total"); err != nil {
		t.Error(err)
	}
}

func TestMinCachedTokenDelta(t *testing.T) {
	eps := pool(3)
	// The holder leads the target by 40 − 8 = 32 blocks, 512 tokens.
	for _, tc := range []struct {
		delta int
		want  bool
	}{{1, true}, {512, true}, {513, false}} {
		p := newProducer(t, Params{MinCachedTokenDelta: tc.delta, PrefillProfileName: "prefill"}, matchOf(eps, 40, 8), nil)
		res := decide(t, p, eps, "r", eps[1], nil)
		if _, set := res.Headers[Header]; set != tc.want {
			t.Errorf("minCachedTokenDelta %d: header set %v, want %v", tc.delta, set, tc.want)
		}
	}
}

func TestThePrefillLegPulls(t *testing.T) {
	eps := pool(3)
	p := newProducer(t, DefaultParams(), matchOf(eps, 30, 0, 0), nil)
	// The decode target holds the prefix but the prefiller computes it.
	res := decide(t, p, eps, "r", eps[0], eps[2])
	if got := res.Headers[Header]; got != eps[0].HostPort {
		t.Fatalf("P/D: header %q, want the decode target %s, which holds what the prefiller lacks", got, eps[0].HostPort)
	}
	res = decide(t, newProducer(t, DefaultParams(), matchOf(eps, 0, 0, 30), nil), eps, "r", eps[0], eps[2])
	if _, set := res.Headers[Header]; set {
		t.Fatal("P/D: the prefiller holds the prefix itself, yet a source is named")
	}
}

func TestNoMatchNamesNoSource(t *testing.T) {
	eps := pool(3)
	for name, m := range map[string]*prefix.Match{"no match": nil, "cold prompt": matchOf(eps)} {
		res := decide(t, newProducer(t, DefaultParams(), m, nil), eps, "r", eps[0], nil)
		if _, set := res.Headers[Header]; set || !slices.Contains(res.RemovedHeaders, Header) {
			t.Errorf("%s: headers %v, removed %v; want none and the header stripped", name, res.Headers, res.RemovedHeaders)
		}
	}
}

// TestDrawSpreadsOverNearHoldersByQueue: holders within one block of the
// longest prefix share pulls in proportion to 1/(1 + queue); others never
// serve.
func TestDrawSpreadsOverNearHoldersByQueue(t *testing.T) {
	eps := pool(5, 0, 3, 0, 0, 0)
	// eps[0] 40 blocks, eps[1] 39 (queue 3), eps[2] 38 (too short), eps[3] 40.
	p := newProducer(t, DefaultParams(), matchOf(eps, 40, 39, 38, 40), nil)
	counts := map[string]int{}
	const n = 4000
	for i := range n {
		res := decide(t, p, eps, fmt.Sprintf("req-%d", i), eps[4], nil)
		counts[res.Headers[Header]]++
	}
	// Weights 1, 1/4, 0, 1: shares 4/9, 1/9, 0, 4/9.
	for i, want := range []float64{4.0 / 9, 1.0 / 9, 0, 4.0 / 9} {
		got := float64(counts[eps[i].HostPort]) / n
		if got < want-0.03 || got > want+0.03 {
			t.Errorf("%s drawn %.3f of the time, want %.3f (counts %v)", eps[i].HostPort, got, want, counts)
		}
	}
	a := decide(t, p, eps, "same-id", eps[4], nil).Headers[Header]
	for range 5 {
		if b := decide(t, p, eps, "same-id", eps[4], nil).Headers[Header]; b != a {
			t.Fatalf("one request ID drew %s then %s; a retry should draw the same source", a, b)
		}
	}
}

func TestParams(t *testing.T) {
	for _, raw := range []string{`{"minCachedTokenDelta":0}`, `{"minCachedTokenDelta":-3}`, `{"prefillProfileName":""}`, `{"minCachedTokenDelta":"x"}`, `{"other":1}`} {
		if _, err := Factory("p", []byte(raw), nil); err == nil {
			t.Errorf("%s: accepted", raw)
		}
	}
	pl, err := Factory("p", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.(scheduler.Resolver).Resolve(&scheduler.Handle{}); err == nil || !strings.Contains(err.Error(), "prefixMatchInfoProducerName") {
		t.Fatalf("resolving with no producer named: %v", err)
	}
}
