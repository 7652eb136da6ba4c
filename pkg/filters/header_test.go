package filters

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestHeaderBasedTestingFilter(t *testing.T) {
	t.Parallel()
	eps := []*endpoint.Endpoint{
		ep("a", "10.0.0.1", nil, nil),
		ep("b", "10.0.0.2", nil, nil),
		ep("c", "10.0.0.3", nil, nil),
		ep("v6", "fd00::1", nil, nil),
	}
	all := []string{"a", "b", "c", "v6"}
	tests := []struct {
		name    string
		headers map[string]string // nil request when nil
		want    []string
	}{
		{name: "nil request keeps all", want: all},
		{name: "no header keeps all", headers: map[string]string{"x": "y"}, want: all},
		{name: "empty header keeps all", headers: map[string]string{EndpointSelectionHeader: ""}, want: all},
		{name: "blank items keep all", headers: map[string]string{EndpointSelectionHeader: " , ,"}, want: all},
		{name: "one IP", headers: map[string]string{EndpointSelectionHeader: "10.0.0.2"}, want: []string{"b"}},
		{name: "ip:port", headers: map[string]string{EndpointSelectionHeader: "10.0.0.2:8000"}, want: []string{"b"}},
		{name: "wrong port", headers: map[string]string{EndpointSelectionHeader: "10.0.0.2:9000"}, want: []string{}},
		{name: "list with spaces keeps input order", headers: map[string]string{EndpointSelectionHeader: " 10.0.0.3 ,10.0.0.1:8000, "}, want: []string{"a", "c"}},
		{name: "unknown IP drops all", headers: map[string]string{EndpointSelectionHeader: "10.9.9.9"}, want: []string{}},
		{name: "IP prefix is no match", headers: map[string]string{EndpointSelectionHeader: "10.0.0"}, want: []string{}},
		{name: "IPv6 bare", headers: map[string]string{EndpointSelectionHeader: "fd00::1"}, want: []string{"v6"}},
		{name: "IPv6 bracketed", headers: map[string]string{EndpointSelectionHeader: "[fd00::1]"}, want: []string{"v6"}},
		{name: "IPv6 with port", headers: map[string]string{EndpointSelectionHeader: "[fd00::1]:8000"}, want: []string{"v6"}},
		{name: "duplicates keep once", headers: map[string]string{EndpointSelectionHeader: "10.0.0.1,10.0.0.1"}, want: []string{"a"}},
	}
	f := NewHeaderBasedTesting("h", HeaderBasedTestingParams{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var req *scheduler.Request
			if tc.headers != nil {
				req = &scheduler.Request{Headers: tc.headers}
			}
			got := f.Filter(ctx, plugintest.State(1), req, eps)
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeaderBasedTestingParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params, wantErr string
	}{
		{name: "none", params: ``},
		{name: "empty object", params: `{}`},
		{name: "null", params: `null`},
		{name: "unknown field", params: `{"header":"x"}`, wantErr: `unknown field "header"`},
		{name: "not an object", params: `[1]`, wantErr: "parameters:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := HeaderBasedTestingFactory("h", []byte(tc.params), nil)
			wantErr(t, err, tc.wantErr)
		})
	}
}

func TestHeaderBasedTestingConformance(t *testing.T) {
	t.Parallel()
	f := NewHeaderBasedTesting("h", HeaderBasedTestingParams{})
	req := plugintest.Request("m", 100)
	plugintest.Filter(t, f, req)
	req.Headers[EndpointSelectionHeader] = "10.0.0.3, 10.0.0.1:8000,10.0.0.50"
	plugintest.Filter(t, f, req)
}

func BenchmarkHeaderBasedTesting(b *testing.B) {
	req := plugintest.Request("m", 100)
	req.Headers[EndpointSelectionHeader] = "10.0.0.3, 10.0.0.1:8000"
	benchFilter(b, NewHeaderBasedTesting("h", HeaderBasedTestingParams{}), req)
}
