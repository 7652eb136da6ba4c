package filters

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestLabelSelectorFilter(t *testing.T) {
	t.Parallel()
	eps := []*endpoint.Endpoint{
		ep("a", "10.0.0.1", map[string]string{"zone": "z1", "gpu": "h100"}, nil),
		ep("b", "10.0.0.2", map[string]string{"zone": "z2", "gpu": "a100"}, nil),
		ep("c", "10.0.0.3", map[string]string{"zone": "z1"}, nil),
		ep("d", "10.0.0.4", nil, nil),
	}
	tests := []struct {
		name   string
		params string
		want   []string
	}{
		{name: "matchLabels", params: `{"matchLabels":{"zone":"z1"}}`, want: []string{"a", "c"}},
		{name: "matchLabels all must hold", params: `{"matchLabels":{"zone":"z1","gpu":"h100"}}`, want: []string{"a"}},
		{name: "In", params: `{"matchExpressions":[{"key":"gpu","operator":"In","values":["a100","h100"]}]}`, want: []string{"a", "b"}},
		{name: "NotIn keeps unlabeled", params: `{"matchExpressions":[{"key":"gpu","operator":"NotIn","values":["h100"]}]}`, want: []string{"b", "c", "d"}},
		{name: "Exists", params: `{"matchExpressions":[{"key":"gpu","operator":"Exists"}]}`, want: []string{"a", "b"}},
		{name: "DoesNotExist", params: `{"matchExpressions":[{"key":"gpu","operator":"DoesNotExist"}]}`, want: []string{"c", "d"}},
		{name: "labels and expressions combine", params: `{"matchLabels":{"zone":"z1"},"matchExpressions":[{"key":"gpu","operator":"Exists"}]}`, want: []string{"a"}},
		{name: "nothing matches", params: `{"matchLabels":{"zone":"z9"}}`, want: []string{}},
		{name: "empty value matches empty label only", params: `{"matchLabels":{"gpu":""}}`, want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := LabelSelectorFactory("ls", []byte(tc.params), nil)
			if err != nil {
				t.Fatalf("factory: %v", err)
			}
			got := p.(*LabelSelector).Filter(ctx, plugintest.State(1), nil, eps)
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabelSelectorKeepsInputWhenAllMatch(t *testing.T) {
	t.Parallel()
	f, err := NewLabelSelector("ls", LabelSelectorParams{MatchLabels: map[string]string{"app": "vllm"}})
	if err != nil {
		t.Fatal(err)
	}
	eps := plugintest.Endpoints(10, 1)
	if got := f.Filter(ctx, plugintest.State(1), nil, eps); &got[0] != &eps[0] || len(got) != len(eps) {
		t.Error("filter keeping everything did not return its input slice")
	}
}

func TestLabelSelectorParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params, wantErr string
	}{
		{name: "empty", params: `{}`, wantErr: "at least one requirement"},
		{name: "no params", params: ``, wantErr: "at least one requirement"},
		{name: "unknown field", params: `{"matchLabel":{"a":"b"}}`, wantErr: `unknown field "matchLabel"`},
		{name: "bad operator", params: `{"matchExpressions":[{"key":"a","operator":"Gt","values":["1"]}]}`, wantErr: `matchExpressions[0]: operator: must be one of In, NotIn, Exists, DoesNotExist, got "Gt"`},
		{name: "lower-case operator", params: `{"matchExpressions":[{"key":"a","operator":"in","values":["1"]}]}`, wantErr: `got "in"`},
		{name: "In without values", params: `{"matchExpressions":[{"key":"a","operator":"In"}]}`, wantErr: "matchExpressions[0]: values: must not be empty for operator In"},
		{name: "Exists with values", params: `{"matchExpressions":[{"key":"a","operator":"Exists","values":["x"]}]}`, wantErr: "values: must be empty for operator Exists"},
		{name: "bad key", params: `{"matchExpressions":[{"key":"a b","operator":"Exists"}]}`, wantErr: `matchExpressions[0]: key "a b"`},
		{name: "empty key", params: `{"matchExpressions":[{"operator":"Exists"}]}`, wantErr: `key ""`},
		{name: "bad label value", params: `{"matchLabels":{"zone":"not valid!"}}`, wantErr: `matchLabels["zone"]`},
		{name: "all problems reported", params: `{"matchLabels":{"b@d":"x"},"matchExpressions":[{"key":"a","operator":"?"},{"key":"b","operator":"In"}]}`,
			wantErr: `matchLabels["b@d"]|matchExpressions[0]: operator|matchExpressions[1]: values`},
		{name: "wrong type", params: `{"matchLabels":["a"]}`, wantErr: "parameters:"},
		{name: "valid", params: `{"matchLabels":{"llm-d.ai/role":"prefill"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := LabelSelectorFactory("ls", []byte(tc.params), nil)
			wantErr(t, err, tc.wantErr)
			if err != nil && p != nil {
				t.Errorf("factory returned plugin %v with error", p)
			}
		})
	}
}

func TestLabelSelectorConformance(t *testing.T) {
	t.Parallel()
	f, err := NewLabelSelector("ls", LabelSelectorParams{MatchExpressions: []LabelRequirement{{Key: "zone", Operator: "In", Values: []string{"z0", "z2"}}}})
	if err != nil {
		t.Fatal(err)
	}
	plugintest.Filter(t, f, plugintest.Request("m", 100))
}

func BenchmarkLabelSelector(b *testing.B) {
	f, err := NewLabelSelector("ls", LabelSelectorParams{
		MatchLabels:      map[string]string{"app": "vllm"},
		MatchExpressions: []LabelRequirement{{Key: "zone", Operator: "NotIn", Values: []string{"z1"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	benchFilter(b, f, plugintest.Request("m", 100))
}
