package filters

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestByLabel(t *testing.T) {
	t.Parallel()
	const role = "inference-role"
	eps := []*endpoint.Endpoint{
		ep("p", "10.0.0.1", map[string]string{role: "prefill"}, nil),
		ep("d", "10.0.0.2", map[string]string{role: "decode"}, nil),
		ep("none", "10.0.0.3", map[string]string{"app": "vllm"}, nil),
		ep("empty", "10.0.0.4", map[string]string{role: ""}, nil),
		ep("both", "10.0.0.5", map[string]string{role: "both"}, nil),
	}
	tests := []struct {
		name, params string
		want         []string
	}{
		{name: "one value", params: `{"label":"inference-role","validValues":["prefill"]}`, want: []string{"p"}},
		{name: "several values", params: `{"label":"inference-role","validValues":["decode","both"]}`, want: []string{"d", "both"}},
		{name: "unlabelled pass with allowsNoLabel", params: `{"label":"inference-role","validValues":["decode"],"allowsNoLabel":true}`,
			want: []string{"d", "none"}},
		{name: "only unlabelled", params: `{"label":"inference-role","allowsNoLabel":true}`, want: []string{"none"}},
		{name: "an empty value is a label", params: `{"label":"inference-role","validValues":[""]}`, want: []string{"empty"}},
		{name: "no match", params: `{"label":"inference-role","validValues":["encode"]}`, want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := ByLabelFactory("bl", []byte(tc.params), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := p.(*ByLabel).Filter(ctx, plugintest.State(1), nil, eps)
			if d := cmp.Diff(tc.want, names(got)); d != "" {
				t.Errorf("kept (-want +got):\n%s", d)
			}
		})
	}
}

func TestByLabelParams(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, params, wantErr string }{
		{name: "no parameters", params: ``, wantErr: "label: required"},
		{name: "no values, labelled required", params: `{"label":"role"}`, wantErr: "validValues: must not be empty unless allowsNoLabel"},
		{name: "bad key", params: `{"label":"a b","validValues":["x"]}`, wantErr: `label "a b"|key "a b"`},
		{name: "bad value", params: `{"label":"role","validValues":["not valid!"]}`, wantErr: `validValues ["not valid!"]`},
		{name: "unknown field", params: `{"label":"role","validValue":["x"]}`, wantErr: `unknown field "validValue"`},
		{name: "wrong type", params: `{"label":"role","allowsNoLabel":"yes"}`, wantErr: "parameters:"},
		{name: "valid", params: `{"label":"kaito.sh/inference-role","validValues":["prefill"]}`},
		{name: "valid, only unlabelled", params: `{"label":"role","allowsNoLabel":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := ByLabelFactory("bl", []byte(tc.params), nil)
			wantErr(t, err, tc.wantErr)
			if err == nil && p.TypedName() != (scheduler.TypedName{Type: ByLabelType, Name: "bl"}) {
				t.Errorf("typed name %v", p.TypedName())
			}
		})
	}
}

// TestByLabelSelector: the old name behaves as label-selector-filter, with
// the same strict parameters, and reports its own type.
func TestByLabelSelector(t *testing.T) {
	t.Parallel()
	eps := []*endpoint.Endpoint{
		ep("p", "10.0.0.1", map[string]string{"kaito.sh/inference-role": "prefill"}, nil),
		ep("d", "10.0.0.2", map[string]string{"kaito.sh/inference-role": "decode"}, nil),
		ep("none", "10.0.0.3", nil, nil),
	}
	tests := []struct {
		name, params, wantErr string
		want                  []string
	}{
		{name: "matchLabels (KAITO)", params: `{"matchLabels":{"kaito.sh/inference-role":"prefill"}}`, want: []string{"p"}},
		{name: "matchExpressions", params: `{"matchExpressions":[{"key":"kaito.sh/inference-role","operator":"NotIn","values":["prefill"]}]}`,
			want: []string{"d", "none"}},
		{name: "empty selector", params: `{}`, wantErr: "at least one requirement"},
		{name: "unknown field", params: `{"matchLabel":{"a":"b"}}`, wantErr: `unknown field "matchLabel"`},
		{name: "bad operator", params: `{"matchExpressions":[{"key":"a","operator":"Gt","values":["1"]}]}`, wantErr: "matchExpressions[0]: operator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := ByLabelSelectorFactory("sel", []byte(tc.params), nil)
			wantErr(t, err, tc.wantErr)
			if err != nil {
				return
			}
			if p.TypedName() != (scheduler.TypedName{Type: ByLabelSelectorType, Name: "sel"}) {
				t.Errorf("typed name %v", p.TypedName())
			}
			got := p.(scheduler.Filter).Filter(ctx, plugintest.State(1), nil, eps)
			if d := cmp.Diff(tc.want, names(got)); d != "" {
				t.Errorf("kept (-want +got):\n%s", d)
			}
		})
	}
}

func TestByLabelConformance(t *testing.T) {
	t.Parallel()
	req := plugintest.Request("m", 100)
	for _, params := range []string{`{"label":"zone","validValues":["z0","z2"]}`, `{"label":"gpu","validValues":["h100"],"allowsNoLabel":true}`} {
		p, err := ByLabelFactory("bl", []byte(params), nil)
		if err != nil {
			t.Fatal(err)
		}
		plugintest.Filter(t, p.(*ByLabel), req)
	}
	p, err := ByLabelSelectorFactory("sel", []byte(`{"matchLabels":{"zone":"z1"}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	plugintest.Filter(t, p.(scheduler.Filter), req)
}
