package models_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/models"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/test/configtest"
)

func build(t *testing.T, yaml string) (*config.Built, error) { return configtest.Build(t, yaml) }

func runnables(b *config.Built) []string {
	var out []string
	for _, r := range b.Runnables {
		out = append(out, r.Name)
	}
	return out
}

// TestResponderBringsItsSource builds llm-d configs with the real plugins:
// listing models-responder is enough, a declared source replaces the one
// it would add, and every source is fed.
func TestResponderBringsItsSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		yaml       string
		wantSource string
	}{
		{name: "added", yaml: "plugins: [{type: queue-scorer}, {type: models-responder}]\n", wantSource: models.SourceType},
		{name: "declared", yaml: "plugins: [{type: models-responder}, {name: mine, type: models-data-source, parameters: {interval: 1s}}]\n", wantSource: "mine"},
		{name: "listed", yaml: `plugins: [{type: models-responder}, {name: mine, type: models-data-source}, {name: x, type: models-data-extractor}]
dataLayer: {sources: [{pluginRef: mine, extractors: [{pluginRef: x}]}]}
`, wantSource: "mine"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := build(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			srcs := config.Instances[*models.Source](b)
			if len(srcs) != 1 || srcs[0].TypedName().Name != tc.wantSource {
				t.Fatalf("sources %v, want one named %q", srcs, tc.wantSource)
			}
			if !slices.Contains(runnables(b), tc.wantSource) {
				t.Errorf("runnables %v lack the source", runnables(b))
			}
			if len(config.Instances[scheduler.Responder](b)) != 1 || len(config.Instances[scheduler.Screener](b)) != 1 {
				t.Error("the responder is not a responder and screener")
			}
			for _, w := range b.Warnings {
				if strings.Contains(w, "collects nothing") {
					t.Errorf("warning: %s", w)
				}
			}
		})
	}
}

func TestModelPluginConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{name: "responder parameters", yaml: "plugins: [{type: models-responder, parameters: {cache: true}}]\n",
			want: `unknown field "cache"`},
		{name: "extractor parameters", yaml: "plugins: [{type: models-responder}, {type: models-data-extractor, parameters: {x: 1}}]\n",
			want: `unknown field "x"`},
		{name: "source scheme", yaml: "plugins: [{type: models-responder}, {type: models-data-source, parameters: {scheme: ftp}}]\n",
			want: `scheme: must be http or https, got "ftp"`},
		{name: "half a client pair", yaml: "plugins: [{type: models-data-source, parameters: {clientKeyPath: /k}}]\n",
			want: "clientCertPath and clientKeyPath: set both or neither"},
		{name: "a metrics extractor on the models source", yaml: `plugins: [{type: models-responder}, {type: models-data-source}, {type: core-metrics-extractor}]
dataLayer: {sources: [{pluginRef: models-data-source, extractors: [{pluginRef: core-metrics-extractor}]}]}
`, want: `dataLayer.sources[0].extractors[0].pluginRef: "core-metrics-extractor" cannot extract from models-data-source`},
		{name: "responder in a profile", yaml: `plugins: [{type: models-responder}, {type: queue-scorer}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: models-responder}, {pluginRef: queue-scorer}]}]
`, want: `"models-responder" is a candidate screener and responder; a profile holds only filters, scorers and pickers`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := build(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
