package filters

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// attrEPs returns endpoints from "name:value" specs whose value is stored
// under key; the value "-" leaves the attribute out, and NaN and ±Inf
// parse as such.
func attrEPs(t testing.TB, key string, specs ...string) []*endpoint.Endpoint {
	t.Helper()
	out := make([]*endpoint.Endpoint, len(specs))
	for i, s := range specs {
		name, val, _ := strings.Cut(s, ":")
		e := ep(name, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), nil, nil)
		if val != "-" {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatalf("spec %q: %v", s, err)
			}
			e.SetAttributes(endpoint.Attributes{key: v})
		}
		out[i] = e
	}
	return out
}

// attrFilter builds an endpoint-attribute-filter reading "u/p" from the
// algorithm given and the other parameters in extra (",..." or "").
func attrFilter(t testing.TB, algorithm, extra string) *EndpointAttribute {
	t.Helper()
	raw := `{"attribute":"u","producer":"p","algorithm":` + algorithm + extra + `}`
	p, err := EndpointAttributeFactory("f", []byte(raw), nil)
	if err != nil {
		t.Fatalf("factory(%s): %v", raw, err)
	}
	return p.(*EndpointAttribute)
}

func TestEndpointAttributeFilter(t *testing.T) {
	t.Parallel()
	abcd := []string{"a:0.2", "b:0.5", "c:0.8", "d:-"}
	fail := `,"onMissing":"Fail"`
	tests := []struct {
		name, algorithm, extra string
		eps                    []string
		want                   []string
	}{
		{name: "LessThan", algorithm: `{"type":"threshold","threshold":{"operator":"LessThan","value":0.5}}`, eps: abcd, want: []string{"a", "d"}},
		{name: "LessThanOrEqual", algorithm: `{"type":"threshold","threshold":{"operator":"LessThanOrEqual","value":0.5}}`, eps: abcd, want: []string{"a", "b", "d"}},
		{name: "GreaterThan", algorithm: `{"type":"threshold","threshold":{"operator":"GreaterThan","value":0.5}}`, eps: abcd, want: []string{"c", "d"}},
		{name: "GreaterThanOrEqual", algorithm: `{"type":"threshold","threshold":{"operator":"GreaterThanOrEqual","value":0.5}}`, eps: abcd, want: []string{"b", "c", "d"}},
		{name: "Equal", algorithm: `{"type":"threshold","threshold":{"operator":"Equal","value":0.5}}`, eps: abcd, want: []string{"b", "d"}},
		{name: "NotEqual", algorithm: `{"type":"threshold","threshold":{"operator":"NotEqual","value":0.5}}`, eps: abcd, want: []string{"a", "c", "d"}},
		{name: "threshold onMissing Fail", algorithm: `{"type":"threshold","threshold":{"operator":"LessThan","value":0.5}}`, extra: fail, eps: abcd, want: []string{"a"}},
		{name: "NaN is missing: Pass", algorithm: `{"type":"threshold","threshold":{"operator":"NotEqual","value":0.5}}`,
			eps: []string{"a:NaN", "b:0.5"}, want: []string{"a"}},
		{name: "NaN is missing: Fail", algorithm: `{"type":"threshold","threshold":{"operator":"NotEqual","value":0.5}}`, extra: fail,
			eps: []string{"a:NaN", "b:0.5", "c:+Inf"}, want: []string{"c"}},
		{name: "range inclusive", algorithm: `{"type":"range","range":{"min":0.2,"max":0.5}}`, eps: abcd, want: []string{"a", "b", "d"}},
		{name: "range onMissing Fail", algorithm: `{"type":"range","range":{"min":0.2,"max":0.5}}`, extra: fail, eps: abcd, want: []string{"a", "b"}},
		{name: "range of one value", algorithm: `{"type":"range","range":{"min":0.8,"max":0.8}}`, extra: fail, eps: abcd, want: []string{"c"}},
		{name: "topK highest", algorithm: `{"type":"topK","topK":{"k":2}}`, eps: abcd, want: []string{"b", "c", "d"}},
		{name: "topK lowest", algorithm: `{"type":"topK","topK":{"k":2,"higherIsBetter":false}}`, eps: abcd, want: []string{"a", "b", "d"}},
		{name: "topK onMissing Fail", algorithm: `{"type":"topK","topK":{"k":1}}`, extra: fail, eps: abcd, want: []string{"c"}},
		{name: "topK k above those with the attribute", algorithm: `{"type":"topK","topK":{"k":10}}`, extra: fail, eps: abcd, want: []string{"a", "b", "c"}},
		{name: "topK k equal to those with the attribute", algorithm: `{"type":"topK","topK":{"k":3,"higherIsBetter":false}}`, extra: fail, eps: abcd, want: []string{"a", "b", "c"}},
		{name: "topK ties go to earlier candidates", algorithm: `{"type":"topK","topK":{"k":2}}`,
			eps: []string{"v:1", "w:3", "x:3", "y:0", "z:3"}, want: []string{"w", "x"}},
		{name: "topK ties at the cut after better values", algorithm: `{"type":"topK","topK":{"k":3}}`,
			eps: []string{"v:3", "w:5", "x:3", "y:5", "z:1"}, want: []string{"v", "w", "y"}},
		{name: "topK lowest ties", algorithm: `{"type":"topK","topK":{"k":2,"higherIsBetter":false}}`,
			eps: []string{"v:1", "w:1", "x:1", "y:0"}, want: []string{"v", "y"}},
		{name: "topK with infinities", algorithm: `{"type":"topK","topK":{"k":2}}`,
			eps: []string{"v:-Inf", "w:+Inf", "x:7", "y:+Inf"}, want: []string{"w", "y"}},
		{name: "topK all missing, Pass", algorithm: `{"type":"topK","topK":{"k":1}}`, eps: []string{"a:-", "b:-"}, want: []string{"a", "b"}},
		{name: "percentile 50 higher", algorithm: `{"type":"percentile","percentile":{"percentile":50}}`,
			eps: []string{"a:50", "b:10", "c:40", "d:20", "e:30"}, want: []string{"a", "c", "e"}},
		{name: "percentile 50 lower", algorithm: `{"type":"percentile","percentile":{"percentile":50,"higherIsBetter":false}}`,
			eps: []string{"a:50", "b:10", "c:40", "d:20", "e:30"}, want: []string{"b", "d", "e"}},
		{name: "percentile 0 higher keeps all", algorithm: `{"type":"percentile","percentile":{"percentile":0}}`,
			eps: []string{"a:50", "b:10", "c:40"}, want: []string{"a", "b", "c"}},
		{name: "percentile 0 lower keeps the minimum", algorithm: `{"type":"percentile","percentile":{"percentile":0,"higherIsBetter":false}}`,
			eps: []string{"a:50", "b:10", "c:40", "d:10"}, want: []string{"b", "d"}},
		{name: "percentile 100 higher keeps the maximum", algorithm: `{"type":"percentile","percentile":{"percentile":100}}`,
			eps: []string{"a:50", "b:10", "c:40"}, want: []string{"a"}},
		{name: "percentile 100 lower keeps all", algorithm: `{"type":"percentile","percentile":{"percentile":100,"higherIsBetter":false}}`,
			eps: []string{"a:50", "b:10", "c:40"}, want: []string{"a", "b", "c"}},
		{name: "percentile N=1", algorithm: `{"type":"percentile","percentile":{"percentile":37}}`, extra: fail,
			eps: []string{"a:-", "b:3"}, want: []string{"b"}},
		{name: "percentile rank exact: 70 of 10 is position 7", algorithm: `{"type":"percentile","percentile":{"percentile":70}}`,
			eps: []string{"a:1", "b:2", "c:3", "d:4", "e:5", "f:6", "g:7", "h:8", "i:9", "j:10"}, want: []string{"g", "h", "i", "j"}},
		{name: "percentile keeps every tie at the cutoff", algorithm: `{"type":"percentile","percentile":{"percentile":50}}`,
			eps: []string{"a:2", "b:1", "c:2", "d:3", "e:2"}, want: []string{"a", "c", "d", "e"}},
		{name: "percentile ranks only those with the attribute", algorithm: `{"type":"percentile","percentile":{"percentile":100}}`,
			eps: []string{"a:10", "b:-", "c:30", "d:NaN"}, want: []string{"b", "c", "d"}},
		{name: "percentile onMissing Fail", algorithm: `{"type":"percentile","percentile":{"percentile":100}}`, extra: fail,
			eps: []string{"a:10", "b:-", "c:30"}, want: []string{"c"}},
		{name: "empty result without fallback", algorithm: `{"type":"threshold","threshold":{"operator":"LessThan","value":0}}`, extra: fail,
			eps: abcd, want: []string{}},
		{name: "fallbackOnEmpty keeps the candidates", algorithm: `{"type":"threshold","threshold":{"operator":"LessThan","value":0}}`,
			extra: fail + `,"fallbackOnEmpty":true`, eps: abcd, want: []string{"a", "b", "c", "d"}},
		{name: "fallbackOnEmpty when all are missing", algorithm: `{"type":"topK","topK":{"k":1}}`,
			extra: fail + `,"fallbackOnEmpty":true`, eps: []string{"a:-", "b:-"}, want: []string{"a", "b"}},
		{name: "fallbackOnEmpty unused when some remain", algorithm: `{"type":"range","range":{"min":0,"max":0.3}}`,
			extra: fail + `,"fallbackOnEmpty":true`, eps: abcd, want: []string{"a"}},
		{name: "all missing fail without fallback", algorithm: `{"type":"percentile","percentile":{"percentile":50}}`, extra: fail,
			eps: []string{"a:-", "b:-"}, want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := attrFilter(t, tc.algorithm, tc.extra)
			eps := attrEPs(t, "u/p", tc.eps...)
			got := f.Filter(ctx, plugintest.State(1), nil, eps)
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if len(got) == len(eps) && len(eps) > 0 && &got[0] != &eps[0] {
				t.Error("kept everything but did not return the input slice")
			}
		})
	}
}

