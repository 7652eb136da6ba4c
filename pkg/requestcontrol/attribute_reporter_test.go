package requestcontrol

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// upstreamReporterConfig is the example of upstream's documentation: total
// tokens as the request's cost, only when both counts are there.
const upstreamReporterConfig = `{"attributes": [{
  "key": {"namespace": "envoy.lb", "name": "x-gateway-inference-request-cost"},
  "expression": "usage.prompt_tokens + usage.completion_tokens\n",
  "condition": "has(usage.prompt_tokens) && has(usage.completion_tokens)"}]}`

func reporter(t *testing.T, raw string, reg prometheus.Registerer) *AttributeReporter {
	t.Helper()
	p, err := AttributeReporterFactory("cost", json.RawMessage(raw), &scheduler.Handle{Log: logr.Discard(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return p.(*AttributeReporter)
}

func reported(r *AttributeReporter, resp scheduler.Response) map[string]map[string]any {
	r.ReportResponse(context.Background(), nil, &scheduler.Request{ID: "r1"}, &resp)
	return resp.Metadata
}

func withUsage(prompt, completion, cached int) scheduler.Response {
	return scheduler.Response{StatusCode: 200, EndOfStream: true, UsageKnown: true, Usage: request.Usage{
		PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion, CachedTokens: cached}}
}

func TestAttributeReporterUpstreamExample(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	r := reporter(t, upstreamReporterConfig, reg)
	got := reported(r, withUsage(120, 30, 64))
	want := map[string]map[string]any{"envoy.lb": {"x-gateway-inference-request-cost": 150.0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	// No usage reported (a stream without include_usage): the condition
	// says no, and nothing is reported, rather than a cost of 0.
	if got := reported(r, scheduler.Response{StatusCode: 200, EndOfStream: true}); got != nil {
		t.Errorf("without usage: metadata %v, want none", got)
	}
	for outcome, want := range map[string]float64{"reported": 1, "skipped": 1, "failed": 0} {
		c := testutil.ToFloat64(r.reports.WithLabelValues("cost", "envoy.lb", "x-gateway-inference-request-cost", outcome))
		if c != want {
			t.Errorf("%s: counted %v, want %v", outcome, c, want)
		}
	}
}

func TestAttributeReporterExpressions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, expr string
		resp       scheduler.Response
		want       any // nil: not reported
	}{
		{"prompt only", "usage.prompt_tokens", withUsage(7, 3, 0), 7.0},
		{"weighted cost truncates as upstream", "usage.prompt_tokens * 0.5 + usage.completion_tokens * 2.0", withUsage(7, 3, 0), 9.0},
		{"uncached prompt", "usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens", withUsage(100, 1, 64), 36.0},
		{"GIE's spelling of the details", "usage.prompt_token_details.cached_tokens", withUsage(100, 1, 64), 64.0},
		{"total", "usage.total_tokens", withUsage(5, 6, 0), 11.0},
		{"an int literal", "42", withUsage(5, 6, 0), 42.0},
		{"a conversion", "int(usage.completion_tokens) * 3", withUsage(5, 6, 0), 18.0},
		{"guarded default without usage", "has(usage.completion_tokens) ? usage.completion_tokens : 0.0", scheduler.Response{}, 0.0},
		{"unguarded read without usage fails", "usage.completion_tokens", scheduler.Response{}, nil},
		{"mixing double and int fails at run time", "usage.completion_tokens + 1", withUsage(5, 6, 0), nil},
		{"division by zero fails", "1 / int(usage.prompt_tokens)", withUsage(0, 6, 0), nil},
		{"not a number at run time fails", "has(usage.x) ? usage.x : usage", withUsage(0, 6, 0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := fmt.Sprintf(`{"attributes": [{"key": {"name": "v"}, "expression": %q}]}`, tc.expr)
			r := reporter(t, raw, prometheus.NewRegistry())
			got := reported(r, tc.resp)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("reported %v, want nothing", got)
				}
				if c := testutil.ToFloat64(r.reports.WithLabelValues("cost", "envoy.lb", "v", "failed")); c != 1 {
					t.Errorf("failures counted %v, want 1", c)
				}
				return
			}
			if v := got[DefaultMetadataNamespace]["v"]; v != tc.want {
				t.Errorf("reported %v (%T), want %v", v, v, tc.want)
			}
		})
	}
}

// TestAttributeReporterManyAttributes: OpenEPP takes several attributes
// (upstream one), each with its own namespace and condition.
func TestAttributeReporterManyAttributes(t *testing.T) {
	t.Parallel()
	r := reporter(t, `{"attributes": [
  {"key": {"name": "input"}, "expression": "usage.prompt_tokens"},
  {"key": {"namespace": "billing", "name": "output"}, "expression": "usage.completion_tokens"},
  {"key": {"namespace": "billing", "name": "cached"}, "expression": "usage.prompt_tokens_details.cached_tokens",
   "condition": "usage.prompt_tokens_details.cached_tokens > 0.0"}]}`, nil)
	want := map[string]map[string]any{"envoy.lb": {"input": 10.0}, "billing": {"output": 2.0}}
	if diff := cmp.Diff(want, reported(r, withUsage(10, 2, 0))); diff != "" {
		t.Errorf("nothing cached (-want +got):\n%s", diff)
	}
	want["billing"]["cached"] = 8.0
	if diff := cmp.Diff(want, reported(r, withUsage(10, 2, 8))); diff != "" {
		t.Errorf("cached (-want +got):\n%s", diff)
	}
}

// TestAttributeReporterCostLimit: an expression that iterates is stopped,
// not left to hold the response's last chunk.
func TestAttributeReporterCostLimit(t *testing.T) {
	t.Parallel()
	var list []string
	for i := range 200 {
		list = append(list, fmt.Sprint(i))
	}
	l := "[" + strings.Join(list, ",") + "]"
	expr := fmt.Sprintf("%s.all(i, %s.all(j, i + j >= 0)) ? 1 : 0", l, l)
	r := reporter(t, fmt.Sprintf(`{"attributes": [{"key": {"name": "v"}, "expression": %q}]}`, expr), prometheus.NewRegistry())
	if got := reported(r, withUsage(1, 1, 0)); got != nil {
		t.Fatalf("reported %v past the cost limit", got)
	}
	if c := testutil.ToFloat64(r.reports.WithLabelValues("cost", "envoy.lb", "v", "failed")); c != 1 {
		t.Errorf("failures counted %v, want 1", c)
	}
}

func TestAttributeReporterConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, want string }{
		{`{}`, "attributes: at least one attribute is required"},
		{`{"attributes": [{"key": {"name": "v"}, "expression": "usage.prompt_tokens +"}]}`, `attributes[0].expression "usage.prompt_tokens +": ERROR`},
		{`{"attributes": [{"key": {"name": "v"}, "expression": "'a string'"}]}`, "evaluates to string, want a number"},
		{`{"attributes": [{"key": {"name": "v"}, "expression": "1", "condition": "usage.prompt_tokens + 1.0"}]}`, "evaluates to double, want a bool"},
		{`{"attributes": [{"key": {"name": "v"}, "expression": "1", "condition": "'yes'"}]}`, "attributes[0].condition \"'yes'\": evaluates to string, want a bool"},
		{`{"attributes": [{"key": {"name": "v"}, "expression": "requests.count"}]}`, "undeclared reference to 'requests'"},
		{`{"attributes": [{"key": {"name": ""}, "expression": "1"}]}`, "attributes[0].key.name: required"},
		{`{"attributes": [{"key": {"name": "v"}, "expression": " "}]}`, "attributes[0].expression: required"},
		{`{"attributes": [{"key": {"name": "v"}, "expression": "1"}, {"key": {"namespace": "envoy.lb", "name": "v"}, "expression": "2"}]}`,
			"attributes[1].key: envoy.lb/v is reported twice"},
		{`{"attributes": [{"key": {"name": "v"}, "expresion": "1"}]}`, `unknown field "expresion"`},
	} {
		_, err := AttributeReporterFactory("cost", json.RawMessage(tc.raw), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.raw, err, tc.want)
		}
	}
}

