package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/disagg"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/promalias"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// pdConfig is a P/D configuration in llm-d's shape (profiles and decider
// references by name); extra is appended to the handler's parameters.
func pdConfig(handlerParams, deciders string) string {
	return `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: disagg-profile-handler
  parameters: {` + handlerParams + `}
` + deciders + `
- type: prefill-filter
- type: decode-filter
- type: encode-filter
- type: prefix-cache-scorer
- type: queue-scorer
- {name: encoders, type: max-score-picker, parameters: {maxNumOfEndpoints: 2}}
schedulingProfiles:
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer, weight: 2}, {pluginRef: queue-scorer}]
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}]
- name: encode
  plugins: [{pluginRef: encode-filter}, {pluginRef: queue-scorer}, {pluginRef: encoders}]
`
}

// roleEndpoints returns one endpoint per role (name = role), with a queue
// that makes the first of each role the best.
func roleEndpoints(roles ...string) []*endpoint.Endpoint {
	base := plugintest.Endpoints(len(roles), 1)
	out := make([]*endpoint.Endpoint, len(roles))
	for i, r := range roles {
		e := endpoint.New(endpoint.Spec{Name: fmt.Sprintf("%s-%d", r, i), Address: fmt.Sprintf("10.1.0.%d", i+1), Port: 8000,
			Labels: map[string]string{filters.RoleLabel: r}})
		m := *base[i].Metrics()
		m.WaitingQueueSize = i
		e.SetMetrics(&m)
		e.SetStale(false)
		out[i] = e
	}
	return out
}

func buildPD(t *testing.T, yaml string, reg prometheus.Registerer, eps []*endpoint.Endpoint) (*scheduler.Scheduler, error) {
	t.Helper()
	registry, err := InTree()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]byte(yaml))
	if err != nil {
		return nil, err
	}
	built, err := config.BuildWith(cfg, config.BuildOptions{Registry: registry, Seed: 3, Handle: &scheduler.Handle{
		Log: logr.Discard(), Clock: scheduler.RealClock{}, Registerer: reg,
		Endpoints: func() []*endpoint.Endpoint { return eps },
	}})
	if err != nil {
		return nil, err
	}
	return built.Scheduler, nil
}

// route schedules req and runs PreRequest, as the server does.
func route(t *testing.T, s *scheduler.Scheduler, req *scheduler.Request, eps []*endpoint.Endpoint) *scheduler.Result {
	t.Helper()
	st := s.NewState()
	res, err := s.Schedule(context.Background(), st, req, eps)
	if err != nil {
		t.Fatal(err)
	}
	s.PreRequest(context.Background(), st, req, res)
	return res
}

