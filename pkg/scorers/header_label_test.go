package scorers

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// hlEndpoints returns endpoints at 10.8.0.<i+1>:8000 whose "slice" label
// is slices[i] ("-" for no label).
func hlEndpoints(slices ...string) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, len(slices))
	for i, s := range slices {
		labels := map[string]string{"app": "vllm"}
		if s != "-" {
			labels["slice"] = s
		}
		out[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprintf("ep-%d", i), Address: fmt.Sprintf("10.8.0.%d", i+1), Port: 8000, Labels: labels})
	}
	return out
}

func TestHeaderLabelScores(t *testing.T) {
	t.Parallel()
	eps := hlEndpoints("0", "1", "-", "1", "")
	s := mustBuild[*HeaderLabel](t, HeaderLabelRegistration(), `{"headerName":"X-Disagg-Slice","labelKey":"slice"}`, nil)
	tests := []struct {
		name    string
		headers map[string]string
		want    []float64
	}{
		{name: "match", headers: map[string]string{"x-disagg-slice": "1"}, want: []float64{0, 1, 0, 1, 0}},
		{name: "no header: no preference", want: []float64{0, 0, 0, 0, 0}},
		{name: "empty header: no preference, not a match for empty labels", headers: map[string]string{"x-disagg-slice": ""},
			want: []float64{0, 0, 0, 0, 0}},
		{name: "unknown value", headers: map[string]string{"x-disagg-slice": "7"}, want: []float64{0, 0, 0, 0, 0}},
		{name: "exact match only", headers: map[string]string{"x-disagg-slice": "01"}, want: []float64{0, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := s.Score(scCtx, scState(), scRequest(10, tc.headers), eps)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("scores (-want +got)\n%s", d)
			}
		})
	}
	if got := s.Score(scCtx, scState(), nil, eps); cmp.Diff([]float64{0, 0, 0, 0, 0}, got) != "" {
		t.Errorf("nil request: %v", got)
	}
}

// TestHeaderLabelStamp: the response carries the serving endpoint's label
// (a fallback the proxy reports included), under the header as configured,
// unless stamping is off or that endpoint lacks the label.
func TestHeaderLabelStamp(t *testing.T) {
	t.Parallel()
	eps := hlEndpoints("0", "1", "-")
	pool := func() []*endpoint.Endpoint { return eps }
	tests := []struct {
		name, params, served string
		target               int
		want                 map[string]string
	}{
		{name: "primary target", params: `{"headerName":"X-Disagg-Slice","labelKey":"slice"}`, target: 1,
			want: map[string]string{"X-Disagg-Slice": "1"}},
		{name: "fallback served", params: `{"headerName":"x-slice","labelKey":"slice"}`, target: 1, served: "10.8.0.1:8000",
			want: map[string]string{"x-slice": "0"}},
		{name: "served endpoint unknown", params: `{"headerName":"x-slice","labelKey":"slice"}`, target: 1, served: "192.0.2.1:8000"},
		{name: "no label", params: `{"headerName":"x-slice","labelKey":"slice"}`, target: 2},
		{name: "stamping off", params: `{"headerName":"x-slice","labelKey":"slice","stampResponseHeader":false}`, target: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*HeaderLabel](t, HeaderLabelRegistration(), tc.params, scHandle(newSCClock(), pool))
			other := mustBuild[*HeaderLabel](t, HeaderLabelRegistration(), `{"headerName":"x-zone","labelKey":"app"}`, nil)
			st := scState()
			s.PreRequest(scCtx, st, nil, scResult(eps[tc.target]))
			other.PreRequest(scCtx, st, nil, scResult(eps[0])) // a second instance keeps its own note
			resp := &scheduler.Response{Served: tc.served}
			s.ResponseHeaders(scCtx, st, nil, resp)
			if d := cmp.Diff(tc.want, resp.AddHeaders); d != "" {
				t.Errorf("response headers (-want +got)\n%s", d)
			}
		})
	}
	s := mustBuild[*HeaderLabel](t, HeaderLabelRegistration(), `{"headerName":"x","labelKey":"slice"}`, nil)
	resp := &scheduler.Response{}
	s.PreRequest(scCtx, scState(), nil, &scheduler.Result{}) // nothing scheduled
	s.ResponseHeaders(scCtx, scState(), nil, resp)           // no note
	if resp.AddHeaders != nil {
		t.Errorf("nothing scheduled: stamped %v", resp.AddHeaders)
	}
}

func TestHeaderLabelParams(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, params, wantErr string }{
		{name: "none", params: ``, wantErr: "headerName: required|labelKey: required"},
		{name: "blank header", params: `{"headerName":"  ","labelKey":"a"}`, wantErr: "headerName: required"},
		{name: "no label", params: `{"headerName":"x"}`, wantErr: "labelKey: required"},
		{name: "unknown field", params: `{"headerName":"x","labelKey":"a","header":"y"}`, wantErr: `unknown field "header"`},
		{name: "wrong type", params: `{"headerName":"x","labelKey":"a","stampResponseHeader":"no"}`, wantErr: "parameters:"},
		{name: "valid", params: `{"headerName":"x","labelKey":"a","stampResponseHeader":false}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := HeaderLabelFactory("hl", []byte(tc.params), nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, frag := range strings.Split(tc.wantErr, "|") {
				if err == nil || !strings.Contains(err.Error(), frag) {
					t.Errorf("err = %v, want %q", err, frag)
				}
			}
		})
	}
}

func TestHeaderLabelConformance(t *testing.T) {
	t.Parallel()
	s := mustBuild[*HeaderLabel](t, HeaderLabelRegistration(), `{"headerName":"x-zone","labelKey":"zone"}`, nil)
	req := plugintest.Request("m", 100)
	req.Headers["x-zone"] = "z1"
	plugintest.Scorer(t, s, req)
}
