package filters

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// capsEndpoints: a (idle), b (queue 3, 20 running, kv 0.9), c (queue 0,
// 50 running, kv 0.5), d (never scraped: every metric 0).
func capsEndpoints() []*endpoint.Endpoint {
	withRunning := func(m *endpoint.Metrics, r int) *endpoint.Metrics { m.RunningRequestsSize = r; return m }
	return []*endpoint.Endpoint{
		ep("a", "10.0.0.1", nil, load(0, 0.1)),
		ep("b", "10.0.0.2", nil, withRunning(load(3, 0.9), 20)),
		ep("c", "10.0.0.3", nil, withRunning(load(0, 0.5), 50)),
		ep("d", "10.0.0.4", nil, nil),
	}
}

func TestUtilizationCaps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, params string
		inflight          map[int]int // endpoint index -> requests this EPP sent it
		want              []string
	}{
		{name: "waiting queue", params: `{"conditions":[{"metric":"waiting-queue","maxValue":0}]}`, want: []string{"a", "c", "d"}},
		{name: "running requests", params: `{"conditions":[{"metric":"running-requests","maxValue":20}]}`, want: []string{"a", "b", "d"}},
		{name: "kv cache, at the cap passes", params: `{"conditions":[{"metric":"kv-cache-utilization","maxValue":0.5}]}`, want: []string{"a", "c", "d"}},
		{name: "every condition must hold", params: `{"conditions":[{"metric":"running-requests","maxValue":40},{"metric":"waiting-queue","maxValue":0}]}`,
			want: []string{"a", "d"}},
		{name: "active requests", params: `{"conditions":[{"metric":"active-requests","maxValue":1}]}`, inflight: map[int]int{0: 2, 2: 1},
			want: []string{"b", "c", "d"}},
		{name: "none pass, no fallback", params: `{"conditions":[{"metric":"kv-cache-utilization","maxValue":0}]}`, want: []string{"d"}},
		{name: "none pass: fails the profile", params: `{"conditions":[{"metric":"active-requests","maxValue":0}]}`,
			inflight: map[int]int{0: 1, 1: 1, 2: 1, 3: 1}, want: []string{}},
		{name: "none pass, fallback keeps all", params: `{"conditions":[{"metric":"active-requests","maxValue":0}],"fallbackOnEmpty":true}`,
			inflight: map[int]int{0: 1, 1: 1, 2: 1, 3: 1}, want: []string{"a", "b", "c", "d"}},
		{name: "active-request-filter maxRequests", typ: ActiveRequestCapType, params: `{"maxRequests":1}`, inflight: map[int]int{1: 2},
			want: []string{"a", "c", "d"}},
		{name: "active-request-filter maxRequests and conditions", typ: ActiveRequestCapType,
			params: `{"maxRequests":1,"conditions":[{"metric":"waiting-queue","maxValue":0}]}`, inflight: map[int]int{2: 5}, want: []string{"a", "d"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := buildCaps(t, tc.typ, tc.params)
			eps := capsEndpoints()
			for i, n := range tc.inflight {
				for range n {
					f.PreRequest(ctx, plugintest.State(1), nil, routedTo(eps[i]))
				}
			}
			got := f.Filter(ctx, plugintest.State(1), nil, eps)
			if d := cmp.Diff(tc.want, names(got)); d != "" {
				t.Errorf("kept (-want +got):\n%s", d)
			}
		})
	}
}

// TestUtilizationCapsReleases: a finished request no longer counts, and
// without an active-requests condition nothing is counted at all.
func TestUtilizationCapsReleases(t *testing.T) {
	t.Parallel()
	eps := capsEndpoints()
	f := buildCaps(t, "", `{"conditions":[{"metric":"active-requests","maxValue":0}]}`)
	st := plugintest.State(1)
	f.PreRequest(ctx, st, nil, routedTo(eps[0]))
	if got := names(f.Filter(ctx, st, nil, eps)); cmp.Diff([]string{"b", "c", "d"}, got) != "" {
		t.Fatalf("in flight: kept %v", got)
	}
	f.ResponseComplete(ctx, st, nil, &scheduler.Response{EndOfStream: true})
	if got := f.Filter(ctx, st, nil, eps); len(got) != len(eps) {
		t.Errorf("after completion: kept %v, want all", names(got))
	}
	queue := buildCaps(t, "", `{"conditions":[{"metric":"waiting-queue","maxValue":9}]}`)
	queue.PreRequest(ctx, st, nil, routedTo(eps[0]))
	if flights, _ := queue.Tracker().Size(); flights != 0 {
		t.Errorf("no active-requests condition, yet %d requests counted", flights)
	}
}

