package scorers

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// scAttrEndpoints returns one endpoint per value spec, the value stored
// under key; "-" leaves the attribute out, and NaN and ±Inf parse as such.
func scAttrEndpoints(t testing.TB, key string, specs ...string) []*endpoint.Endpoint {
	t.Helper()
	eps := scEndpoints(len(specs), nil)
	for i, s := range specs {
		if s == "-" {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("spec %q: %v", s, err)
		}
		eps[i].SetAttributes(endpoint.Attributes{key: v})
	}
	return eps
}

func TestEndpointAttributeScorer(t *testing.T) {
	t.Parallel()
	lower := `"type":"linear_lower_is_better"`
	higher := `"type":"linear_higher_is_better"`
	fixed := `,"normalization":{"fixedRange":{"min":0,"max":1}}`
	tests := []struct {
		name, algorithm string
		values          []string
		want            []float64
	}{
		{name: "adaptive higher", algorithm: higher, values: []string{"0", "5", "10"}, want: []float64{0, 0.5, 1}},
		{name: "adaptive lower", algorithm: lower, values: []string{"0", "5", "10"}, want: []float64{1, 0.5, 0}},
		{name: "adaptive negative values", algorithm: higher, values: []string{"-4", "-1", "-2"}, want: []float64{0, 1, 2.0 / 3}},
		{name: "adaptive given as {}", algorithm: lower + `,"normalization":{"adaptiveRange":{}}`, values: []string{"2", "6", "3"}, want: []float64{1, 0, 0.75}},
		{name: "equal values all score 1, higher", algorithm: higher, values: []string{"3", "3"}, want: []float64{1, 1}},
		{name: "equal values all score 1, lower", algorithm: lower, values: []string{"3", "-", "3"}, want: []float64{1, 0, 1}},
		{name: "a single value scores 1", algorithm: lower, values: []string{"-", "7"}, want: []float64{0, 1}},
		{name: "missing scores 0 and is out of the range, higher", algorithm: higher, values: []string{"2", "-", "4"}, want: []float64{0, 0, 1}},
		{name: "missing scores 0 and is out of the range, lower", algorithm: lower, values: []string{"2", "-", "4"}, want: []float64{1, 0, 0}},
		{name: "all missing", algorithm: higher, values: []string{"-", "-"}, want: []float64{0, 0}},
		{name: "NaN and infinities are missing", algorithm: higher, values: []string{"NaN", "1", "+Inf", "3", "-Inf"}, want: []float64{0, 0, 0, 1, 0}},
		{name: "fixed higher clamps", algorithm: higher + fixed, values: []string{"-0.5", "0.25", "1.5", "-"}, want: []float64{0, 0.25, 1, 0}},
		{name: "fixed lower clamps", algorithm: lower + fixed, values: []string{"-0.5", "0.25", "1.5", "-"}, want: []float64{1, 0.75, 0, 0}},
		{name: "fixed equal values keep their place", algorithm: higher + fixed, values: []string{"0.5", "0.5"}, want: []float64{0.5, 0.5}},
		{name: "fixed wide range", algorithm: higher + `,"normalization":{"fixedRange":{"min":-100,"max":300}}`, values: []string{"0", "100"}, want: []float64{0.25, 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := `{"attributeKey":"u","producer":"p","algorithm":{` + tc.algorithm + `}}`
			s := mustBuild[*EndpointAttribute](t, EndpointAttributeRegistration(), raw, nil)
			eps := scAttrEndpoints(t, "u/p", tc.values...)
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndpointAttributeScorerProducer(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	eps[0].SetAttributes(endpoint.Attributes{"g/core-metrics-extractor": 1, "g/dcgm-extractor": 0, "g": 1, "a/b": 1})
	eps[1].SetAttributes(endpoint.Attributes{"g/core-metrics-extractor": 0, "g/dcgm-extractor": 1, "g": 0, "a/b": 0})
	tests := []struct {
		name, params string
		want         []float64
	}{
		{name: "absent: the core metrics extractor", params: `"attributeKey":"g"`, want: []float64{1, 0}},
		{name: "given", params: `"attributeKey":"g","producer":"dcgm-extractor"`, want: []float64{0, 1}},
		{name: "empty: the name alone", params: `"attributeKey":"g","producer":""`, want: []float64{1, 0}},
		{name: "a slash with an empty producer reads the key as written", params: `"attributeKey":"a/b","producer":""`, want: []float64{1, 0}},
		{name: "an unknown producer reads nothing", params: `"attributeKey":"g","producer":"nobody"`, want: []float64{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := `{` + tc.params + `,"algorithm":{"type":"linear_higher_is_better"}}`
			s := mustBuild[*EndpointAttribute](t, EndpointAttributeRegistration(), raw, nil)
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndpointAttributeScorerParams(t *testing.T) {
	t.Parallel()
	alg := `"algorithm":{"type":"linear_lower_is_better"}`
	tests := []struct {
		name, params, wantErr string
	}{
		{name: "minimal", params: `{"attributeKey":"a",` + alg + `}`},
		{name: "source endpoint", params: `{"attributeKey":"a","source":"endpoint",` + alg + `}`},
		{name: "no parameters", params: ``, wantErr: "attributeKey: required|algorithm.type: required"},
		{name: "blank attributeKey", params: `{"attributeKey":"  ",` + alg + `}`, wantErr: "attributeKey: required"},
		{name: "slash without producer", params: `{"attributeKey":"a/b",` + alg + `}`, wantErr: `attributeKey: "a/b" contains "/"`},
		{name: "slash with empty producer", params: `{"attributeKey":"a/b","producer":"",` + alg + `}`},
		{name: "unknown algorithm type", params: `{"attributeKey":"a","algorithm":{"type":"linear"}}`,
			wantErr: `algorithm.type: must be linear_lower_is_better or linear_higher_is_better, got "linear"`},
		{name: "both ranges", params: `{"attributeKey":"a","algorithm":{"type":"linear_lower_is_better","normalization":{"adaptiveRange":{},"fixedRange":{"min":0,"max":1}}}}`,
			wantErr: "algorithm.normalization: give at most one of adaptiveRange and fixedRange"},
		{name: "fixed range bounds missing", params: `{"attributeKey":"a","algorithm":{"type":"linear_lower_is_better","normalization":{"fixedRange":{}}}}`,
			wantErr: "algorithm.normalization.fixedRange.min: required|algorithm.normalization.fixedRange.max: required"},
		{name: "fixed range empty", params: `{"attributeKey":"a","algorithm":{"type":"linear_lower_is_better","normalization":{"fixedRange":{"min":1,"max":1}}}}`,
			wantErr: "algorithm.normalization.fixedRange: min 1 must be < max 1"},
		{name: "adaptive range takes no settings", params: `{"attributeKey":"a","algorithm":{"type":"linear_lower_is_better","normalization":{"adaptiveRange":{"min":0}}}}`,
			wantErr: `unknown field "min"`},
		{name: "unknown normalization", params: `{"attributeKey":"a","algorithm":{"type":"linear_lower_is_better","normalization":{"type":"linear"}}}`,
			wantErr: `unknown field "type"`},
		{name: "source metadata", params: `{"attributeKey":"a","source":"metadata",` + alg + `}`,
			wantErr: "source: metadata (the request's dynamic metadata) is not supported: OpenEPP reads only endpoint attributes"},
		{name: "source unknown", params: `{"attributeKey":"a","source":"pod",` + alg + `}`, wantErr: `source: must be "endpoint", got "pod"`},
		{name: "filter's name for the key", params: `{"attribute":"a",` + alg + `}`, wantErr: `unknown field "attribute"`},
		{name: "all problems reported", params: `{"attributeKey":"a/b","source":"metadata","algorithm":{"type":"x","normalization":{"fixedRange":{"max":1}}}}`,
			wantErr: "attributeKey:|algorithm.type:|fixedRange.min: required|source:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := EndpointAttributeFactory("x", json.RawMessage(tc.params), nil)
			checkErr(t, err, tc.wantErr)
			if err != nil && p != nil {
				t.Errorf("factory returned plugin %v with error", p)
			}
		})
	}
}

// checkErr checks that err is nil when want is empty and otherwise
// mentions every |-separated fragment of want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", want)
	}
	for _, frag := range strings.Split(want, "|") {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("error %q does not mention %q", err, frag)
		}
	}
}

// TestEndpointAttributeScorerLLMDConfig loads the parameters of llm-d's
// documented example through the factory.
func TestEndpointAttributeScorerLLMDConfig(t *testing.T) {
	t.Parallel()
	raw, err := yaml.YAMLToJSON([]byte(`
attributeKey: "GPUUtilization"
producer: "dcgm-extractor"
algorithm: {type: "linear_lower_is_better", normalization: {fixedRange: {min: 0.0, max: 1.0}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := mustBuild[*EndpointAttribute](t, EndpointAttributeRegistration(), string(raw), nil)
	if diff := cmp.Diff(scheduler.TypedName{Type: EndpointAttributeType, Name: "x"}, s.TypedName()); diff != "" {
		t.Errorf("TypedName (-want +got):\n%s", diff)
	}
	eps := scAttrEndpoints(t, endpoint.AttributeKey("GPUUtilization", "dcgm-extractor"), "0.1", "0.9", "-", "1")
	if diff := cmp.Diff([]float64{0.9, 0.1, 0, 0}, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}
}

func TestMetricScorer(t *testing.T) {
	t.Parallel()
	key := endpoint.AttributeKey("queue_depth", "core-metrics-extractor")
	tests := []struct {
		name, params string
		values       []string
		want         []float64
	}{
		{name: "lower is better", params: `{"attributeKey":"queue_depth","normalization":{"direction":"lower_is_better"}}`,
			values: []string{"0", "5", "10"}, want: []float64{1, 0.5, 0}},
		{name: "higher is better, type given", params: `{"attributeKey":"queue_depth","normalization":{"type":"linear","direction":"higher_is_better"}}`,
			values: []string{"0", "5", "10"}, want: []float64{0, 0.5, 1}},
		{name: "equal values all score 1", params: `{"attributeKey":"queue_depth","normalization":{"direction":"lower_is_better"}}`,
			values: []string{"4", "4"}, want: []float64{1, 1}},
		{name: "missing scores 0 and is out of the range", params: `{"attributeKey":"queue_depth","normalization":{"direction":"higher_is_better"}}`,
			values: []string{"-", "1", "3", "2"}, want: []float64{0, 0, 1, 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*EndpointAttribute](t, MetricRegistration(), tc.params, nil)
			if diff := cmp.Diff(scheduler.TypedName{Type: MetricType, Name: "x"}, s.TypedName()); diff != "" {
				t.Errorf("TypedName (-want +got):\n%s", diff)
			}
			eps := scAttrEndpoints(t, key, tc.values...)
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
	// the name alone (another producer's, or producer-agnostic) is not read
	s := mustBuild[*EndpointAttribute](t, MetricRegistration(), `{"attributeKey":"q","normalization":{"direction":"higher_is_better"}}`, nil)
	eps := scAttrEndpoints(t, "q", "1", "2")
	if diff := cmp.Diff([]float64{0, 0}, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
		t.Errorf("producer-agnostic key (-want +got):\n%s", diff)
	}
}

func TestMetricScorerParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params, wantErr string
	}{
		{name: "slash allowed: the producer is fixed", params: `{"attributeKey":"a/b","normalization":{"direction":"lower_is_better"}}`},
		{name: "no parameters", params: ``, wantErr: "attributeKey: required|normalization.direction: required"},
		{name: "direction unknown", params: `{"attributeKey":"a","normalization":{"direction":"down"}}`,
			wantErr: `normalization.direction: must be lower_is_better or higher_is_better, got "down"`},
		{name: "type unknown", params: `{"attributeKey":"a","normalization":{"type":"log","direction":"lower_is_better"}}`,
			wantErr: `normalization.type: must be "linear", got "log"`},
		{name: "producer is not a parameter", params: `{"attributeKey":"a","producer":"x","normalization":{"direction":"lower_is_better"}}`,
			wantErr: `unknown field "producer"`},
		{name: "all problems reported", params: `{"attributeKey":"","normalization":{"type":"log"}}`,
			wantErr: "attributeKey: required|normalization.type:|normalization.direction: required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := MetricFactory("x", json.RawMessage(tc.params), nil)
			checkErr(t, err, tc.wantErr)
			if err != nil && p != nil {
				t.Errorf("factory returned plugin %v with error", p)
			}
		})
	}
}

func TestEndpointAttributeScorerConformance(t *testing.T) {
	t.Parallel()
	req := plugintest.Request("m", 100)
	for _, c := range []struct {
		reg scheduler.Registration
		raw string
	}{
		{EndpointAttributeRegistration(), `{"attributeKey":"u","algorithm":{"type":"linear_higher_is_better"}}`},
		{EndpointAttributeRegistration(), `{"attributeKey":"u","algorithm":{"type":"linear_lower_is_better","normalization":{"fixedRange":{"min":0,"max":1}}}}`},
		{MetricRegistration(), `{"attributeKey":"u","normalization":{"direction":"lower_is_better"}}`},
	} {
		plugintest.Scorer(t, mustBuild[*EndpointAttribute](t, c.reg, c.raw, nil), req)
	}
}

// scAttrBench returns n endpoints with GPU utilizations under the dcgm
// key, one in ten without, and the scorers to run over them.
func scAttrBench(tb testing.TB, n int) ([]*endpoint.Endpoint, map[string]*EndpointAttribute) {
	specs := make([]string, n)
	for i := range specs {
		specs[i] = fmt.Sprint(float64((i*7919)%1000) / 1000)
		if i%10 == 9 {
			specs[i] = "-"
		}
	}
	alg := func(norm string) string {
		return `{"attributeKey":"g","producer":"dcgm-extractor","algorithm":{"type":"linear_lower_is_better"` + norm + `}}`
	}
	return scAttrEndpoints(tb, endpoint.AttributeKey("g", "dcgm-extractor"), specs...), map[string]*EndpointAttribute{
		"adaptive": mustBuild[*EndpointAttribute](tb, EndpointAttributeRegistration(), alg(""), nil),
		"fixed":    mustBuild[*EndpointAttribute](tb, EndpointAttributeRegistration(), alg(`,"normalization":{"fixedRange":{"min":0,"max":1}}`), nil),
	}
}

// TestEndpointAttributeScorerAllocs: ScoreInto allocates nothing.
func TestEndpointAttributeScorerAllocs(t *testing.T) {
	eps, scorers := scAttrBench(t, 1000)
	out := make([]float64, len(eps))
	state := scState()
	for name, s := range scorers {
		if got := testing.AllocsPerRun(20, func() { s.ScoreInto(scCtx, state, nil, eps, out) }); got != 0 {
			t.Errorf("%s: %v allocations per ScoreInto, want 0", name, got)
		}
	}
}

func BenchmarkEndpointAttributeScorer(b *testing.B) {
	state := scState()
	for _, n := range []int{10, 100, 1000} {
		eps, scorers := scAttrBench(b, n)
		out := make([]float64, n)
		for _, name := range []string{"adaptive", "fixed"} {
			s := scorers[name]
			b.Run(fmt.Sprintf("%s/endpoints=%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s.ScoreInto(scCtx, state, nil, eps, out)
				}
			})
		}
	}
}
