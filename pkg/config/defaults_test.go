package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// summary renders what defaulting touches, one line per fact.
func summary(c *Config) []string {
	var out []string
	for _, p := range c.Plugins {
		line := fmt.Sprintf("plugin %s: %s", p.Name, p.Type)
		if s := canonicalJSON(p.Parameters); s != "" {
			line += " " + s
		}
		out = append(out, line)
	}
	for _, p := range c.SchedulingProfiles {
		var refs []string
		for _, pp := range p.Plugins {
			if pp.Weight != nil {
				refs = append(refs, fmt.Sprintf("%s*%g", pp.PluginRef, *pp.Weight))
			} else {
				refs = append(refs, pp.PluginRef)
			}
		}
		out = append(out, fmt.Sprintf("profile %s: %s", p.Name, strings.Join(refs, " ")))
	}
	if c.Parser != nil {
		out = append(out, "parser: "+c.Parser.PluginRef)
	}
	if c.RequestHandler != nil {
		out = append(out, "requestHandler.parsers: "+joinRefs(c.RequestHandler.Parsers))
	}
	if c.SaturationDetector != nil {
		out = append(out, "saturationDetector: "+c.SaturationDetector.PluginRef)
	}
	out = append(out, dataLayerSummary(c.DataLayer)...)
	return append(out, flowControlSummary(c.FlowControl)...)
}

func joinRefs(refs []PluginRef) string {
	var s []string
	for _, r := range refs {
		s = append(s, r.PluginRef)
	}
	return strings.Join(s, ",")
}

func dataLayerSummary(d *DataLayer) []string {
	if d == nil {
		return []string{"dataLayer: absent"}
	}
	if len(d.Sources) == 0 {
		return []string{"dataLayer: no sources"}
	}
	var out []string
	for _, s := range d.Sources {
		out = append(out, fmt.Sprintf("dataLayer source %s: %s", s.PluginRef, joinRefs(s.Extractors)))
	}
	return out
}

func flowControlSummary(f *FlowControl) []string {
	if f == nil {
		return nil
	}
	out := []string{"flowControl.usageLimitPolicyPluginRef: " + f.UsageLimitPolicyPluginRef}
	if f.SaturationDetector != nil {
		out = append(out, "flowControl.saturationDetector: "+f.SaturationDetector.PluginRef)
	}
	band := func(name string, b *PriorityBand) {
		if b != nil {
			out = append(out, fmt.Sprintf("%s: %s %s", name, b.FairnessPolicyRef, b.OrderingPolicyRef))
		}
	}
	band("defaultPriorityBand", f.DefaultPriorityBand)
	band("defaultNegativePriorityBand", f.DefaultNegativePriorityBand)
	for i := range f.PriorityBands {
		band(fmt.Sprintf("priorityBands[%d]", i), &f.PriorityBands[i])
	}
	return out
}

// optionalDefaults are the lines every config gains unless it sets the
// sections itself.
var optionalDefaults = []string{
	"plugin openai-parser: openai-parser",
	"plugin anthropic-parser: anthropic-parser",
	"plugin vllmhttp-parser: vllmhttp-parser",
	"plugin sglanghttp-parser: sglanghttp-parser",
	"plugin utilization-detector: utilization-detector",
}

const llmd = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"

// llmdV1 is the apiVersion llm-d's guides moved to.
const llmdV1 = "apiVersion: llm-d.ai/v1\nkind: EndpointPickerConfig\n"

