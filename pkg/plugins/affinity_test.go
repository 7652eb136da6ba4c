package plugins

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// affinityConfig is llm-d's optimized baseline without its producers (they
// are added, as llm-d adds them) and with a gate of one second of prefill
// at 1,000 tokens/s, so a test can open it.
const affinityConfig = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-affinity-filter
  parameters: {maxTTFTPenaltyMs: %d, peakPrefillThroughput: 1000}
- type: token-load-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-affinity-filter
  - pluginRef: token-load-scorer
`

// TestPrefixAffinityFilterThroughAConfig: a prompt's second request stays
// on the server holding it, busy as it is, while that server is less than
// maxTTFTPenaltyMs of prefill behind the other; past it, the gate opens and
// load decides; once the first request answers, the prompt sticks again.
func TestPrefixAffinityFilterThroughAConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prompt := strings.Repeat("You are a careful coding agent. ", 250) // 8,000 bytes: 2,000 tokens
	chat := func(s *scheduler.Scheduler) *scheduler.Request {
		raw := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]}`, prompt)
		body, err := request.Parse(request.ChatCompletions, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return &scheduler.Request{ID: "r", Model: "m", Body: body, Headers: map[string]string{":path": "/v1/chat/completions"}}
	}
	for _, tc := range []struct {
		penaltyMs   int
		secondStays bool
	}{{5000, true}, {1000, false}} {
		eps := plugintest.Endpoints(3, 1)
		s, err := buildText(fmt.Sprintf(affinityConfig, tc.penaltyMs), eps)
		if err != nil {
			t.Fatal(err)
		}
		send := func() (*scheduler.State, *endpoint.Endpoint) {
			t.Helper()
			st, req := s.NewState(), chat(s)
			res, err := s.Schedule(ctx, st, req, eps)
			if err != nil {
				t.Fatal(err)
			}
			s.PreRequest(ctx, st, req, res)
			return st, res.Targets()[0]
		}
		firstState, first := send() // 2,000 uncached tokens in flight there
		_, second := send()
		if stayed := second == first; stayed != tc.secondStays {
			t.Errorf("maxTTFTPenaltyMs %d: second request stayed on the holder: %v, want %v", tc.penaltyMs, stayed, tc.secondStays)
		}
		// The first request answers: its prompt is prefilled, the holders
		// are no longer behind the idle third server, and the prompt sticks
		// to them although token-load-scorer prefers the idle one.
		chunk := []byte("data: {}\n\n")
		s.ResponseChunk(ctx, firstState, nil, &scheduler.Response{BodyBytes: len(chunk)}, chunk)
		if tc.secondStays {
			continue
		}
		if _, third := send(); third != first && third != second {
			t.Errorf("maxTTFTPenaltyMs %d: third request went to the idle %s, want a holder (%s or %s)",
				tc.penaltyMs, third.HostPort, first.HostPort, second.HostPort)
		}
	}
}

// llmdGuideConfig is the plugin document of llm-d's optimized-baseline guide
// in its current form: the gate counted in tokens, the producers listed.
const llmdGuideConfig = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: token-load-scorer
- type: inflight-load-producer
- type: approx-prefix-cache-producer
  parameters:
    maxPrefixTokensToMatch: 40960
- type: prefix-cache-affinity-filter
  parameters:
    affinityThreshold: 0.80
    maxTokensInFlightPenalty: 286720
    maxTTFTPenaltyMs: 0
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-affinity-filter
  - pluginRef: token-load-scorer
`

func TestLLMDGuideConfigLoads(t *testing.T) {
	t.Parallel()
	if _, err := buildText(llmdGuideConfig, plugintest.Endpoints(2, 1)); err != nil {
		t.Fatal(err)
	}
}

// llmdPDGuideConfig is the plugin document of llm-d's current P/D guide
// (apiVersion llm-d.ai/v1): the affinity filter and token load in the
// prefill profile, active requests in the decode profile, all on the
// in-flight producer's books.
const llmdPDGuideConfig = `apiVersion: llm-d.ai/v1
kind: EndpointPickerConfig
plugins:
- type: always-disagg-pd-decider
- type: disagg-profile-handler
  parameters:
    deciders:
      prefill: always-disagg-pd-decider
- type: prefill-filter
- type: decode-filter
- type: approx-prefix-cache-producer
  parameters:
    maxPrefixTokensToMatch: 131072
- type: inflight-load-producer
- type: prefix-cache-affinity-filter
  parameters:
    peakPrefillThroughput: 33821
- type: token-load-scorer
- type: active-request-scorer
- type: max-score-picker
schedulingProfiles:
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: prefix-cache-affinity-filter
  - pluginRef: token-load-scorer
  - pluginRef: max-score-picker
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: active-request-scorer
  - pluginRef: max-score-picker
`

func TestLLMDPDGuideConfigLoads(t *testing.T) {
	t.Parallel()
	if _, err := buildText(llmdPDGuideConfig, plugintest.Endpoints(2, 1)); err != nil {
		t.Fatal(err)
	}
}

// TestLLMDPDGuideSpreadsPrefills: under llm-d's P/D guide config, a
// request's prompt weighs on the prefill endpoint it was sent to until its
// first token, so the next distinct prompt goes to the other prefill
// endpoint, and back once the first is answered.
func TestLLMDPDGuideSpreadsPrefills(t *testing.T) {
	t.Parallel()
	var eps []*endpoint.Endpoint
	for i, role := range []string{"prefill", "prefill", "decode", "decode"} {
		e := endpoint.New(endpoint.Spec{Name: fmt.Sprintf("%s-%d", role, i), Address: fmt.Sprintf("10.1.0.%d", i+1), Port: 8000,
			Labels: map[string]string{"llm-d.ai/role": role}})
		e.SetMetrics(&endpoint.Metrics{UpdateTime: time.Now()})
		eps = append(eps, e)
	}
	s, err := buildText(llmdPDGuideConfig, eps)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	send := func(prompt string) (*scheduler.State, *endpoint.Endpoint) {
		t.Helper()
		raw := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]}`, prompt)
		body, err := request.Parse(request.ChatCompletions, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		req := &scheduler.Request{ID: "r", Model: "m", Body: body, Headers: map[string]string{":path": "/v1/chat/completions"}}
		st := s.NewState()
		res, err := s.Schedule(ctx, st, req, eps)
		if err != nil {
			t.Fatal(err)
		}
		s.PreRequest(ctx, st, req, res)
		return st, res.PrefillTarget()
	}
	firstState, first := send(strings.Repeat("alpha ", 2000))
	_, second := send(strings.Repeat("bravo ", 2000))
	if first == nil || second == nil || first == second {
		t.Fatalf("two prompts prefilled on %v and %v, want the two prefill endpoints", first, second)
	}
	chunk := []byte("data: {}\n\n")
	s.ResponseChunk(ctx, firstState, nil, &scheduler.Response{BodyBytes: len(chunk)}, chunk)
	if _, third := send(strings.Repeat("charlie ", 2000)); third != first {
		t.Errorf("third prompt prefilled on %s, want the now idle %s", third.HostPort, first.HostPort)
	}
}
