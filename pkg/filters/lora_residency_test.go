package filters

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// lrServer is one candidate as a residency test writes it.
type lrServer struct {
	name  string
	where string // adapter "a" is "gpu", "host" or "" (absent); "-" reports no residency
	queue int
	kv    float64
	base  string
}

func lrEndpoints(servers []lrServer) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, len(servers))
	for i, s := range servers {
		m := load(s.queue, s.kv)
		m.BaseModel = s.base
		switch s.where {
		case "gpu":
			m.LoRAResidency = map[string]endpoint.LoRAResidence{"a": {OnGPU: true}}
		case "host":
			m.LoRAResidency = map[string]endpoint.LoRAResidence{"a": {}}
		case "":
			m.LoRAResidency = map[string]endpoint.LoRAResidence{"other": {OnGPU: true}}
		}
		out[i] = ep(s.name, fmt.Sprintf("10.0.0.%d", i+1), nil, m)
	}
	return out
}

func TestLoRAResidency(t *testing.T) {
	t.Parallel()
	const busyQ, busyKV = 9, 0.81 // just past the default thresholds
	tests := []struct {
		name, params, model string
		servers             []lrServer
		want                []string
		outcome             string
	}{
		{name: "a home has room: all homes stay", servers: []lrServer{
			{name: "h1", where: "gpu", queue: busyQ}, {name: "w", where: "host"}, {name: "h2", where: "gpu"}, {name: "c"},
		}, want: []string{"h1", "h2"}, outcome: "sticky"},
		{name: "at the thresholds is not saturated", servers: []lrServer{
			{name: "h", where: "gpu", queue: 8, kv: 0.8}, {name: "c"},
		}, want: []string{"h"}, outcome: "sticky"},
		{name: "no home: all pass", servers: []lrServer{
			{name: "w", where: "host"}, {name: "c"}, {name: "n", where: "-"},
		}, want: []string{"w", "c", "n"}, outcome: "no_home"},
		{name: "homes saturated: spread to warm with room", servers: []lrServer{
			{name: "h", where: "gpu", kv: busyKV}, {name: "c"}, {name: "w1", where: "host", queue: busyQ}, {name: "w2", where: "host"},
		}, want: []string{"w2"}, outcome: "spread"},
		{name: "homes saturated, no warm with room: spread to cold", servers: []lrServer{
			{name: "h", where: "gpu", queue: busyQ}, {name: "w", where: "host", kv: busyKV}, {name: "c1"}, {name: "n", where: "-"}, {name: "c2", queue: busyQ},
		}, want: []string{"c1", "n"}, outcome: "spread"},
		{name: "maxReplicas homes already", params: `{"maxReplicas":2}`, servers: []lrServer{
			{name: "h1", where: "gpu", queue: busyQ}, {name: "w", where: "host"}, {name: "h2", where: "gpu", kv: busyKV},
		}, want: []string{"h1", "h2"}, outcome: "cap_blocked"},
		{name: "fewer homes than maxReplicas: spread", params: `{"maxReplicas":3}`, servers: []lrServer{
			{name: "h1", where: "gpu", queue: busyQ}, {name: "w", where: "host"}, {name: "h2", where: "gpu", kv: busyKV},
		}, want: []string{"w"}, outcome: "spread"},
		{name: "nothing has room: the homes", servers: []lrServer{
			{name: "h", where: "gpu", queue: busyQ}, {name: "w", where: "host", queue: busyQ}, {name: "c", kv: busyKV},
		}, want: []string{"h"}, outcome: "fleet_saturated"},
		{name: "queue threshold off", params: `{"queueThreshold":0}`, servers: []lrServer{
			{name: "h", where: "gpu", queue: 1000}, {name: "c"},
		}, want: []string{"h"}, outcome: "sticky"},
		{name: "kv threshold off", params: `{"kvCacheThreshold":0}`, servers: []lrServer{
			{name: "h", where: "gpu", kv: 1}, {name: "c"},
		}, want: []string{"h"}, outcome: "sticky"},
		{name: "lower thresholds", params: `{"queueThreshold":2,"kvCacheThreshold":0.5}`, servers: []lrServer{
			{name: "h1", where: "gpu", queue: 3}, {name: "h2", where: "gpu", kv: 0.6}, {name: "c"},
		}, want: []string{"c"}, outcome: "spread"},
		{name: "base-model request: all pass", model: "llama", servers: []lrServer{
			{name: "h", where: "gpu", base: "llama"}, {name: "c"},
		}, want: []string{"h", "c"}, outcome: "base_model"},
		{name: "another model as some server's base: the adapter rule", model: "a", servers: []lrServer{
			{name: "h", where: "gpu", base: "llama"}, {name: "c"},
		}, want: []string{"h"}, outcome: "sticky"},
		{name: "no candidate reports residency: all pass", servers: []lrServer{
			{name: "n1", where: "-"}, {name: "n2", where: "-"},
		}, want: []string{"n1", "n2"}, outcome: "unreported"},
		{name: "every candidate a home", servers: []lrServer{
			{name: "h1", where: "gpu"}, {name: "h2", where: "gpu"},
		}, want: []string{"h1", "h2"}, outcome: "sticky"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			var raw json.RawMessage
			if tc.params != "" {
				raw = json.RawMessage(tc.params)
			}
			p, err := LoRAResidencyFactory("lr", raw, &scheduler.Handle{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			model := tc.model
			if model == "" {
				model = "a"
			}
			eps := lrEndpoints(tc.servers)
			got := p.(*LoRAResidency).Filter(ctx, plugintest.State(1), plugintest.Request(model, 10), eps)
			if d := cmp.Diff(tc.want, names(got)); d != "" {
				t.Errorf("kept (-want +got):\n%s", d)
			}
			if n := testutil.CollectAndCount(reg, "openepp_lora_residency_filter_decisions_total"); n != 1 {
				t.Errorf("%d outcome series, want 1", n)
			}
			if c := testutil.ToFloat64(p.(*LoRAResidency).decisions.WithLabelValues("lr", tc.outcome)); c != 1 {
				t.Errorf("outcome %s counted %v times, want 1", tc.outcome, c)
			}
		})
	}
}

// TestLoRAResidencyCountsPerOutcome: decisions add up per outcome on a
// shared counter, and a filter without a registerer counts nothing.
func TestLoRAResidencyCountsPerOutcome(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f, err := NewLoRAResidency("lr", DefaultLoRAResidencyParams(), reg)
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := NewLoRAResidency("quiet", DefaultLoRAResidencyParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sticky := lrEndpoints([]lrServer{{name: "h", where: "gpu"}, {name: "c"}})
	spread := lrEndpoints([]lrServer{{name: "h", where: "gpu", queue: 20}, {name: "c"}})
	for _, eps := range [][]*endpoint.Endpoint{sticky, sticky, spread} {
		f.Filter(ctx, plugintest.State(1), plugintest.Request("a", 10), eps)
		quiet.Filter(ctx, plugintest.State(1), plugintest.Request("a", 10), eps)
	}
	again, err := NewLoRAResidency("lr", DefaultLoRAResidencyParams(), reg) // a reload continues the series
	if err != nil {
		t.Fatal(err)
	}
	again.Filter(ctx, plugintest.State(1), plugintest.Request("a", 10), spread)
	if n := testutil.CollectAndCount(reg); n != 2 {
		t.Errorf("%d series, want 2 (quiet counts nothing)", n)
	}
	for outcome, want := range map[string]float64{"sticky": 2, "spread": 2} {
		if got := testutil.ToFloat64(f.decisions.WithLabelValues("lr", outcome)); got != want {
			t.Errorf("%s counted %v, want %v", outcome, got, want)
		}
	}
	if quiet.decisions != nil {
		t.Error("a filter without a registerer has a counter")
	}
}

func TestLoRAResidencyParams(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, want string }{
		{`{"maxReplicas":-1}`, "maxReplicas: must be >= 0 (0 = unbounded), got -1"},
		{`{"queueThreshold":-2}`, "queueThreshold: must be >= 0 (0 = off), got -2"},
		{`{"kvCacheThreshold":1.5}`, "kvCacheThreshold: must be in [0, 1] (0 = off), got 1.5"},
		{`{"kvCacheThreshold":-0.1,"maxReplicas":-3}`, "maxReplicas: must be >= 0|kvCacheThreshold: must be in [0, 1]"},
		{`{"maxReplica":2}`, `unknown field "maxReplica"`},
		{`{"maxReplicas":1.5}`, "parameters"},
		{`{"maxReplicas":0,"queueThreshold":0,"kvCacheThreshold":0}`, ""},
		{`{"kvCacheThreshold":1}`, ""},
	}
	for _, tc := range tests {
		_, err := LoRAResidencyFactory("lr", json.RawMessage(tc.raw), nil)
		wantErr(t, err, tc.want)
	}
}

func TestLoRAResidencyConformance(t *testing.T) {
	t.Parallel()
	f, err := NewLoRAResidency("lr", LoRAResidencyParams{MaxReplicas: 1, QueueThreshold: 4, KVCacheThreshold: 0.5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plugintest.Filter(t, f, plugintest.Request("lora-1", 100))
}
