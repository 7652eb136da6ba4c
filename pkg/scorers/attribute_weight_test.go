package scorers

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/labelattr"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// awLabelled returns one endpoint per value of label gpu; "-" leaves the
// label out.
func awLabelled(values ...string) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, len(values))
	for i, v := range values {
		labels := map[string]string{"app": "vllm"}
		if v != "-" {
			labels["gpu"] = v
		}
		out[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprintf("ep-%d", i), Address: fmt.Sprintf("10.9.0.%d", i+1), Port: 8000, Labels: labels})
	}
	return out
}

// awLabels is a label-producer named endpoint-labels publishing label gpu
// as the string gpu.product and label mem as the number mem.
func awLabels(t testing.TB) *labelattr.Producer {
	t.Helper()
	x, err := labelattr.NewProducer("endpoint-labels", labelattr.ProducerParams{Labels: []labelattr.Mapping{
		{Label: "gpu", AttributeKey: "gpu.product"}, {Label: "mem", AttributeKey: "mem", ValueType: labelattr.ValueNumber},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// awLog collects what a logger writes.
type awLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *awLog) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{})
}

func (l *awLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// awResolved builds the scorer from raw and resolves it among plugins,
// returning what it logged.
func awResolved(t *testing.T, raw string, plugins ...scheduler.Plugin) (*AttributeWeight, string, error) {
	t.Helper()
	s := mustBuild[*AttributeWeight](t, AttributeWeightRegistration(), raw, nil)
	var log awLog
	h := (&scheduler.Handle{Log: log.logger()}).WithPlugins(append(plugins, s)...)
	err := s.Resolve(h)
	return s, log.String(), err
}

func TestAttributeWeightScores(t *testing.T) {
	t.Parallel()
	tiers := `"weights":{"NVIDIA-H100":4,"NVIDIA-A100":2,"NVIDIA-L40S":1}`
	tests := []struct {
		name, params string
		values       []string
		want         []float64
	}{
		{name: "weight over the largest", params: tiers, values: []string{"NVIDIA-H100", "NVIDIA-A100", "NVIDIA-L40S"}, want: []float64{1, 0.5, 0.25}},
		{name: "missing and unlisted get the lowest tier", params: tiers, values: []string{"-", "NVIDIA-T4", "NVIDIA-H100", ""}, want: []float64{0.25, 0.25, 1, 0.25}},
		{name: "values match exactly", params: tiers, values: []string{"nvidia-h100", "NVIDIA-H100 "}, want: []float64{0.25, 0.25}},
		{name: "one weight", params: `"weights":{"a":7}`, values: []string{"a", "b", "-"}, want: []float64{1, 1, 1}},
		{name: "fractional weights", params: `"weights":{"a":0.3,"b":0.6}`, values: []string{"a", "b", "-"}, want: []float64{0.5, 1, 0.5}},
		{name: "equal weights", params: `"weights":{"a":2,"b":2}`, values: []string{"a", "b", "c"}, want: []float64{1, 1, 1}},
		{name: "no endpoints", params: tiers, want: []float64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, log, err := awResolved(t, `{"attributeKey":"gpu.product","producer":"endpoint-labels",`+tc.params+`}`, awLabels(t))
			if err != nil || log != "" {
				t.Fatalf("resolve: %v, logged %q", err, log)
			}
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, awLabelled(tc.values...)), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAttributeWeightProducer: how the producer is found, and that when
// nothing publishes the attribute a warning is logged and every endpoint
// gets the lowest weight.
func TestAttributeWeightProducer(t *testing.T) {
	t.Parallel()
	weights := `"weights":{"NVIDIA-H100":2,"NVIDIA-A100":1}`
	other, _ := labelattr.NewProducer("other-labels", labelattr.ProducerParams{Label: "x", AttributeKey: "x"})
	tests := []struct {
		name, producer string // producer: `,"producer":...` or ""
		plugins        []scheduler.Plugin
		wantScores     []float64
		wantLog        string // fragment; "": nothing logged
		wantErr        string
	}{
		{name: "named", producer: `,"producer":"endpoint-labels"`, plugins: []scheduler.Plugin{awLabels(t)}, wantScores: []float64{1, 0.5}},
		{name: "absent: the only label-producer (older form)", plugins: []scheduler.Plugin{scPlugin{scheduler.TypedName{Type: "queue-scorer", Name: "q"}}, awLabels(t)}, wantScores: []float64{1, 0.5}},
		{name: "absent, no label-producer", wantErr: `producer: required: the config has no label-producer (or other plugin deriving endpoint attributes) to read "gpu.product" from`},
		{name: "absent, two derivers", plugins: []scheduler.Plugin{awLabels(t), other}, wantErr: "producer: required: the config has 2 plugins deriving endpoint attributes (endpoint-labels, other-labels)"},
		{name: "names a missing plugin", producer: `,"producer":"labels"`, plugins: []scheduler.Plugin{awLabels(t)}, wantScores: []float64{0.5, 0.5},
			wantLog: `string attribute \"gpu.product\" of producer \"labels\": no configured plugin publishes it`},
		{name: "empty namespace", producer: `,"producer":""`, plugins: []scheduler.Plugin{awLabels(t)}, wantScores: []float64{0.5, 0.5}, wantLog: `of producer \"\": no configured plugin publishes it`},
		{name: "names a producer without the key", producer: `,"producer":"other-labels"`, plugins: []scheduler.Plugin{awLabels(t), other}, wantScores: []float64{0.5, 0.5},
			wantLog: `no attribute \"gpu.product\"; it publishes x`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, log, err := awResolved(t, `{"attributeKey":"gpu.product"`+tc.producer+`,`+weights+`}`, tc.plugins...)
			checkErr(t, err, tc.wantErr)
			if err != nil {
				return
			}
			if tc.wantLog == "" && log != "" || !strings.Contains(log, tc.wantLog) {
				t.Errorf("logged %q, want it to contain %q", log, tc.wantLog)
			}
			if tc.wantLog != "" && !strings.Contains(log, "warning: every endpoint gets the lowest weight") {
				t.Errorf("logged %q, want the warning", log)
			}
			if diff := cmp.Diff(tc.wantScores, s.Score(scCtx, scState(), nil, awLabelled("NVIDIA-H100", "NVIDIA-A100")), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAttributeWeightReadsNoNumbers: a label published as a number is not
// a string attribute, and the reverse holds for endpoint-attribute-scorer.
func TestAttributeWeightReadsNoNumbers(t *testing.T) {
	t.Parallel()
	_, log, err := awResolved(t, `{"attributeKey":"mem","producer":"endpoint-labels","weights":{"80":1}}`, awLabels(t))
	if err != nil || !strings.Contains(log, `has valueType number, not string`) {
		t.Errorf("resolve: %v, logged %q; want a warning that mem is a number", err, log)
	}
	num := mustBuild[*EndpointAttribute](t, EndpointAttributeRegistration(), `{"attributeKey":"gpu.product","producer":"endpoint-labels","algorithm":{"type":"linear_higher_is_better"}}`, nil)
	err = num.Resolve((&scheduler.Handle{}).WithPlugins(awLabels(t), num))
	checkErr(t, err, `producer "endpoint-labels" (label-producer): attribute "gpu.product" (label "gpu") has valueType string, not number`)
}

// TestEndpointAttributeScorerReadsLabels: endpoint-attribute-scorer reads a
// numeric label through the label-producer its producer names.
func TestEndpointAttributeScorerReadsLabels(t *testing.T) {
	t.Parallel()
	s := mustBuild[*EndpointAttribute](t, EndpointAttributeRegistration(), `{"attributeKey":"mem","producer":"endpoint-labels","algorithm":{"type":"linear_higher_is_better"}}`, nil)
	if err := s.Resolve((&scheduler.Handle{}).WithPlugins(awLabels(t), s)); err != nil {
		t.Fatal(err)
	}
	eps := make([]*endpoint.Endpoint, 4)
	for i, mem := range []string{"40", "80", "", "n/a"} {
		labels := map[string]string{"mem": mem}
		if mem == "" {
			labels = nil
		}
		eps[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprint(i), Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8000, Labels: labels})
	}
	eps[2].SetAttributes(endpoint.Attributes{endpoint.AttributeKey("mem", "endpoint-labels"): 100}) // derived, not stored: ignored
	if diff := cmp.Diff([]float64{0, 1, 0, 0}, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}
}

func TestAttributeWeightParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params, wantErr string
	}{
		{name: "valid", params: `{"attributeKey":"g","producer":"p","weights":{"a":1}}`},
		{name: "valid without producer", params: `{"attributeKey":"g","weights":{"a":1}}`},
		{name: "no attributeKey", params: `{"weights":{"a":1}}`, wantErr: "attributeKey: required"},
		{name: "blank attributeKey", params: `{"attributeKey":" ","weights":{"a":1}}`, wantErr: "attributeKey: required"},
		{name: "no weights", params: `{"attributeKey":"g"}`, wantErr: "weights: required"},
		{name: "empty weights", params: `{"attributeKey":"g","weights":{}}`, wantErr: "weights: required"},
		{name: "zero weight", params: `{"attributeKey":"g","weights":{"a":1,"b":0}}`, wantErr: `weights["b"]: must be a finite number > 0, got 0`},
		{name: "negative weight", params: `{"attributeKey":"g","weights":{"a":-1}}`, wantErr: `weights["a"]: must be a finite number > 0, got -1`},
		{name: "normalises to zero", params: `{"attributeKey":"g","weights":{"a":1e-320,"b":1e300}}`, wantErr: `weights["a"]: 1e-320 normalises to 0 beside the largest weight 1e+300`},
		{name: "every problem at once", params: `{"weights":{"a":-2,"b":0}}`, wantErr: `attributeKey: required|weights["a"]|weights["b"]`},
		{name: "unknown field", params: `{"attributeKey":"g","weights":{"a":1},"default":1}`, wantErr: `unknown field "default"`},
		{name: "weight not a number", params: `{"attributeKey":"g","weights":{"a":"high"}}`, wantErr: "parameters:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := AttributeWeightFactory("x", json.RawMessage(tc.params), nil)
			checkErr(t, err, tc.wantErr)
			if err != nil && p != nil {
				t.Errorf("factory returned plugin %v with error", p)
			}
		})
	}
	for _, w := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} { // only Go callers can give these
		_, err := NewAttributeWeight("x", AttributeWeightParams{AttributeKey: "g", Weights: map[string]float64{"a": 1, "b": w}})
		checkErr(t, err, fmt.Sprintf(`weights["b"]: must be a finite number > 0, got %v`, w))
	}
}

func TestAttributeWeightConformance(t *testing.T) {
	t.Parallel()
	s, _, err := awResolved(t, `{"attributeKey":"gpu.product","producer":"endpoint-labels","weights":{"a":3,"b":1}}`, awLabels(t))
	if err != nil {
		t.Fatal(err)
	}
	plugintest.Scorer(t, s, plugintest.Request("m", 100))
}

// TestAttributeWeightAllocs: ScoreInto allocates nothing.
func TestAttributeWeightAllocs(t *testing.T) {
	s, _, err := awResolved(t, `{"attributeKey":"gpu.product","producer":"endpoint-labels","weights":{"NVIDIA-H100":2,"NVIDIA-A100":1}}`, awLabels(t))
	if err != nil {
		t.Fatal(err)
	}
	values := make([]string, 1000)
	for i := range values {
		values[i] = [...]string{"NVIDIA-H100", "NVIDIA-A100", "NVIDIA-T4", "-"}[i%4]
	}
	eps, out, state := awLabelled(values...), make([]float64, len(values)), scState()
	if got := testing.AllocsPerRun(20, func() { s.ScoreInto(scCtx, state, nil, eps, out) }); got != 0 {
		t.Errorf("%v allocations per ScoreInto, want 0", got)
	}
}