// TestEndpointAttributeFilterTopKMatchesSort checks topK and percentile on
// larger inputs, with many ties, against a sort of the values.
func TestEndpointAttributeFilterTopKMatchesSort(t *testing.T) {
	t.Parallel()
	specs := make([]string, 300)
	for i := range specs {
		specs[i] = fmt.Sprintf("e%03d:%d", i, (i*37)%11) // values 0..10, ~27 of each
	}
	eps := attrEPs(t, "u/p", specs...)
	for _, k := range []int{1, 5, 27, 28, 150, 299, 300} {
		for _, higher := range []bool{true, false} {
			f := attrFilter(t, fmt.Sprintf(`{"type":"topK","topK":{"k":%d,"higherIsBetter":%v}}`, k, higher), "")
			got := f.Filter(ctx, plugintest.State(1), nil, eps)
			if diff := cmp.Diff(referenceTopK(eps, k, higher), names(got)); diff != "" {
				t.Errorf("k=%d higher=%v (-want +got):\n%s", k, higher, diff)
			}
		}
	}
}

// referenceTopK is topK by a stable sort: the k best, earlier first among
// equals, listed in candidate order.
func referenceTopK(eps []*endpoint.Endpoint, k int, higher bool) []string {
	idx := make([]int, len(eps))
	for i := range idx {
		idx[i] = i
	}
	val := func(i int) float64 { v, _ := eps[i].Attribute("u/p"); return v }
	better := func(a, b int) bool {
		if higher {
			return val(a) > val(b)
		}
		return val(a) < val(b)
	}
	// insertion sort: stable, and n is small
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && better(idx[j], idx[j-1]); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	chosen := map[int]bool{}
	for _, i := range idx[:min(k, len(idx))] {
		chosen[i] = true
	}
	var out []string
	for i, e := range eps {
		if chosen[i] {
			out = append(out, e.Name)
		}
	}
	return out
}

