package server

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/labelbudget"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestMetricsFlowCache checks the cached children are the vectors' own
// (what a request observes shows on the page under its labels), one per
// label set even when first asked for concurrently, and that the label
// budgets still fold new models and fairness IDs into "other".
func TestMetricsFlowCache(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	req := &scheduler.Request{IncomingModel: "m", Model: "t", FairnessID: "tenant-a", Priority: 2}
	var wg sync.WaitGroup
	got := make([]*flowMetrics, 8)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = m.flow(req) }()
	}
	wg.Wait()
	for i, p := range got {
		if p != got[0] {
			t.Fatalf("entry %d is a different cache entry than entry 0", i)
		}
	}
	got[0].reqSize.Observe(100)
	if n := testutil.CollectAndCount(m.vecs.reqSize, nameReqSize); n != 1 {
		t.Errorf("%d request-size series, want 1", n)
	}
	running := m.vecs.running.WithLabelValues("m", "t", "tenant-a", "2")
	if c := testutil.ToFloat64(running); c != 0 {
		t.Errorf("running = %v before any request, want 0", c)
	}
	got[0].running.Inc()
	if c := testutil.ToFloat64(running); c != 1 {
		t.Errorf("running = %v after Inc on the cached child, want 1", c)
	}
	for i := 0; i < maxLabelValues; i++ {
		m.label(fmt.Sprintf("model-%d", i))
		m.fairness.Value(fmt.Sprintf("tenant-%d", i))
	}
	over := m.flow(&scheduler.Request{IncomingModel: "one-too-many", Model: "t", FairnessID: "new-tenant"})
	other := m.flow(&scheduler.Request{IncomingModel: "another-one", Model: "t", FairnessID: "newer-tenant"})
	if over != other {
		t.Error("models and tenants past the label budgets got distinct entries, want both under \"other\"")
	}
	if _, ok := m.flows[flowKey{"other", "t", "other", 0}]; !ok {
		t.Errorf("no entry for the \"other\" labels; entries: %d", len(m.flows))
	}
}

// TestSchedulerAttempts checks upstream's attempts counter: a success is
// labelled with its primary target, a failure with the outcome only.
func TestSchedulerAttempts(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	ep := endpoint.New(endpoint.Spec{Name: "pod-a", Namespace: "ns", Address: "10.0.0.1", Port: 8000})
	req := &scheduler.Request{Model: "m"}
	res := &scheduler.Result{Primary: "p", Profiles: map[string]*scheduler.ProfileResult{"p": {Targets: []*endpoint.Endpoint{ep}}}}
	m.scheduled(time.Now(), req, res, nil)
	m.scheduled(time.Now(), req, res, nil)
	m.scheduled(time.Now(), req, nil, scheduler.ErrNoCandidates)
	for labels, want := range map[[5]string]float64{
		{"success", "m", "pod-a", "ns", "8000"}: 2,
		{"failure", "m", "", "", ""}:            1,
	} {
		if got := testutil.ToFloat64(m.attempts.WithLabelValues(labels[:]...)); got != want {
			t.Errorf("attempts%v = %v, want %v", labels, got, want)
		}
	}
}

// TestPruneEndpoints checks that the attempts series of an endpoint that
// left the pool are deleted, those of live endpoints and of failures kept,
// and that a returning endpoint starts a fresh series.
func TestPruneEndpoints(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	a := endpoint.New(endpoint.Spec{Name: "pod-a", Namespace: "ns", Address: "10.0.0.1", Port: 8000})
	b := endpoint.New(endpoint.Spec{Name: "pod-b", Namespace: "ns", Address: "10.0.0.2", Port: 8000})
	pick := func(ep *endpoint.Endpoint, model string) {
		res := &scheduler.Result{Primary: "p", Profiles: map[string]*scheduler.ProfileResult{"p": {Targets: []*endpoint.Endpoint{ep}}}}
		m.scheduled(time.Now(), &scheduler.Request{Model: model}, res, nil)
	}
	pick(a, "m1")
	pick(b, "m1")
	pick(b, "m2")
	m.scheduled(time.Now(), &scheduler.Request{Model: "m1"}, nil, scheduler.ErrNoCandidates)
	series := func() int {
		return testutil.CollectAndCount(m.attempts, "inference_extension_scheduler_attempts_total")
	}
	if n := series(); n != 4 {
		t.Fatalf("%d attempts series, want 4", n)
	}
	m.PruneEndpoints([]*endpoint.Endpoint{a})
	if n := series(); n != 2 {
		t.Errorf("%d attempts series after pod-b left, want 2 (pod-a's and the failure)", n)
	}
	if got := testutil.ToFloat64(m.attempts.WithLabelValues("success", "m1", "pod-a", "ns", "8000")); got != 1 {
		t.Errorf("pod-a's count = %v after pruning, want 1", got)
	}
	pick(b, "m1") // back in the pool
	if got := testutil.ToFloat64(m.attempts.WithLabelValues("success", "m1", "pod-b", "ns", "8000")); got != 1 {
		t.Errorf("returning pod-b's count = %v, want a fresh 1", got)
	}
	var nilMetrics *Metrics
	nilMetrics.PruneEndpoints(nil) // a server without metrics
}

// BenchmarkMetricsPerRequest measures what one request costs the metrics:
// its label set's lookup and every observation from start to end (llm-d's
// families, from which GIE's are served).
func BenchmarkMetricsPerRequest(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	req := &scheduler.Request{IncomingModel: "m", Model: "m", FairnessID: "default-flow"}
	resp := &scheduler.Response{BodyBytes: 900, UsageKnown: true, Usage: request.Usage{PromptTokens: 100, CompletionTokens: 20}}
	b.ReportAllocs()
	for range b.N {
		f := m.requestStarted(req, 1024)
		m.requestHandled(time.Microsecond)
		m.requestDone(f, resp, time.Millisecond, 0, time.Microsecond)
	}
}

// TestFairnessSeriesForgotten: once the fairness budget is full, the series
// of IDs idle past the budget's time are deleted (every per-request family,
// errors included) to admit new ones, and an ID that comes back starts anew.
func TestFairnessSeriesForgotten(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.fairness = labelbudget.NewForgetting(2, time.Millisecond, m.forgetFairness)
	ids := func(family string) []string {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range fams {
			if f.GetName() != family {
				continue
			}
			for _, s := range f.GetMetric() {
				for _, l := range s.GetLabel() {
					if l.GetName() == "fairness_id" {
						out = append(out, l.GetValue())
					}
				}
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	start := func(id string) *scheduler.Request {
		req := &scheduler.Request{IncomingModel: "m", Model: "m", FairnessID: id}
		m.requestStarted(req, 10)
		return req
	}
	m.requestError(start("agent:a"), "", 503)
	start("agent:b")
	time.Sleep(5 * time.Millisecond)
	start("agent:c")
	if got := ids(nameRequests); !slices.Equal(got, []string{"agent:c"}) {
		t.Errorf("request series after a third session: %v, want only agent:c's", got)
	}
	if got := ids(nameErrors); len(got) != 0 {
		t.Errorf("error series of a forgotten session remain: %v", got)
	}
	for k := range m.flows {
		if k.fairness != "agent:c" {
			t.Errorf("cached children of a forgotten session remain: %+v", k)
		}
	}
	start("agent:a")
	if got := testutil.ToFloat64(m.vecs.requests.WithLabelValues("m", "m", "agent:a", "0")); got != 1 {
		t.Errorf("agent:a back: its counter reads %v, want a fresh 1", got)
	}
}