func TestDisaggDecisions(t *testing.T) {
	t.Parallel()
	eps := roleEndpoints("decode", "prefill", "encode", "decode", "prefill", "encode")
	long := plugintest.Request("m", 8000) // ~2,000 tokens
	short := plugintest.Request("m", 200) // ~50 tokens
	image := plugintest.Request("m", 0)   // replaced below
	image.Body.Prompt = []byte(`[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:,"}}]}]`)
	deciders := `- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 256}
- type: always-disagg-multimodal-decider`
	reg := prometheus.NewRegistry()
	s, err := buildPD(t, pdConfig(`deciders: {prefill: prefix-based-pd-decider, encode: always-disagg-multimodal-decider}`, deciders), reg, eps)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name              string
		req               *scheduler.Request
		prefill, encoders string
	}{
		{name: "long prompt: prefill elsewhere", req: long, prefill: "10.1.0.2:8000"},
		{name: "short prompt: decode only", req: short},
		{name: "image: encoders, prompt too short to prefill elsewhere", req: image, encoders: "10.1.0.3:8000,10.1.0.6:8000"},
	}
	for _, tc := range tests {
		// A client-sent header must not survive a stage that does not run.
		tc.req.Headers[disagg.PrefillerHeader] = "203.0.113.9:8000"
		res := route(t, s, tc.req, eps)
		if got := res.Targets()[0].Labels[filters.RoleLabel]; got != "decode" {
			t.Errorf("%s: destination %s, want a decode endpoint", tc.name, res.Targets()[0].Name)
		}
		if got := res.Headers[disagg.PrefillerHeader]; got != tc.prefill {
			t.Errorf("%s: %s = %q, want %q", tc.name, disagg.PrefillerHeader, got, tc.prefill)
		}
		if got := res.Headers[disagg.EncodersHeader]; got != tc.encoders {
			t.Errorf("%s: %s = %q, want %q", tc.name, disagg.EncodersHeader, got, tc.encoders)
		}
		if tc.prefill == "" && !contains(res.RemovedHeaders, disagg.PrefillerHeader) {
			t.Errorf("%s: client-sent %s not removed (removed %v)", tc.name, disagg.PrefillerHeader, res.RemovedHeaders)
		}
	}
	want := `
# HELP llm_d_epp_disagg_decision_total Disaggregation decisions by handler, model and stages run (decode-only, prefill-decode, encode-decode, encode-prefill-decode).
# TYPE llm_d_epp_disagg_decision_total counter
llm_d_epp_disagg_decision_total{decision_type="decode-only",model_name="m",plugin_name="disagg-profile-handler",plugin_type="disagg-profile-handler"} 1
llm_d_epp_disagg_decision_total{decision_type="encode-decode",model_name="m",plugin_name="disagg-profile-handler",plugin_type="disagg-profile-handler"} 1
llm_d_epp_disagg_decision_total{decision_type="prefill-decode",model_name="m",plugin_name="disagg-profile-handler",plugin_type="disagg-profile-handler"} 1
# HELP llm_d_inference_scheduler_disagg_decision_total Disaggregation decisions by handler, model and stages run (decode-only, prefill-decode, encode-decode, encode-prefill-decode).
# TYPE llm_d_inference_scheduler_disagg_decision_total counter
llm_d_inference_scheduler_disagg_decision_total{decision_type="decode-only",model_name="m"} 1
llm_d_inference_scheduler_disagg_decision_total{decision_type="encode-decode",model_name="m"} 1
llm_d_inference_scheduler_disagg_decision_total{decision_type="prefill-decode",model_name="m"} 1
`
	// llm-d's current name carries the handler; its deprecated twin does not.
	page := promalias.New(reg, disagg.Aliases)
	if err := testutil.GatherAndCompare(page, strings.NewReader(want), "llm_d_epp_disagg_decision_total",
		"llm_d_inference_scheduler_disagg_decision_total"); err != nil {
		t.Error(err)
	}
}

// TestDisaggPrefixAware: once the decode endpoint holds the prompt (it
// served it before), the same long prompt stays decode-only.
func TestDisaggPrefixAware(t *testing.T) {
	t.Parallel()
	eps := roleEndpoints("decode", "prefill")
	s, err := buildPD(t, pdConfig(`deciders: {prefill: prefix-based-pd-decider}`, `- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 256}`), nil, eps)
	if err != nil {
		t.Fatal(err)
	}
	req := plugintest.Request("m", 8000)
	if got := route(t, s, req, eps).Headers[disagg.PrefillerHeader]; got != "10.1.0.2:8000" {
		t.Fatalf("first request: prefiller %q, want the prefill endpoint", got)
	}
	if got, ok := route(t, s, req, eps).Headers[disagg.PrefillerHeader]; ok {
		t.Errorf("repeated prompt, cached on decode: prefiller %q, want decode-only", got)
	}
}