func TestNth(t *testing.T) {
	t.Parallel()
	in := []float64{5, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, -1, 0}
	sorted := []float64{-1, 0, 1, 1, 2, 3, 4, 5, 5, 5, 5, 6, 9}
	for k, want := range sorted {
		a := append([]float64(nil), in...)
		if got := nth(a, k); got != want {
			t.Errorf("nth(%d) = %v, want %v", k, got, want)
		}
	}
	desc := make([]float64, 1000) // sorted input: the median-of-three case
	for i := range desc {
		desc[i] = float64(1000 - i)
	}
	if got := nth(desc, 10); got != 11 {
		t.Errorf("nth(descending, 10) = %v, want 11", got)
	}
}

func TestEndpointAttributeFilterProducer(t *testing.T) {
	t.Parallel()
	e := ep("e", "10.0.0.1", nil, nil)
	e.SetAttributes(endpoint.Attributes{
		"g/core-metrics-extractor": 1, "g/dcgm-extractor": 2, "g": 3, "a/b/core-metrics-extractor": 4, "a/b": 5,
	})
	tests := []struct {
		name, params string
		want         float64
	}{
		{name: "absent: the core metrics extractor", params: `"attribute":"g"`, want: 1},
		{name: "given", params: `"attribute":"g","producer":"dcgm-extractor"`, want: 2},
		{name: "empty: the name alone", params: `"attribute":"g","producer":""`, want: 3},
		{name: "a slash with an empty producer reads the key as written", params: `"attribute":"a/b","producer":""`, want: 5},
		{name: "a slash with a producer", params: `"attribute":"a","producer":"b/core-metrics-extractor"`, want: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := fmt.Sprintf(`{%s,"onMissing":"Fail","algorithm":{"type":"threshold","threshold":{"operator":"Equal","value":%v}}}`, tc.params, tc.want)
			p, err := EndpointAttributeFactory("f", []byte(raw), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.(*EndpointAttribute).Filter(ctx, plugintest.State(1), nil, []*endpoint.Endpoint{e}); len(got) != 1 {
				t.Errorf("%s: endpoint dropped, so the value read was not %v", raw, tc.want)
			}
		})
	}
}

