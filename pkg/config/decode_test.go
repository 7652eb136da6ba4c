package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const knownTop = "apiVersion, dataLayer, featureGates, flowControl, kind, parser, plugins, requestHandler, saturationDetector, schedulingProfiles"

var loadErrorCases = []struct {
	name string
	yaml string
	want []string
}{{
	name: "empty document",
	yaml: "# nothing here\n",
	want: []string{"config is empty"},
}, {
	name: "not an object",
	yaml: "- a\n- b\n",
	want: []string{"must be an object, got a list"},
}, {
	name: "two documents",
	yaml: header + "plugins: [{type: queue-scorer}]\n---\n" + header,
	want: []string{"found 2 YAML documents, expected one"},
}, {
	name: "duplicate key",
	yaml: header + "plugins: []\nplugins: []\n",
	want: []string{`yaml: unmarshal errors: line 4: key "plugins" already set in map`},
}, {
	name: "NaN weight",
	yaml: header + "plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer, weight: .nan}]}]\n",
	want: []string{"yaml: json: unsupported value: NaN (NaN and infinite numbers are not allowed)"},
}, {
	name: "upstream docs' wrong data key and a misspelt weight",
	yaml: header + `plugins:
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    wieght: 2
data:
  sources: []
`,
	want: []string{
		"data: unknown field (known: " + knownTop + ")",
		"schedulingProfiles[0].plugins[0].wieght: unknown field (known: pluginRef, weight)",
	},
}, {
	name: "field names are case-sensitive",
	yaml: header + "Plugins: [{type: queue-scorer}]\n",
	want: []string{"Plugins: unknown field (known: " + knownTop + ")"},
}, {
	name: "wrong types everywhere",
	yaml: header + `featureGates: flowControl
plugins:
- type: 7
  name: [a]
  parameters: "any JSON is fine here"
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: heavy
flowControl:
  enableEviction: "yes"
  priorityBands:
  - priority: 1.5
`,
	want: []string{
		"featureGates: must be a list, got string \"flowControl\"",
		"flowControl.enableEviction: must be a boolean, got string \"yes\"",
		"flowControl.priorityBands[0].priority: must be an integer, got number 1.5",
		"plugins[0].name: must be a string, got a list",
		"plugins[0].type: must be a string, got number 7",
		"schedulingProfiles[0].plugins[0].weight: must be a number, got string \"heavy\"",
	},
}, {
	name: "bad quantities and durations",
	yaml: header + `plugins: [{type: queue-scorer}]
flowControl:
  maxBytes: 10Gx
  maxRequests: true
  defaultRequestTTL: 60
  noEndpointRequestTTL: 5 minutes
dataLayer:
  crossReplicaSyncInterval: soon
`,
	want: []string{
		"dataLayer.crossReplicaSyncInterval: invalid duration \"soon\": must look like \"60s\" or \"1m30s\"",
		"flowControl.defaultRequestTTL: must be a duration string such as \"60s\"",
		"flowControl.maxBytes: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
		"flowControl.maxRequests: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
		"flowControl.noEndpointRequestTTL: invalid duration \"5 minutes\": must look like \"60s\" or \"1m30s\"",
	},
}, {
	name: "header",
	yaml: "kind: EndpointPicker\nplugins: [{type: queue-scorer}]\n",
	want: []string{
		`apiVersion: required ("inference.networking.x-k8s.io/v1alpha1", "llm-d.ai/v1" or "llm-d.ai/v1alpha1")`,
		`kind: must be "EndpointPickerConfig", got "EndpointPicker"`,
	},
}, {
	name: "unsupported apiVersion",
	yaml: "apiVersion: v1\nkind: EndpointPickerConfig\nplugins: [{type: queue-scorer}]\n",
	want: []string{`apiVersion: unsupported "v1" (supported: "inference.networking.x-k8s.io/v1alpha1", "llm-d.ai/v1", "llm-d.ai/v1alpha1")`},
}, {
	name: "feature gates",
	yaml: header + "featureGates: [flowControl, flowControl=false, turbo, dataLayer=maybe, '']\nplugins: [{type: queue-scorer}]\n",
	want: []string{
		`featureGates[1]: feature gate "flowControl" is already set by featureGates[0]`,
		`featureGates[2]: unknown feature gate "turbo" (known: dataLayer, enableLegacyMetrics, flowControl, haPopulateNonLeaderDatastore, prepareDataPlugins)`,
		`featureGates[3]: feature gate "dataLayer": value "maybe" is not true or false`,
		`featureGates[4]: empty feature gate`,
	},
}, {
	name: "no plugins",
	yaml: header + "plugins: []\n",
	want: []string{"plugins: at least one plugin is required"},
}, {
	name: "plugin names",
	yaml: header + `plugins:
- type: queue-scorer
- name: queue-scorer
  type: kv-cache-utilization-scorer
- name: lonely
- name: x
  type: a
- name: x
  type: b
`,
	want: []string{
		`plugins[1].name: duplicate name "queue-scorer" (also plugins[0])`,
		`plugins[2].type: required`,
		`plugins[4].name: duplicate name "x" (also plugins[3])`,
	},
}, {
	name: "profiles",
	yaml: header + `plugins:
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: a
  plugins:
  - pluginRef: queue-scorer
    weight: 0
  - pluginRef: queue-scorer
    weight: -1
  - pluginRef: x
  - weight: 2
- name: a
  plugins: []
- plugins: []
`,
	want: []string{
		`schedulingProfiles[0].plugins[0].weight: must be > 0`,
		`schedulingProfiles[0].plugins[1].pluginRef: "queue-scorer" is already in this profile (plugins[0])`,
		`schedulingProfiles[0].plugins[1].weight: must be > 0`,
		`schedulingProfiles[0].plugins[2].pluginRef: no plugin named "x"`,
		`schedulingProfiles[0].plugins[3].pluginRef: required`,
		`schedulingProfiles[1].name: duplicate profile name "a" (also schedulingProfiles[0])`,
		`schedulingProfiles[2].name: required`,
	},
}, {
	name: "section references",
	yaml: header + `plugins: [{type: queue-scorer}]
saturationDetector: {pluginRef: det}
parser: {pluginRef: p}
requestHandler:
  parsers: [{pluginRef: q}]
dataLayer:
  sources:
  - pluginRef: src
    extractors: [{pluginRef: ex}]
  - pluginRef: src
  discovery: {pluginRef: disc}
  peerDiscovery: {pluginRef: ""}
  crossReplicaSyncerPluginRef: sync
flowControl:
  saturationDetector: {pluginRef: other}
  usageLimitPolicyPluginRef: limit
  defaultPriorityBand: {fairnessPolicyRef: fair}
  priorityBands:
  - {priority: 1, orderingPolicyRef: order}
`,
	want: []string{
		`dataLayer.crossReplicaSyncerPluginRef: no plugin named "sync"`,
		`dataLayer.discovery.pluginRef: no plugin named "disc"`,
		`dataLayer.peerDiscovery.pluginRef: required`,
		`dataLayer.sources[0].extractors[0].pluginRef: no plugin named "ex"`,
		`dataLayer.sources[0].pluginRef: no plugin named "src"`,
		`dataLayer.sources[1].pluginRef: no plugin named "src"`,
		`dataLayer.sources[1].pluginRef: source "src" is already listed (dataLayer.sources[0])`,
		`flowControl.defaultPriorityBand.fairnessPolicyRef: no plugin named "fair"`,
		`flowControl.priorityBands[0].orderingPolicyRef: no plugin named "order"`,
		`flowControl.saturationDetector.pluginRef: no plugin named "other"`,
		`flowControl.usageLimitPolicyPluginRef: no plugin named "limit"`,
		`parser.pluginRef: no plugin named "p"`,
		`parser: cannot be combined with requestHandler.parsers; set one`,
		`requestHandler.parsers[0].pluginRef: no plugin named "q"`,
		`saturationDetector.pluginRef: no plugin named "det"`,
		`saturationDetector: conflicts with flowControl.saturationDetector ("det" vs "other"); set one`,
	},
}, {
	name: "flow control ranges",
	yaml: header + `plugins: [{type: queue-scorer}]
flowControl:
  maxBytes: -1Gi
  maxRequests: "0.5"
  defaultRequestTTL: -5s
  defaultNegativePriorityBand: {maxRequests: 1500m}
  priorityBands:
  - {priority: 10}
  - {priority: 10}
  - {maxBytes: 1G}
`,
	want: []string{
		`flowControl.defaultNegativePriorityBand.maxRequests: must be a whole number that fits in 64 bits, got 1500m`,
		`flowControl.defaultRequestTTL: must be >= 0, got -5s`,
		`flowControl.maxBytes: must be >= 0, got -1Gi`,
		`flowControl.maxRequests: must be a whole number that fits in 64 bits, got 500m`,
		`flowControl.priorityBands[1].priority: duplicate priority 10 (also priorityBands[0])`,
		`flowControl.priorityBands[2].priority: required`,
	},
}, {
	name: "many classes reported together",
	yaml: `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
featureGates: [nope]
plugins:
- type: queue-scorer
- type: queue-scorer
- name: nameless
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: -2
  - pluginRef: ghost
flowControl:
  maxBytes: 1.5
`,
	want: []string{
		`featureGates[0]: unknown feature gate "nope" (known: dataLayer, enableLegacyMetrics, flowControl, haPopulateNonLeaderDatastore, prepareDataPlugins)`,
		`plugins[1].name: duplicate name "queue-scorer" (also plugins[0])`,
		`plugins[2].type: required`,
		`schedulingProfiles[0].plugins[0].weight: must be > 0`,
		`schedulingProfiles[0].plugins[1].pluginRef: no plugin named "ghost"`,
		`flowControl.maxBytes: must be a whole number that fits in 64 bits, got 1500m`,
	},
}}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := loadErrorCases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load([]byte(tc.yaml))
			if cfg != nil {
				t.Errorf("Load returned a config along with problems")
			}
			got := problemsOf(err)
			if diff := cmp.Diff(sortedCopy(tc.want), sortedCopy(got)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestErrorIsOneLine(t *testing.T) {
	t.Parallel()
	_, err := Load([]byte(header + "plugins: [{type: a}, {type: a}]\nschedulingProfiles: [{name: x, plugins: [{pluginRef: b}]}]\n"))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	want := `invalid config (2 problems): plugins[1].name: duplicate name "a" (also plugins[0]); schedulingProfiles[0].plugins[0].pluginRef: no plugin named "b"`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message spans lines")
	}
}

func TestLoadAPIVersions(t *testing.T) {
	t.Parallel()
	for _, v := range []string{APIVersionGIE, APIVersionLLMD} {
		cfg, err := Load([]byte("apiVersion: " + v + "\nkind: EndpointPickerConfig\nplugins: [{type: queue-scorer}]\n"))
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if cfg.APIVersion != v {
			t.Errorf("apiVersion = %q, want %q", cfg.APIVersion, v)
		}
	}
}

func TestLoadAcceptsJSON(t *testing.T) {
	t.Parallel()
	cfg, err := Load([]byte(`{"apiVersion": "llm-d.ai/v1alpha1", "kind": "EndpointPickerConfig",
		"plugins": [{"type": "queue-scorer", "parameters": {"b": 1, "a": [true]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(`{"a":[true],"b":1}`, canonicalJSON(cfg.Plugins[0].Parameters)); diff != "" {
		t.Errorf("parameters (-want +got):\n%s", diff)
	}
}