// TestDisaggFallbacks: a decided stage with no endpoint of its role is run
// by the decode endpoint and counted; no decode endpoint fails the request.
func TestDisaggFallbacks(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	eps := roleEndpoints("decode", "decode")
	s, err := buildPD(t, pdConfig(`deciders: {prefill: always}`, `- {name: always, type: always-disagg-pd-decider}`), reg, eps)
	if err != nil {
		t.Fatal(err)
	}
	res := route(t, s, plugintest.Request("m", 100), eps)
	if _, ok := res.Headers[disagg.PrefillerHeader]; ok || res.Targets()[0].Name != "decode-0" {
		t.Errorf("no prefill endpoint: headers %v, target %s; want decode-only on decode-0", res.Headers, res.Targets()[0].Name)
	}
	if got := testutil.ToFloat64(mustVec(t, reg, "openepp_disagg_stage_skipped_total")); got != 1 {
		t.Errorf("stage unavailable counted %v times, want 1", got)
	}
	prefillOnly := roleEndpoints("prefill")
	_, err = s.Schedule(context.Background(), s.NewState(), plugintest.Request("m", 100), prefillOnly)
	if !errors.Is(err, scheduler.ErrNoCandidates) || !strings.Contains(err.Error(), "decode") {
		t.Errorf("no decode endpoint: err = %v, want ErrNoCandidates naming decode", err)
	}
	// A prefill-decode pod picked for both stages serves decode-only.
	both := roleEndpoints("prefill-decode")
	if res := route(t, s, plugintest.Request("m", 100), both); res.Headers[disagg.PrefillerHeader] != "" {
		t.Errorf("prefill pick = decode pick: prefiller %q, want none", res.Headers[disagg.PrefillerHeader])
	}
}