func TestEndpointAttributeFilterParams(t *testing.T) {
	t.Parallel()
	thr := `"algorithm":{"type":"threshold","threshold":{"operator":"LessThan","value":1}}`
	tests := []struct {
		name, params, wantErr string
	}{
		{name: "minimal", params: `{"attribute":"a",` + thr + `}`},
		{name: "no parameters", params: ``, wantErr: "attribute: required|algorithm.type: required"},
		{name: "blank attribute", params: `{"attribute":" ",` + thr + `}`, wantErr: "attribute: required"},
		{name: "slash without producer", params: `{"attribute":"a/b",` + thr + `}`, wantErr: `attribute: "a/b" contains "/"`},
		{name: "slash with empty producer", params: `{"attribute":"a/b","producer":"",` + thr + `}`},
		{name: "slash with producer", params: `{"attribute":"a/b","producer":"x",` + thr + `}`},
		{name: "onMissing", params: `{"attribute":"a","onMissing":"pass",` + thr + `}`, wantErr: `onMissing: must be "Pass" or "Fail", got "pass"`},
		{name: "no algorithm type", params: `{"attribute":"a","algorithm":{"threshold":{"operator":"LessThan","value":1}}}`, wantErr: "algorithm.type: required"},
		{name: "unknown algorithm type", params: `{"attribute":"a","algorithm":{"type":"top"}}`, wantErr: `algorithm.type: must be threshold, range, topK or percentile, got "top"`},
		{name: "threshold without settings", params: `{"attribute":"a","algorithm":{"type":"threshold"}}`,
			wantErr: `algorithm.threshold.operator: must be|algorithm.threshold.value: required`},
		{name: "threshold operator", params: `{"attribute":"a","algorithm":{"type":"threshold","threshold":{"operator":"<","value":1}}}`,
			wantErr: `algorithm.threshold.operator: must be LessThan, LessThanOrEqual, GreaterThan, GreaterThanOrEqual, Equal or NotEqual, got "<"`},
		{name: "threshold value missing", params: `{"attribute":"a","algorithm":{"type":"threshold","threshold":{"operator":"Equal"}}}`,
			wantErr: "algorithm.threshold.value: required"},
		{name: "threshold value zero", params: `{"attribute":"a","algorithm":{"type":"threshold","threshold":{"operator":"Equal","value":0}}}`},
		{name: "range bounds missing", params: `{"attribute":"a","algorithm":{"type":"range","range":{}}}`,
			wantErr: "algorithm.range.min: required|algorithm.range.max: required"},
		{name: "range inverted", params: `{"attribute":"a","algorithm":{"type":"range","range":{"min":2,"max":1}}}`,
			wantErr: "algorithm.range: min 2 must be <= max 1"},
		{name: "topK missing", params: `{"attribute":"a","algorithm":{"type":"topK"}}`, wantErr: "algorithm.topK.k: required"},
		{name: "topK zero", params: `{"attribute":"a","algorithm":{"type":"topK","topK":{"k":0}}}`, wantErr: "algorithm.topK.k: must be >= 1, got 0"},
		{name: "topK fractional", params: `{"attribute":"a","algorithm":{"type":"topK","topK":{"k":1.5}}}`, wantErr: "parameters:|algorithm.topK.k"},
		{name: "percentile missing", params: `{"attribute":"a","algorithm":{"type":"percentile","percentile":{"higherIsBetter":false}}}`,
			wantErr: "algorithm.percentile.percentile: required"},
		{name: "percentile above 100", params: `{"attribute":"a","algorithm":{"type":"percentile","percentile":{"percentile":100.5}}}`,
			wantErr: "algorithm.percentile.percentile: must be in [0, 100], got 100.5"},
		{name: "percentile negative", params: `{"attribute":"a","algorithm":{"type":"percentile","percentile":{"percentile":-1}}}`,
			wantErr: "algorithm.percentile.percentile: must be in [0, 100], got -1"},
		{name: "settings of another type", params: `{"attribute":"a","algorithm":{"type":"threshold","threshold":{"operator":"Equal","value":1},"topK":{"k":1},"range":{}}}`,
			wantErr: `algorithm.range: set, but algorithm.type is "threshold"|algorithm.topK: set, but algorithm.type is "threshold"`},
		{name: "unknown field", params: `{"attribute":"a","algorithm":{"type":"range","range":{"min":0,"max":1,"mid":0.5}}}`, wantErr: `unknown field "mid"`},
		{name: "unknown top-level field", params: `{"attributeKey":"a",` + thr + `}`, wantErr: `unknown field "attributeKey"`},
		{name: "all problems reported", params: `{"attribute":"a/b","onMissing":"Drop","algorithm":{"type":"range","range":{"min":1},"percentile":{}}}`,
			wantErr: `attribute:|onMissing:|algorithm.range.max: required|algorithm.percentile: set`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := EndpointAttributeFactory("f", []byte(tc.params), nil)
			wantErr(t, err, tc.wantErr)
			if err != nil && p != nil {
				t.Errorf("factory returned plugin %v with error", p)
			}
		})
	}
	if _, err := NewEndpointAttribute("f", EndpointAttributeParams{}); err == nil {
		t.Error("zero params accepted by the constructor")
	}
}

