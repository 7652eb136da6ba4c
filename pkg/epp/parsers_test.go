package epp

import (
	"testing"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/plugins"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestUnparsedAPIs: the parsers a config names decide which API families
// are parsed; naming none parses both.
func TestUnparsedAPIs(t *testing.T) {
	t.Parallel()
	const head = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
	const scorer = "- type: queue-scorer\n"
	tests := []struct {
		name, yaml string
		want       request.APISet
	}{
		{"no parser named", head + "plugins:\n" + scorer, 0},
		{"shipped default", config.DefaultText, 0},
		{"GIE openai-parser", head + "plugins:\n" + scorer + "- type: openai-parser\nparser: {pluginRef: openai-parser}\n", request.AnthropicAPIs},
		{"llm-d both", head + "plugins:\n" + scorer + "- type: openai-parser\n- type: anthropic-parser\n" +
			"requestHandler: {parsers: [{pluginRef: openai-parser}, {pluginRef: anthropic-parser}]}\n", 0},
		{"llm-d empty list", head + "plugins:\n" + scorer + "requestHandler: {parsers: []}\n", 0},
		{"anthropic only", head + "plugins:\n" + scorer + "- type: anthropic-parser\nparser: {pluginRef: anthropic-parser}\n", request.OpenAIAPIs},
		{"passthrough", head + "plugins:\n" + scorer + "- type: passthrough-parser\nparser: {pluginRef: passthrough-parser}\n", request.AllAPIs},
	}
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		cfg, err := config.Load([]byte(tc.yaml))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		built, err := config.Build(cfg, reg, &scheduler.Handle{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := unparsedAPIs(built); got != tc.want {
			t.Errorf("%s: unparsed %b, want %b", tc.name, got, tc.want)
		}
	}
}
