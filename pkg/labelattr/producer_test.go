package labelattr

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

func build(t *testing.T, raw string) (*Producer, error) {
	t.Helper()
	p, err := ProducerFactory("endpoint-labels", json.RawMessage(raw), nil)
	if err != nil {
		return nil, err
	}
	return p.(*Producer), nil
}

func TestProducerParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		wantErr   []string // fragments; none: valid
	}{
		{name: "newer form", raw: `{"labels":[{"label":"topology.kubernetes.io/region","attributeKey":"region"},{"label":"nvidia.com/gpu.product","attributeKey":"gpu.product"}]}`},
		{name: "newer form with a number", raw: `{"labels":[{"label":"mem","attributeKey":"mem","valueType":"number"}]}`},
		{name: "one label as two attributes", raw: `{"labels":[{"label":"g","attributeKey":"a"},{"label":"g","attributeKey":"b","valueType":"number"}]}`},
		{name: "older form", raw: `{"label":"nvidia.com/gpu.product","attributeKey":"gpu.product","valueType":"string"}`},
		{name: "older form, no valueType", raw: `{"label":"g","attributeKey":"g"}`},
		{name: "older form, number", raw: `{"label":"g","attributeKey":"g","valueType":"number"}`},
		{name: "nothing", raw: `{}`, wantErr: []string{"labels: required"}},
		{name: "empty list", raw: `{"labels":[]}`, wantErr: []string{"labels: required"}},
		{name: "both forms", raw: `{"labels":[{"label":"a","attributeKey":"a"}],"label":"b","attributeKey":"b"}`, wantErr: []string{"labels: give labels or the older label"}},
		{name: "duplicate attributeKey", raw: `{"labels":[{"label":"a","attributeKey":"k"},{"label":"b","attributeKey":"k"}]}`,
			wantErr: []string{`labels[1].attributeKey: "k" is labels[0]'s already`}},
		{name: "entry without label or key", raw: `{"labels":[{"label":"a","attributeKey":"a"},{}]}`,
			wantErr: []string{"labels[1].label: required", "labels[1].attributeKey: required"}},
		{name: "bad valueType", raw: `{"labels":[{"label":"a","attributeKey":"a","valueType":"int"}]}`,
			wantErr: []string{`labels[0].valueType: must be "string" or "number", got "int"`}},
		{name: "older form without label", raw: `{"attributeKey":"g","valueType":"number"}`, wantErr: []string{"label: required"}},
		{name: "older form without attributeKey", raw: `{"label":"g"}`, wantErr: []string{"attributeKey: required"}},
		{name: "older form, bad valueType", raw: `{"label":"g","attributeKey":"g","valueType":"float"}`, wantErr: []string{`valueType: must be "string" or "number", got "float"`}},
		{name: "unknown field", raw: `{"label":"g","attributeKey":"g","type":"string"}`, wantErr: []string{`unknown field "type"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := build(t, tc.raw)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			for _, frag := range tc.wantErr {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q does not mention %q", err, frag)
				}
			}
		})
	}
}

// labelled returns an endpoint with labels.
func labelled(labels map[string]string) *endpoint.Endpoint {
	return endpoint.New(endpoint.Spec{Name: "e", Address: "10.0.0.1", Port: 8000, Labels: labels})
}

func TestProducerReads(t *testing.T) {
	t.Parallel()
	x, err := build(t, `{"labels":[{"label":"gpu","attributeKey":"gpu.product"},{"label":"mem","attributeKey":"mem","valueType":"number"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	str, err := x.StringAttribute("gpu.product")
	if err != nil {
		t.Fatal(err)
	}
	num, err := x.NumberAttribute("mem")
	if err != nil {
		t.Fatal(err)
	}
	type read struct {
		Str    string
		HasStr bool
		Num    float64
		HasNum bool
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   read
	}{
		{name: "both labels", labels: map[string]string{"gpu": "NVIDIA-H100", "mem": "80"}, want: read{"NVIDIA-H100", true, 80, true}},
		{name: "no labels", want: read{}},
		{name: "empty string value is a value", labels: map[string]string{"gpu": ""}, want: read{"", true, 0, false}},
		{name: "decimal and spaces", labels: map[string]string{"mem": " 40.5 "}, want: read{Num: 40.5, HasNum: true}},
		{name: "negative and exponent", labels: map[string]string{"mem": "-1e3"}, want: read{Num: -1000, HasNum: true}},
		{name: "not a number", labels: map[string]string{"mem": "80Gi"}, want: read{}},
		{name: "NaN is missing", labels: map[string]string{"mem": "NaN"}, want: read{}},
		{name: "Inf is missing", labels: map[string]string{"mem": "+Inf"}, want: read{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := labelled(tc.labels)
			var got read
			got.Str, got.HasStr = str(e)
			got.Num, got.HasNum = num(e)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("read (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProducerRefusesWrongKinds(t *testing.T) {
	t.Parallel()
	x, err := build(t, `{"labels":[{"label":"gpu","attributeKey":"gpu.product"},{"label":"mem","attributeKey":"mem","valueType":"number"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"string mem", `attribute "mem" (label "mem") has valueType number, not string`, second(x.StringAttribute("mem"))},
		{"number gpu.product", `attribute "gpu.product" (label "gpu") has valueType string, not number`, second(x.NumberAttribute("gpu.product"))},
		{"unknown", `no attribute "zone"; it publishes gpu.product, mem`, second(x.StringAttribute("zone"))},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %q", tc.name, tc.err, tc.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestProducerFollowsLabelChanges: the datastore replaces an endpoint whose
// pod is relabelled, and a reader built once sees the new value at once;
// removing the label removes the attribute.
func TestProducerFollowsLabelChanges(t *testing.T) {
	t.Parallel()
	x, err := build(t, `{"label":"nvidia.com/gpu.product","attributeKey":"gpu.product","valueType":"string"}`)
	if err != nil {
		t.Fatal(err)
	}
	read, err := x.StringAttribute("gpu.product")
	if err != nil {
		t.Fatal(err)
	}
	store := datastore.New()
	spec := endpoint.Spec{Name: "vllm-0", Address: "10.0.0.1", Port: 8000}
	for _, tc := range []struct {
		labels map[string]string
		want   string
		has    bool
	}{
		{map[string]string{"nvidia.com/gpu.product": "NVIDIA-A100"}, "NVIDIA-A100", true},
		{map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100"}, "NVIDIA-H100", true},
		{map[string]string{"app": "vllm"}, "", false},
		{map[string]string{"nvidia.com/gpu.product": "NVIDIA-L40S"}, "NVIDIA-L40S", true},
	} {
		spec.Labels = tc.labels
		store.Upsert("pods", spec)
		e, _ := store.Get("vllm-0")
		if got, has := read(e); got != tc.want || has != tc.has {
			t.Errorf("labels %v: read %q, %v; want %q, %v", tc.labels, got, has, tc.want, tc.has)
		}
	}
}

// TestOneProducerPerConfig: the second label-producer listed is refused,
// the first is not.
func TestOneProducerPerConfig(t *testing.T) {
	t.Parallel()
	first, _ := NewProducer("a", ProducerParams{Label: "x", AttributeKey: "x"})
	second, _ := NewProducer("b", ProducerParams{Label: "y", AttributeKey: "y"})
	h := (&scheduler.Handle{}).WithPlugins(first, second)
	if err := first.Resolve(h); err != nil {
		t.Errorf("first: %v", err)
	}
	want := `only one label-producer per config, and "a" is one: list every label in its labels`
	if err := second.Resolve(h); err == nil || err.Error() != want {
		t.Errorf("second: err = %v, want %q", err, want)
	}
	if err := first.Resolve((&scheduler.Handle{}).WithPlugins(first)); err != nil {
		t.Errorf("alone: %v", err)
	}
}
