package scorers

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// clEndpoints returns endpoints whose context-length label is ranges[i]
// ("-" for no label), named by their range.
func clEndpoints(ranges ...string) []*endpoint.Endpoint {
	return rangeEndpoints(ContextLengthLabel, ranges...)
}

// TestContextLengthScores checks the documented formula on llm-d's
// examples; expected values were computed independently.
func TestContextLengthScores(t *testing.T) {
	t.Parallel()
	s := mustBuild[*ContextLength](t, ContextLengthRegistration(), "", nil)
	tests := []struct {
		name   string
		tokens int // the prompt is 4×tokens bytes
		ranges []string
		want   []float64
	}{
		{name: "in range: tighter scores higher", tokens: 1000, ranges: []string{"0-2048", "0-8192", "0-131072"},
			want: []float64{0.8141674448041167, 0.7537143988428979, 0.5431318636687958}},
		{name: "in range beats out of range and unlabelled", tokens: 3000, ranges: []string{"2048-8192", "0-2048", "-"},
			want: []float64{0.7809792724851337, 0.3 / (1 + 952.0/1000), 0.5}},
		{name: "out of range: nearer scores higher", tokens: 9000, ranges: []string{"0-2048", "0-8192"},
			want: []float64{0.03772635814889336, 0.165929203539823}},
		{name: "below the range", tokens: 1000, ranges: []string{"2048-8192"}, want: []float64{0.146484375}},
		{name: "bounds are inclusive; more headroom scores higher", tokens: 2048, ranges: []string{"2048-2048", "0-2048"},
			want: []float64{1, 0.7067065073041168}},
		{name: "no body counts 0 tokens", tokens: -1, ranges: []string{"0-2048", "1-5"}, want: []float64{0.9167065073041167, 0.3 / 1.001}},
		{name: "malformed labels count as unlabelled", tokens: 10,
			ranges: []string{"2048", "8k-16k", "9-3", "-1-5", "+1-5", "1-5-9", "", "1--5"}, want: []float64{0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}},
		{name: "spaces around the numbers are allowed", tokens: 10, ranges: []string{" 0 - 2048 "}, want: []float64{0.3 + 0.7*(0.7/1.2048+0.3*2038/2048)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := &scheduler.Request{} // no body
			if tc.tokens >= 0 {
				req = scRequest(4*tc.tokens, nil)
			}
			got := s.Score(scCtx, scState(), req, clEndpoints(tc.ranges...))
			if d := cmp.Diff(tc.want, got, approx); d != "" {
				t.Errorf("scores (-want +got)\n%s", d)
			}
		})
	}
}

func TestContextLengthFilter(t *testing.T) {
	t.Parallel()
	checkRangeFilter(t, ContextLengthRegistration(), clEndpoints("0-2048", "2049-8192", "-", "oops", "8193-131072"), []rangeFilterCase{
		{name: "filtering off keeps all", params: ``, tokens: 5000, want: []string{"0-2048", "2049-8192", "-", "oops", "8193-131072"}},
		{name: "in range and unlabelled stay", params: `{"enableFiltering":true}`, tokens: 5000, want: []string{"2049-8192", "-", "oops"}},
		{name: "at a bound", params: `{"enableFiltering":true}`, tokens: 2048, want: []string{"0-2048", "-", "oops"}},
		{name: "beyond every range", params: `{"enableFiltering":true}`, tokens: 200000, want: []string{"-", "oops"}},
	})
}

// TestContextLengthWarnsOnce: a malformed label is logged once per value,
// however many requests see it.
func TestContextLengthWarnsOnce(t *testing.T) {
	t.Parallel()
	var log logCapture
	s, err := NewContextLength("cl", ContextLengthParams{Label: "range", EnableFiltering: true}, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	scoreAndFilterConcurrently(s, rangeEndpoints("range", "big", "big", "1-x"))
	lines := strings.Join(log.Lines(), "\n")
	if len(log.Lines()) != 2 || !strings.Contains(lines, `"value"="big"`) || !strings.Contains(lines, `"value"="1-x"`) {
		t.Errorf("log lines %q, want one per malformed value", log.Lines())
	}
}

func TestContextLengthParams(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, params, wantErr string }{
		{name: "defaults", params: ``},
		{name: "custom label", params: `{"label":"example.com/prefill-work-range","enableFiltering":true}`},
		{name: "empty label", params: `{"label":""}`, wantErr: "label: must not be empty"},
		{name: "P2P subtraction unsupported", params: `{"reusableTokensProducerName":"p2p"}`, wantErr: "reusableTokensProducerName: not supported"},
		{name: "unknown field", params: `{"enableFilter":true}`, wantErr: `unknown field "enableFilter"`},
		{name: "wrong type", params: `{"enableFiltering":"yes"}`, wantErr: "parameters:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := ContextLengthFactory("cl", []byte(tc.params), nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			case err == nil && p.TypedName() != (scheduler.TypedName{Type: ContextLengthType, Name: "cl"}):
				t.Errorf("typed name %v", p.TypedName())
			}
		})
	}
}

// TestContextLengthCountsTokens: a token-producer's count sizes the prompt
// (llm-d's estimate prefers its tokenizer); without one bytes/4 does.
func TestContextLengthCountsTokens(t *testing.T) {
	t.Parallel()
	s := mustBuild[*ContextLength](t, ContextLengthRegistration(), `{"enableFiltering":true}`, nil)
	eps := clEndpoints("0-2048", "2049-8192")
	req := scRequest(4*1500, nil) // estimate 1500
	for _, tc := range []struct {
		name   string
		tokens int // -1: no token-producer ran
		want   []string
	}{
		{name: "estimate", tokens: -1, want: []string{"0-2048"}},
		{name: "token count", tokens: 3000, want: []string{"2049-8192"}},
	} {
		st := scState()
		if tc.tokens >= 0 {
			scheduler.PromptTokens.Set(st, tc.tokens)
		}
		if d := cmp.Diff(tc.want, endpointNames(s.Filter(scCtx, st, req, eps))); d != "" {
			t.Errorf("%s: kept (-want +got)\n%s", tc.name, d)
		}
		if sc := s.Score(scCtx, st, req, eps); (sc[0] > sc[1]) != (tc.want[0] == "0-2048") {
			t.Errorf("%s: scores %v favour the other range", tc.name, sc)
		}
	}
}