// TestEndpointAttributeFilterLLMDConfig loads the parameters of llm-d's
// documented example through the factory.
func TestEndpointAttributeFilterLLMDConfig(t *testing.T) {
	t.Parallel()
	raw, err := yaml.YAMLToJSON([]byte(`
attribute: "GPUUtilization"
producer: "dcgm-extractor"
onMissing: "Pass"
fallbackOnEmpty: true
algorithm: {type: "threshold", threshold: {operator: "LessThanOrEqual", value: 0.90}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := EndpointAttributeRegistration().Factory("gpu-filter", raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := p.(*EndpointAttribute)
	if diff := cmp.Diff("gpu-filter/endpoint-attribute-filter", f.TypedName().String()); diff != "" {
		t.Errorf("name (-want +got):\n%s", diff)
	}
	key := endpoint.AttributeKey("GPUUtilization", "dcgm-extractor")
	eps := attrEPs(t, key, "idle:0.1", "edge:0.9", "hot:0.95", "unknown:-")
	if diff := cmp.Diff([]string{"idle", "edge", "unknown"}, names(f.Filter(ctx, plugintest.State(1), nil, eps))); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	hot := attrEPs(t, key, "hot:0.95", "hotter:0.99")
	if diff := cmp.Diff([]string{"hot", "hotter"}, names(f.Filter(ctx, plugintest.State(1), nil, hot))); diff != "" {
		t.Errorf("all hot, fallbackOnEmpty (-want +got):\n%s", diff)
	}
}

func TestEndpointAttributeFilterConformance(t *testing.T) {
	t.Parallel()
	for _, params := range []string{
		`{"attribute":"u","algorithm":{"type":"threshold","threshold":{"operator":"LessThan","value":1}}}`,
		`{"attribute":"u","onMissing":"Fail","algorithm":{"type":"range","range":{"min":0,"max":1}}}`,
		`{"attribute":"u","onMissing":"Fail","fallbackOnEmpty":true,"algorithm":{"type":"topK","topK":{"k":3}}}`,
		`{"attribute":"u","algorithm":{"type":"percentile","percentile":{"percentile":90}}}`,
	} {
		p, err := EndpointAttributeFactory("f", []byte(params), nil)
		if err != nil {
			t.Fatal(err)
		}
		plugintest.Filter(t, p.(*EndpointAttribute), plugintest.Request("m", 100))
	}
}

// attrBenchEndpoints returns n endpoints with GPU utilizations under the
// dcgm key, one in ten without.
func attrBenchEndpoints(tb testing.TB, n int) []*endpoint.Endpoint {
	specs := make([]string, n)
	for i := range specs {
		specs[i] = fmt.Sprintf("e%d:%v", i, float64((i*7919)%1000)/1000)
		if i%10 == 9 {
			specs[i] = fmt.Sprintf("e%d:-", i)
		}
	}
	return attrEPs(tb, endpoint.AttributeKey("g", "dcgm-extractor"), specs...)
}

var attrBenchAlgorithms = []struct{ name, algorithm string }{
	{"threshold", `{"type":"threshold","threshold":{"operator":"LessThanOrEqual","value":0.9}}`},
	{"topK", `{"type":"topK","topK":{"k":10}}`},
	{"percentile", `{"type":"percentile","percentile":{"percentile":75,"higherIsBetter":false}}`},
}

func attrBenchFilter(tb testing.TB, algorithm string) *EndpointAttribute {
	p, err := EndpointAttributeFactory("f", []byte(`{"attribute":"g","producer":"dcgm-extractor","algorithm":`+algorithm+`}`), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p.(*EndpointAttribute)
}

// TestEndpointAttributeFilterAllocs: per request, the result slice is the
// only allocation.
func TestEndpointAttributeFilterAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	eps := attrBenchEndpoints(t, 1000)
	state := plugintest.State(1)
	for _, a := range attrBenchAlgorithms {
		f := attrBenchFilter(t, a.algorithm)
		f.Filter(ctx, state, nil, eps) // fills the pool
		if got := testing.AllocsPerRun(50, func() { f.Filter(ctx, state, nil, eps) }); got > 1 {
			t.Errorf("%s: %v allocations per Filter, want at most 1", a.name, got)
		}
	}
}

func BenchmarkEndpointAttributeFilter(b *testing.B) {
	state := plugintest.State(1)
	for _, n := range []int{10, 100, 1000} {
		eps := attrBenchEndpoints(b, n)
		for _, a := range attrBenchAlgorithms {
			f := attrBenchFilter(b, a.algorithm)
			b.Run(fmt.Sprintf("%s/endpoints=%d", a.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f.Filter(ctx, state, nil, eps)
				}
			})
		}
	}
}
