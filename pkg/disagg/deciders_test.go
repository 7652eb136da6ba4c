package disagg

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestMultimodal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prompt string
		want   bool
	}{
		{`[{"role":"user","content":"hello"}]`, false},
		{`[{"role":"user","content":"describe an image_url field"}]`, false}, // the word, not a part
		{`[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:,"}}]}]`, true},
		{`[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"","format":"wav"}}]}]`, true},
		{`[{"role":"user","content":[{"type":"video_url","video_url":{"url":"x"}}]}]`, true},
		{`[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]`, true}, // Responses API
		{`[{"type":"image_url"`, false}, // truncated JSON: not multimodal, no panic
		{``, false},
	}
	for _, tc := range tests {
		if got := Multimodal([]byte(tc.prompt)); got != tc.want {
			t.Errorf("Multimodal(%s) = %v, want %v", tc.prompt, got, tc.want)
		}
	}
}

// fixedSource is a prefix source under the microscope: it reports that
// endpoint holder holds blocks blocks of 16 tokens.
type fixedSource struct {
	holder *endpoint.Endpoint
	blocks int
}

func (f fixedSource) TypedName() scheduler.TypedName { return scheduler.TypedName{Type: "fixed"} }
func (f fixedSource) Match(*scheduler.State) (*prefix.Match, bool) {
	m := prefix.NewMatch(1000, 16)
	m.Set(f.holder, f.blocks)
	return m, true
}

func TestPrefixDecider(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(2, 1)
	req := plugintest.Request("m", 4000) // 1,000 estimated tokens
	tests := []struct {
		name            string
		params          PrefixDeciderParams
		source          prefix.Source
		decode          *endpoint.Endpoint
		want            bool
		wantBuildErrSub string
	}{
		{name: "zero means never", params: PrefixDeciderParams{}, want: false},
		{name: "uncached prompt over threshold", params: PrefixDeciderParams{NonCachedTokens: 256}, want: true},
		{name: "cached on decode", params: PrefixDeciderParams{NonCachedTokens: 256}, source: fixedSource{eps[0], 50}, decode: eps[0], want: false}, // 1000 - 800 < 256
		{name: "cached elsewhere", params: PrefixDeciderParams{NonCachedTokens: 256}, source: fixedSource{eps[1], 50}, decode: eps[0], want: true},
		{name: "prompt gate", params: PrefixDeciderParams{NonCachedTokens: 8, PromptTokens: 2000}, want: false},
		{name: "negative", params: PrefixDeciderParams{NonCachedTokens: -1}, wantBuildErrSub: ">= 0"},
	}
	for _, tc := range tests {
		d, err := NewPrefixDecider("d", tc.params)
		if tc.wantBuildErrSub != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantBuildErrSub) {
				t.Errorf("%s: err = %v", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		d.source = tc.source
		if got := d.Disaggregate(context.Background(), plugintest.State(1), req, tc.decode); got != tc.want {
			t.Errorf("%s: Disaggregate = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A request without a body (bodyless API) is never disaggregated.
	d, _ := NewPrefixDecider("d", PrefixDeciderParams{NonCachedTokens: 1})
	if d.Disaggregate(context.Background(), plugintest.State(1), &scheduler.Request{}, nil) {
		t.Error("bodyless request disaggregated")
	}
}

func TestDecisionLabelBudget(t *testing.T) {
	t.Parallel()
	m, err := registerDecisionMetrics(prometheus.NewRegistry(), scheduler.TypedName{Type: HandlerType, Name: "h"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxModelLabels; i++ {
		m.models.Value(strings.Repeat("x", i+1))
	}
	if got := m.models.Value("one-too-many"); got != "other" {
		t.Errorf("label past the budget = %q, want other", got)
	}
	if got := m.models.Value("x"); got != "x" {
		t.Errorf("known label = %q, want x", got)
	}
}