var loadDefaultCases = []struct {
	name string
	yaml string
	want []string
}{{
	name: "names, parser, detector and data layer",
	yaml: header + "plugins: [{type: queue-scorer}, {name: kv, type: kv-cache-utilization-scorer}]\n",
	want: concat([]string{"plugin queue-scorer: queue-scorer", "plugin kv: kv-cache-utilization-scorer"}, optionalDefaults, []string{
		"plugin metrics-data-source: metrics-data-source",
		"plugin core-metrics-extractor: core-metrics-extractor",
		"parser: openai-parser",
		"saturationDetector: utilization-detector",
		"dataLayer source metrics-data-source: core-metrics-extractor",
	}),
}, {
	name: "explicit empty dataLayer disables collection",
	yaml: header + "plugins: [{type: queue-scorer}]\ndataLayer: {}\n",
	want: concat([]string{"plugin queue-scorer: queue-scorer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "llm-d injects into a present section",
	yaml: llmd + "plugins: [{type: queue-scorer}, {type: models-data-source}]\ndataLayer: {sources: [{pluginRef: models-data-source}]}\n",
	want: concat([]string{"plugin queue-scorer: queue-scorer", "plugin models-data-source: models-data-source"}, optionalDefaults, []string{
		"plugin metrics-data-source: metrics-data-source",
		"plugin core-metrics-extractor: core-metrics-extractor",
		"parser: openai-parser",
		"saturationDetector: utilization-detector",
		"dataLayer source models-data-source: ",
		"dataLayer source metrics-data-source: core-metrics-extractor",
	}),
}, {
	name: "llm-d.ai/v1 files are llm-d files",
	yaml: llmdV1 + "plugins: [{type: queue-scorer}, {type: models-data-source}]\ndataLayer: {sources: [{pluginRef: models-data-source}]}\n",
	want: concat([]string{"plugin queue-scorer: queue-scorer", "plugin models-data-source: models-data-source"}, optionalDefaults, []string{
		"plugin metrics-data-source: metrics-data-source",
		"plugin core-metrics-extractor: core-metrics-extractor",
		"parser: openai-parser",
		"saturationDetector: utilization-detector",
		"dataLayer source models-data-source: ",
		"dataLayer source metrics-data-source: core-metrics-extractor",
	}),
}, {
	name: "llm-d injectDefaults false disables collection",
	yaml: llmd + "plugins: [{type: queue-scorer}]\ndataLayer: {injectDefaults: false}\n",
	want: concat([]string{"plugin queue-scorer: queue-scorer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "an existing metrics source is not duplicated",
	yaml: header + "plugins: [{name: m, type: metrics-data-source}]\ndataLayer: {injectDefaults: true, sources: [{pluginRef: m}]}\n",
	want: concat([]string{"plugin m: metrics-data-source"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer source m: ",
	}),
}, {
	name: "prefix-cache-scorer brings its producer with the same parameters",
	yaml: header + "plugins: [{type: prefix-cache-scorer, parameters: {blockSizeTokens: 64, autoTune: false}}]\ndataLayer: {}\n",
	want: concat([]string{`plugin prefix-cache-scorer: prefix-cache-scorer {"autoTune":false,"blockSizeTokens":64}`}, optionalDefaults, []string{
		`plugin approx-prefix-cache-producer: approx-prefix-cache-producer {"autoTune":false,"blockSizeTokens":64}`,
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "prefix-cache-affinity-filter brings the producers it reads, with their defaults",
	yaml: header + "plugins: [{type: prefix-cache-affinity-filter, parameters: {affinityThreshold: 0.9}}]\ndataLayer: {}\n",
	want: concat([]string{`plugin prefix-cache-affinity-filter: prefix-cache-affinity-filter {"affinityThreshold":0.9}`}, optionalDefaults, []string{
		"plugin approx-prefix-cache-producer: approx-prefix-cache-producer",
		"plugin inflight-load-producer: inflight-load-producer",
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "a scorer naming no producer reads the approximate one, even beside a precise one (llm-d)",
	yaml: header + "plugins: [{type: prefix-cache-scorer}, {name: p, type: precise-prefix-cache-producer}]\ndataLayer: {}\n",
	want: concat([]string{"plugin prefix-cache-scorer: prefix-cache-scorer", "plugin p: precise-prefix-cache-producer"}, optionalDefaults, []string{
		"plugin approx-prefix-cache-producer: approx-prefix-cache-producer",
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "a scorer naming its producer gets no other",
	yaml: header + "plugins: [{type: prefix-cache-scorer, parameters: {prefixMatchInfoProducerName: p}}, {name: p, type: precise-prefix-cache-producer}]\ndataLayer: {}\n",
	want: concat([]string{`plugin prefix-cache-scorer: prefix-cache-scorer {"prefixMatchInfoProducerName":"p"}`, "plugin p: precise-prefix-cache-producer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "p2p-source-producer brings an approximate producer and reads it",
	yaml: header + "plugins: [{type: p2p-source-producer}]\ndataLayer: {}\n",
	want: concat([]string{`plugin p2p-source-producer: p2p-source-producer {"prefixMatchInfoProducerName":"approx-prefix-cache-producer"}`}, optionalDefaults, []string{
		"plugin approx-prefix-cache-producer: approx-prefix-cache-producer",
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "p2p-source-producer reads the only prefix producer, precise too",
	yaml: header + "plugins: [{type: p2p-source-producer}, {name: p, type: precise-prefix-cache-producer}]\ndataLayer: {}\n",
	want: concat([]string{`plugin p2p-source-producer: p2p-source-producer {"prefixMatchInfoProducerName":"p"}`, "plugin p: precise-prefix-cache-producer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "mm-embeddings-cache-scorer brings its producer and names it (llm-d)",
	yaml: header + "plugins: [{type: mm-embeddings-cache-scorer}]\ndataLayer: {}\n",
	want: concat([]string{`plugin mm-embeddings-cache-scorer: mm-embeddings-cache-scorer {"producerName":"mm-embeddings-cache-producer"}`}, optionalDefaults, []string{
		"plugin mm-embeddings-cache-producer: mm-embeddings-cache-producer",
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "an mm-embeddings-cache-scorer naming no producer reads the only one, whatever its name",
	yaml: header + "plugins: [{type: mm-embeddings-cache-scorer, parameters: {producerName: \"\"}}, {name: mm, type: mm-embeddings-cache-producer}]\ndataLayer: {}\n",
	want: concat([]string{`plugin mm-embeddings-cache-scorer: mm-embeddings-cache-scorer {"producerName":"mm"}`, "plugin mm: mm-embeddings-cache-producer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "an mm-embeddings-cache-scorer naming no producer among several is left to say so",
	yaml: header + "plugins: [{type: mm-embeddings-cache-scorer}, {name: a, type: mm-embeddings-cache-producer}, {name: b, type: mm-embeddings-cache-producer}]\ndataLayer: {}\n",
	want: concat([]string{"plugin mm-embeddings-cache-scorer: mm-embeddings-cache-scorer", "plugin a: mm-embeddings-cache-producer", "plugin b: mm-embeddings-cache-producer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "an mm-embeddings-cache-scorer naming its producer keeps the name and gets no other",
	yaml: header + "plugins: [{type: mm-embeddings-cache-scorer, parameters: {producerName: b}}, {name: a, type: mm-embeddings-cache-producer}]\ndataLayer: {}\n",
	want: concat([]string{`plugin mm-embeddings-cache-scorer: mm-embeddings-cache-scorer {"producerName":"b"}`, "plugin a: mm-embeddings-cache-producer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}, {
	name: "llm-d parsers and flow-control detector",
	yaml: llmd + `plugins: [{type: queue-scorer}, {type: concurrency-detector}, {type: edf-ordering-policy}]
requestHandler: {parsers: []}
flowControl:
  saturationDetector: {pluginRef: concurrency-detector}
  defaultPriorityBand: {orderingPolicyRef: edf-ordering-policy}
  defaultNegativePriorityBand: {}
  priorityBands: [{priority: 5}]
dataLayer: {injectDefaults: false}
`,
	want: []string{
		"plugin queue-scorer: queue-scorer",
		"plugin concurrency-detector: concurrency-detector",
		"plugin edf-ordering-policy: edf-ordering-policy",
		"plugin global-strict-fairness-policy: global-strict-fairness-policy",
		"plugin fcfs-ordering-policy: fcfs-ordering-policy",
		"plugin static-usage-limit-policy: static-usage-limit-policy",
		"plugin openai-parser: openai-parser",
		"plugin anthropic-parser: anthropic-parser",
		"plugin vllmhttp-parser: vllmhttp-parser",
		"plugin sglanghttp-parser: sglanghttp-parser",
		"requestHandler.parsers: openai-parser,anthropic-parser,vllmhttp-parser,sglanghttp-parser",
		"dataLayer: no sources",
		"flowControl.usageLimitPolicyPluginRef: static-usage-limit-policy",
		"flowControl.saturationDetector: concurrency-detector",
		"defaultPriorityBand: global-strict-fairness-policy edf-ordering-policy",
		"defaultNegativePriorityBand: global-strict-fairness-policy fcfs-ordering-policy",
		"priorityBands[0]: global-strict-fairness-policy fcfs-ordering-policy",
	},
}, {
	name: "flowControl gate alone declares the default policies",
	yaml: header + "featureGates: [flowControl=true]\nplugins: [{type: queue-scorer}]\nparser: {pluginRef: queue-scorer}\nsaturationDetector: {pluginRef: queue-scorer}\ndataLayer: {}\n",
	want: []string{
		"plugin queue-scorer: queue-scorer",
		"plugin global-strict-fairness-policy: global-strict-fairness-policy",
		"plugin fcfs-ordering-policy: fcfs-ordering-policy",
		"plugin static-usage-limit-policy: static-usage-limit-policy",
		"parser: queue-scorer",
		"saturationDetector: queue-scorer",
		"dataLayer: no sources",
	},
}, {
	name: "models-responder brings a models source and its extractor",
	yaml: header + "plugins: [{type: queue-scorer}, {type: models-responder}]\n",
	want: concat([]string{"plugin queue-scorer: queue-scorer", "plugin models-responder: models-responder"}, optionalDefaults, []string{
		"plugin metrics-data-source: metrics-data-source",
		"plugin core-metrics-extractor: core-metrics-extractor",
		"plugin models-data-source: models-data-source",
		"plugin models-data-extractor: models-data-extractor",
		"parser: openai-parser", "saturationDetector: utilization-detector",
		"dataLayer source metrics-data-source: core-metrics-extractor",
		"dataLayer source models-data-source: models-data-extractor",
	}),
}, {
	name: "a declared models-data-source replaces the added one",
	yaml: header + "plugins: [{type: models-responder}, {name: m, type: models-data-source, parameters: {interval: 1s}}]\ndataLayer: {}\n",
	want: concat([]string{"plugin models-responder: models-responder", `plugin m: models-data-source {"interval":"1s"}`}, optionalDefaults, []string{
		"plugin models-data-extractor: models-data-extractor",
		"parser: openai-parser", "saturationDetector: utilization-detector",
		"dataLayer source m: models-data-extractor",
	}),
}, {
	name: "a listed models source without extractor gets the declared one",
	yaml: llmd + `plugins: [{type: models-responder}, {name: x, type: models-data-extractor}, {name: s, type: models-data-source}]
dataLayer: {sources: [{pluginRef: s}]}
`,
	want: concat([]string{"plugin models-responder: models-responder", "plugin x: models-data-extractor", "plugin s: models-data-source"},
		optionalDefaults, []string{
			"plugin metrics-data-source: metrics-data-source",
			"plugin core-metrics-extractor: core-metrics-extractor",
			"parser: openai-parser", "saturationDetector: utilization-detector",
			"dataLayer source s: x",
			"dataLayer source metrics-data-source: core-metrics-extractor",
		}),
}, {
	name: "a listed models source keeps its extractors",
	yaml: header + `plugins: [{type: models-responder}, {name: s, type: models-data-source}, {name: x, type: models-data-extractor}]
dataLayer: {sources: [{pluginRef: s, extractors: [{pluginRef: x}]}]}
`,
	want: concat([]string{"plugin models-responder: models-responder", "plugin s: models-data-source", "plugin x: models-data-extractor"},
		optionalDefaults, []string{"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer source s: x"}),
}, {
	name: "flowControl gate off declares nothing",
	yaml: header + "featureGates: [flowControl=false]\nplugins: [{type: queue-scorer}]\ndataLayer: {}\n",
	want: concat([]string{"plugin queue-scorer: queue-scorer"}, optionalDefaults, []string{
		"parser: openai-parser", "saturationDetector: utilization-detector", "dataLayer: no sources",
	}),
}}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	tests := loadDefaultCases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summary(cfg)); diff != "" {
				t.Errorf("defaulted config (-want +got):\n%s", diff)
			}
			again := cfg.Clone()
			applyDefaults(again, nil)
			if diff := cmp.Diff(summary(cfg), summary(again)); diff != "" {
				t.Errorf("defaulting is not idempotent (-first +second):\n%s", diff)
			}
		})
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestGates(t *testing.T) {
	t.Parallel()
	cfg, err := Load([]byte(header + "featureGates: [flowControl, haPopulateNonLeaderDatastore=false, ' enableLegacyMetrics = true ']\nplugins: [{type: queue-scorer}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"dataLayer": false, "enableLegacyMetrics": true, "flowControl": true, "haPopulateNonLeaderDatastore": false, "prepareDataPlugins": false}
	if diff := cmp.Diff(want, cfg.Gates()); diff != "" {
		t.Errorf("gates (-want +got):\n%s", diff)
	}
	if !cfg.FeatureEnabled("flowControl") || cfg.FeatureEnabled("nope") {
		t.Errorf("FeatureEnabled disagrees with Gates")
	}
}