// TestAttributeReporterConditionNotBoolAtRunTime: a condition that reads a
// number from usage compiles (its type is dyn) and fails when run.
func TestAttributeReporterConditionNotBoolAtRunTime(t *testing.T) {
	t.Parallel()
	r := reporter(t, `{"attributes": [{"key": {"name": "v"}, "expression": "1", "condition": "usage.prompt_tokens"}]}`, prometheus.NewRegistry())
	if got := reported(r, withUsage(3, 1, 0)); got != nil {
		t.Fatalf("reported %v", got)
	}
	if c := testutil.ToFloat64(r.reports.WithLabelValues("cost", "envoy.lb", "v", "failed")); c != 1 {
		t.Errorf("failures counted %v, want 1", c)
	}
}

// BenchmarkAttributeReporter is the per-response cost of upstream's example
// (condition and expression), paid on the response's last message.
func BenchmarkAttributeReporter(b *testing.B) {
	p, err := AttributeReporterFactory("cost", json.RawMessage(upstreamReporterConfig), nil)
	if err != nil {
		b.Fatal(err)
	}
	r := p.(*AttributeReporter)
	req := &scheduler.Request{ID: "r1"}
	b.ReportAllocs()
	for b.Loop() {
		resp := withUsage(1200, 300, 640)
		r.ReportResponse(context.Background(), nil, req, &resp)
	}
}
