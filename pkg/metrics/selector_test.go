package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	dto "github.com/prometheus/client_model/go"
)

func TestParseSelector(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		want Selector
		str  string
	}{
		{name: "bare name", spec: "vllm:num_requests_waiting",
			want: Selector{Name: "vllm:num_requests_waiting"}, str: "vllm:num_requests_waiting"},
		{name: "unquoted value", spec: "nv_trt_llm_request_metrics{request_type=waiting}",
			want: Selector{Name: "nv_trt_llm_request_metrics", Matchers: []Matcher{{Label: "request_type", Value: "waiting"}}},
			str:  `nv_trt_llm_request_metrics{request_type="waiting"}`},
		{name: "quoted values, spaces, trailing comma", spec: ` m { a = "x,}y" , b!='it\'s', } `,
			want: Selector{Name: "m", Matchers: []Matcher{
				{Label: "a", Value: "x,}y"}, {Label: "b", Op: MatchNotEqual, Value: "it's"}}},
			str: `m{a="x,}y",b!="it's"}`},
		{name: "escapes", spec: `m{a="q\"\\n"}`,
			want: Selector{Name: "m", Matchers: []Matcher{{Label: "a", Value: `q"\n`}}}, str: `m{a="q\"\\n"}`},
		{name: "regexp operators", spec: `m{a=~"x|y",b!~z.*}`,
			want: Selector{Name: "m", Matchers: []Matcher{{Label: "a", Op: MatchRegexp, Value: "x|y"},
				{Label: "b", Op: MatchNotRegexp, Value: "z.*"}}}, str: `m{a=~"x|y",b!~"z.*"}`},
		{name: "name as matcher", spec: `{__name__="up", job="x"}`,
			want: Selector{Name: "up", Matchers: []Matcher{{Label: "job", Value: "x"}}}, str: `up{job="x"}`},
		{name: "empty braces", spec: "m{}", want: Selector{Name: "m"}, str: "m"},
		{name: "unquoted value with inner space", spec: "m{a= b c }",
			want: Selector{Name: "m", Matchers: []Matcher{{Label: "a", Value: "b c"}}}, str: `m{a="b c"}`},
		{name: "explicit empty value", spec: `m{a=""}`,
			want: Selector{Name: "m", Matchers: []Matcher{{Label: "a", Value: ""}}}, str: `m{a=""}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSelector(tc.spec)
			if err != nil {
				t.Fatalf("ParseSelector(%q): %v", tc.spec, err)
			}
			if diff := cmp.Diff(tc.want, *got, cmpopts.IgnoreUnexported(Matcher{})); diff != "" {
				t.Errorf("ParseSelector(%q) mismatch (-want +got):\n%s", tc.spec, diff)
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			// The canonical form must parse back to the same selector.
			again, err := ParseSelector(got.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", got.String(), err)
			}
			if diff := cmp.Diff(got, again, cmpopts.IgnoreUnexported(Matcher{})); diff != "" {
				t.Errorf("round trip mismatch:\n%s", diff)
			}
		})
	}
}

func TestParseSelectorErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec, wantErr string
	}{
		{name: "empty", spec: "  ", wantErr: "empty selector"},
		{name: "unclosed brace", spec: "m{a=b", wantErr: "missing closing '}'"},
		{name: "missing operator", spec: "m{a}", wantErr: "expected one of =, !=, =~, !~"},
		{name: "missing value", spec: "m{a=}", wantErr: "missing label value"},
		{name: "missing label name", spec: "m{=b}", wantErr: "expected label name"},
		{name: "unterminated quote", spec: `m{a="b}`, wantErr: "unterminated quoted label value"},
		{name: "garbage after", spec: "m{a=b} x", wantErr: `unexpected "x" after selector`},
		{name: "bad metric name", spec: "9m", wantErr: "expected metric name"},
		{name: "dash in name", spec: "a-b", wantErr: `unexpected "-b" after selector`},
		{name: "no name", spec: `{a="b"}`, wantErr: "missing metric name"},
		{name: "name twice", spec: `m{__name__="x"}`, wantErr: "__name__ is only supported"},
		{name: "bad regexp", spec: `m{a=~"("}`, wantErr: "missing closing )"},
		{name: "quote inside unquoted value", spec: `m{a=b"c"}`, wantErr: "in unquoted label value"},
		{name: "separator missing", spec: `m{a="b" c="d"}`, wantErr: "expected ',' or '}'"},
		{name: "bad escape", spec: `m{a="\q"}`, wantErr: "bad escape"},
		{name: "invalid name via __name__", spec: `{__name__="a-b"}`, wantErr: `invalid metric name "a-b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sel, err := ParseSelector(tc.spec)
			if err == nil {
				t.Fatalf("ParseSelector(%q) = %v, want error containing %q", tc.spec, sel, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.spec)) {
				t.Errorf("ParseSelector(%q) error %q, want it to contain %q and the spec", tc.spec, err, tc.wantErr)
			}
		})
	}
}

func TestSelectorMatches(t *testing.T) {
	t.Parallel()
	labels := []*dto.LabelPair{lp("request_type", "waiting"), lp("model", "tensorrt_llm")}
	tests := []struct {
		spec string
		want bool
	}{
		{spec: "m", want: true},
		{spec: "m{request_type=waiting}", want: true},
		{spec: "m{request_type=scheduled}", want: false},
		{spec: `m{request_type="waiting",model="tensorrt_llm"}`, want: true},
		{spec: `m{request_type!="waiting"}`, want: false},
		{spec: `m{absent=""}`, want: true},
		{spec: `m{absent!=""}`, want: false},
		{spec: `m{model=~"tensor.*"}`, want: true},
		{spec: `m{model=~"tensor"}`, want: false}, // anchored
		{spec: `m{model!~"ens.*"}`, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			t.Parallel()
			sel, err := ParseSelector(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := sel.Matches(labels); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func lp(name, value string) *dto.LabelPair { return &dto.LabelPair{Name: &name, Value: &value} }
