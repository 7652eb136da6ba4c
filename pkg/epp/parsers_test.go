package epp

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/plugins"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestUnparsedAPIs: the parsers a config names decide which API families
// are parsed; naming none parses every family.
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
		{"GIE openai-parser", head + "plugins:\n" + scorer + "- type: openai-parser\nparser: {pluginRef: openai-parser}\n", request.AnthropicAPIs | request.GenerateAPIs | request.SGLangAPIs},
		{"llm-d both", head + "plugins:\n" + scorer + "- type: openai-parser\n- type: anthropic-parser\n" +
			"requestHandler: {parsers: [{pluginRef: openai-parser}, {pluginRef: anthropic-parser}]}\n", request.GenerateAPIs | request.SGLangAPIs},
		{"llm-d three", head + "plugins:\n" + scorer + "- type: openai-parser\n- type: anthropic-parser\n- type: vllmhttp-parser\n" +
			"requestHandler: {parsers: [{pluginRef: openai-parser}, {pluginRef: anthropic-parser}, {pluginRef: vllmhttp-parser}]}\n", request.SGLangAPIs},
		{"llm-d empty list", head + "plugins:\n" + scorer + "requestHandler: {parsers: []}\n", 0},
		{"anthropic only", head + "plugins:\n" + scorer + "- type: anthropic-parser\nparser: {pluginRef: anthropic-parser}\n", request.OpenAIAPIs | request.GenerateAPIs | request.SGLangAPIs},
		{"vllmhttp only", head + "plugins:\n" + scorer + "- type: vllmhttp-parser\nparser: {pluginRef: vllmhttp-parser}\n", request.AnthropicAPIs | request.SGLangAPIs},
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

// TestReloadChangesParsers: a config reload that names other parsers takes
// effect for new requests, as every other reloaded setting does (it used to
// need a restart).
func TestReloadChangesParsers(t *testing.T) {
	t.Parallel()
	const head = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n"
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	write := func(text string) {
		if err := os.WriteFile(cfg+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".tmp", cfg); err != nil {
			t.Fatal(err)
		}
	}
	write(head + "- type: openai-parser\nparser: {pluginRef: openai-parser}\n")
	r := startEPP(t, 2, 0, "--config-file", cfg)
	// Not JSON: refused with 400 where the body is parsed, routed on load
	// alone where it is not.
	status := func() int {
		d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/messages",
			Headers: map[string][]string{"content-type": {"application/json"}}, Body: []byte(`{"model":`)})
		if err != nil {
			t.Fatal(err)
		}
		if d.Immediate != nil {
			return d.Immediate.Status
		}
		return 200
	}
	if got := status(); got != 200 {
		t.Fatalf("/v1/messages with only openai-parser configured: %d, want it routed unparsed", got)
	}
	write(head) // no parser named: both families parsed
	eventually(t, "the reload to parse /v1/messages", func() bool { return status() == 400 })
}
