package plugins

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// llmdAcceleratorCapability is llm-d's accelerator-capability-aware
// example as its README gives it, under the header every config needs.
const llmdAcceleratorCapability = `apiVersion: llm-d.ai/v1
kind: EndpointPickerConfig
plugins:
  - type: accelerator-capability-aware
    parameters:
      label: llm-d.ai/accelerator-capability-range
      enableFiltering: true
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: accelerator-capability-aware
        weight: 3
`

// llmdAcceleratorCapabilityTokens adds a token-producer, so requests are
// sized by their token count rather than by bytes/4. The URL is never
// called: the requests below carry their token IDs.
var llmdAcceleratorCapabilityTokens = strings.Replace(llmdAcceleratorCapability, "plugins:\n", `plugins:
  - type: token-producer
    parameters:
      backend: vllm
      vllm: {url: "http://127.0.0.1:1"}
`, 1)

// completion is a completions request whose prompt is the JSON value prompt.
func completion(t *testing.T, prompt string) *scheduler.Request {
	t.Helper()
	b, err := request.Parse(request.Completions, []byte(`{"model":"m","prompt":`+prompt+`}`))
	if err != nil {
		t.Fatal(err)
	}
	return &scheduler.Request{ID: "r", Model: "m", Body: b}
}

// TestLLMDAcceleratorCapabilityExample: llm-d's example sends a small
// request to the small MIG slice and a large one to the whole GPU,
// filtering out the slices that cannot hold it and the pod whose label
// is malformed; an unlabelled pod stays a candidate.
func TestLLMDAcceleratorCapabilityExample(t *testing.T) {
	t.Parallel()
	rng := func(v string) map[string]string {
		if v == "" {
			return nil
		}
		return map[string]string{"llm-d.ai/accelerator-capability-range": v}
	}
	eps := labelledPool(rng("0-2048"), rng("2049-32768"), rng(""), rng("big")).Snapshot()
	s, err := buildText(llmdAcceleratorCapability, eps)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		promptLen int // bytes; about a quarter as many tokens
		want      string
		kept      []string
	}{
		{name: "small", promptLen: 400, want: "vllm-0", kept: []string{"vllm-0", "vllm-2"}},
		{name: "large", promptLen: 40000, want: "vllm-1", kept: []string{"vllm-1", "vllm-2"}},
		{name: "beyond every range", promptLen: 200000, want: "vllm-2", kept: []string{"vllm-2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := completion(t, `"`+strings.Repeat("a", tc.promptLen)+`"`)
			res, err := s.Schedule(context.Background(), s.NewState(), req, eps)
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, e := range res.Profiles["default"].Candidates {
				kept = append(kept, e.Name)
			}
			if diff := cmp.Diff(tc.kept, kept); diff != "" {
				t.Errorf("filter kept (-want +got):\n%s", diff)
			}
			if got := res.Targets()[0].Name; got != tc.want {
				t.Errorf("routed to %s, want %s", got, tc.want)
			}
		})
	}
}

// TestAcceleratorCapabilitySizesByTokens: a prompt of 3000 token IDs is
// about 1500 tokens by bytes/4 but 3000 by count; with a token-producer in
// the config it goes to the range holding 3000.
func TestAcceleratorCapabilitySizesByTokens(t *testing.T) {
	t.Parallel()
	eps := labelledPool(
		map[string]string{"llm-d.ai/accelerator-capability-range": "0-2048"},
		map[string]string{"llm-d.ai/accelerator-capability-range": "2049-8192"},
	).Snapshot()
	prompt := "[" + strings.Repeat("1,", 2999) + "1]"
	for config, want := range map[string]string{llmdAcceleratorCapability: "vllm-0", llmdAcceleratorCapabilityTokens: "vllm-1"} {
		s, err := buildText(config, eps)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Schedule(context.Background(), s.NewState(), completion(t, prompt), eps)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Targets()[0].Name; got != want {
			t.Errorf("with token-producer %v: routed to %s, want %s", strings.Contains(config, "token-producer"), got, want)
		}
	}
}