// TestDisaggBusyPrefill: with maxPrefillQueue, a prefill pick whose queue
// is over the limit is skipped (counted), and used again once it drains.
func TestDisaggBusyPrefill(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	eps := roleEndpoints("decode", "prefill")
	s, err := buildPD(t, pdConfig(`maxPrefillQueue: 4, deciders: {prefill: always}`, `- {name: always, type: always-disagg-pd-decider}`), reg, eps)
	if err != nil {
		t.Fatal(err)
	}
	setQueue := func(q int) {
		m := *eps[1].Metrics()
		m.WaitingQueueSize = q
		eps[1].SetMetrics(&m)
	}
	setQueue(5)
	if got := route(t, s, plugintest.Request("m", 100), eps).Headers[disagg.PrefillerHeader]; got != "" {
		t.Errorf("prefill queue 5 > 4: prefiller %q, want decode-only", got)
	}
	setQueue(4)
	if got := route(t, s, plugintest.Request("m", 100), eps).Headers[disagg.PrefillerHeader]; got != "10.1.0.2:8000" {
		t.Errorf("prefill queue 4: prefiller %q, want the prefill endpoint", got)
	}
	want := `
# HELP openepp_disagg_stage_skipped_total Requests whose disaggregated stage was decided but ran on the decode endpoint: no endpoint for it, or the prefill pick busy.
# TYPE openepp_disagg_stage_skipped_total counter
openepp_disagg_stage_skipped_total{reason="busy",stage="prefill"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "openepp_disagg_stage_skipped_total"); err != nil {
		t.Error(err)
	}
}

// TestDisaggBusyPrefillCountsRunning: with countRunningPrefills, the prefill
// endpoint's running requests count against maxPrefillQueue while the decode
// endpoint has none waiting, and not once it has.
func TestDisaggBusyPrefillCountsRunning(t *testing.T) {
	t.Parallel()
	eps := roleEndpoints("decode", "prefill")
	s, err := buildPD(t, pdConfig(`maxPrefillQueue: 2, countRunningPrefills: true, deciders: {prefill: always}`,
		`- {name: always, type: always-disagg-pd-decider}`), nil, eps)
	if err != nil {
		t.Fatal(err)
	}
	set := func(e int, waiting, running int) {
		m := *eps[e].Metrics()
		m.WaitingQueueSize, m.RunningRequestsSize = waiting, running
		eps[e].SetMetrics(&m)
	}
	for _, tc := range []struct {
		name                                          string
		prefillWaiting, prefillRunning, decodeWaiting int
		want                                          string
	}{
		{"running prefills over the limit", 1, 2, 0, ""},
		{"within the limit", 1, 1, 0, "10.1.0.2:8000"},
		{"decode has a queue: waiting alone counts", 1, 2, 1, "10.1.0.2:8000"},
		{"waiting over the decode queue plus the limit", 4, 0, 1, ""},
	} {
		set(1, tc.prefillWaiting, tc.prefillRunning)
		set(0, tc.decodeWaiting, 0)
		if got := route(t, s, plugintest.Request("m", 100), eps).Headers[disagg.PrefillerHeader]; got != tc.want {
			t.Errorf("%s: prefiller %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestDisaggPrefillFirst runs prefill for every request, before decode.
func TestDisaggPrefillFirst(t *testing.T) {
	t.Parallel()
	eps := roleEndpoints("decode", "prefill")
	s, err := buildPD(t, pdConfig(`stageOrder: prefill-first`, ""), nil, eps)
	if err != nil {
		t.Fatal(err)
	}
	res := route(t, s, plugintest.Request("m", 40), eps)
	if res.Headers[disagg.PrefillerHeader] != "10.1.0.2:8000" || res.Targets()[0].Name != "decode-0" {
		t.Errorf("prefill-first: headers %v, target %s", res.Headers, res.Targets()[0].Name)
	}
}

func TestDisaggConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, params, deciders, want string }{
		{"bad order", `stageOrder: sideways`, "", `stageOrder: "sideways" is neither`},
		{"missing named profile", `profiles: {prefill: pf}`, "", `needs a profile named "pf"`},
		{"decider not a decider", `deciders: {prefill: queue-scorer}`, "", `plugin "queue-scorer" (type "queue-scorer") is not a disaggregation decider`},
		{"unknown decider", `deciders: {prefill: nope}`, "", `deciders.prefill: no plugin named "nope"`},
		{"negative tokens", `deciders: {prefill: prefix-based-pd-decider}`, `- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: -1}`, `must be >= 0`},
		{"same profile twice", `profiles: {prefill: decode}`, "", `each stage needs its own profile`},
		{"negative queue limit", `maxPrefillQueue: -1`, "", `maxPrefillQueue: -1 must be >= 0`},
		{"running without a queue limit", `countRunningPrefills: true`, "", `countRunningPrefills: needs maxPrefillQueue > 0`},
	}
	for _, tc := range tests {
		_, err := buildPD(t, pdConfig(tc.params, tc.deciders), nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestLegacyPDHandler: the deprecated handler's threshold on uncached
// prompt bytes.
func TestLegacyPDHandler(t *testing.T) {
	t.Parallel()
	eps := roleEndpoints("decode", "prefill")
	yaml := strings.Replace(pdConfig("", ""), "type: disagg-profile-handler\n  parameters: {}",
		"type: pd-profile-handler\n  parameters: {threshold: 1000}", 1)
	s, err := buildPD(t, yaml, nil, eps)
	if err != nil {
		t.Fatal(err)
	}
	if got := route(t, s, plugintest.Request("m", 4000), eps).Headers[disagg.PrefillerHeader]; got != "10.1.0.2:8000" {
		t.Errorf("4 KB uncached prompt: prefiller %q, want the prefill endpoint", got)
	}
	if got := route(t, s, plugintest.Request("m", 300), eps).Headers[disagg.PrefillerHeader]; got != "" {
		t.Errorf("300 B prompt: prefiller %q, want decode-only", got)
	}
	_, err = buildPD(t, strings.Replace(yaml, "threshold: 1000", "primaryPort: 8000", 1), nil, eps)
	if err == nil || !strings.Contains(err.Error(), "primaryPort") {
		t.Errorf("primaryPort: err = %v, want a refusal", err)
	}
}

func mustVec(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
			c.Add(sum)
			return c
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