func TestUtilizationCapsParams(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, typ, params, wantErr string }{
		{name: "no parameters", params: ``, wantErr: "conditions: at least one condition is required"},
		{name: "empty conditions", params: `{"conditions":[]}`, wantErr: "at least one condition"},
		{name: "unknown metric", params: `{"conditions":[{"metric":"gpu","maxValue":1}]}`, wantErr: `conditions[0].metric: must be one of|got "gpu"`},
		{name: "missing maxValue", params: `{"conditions":[{"metric":"waiting-queue"}]}`, wantErr: "conditions[0].maxValue: required"},
		{name: "negative maxValue", params: `{"conditions":[{"metric":"waiting-queue","maxValue":-1}]}`, wantErr: "conditions[0].maxValue: must be a finite number >= 0"},
		{name: "kv over 1", params: `{"conditions":[{"metric":"waiting-queue","maxValue":1},{"metric":"kv-cache-utilization","maxValue":80}]}`,
			wantErr: "conditions[1].maxValue: kv-cache-utilization is a fraction"},
		{name: "all problems at once", params: `{"conditions":[{"metric":"x","maxValue":1},{"metric":"waiting-queue"}]}`,
			wantErr: "conditions[0].metric|conditions[1].maxValue"},
		{name: "unknown field", params: `{"conditions":[{"metric":"waiting-queue","maxValue":1}],"fallback":true}`, wantErr: `unknown field "fallback"`},
		{name: "unknown condition field", params: `{"conditions":[{"metric":"waiting-queue","max":1}]}`, wantErr: `unknown field "max"`},
		{name: "maxRequests is the old filter's", params: `{"maxRequests":3}`, wantErr: `unknown field "maxRequests"`},
		{name: "producer name accepted", params: `{"conditions":[{"metric":"active-requests","maxValue":3}],"inFlightLoadProducerName":"x"}`},
		{name: "old filter: nothing given", typ: ActiveRequestCapType, params: `{"fallbackOnEmpty":true}`, wantErr: "maxRequests or conditions: one is required"},
		{name: "old filter: negative maxRequests", typ: ActiveRequestCapType, params: `{"maxRequests":-2}`, wantErr: "maxRequests: must be > 0"},
		{name: "old filter: condition indices as written", typ: ActiveRequestCapType,
			params: `{"maxRequests":2,"conditions":[{"metric":"nope","maxValue":1}]}`, wantErr: "conditions[0].metric"},
		{name: "old filter: valid", typ: ActiveRequestCapType, params: `{"maxRequests":10,"fallbackOnEmpty":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			factory := UtilizationCapsFactory
			if tc.typ == ActiveRequestCapType {
				factory = ActiveRequestCapFactory
			}
			p, err := factory("caps", []byte(tc.params), nil)
			wantErr(t, err, tc.wantErr)
			want := scheduler.TypedName{Type: UtilizationCapsType, Name: "caps"}
			if tc.typ != "" {
				want.Type = tc.typ
			}
			if err == nil && p.TypedName() != want {
				t.Errorf("typed name %v, want %v", p.TypedName(), want)
			}
		})
	}
}

func TestUtilizationCapsConformance(t *testing.T) {
	t.Parallel()
	req := plugintest.Request("m", 100)
	for _, params := range []string{
		`{"conditions":[{"metric":"waiting-queue","maxValue":10},{"metric":"kv-cache-utilization","maxValue":0.7}]}`,
		`{"conditions":[{"metric":"running-requests","maxValue":0}],"fallbackOnEmpty":true}`,
		`{"conditions":[{"metric":"active-requests","maxValue":0}]}`,
	} {
		f := buildCaps(t, "", params)
		for _, e := range plugintest.Endpoints(7, 8)[:3] { // some endpoints busy
			f.PreRequest(ctx, plugintest.State(3), nil, routedTo(e))
		}
		plugintest.Filter(t, f, req)
	}
}

func buildCaps(t *testing.T, typ, params string) *UtilizationCaps {
	t.Helper()
	factory := UtilizationCapsFactory
	if typ == ActiveRequestCapType {
		factory = ActiveRequestCapFactory
	}
	p, err := factory("caps", []byte(params), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*UtilizationCaps)
}
