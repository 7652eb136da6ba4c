package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/server"
)

// labelPriority is a test server.EnginePriority: the endpoint's "engine"
// label picks vLLM's (negated) or SGLang's (as is) convention; other
// engines take none.
type labelPriority struct{}

func (labelPriority) Value(target *endpoint.Endpoint, priority int) (int, bool) {
	switch target.Labels["engine"] {
	case "vllm":
		return -priority, true
	case "sglang":
		return priority, true
	}
	return 0, false
}

// TestEnginePriority checks the priority member the EPP writes into the
// forwarded body: in the convention of the chosen endpoint's engine,
// replacing a client's value, and not at all (the body's bytes untouched)
// when there is nothing to say.
func TestEnginePriority(t *testing.T) {
	t.Parallel()
	plain := completion("hello")
	withClient := []byte(`{"model":"` + testModel + `","prompt":"hello","priority":-50}`)
	tests := []struct {
		name, engine, objective string
		body                    []byte
		want                    string // the forwarded priority member; "" for none
		untouched               bool
	}{
		{name: "vllm negated", engine: "vllm", objective: "critical", body: plain, want: "-5"},
		{name: "sglang as is", engine: "sglang", objective: "critical", body: plain, want: "5"},
		{name: "sheddable on vllm", engine: "vllm", objective: "batch", body: plain, want: "1"},
		{name: "no objective keeps body", engine: "vllm", body: plain, untouched: true},
		{name: "client value replaced", engine: "vllm", body: withClient, want: "0"},
		{name: "client value replaced by objective", engine: "sglang", objective: "batch", body: withClient, want: "-1"},
		{name: "engine without priority", engine: "trtllm-serve", objective: "critical", body: withClient, untouched: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep := endpoint.Spec{Name: "ep", Address: "10.0.0.1", Port: 8000, Labels: map[string]string{"engine": tc.engine}}
			h := start(t, setup{endpoints: []endpoint.Spec{ep}, server: server.Options{
				Objectives: objectives{"critical": 5, "batch": -1}, EnginePriority: labelPriority{},
			}})
			kv := []string{"x-request-id", "r1"}
			if tc.objective != "" {
				kv = append(kv, "x-gateway-inference-objective", tc.objective)
			}
			d := h.route(t, post("/v1/completions", tc.body, kv...))
			if tc.untouched {
				if !bytes.Equal(d.Body, tc.body) {
					t.Errorf("forwarded body %s, want it untouched", d.Body)
				}
				return
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(d.Body, &got); err != nil {
				t.Fatalf("forwarded body %s: %v", d.Body, err)
			}
			if string(got["priority"]) != tc.want || string(got["model"]) != strconv.Quote(testModel) {
				t.Errorf("forwarded body %s, want priority %s", d.Body, tc.want)
			}
		})
	}
}

// TestEnginePriorityWithRewrite checks that a model rewrite and the
// priority land in the same body.
func TestEnginePriorityWithRewrite(t *testing.T) {
	t.Parallel()
	ep := endpoint.Spec{Name: "ep", Address: "10.0.0.1", Port: 8000, Labels: map[string]string{"engine": "vllm"}}
	h := start(t, setup{endpoints: []endpoint.Spec{ep}, server: server.Options{
		Objectives: objectives{"critical": 5}, EnginePriority: labelPriority{},
		Rewrites: rewriteRules{testModel: {target: rewriteTarget, rule: "rw"}},
	}})
	d := h.route(t, post("/v1/completions", completion("hi"), "x-gateway-inference-objective", "critical"))
	var got struct {
		Model    string
		Priority *int
	}
	if err := json.Unmarshal(d.Body, &got); err != nil {
		t.Fatalf("forwarded body %s: %v", d.Body, err)
	}
	if got.Model != rewriteTarget || got.Priority == nil || *got.Priority != -5 {
		t.Errorf("forwarded body %s, want model %s and priority -5", d.Body, rewriteTarget)
	}
}

// TestEnginePriorityFallbacks: the proxy may send the body to any endpoint
// of the answer, so the member is written only when all of them read it
// the same way.
func TestEnginePriorityFallbacks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		engines []string
		want    string
	}{
		{name: "same engine", engines: []string{"vllm", "vllm"}, want: "-5"},
		{name: "mixed engines", engines: []string{"vllm", "sglang"}},
		{name: "one takes none", engines: []string{"sglang", "trtllm-serve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var eps []endpoint.Spec
			for i, e := range tc.engines {
				eps = append(eps, endpoint.Spec{Name: fmt.Sprintf("%s-%d", e, i), Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8000, Labels: map[string]string{"engine": e}})
			}
			h := start(t, setup{endpoints: eps, picker: maxScore(t, len(eps)), server: server.Options{
				Objectives: objectives{"critical": 5}, EnginePriority: labelPriority{},
			}})
			d := h.route(t, post("/v1/completions", completion("hi"), "x-gateway-inference-objective", "critical"))
			if n := strings.Count(d.DestinationHeader, ",") + 1; n != len(eps) {
				t.Fatalf("destination %q, want %d endpoints", d.DestinationHeader, len(eps))
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(d.Body, &got); err != nil {
				t.Fatalf("forwarded body %s: %v", d.Body, err)
			}
			if string(got["priority"]) != tc.want {
				t.Errorf("forwarded body %s, want priority %q", d.Body, tc.want)
			}
		})
	}
}
