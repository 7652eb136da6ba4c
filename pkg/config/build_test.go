package config

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// build loads yaml and builds it with the test registry minus skip.
func build(t *testing.T, yaml string, skip ...string) (*Built, error) {
	t.Helper()
	cfg, err := Load([]byte(yaml))
	if err != nil {
		return nil, err
	}
	return Build(cfg, testRegistry(t, skip...), nil)
}

var buildErrorCases = []struct {
	name string
	yaml string
	skip []string
	want []string
}{{
	name: "unknown type",
	yaml: header + "plugins: [{type: queue-scorer}, {name: f, type: foo}]\n",
	want: []string{`plugins[1].type: plugin type "foo" is not supported by OpenEPP (known: {known})`},
}, {
	name: "an upstream type OpenEPP refuses says why",
	yaml: header + "plugins: [{type: queue-scorer}, {type: precise-prefix-cache-scorer}]\n",
	want: []string{`plugins[1].type: plugin type "precise-prefix-cache-scorer" is not supported by OpenEPP: llm-d's deprecated one-plugin form is not implemented; list a token-producer (backend vllm), a precise-prefix-cache-producer and a prefix-cache-scorer whose prefixMatchInfoProducerName names the producer`},
}, {
	name: "factory errors carry the plugin's path and name",
	yaml: header + `plugins:
- {name: s1, type: strict-scorer, parameters: {treshold: 1}}
- {name: s2, type: strict-scorer, parameters: {threshold: -1}}
- {type: panicky}
- {type: misnamed}
- {name: s3, type: strict-scorer, parameters: {label: on}}
`,
	want: []string{
		`plugins[0]: plugin "s1" of type "strict-scorer": parameters: json: unknown field "treshold"`,
		`plugins[1]: plugin "s2" of type "strict-scorer": threshold: must be >= 0`,
		`plugins[4]: plugin "s3" of type "strict-scorer": parameters: json: cannot unmarshal bool into Go struct field .label of type string` +
			` (YAML reads unquoted y, n, yes, no, on, off, true and false as booleans: quote the value)`,
		`plugins[2]: plugin "panicky" of type "panicky": factory panicked: boom`,
		`plugins[3]: plugin "misnamed" of type "misnamed": factory returned a plugin named "other" of type "misnamed"`,
	},
}, {
	name: "profiles hold only filters, scorers and pickers",
	yaml: header + `plugins:
- type: queue-scorer
- type: single-profile-handler
- type: inflight-load-producer
- type: metrics-data-source
- type: agent-identity
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: single-profile-handler
  - pluginRef: inflight-load-producer
  - pluginRef: metrics-data-source
  - pluginRef: agent-identity
`,
	want: []string{
		`schedulingProfiles[0].plugins[1].pluginRef: "single-profile-handler" is a profile handler; a profile holds only filters, scorers and pickers`,
		`schedulingProfiles[0].plugins[3].pluginRef: "metrics-data-source" is a non-scheduling plugin; a profile holds only filters, scorers and pickers`,
		`schedulingProfiles[0].plugins[4].pluginRef: "agent-identity" is a fairness-ID source; a profile holds only filters, scorers and pickers`,
	},
}, {
	name: "two pickers",
	yaml: header + `plugins: [{type: max-score-picker}, {type: random-picker}, {type: weighted-random-picker}]
schedulingProfiles:
- name: default
  plugins: [{pluginRef: max-score-picker}, {pluginRef: random-picker}, {pluginRef: weighted-random-picker}]
`,
	want: []string{
		`schedulingProfiles[0].plugins[1].pluginRef: second picker "random-picker" in this profile (plugins[0] is "max-score-picker"); a profile has exactly one`,
		`schedulingProfiles[0].plugins[2].pluginRef: second picker "weighted-random-picker" in this profile (plugins[0] is "max-score-picker"); a profile has exactly one`,
	},
}, {
	name: "two handlers",
	yaml: header + "plugins: [{type: queue-scorer}, {type: single-profile-handler}, {type: disagg-profile-handler}]\n",
	want: []string{`plugins[2]: second profile handler "disagg-profile-handler": exactly one is allowed (plugins[1] is "single-profile-handler")`},
}, {
	name: "single-profile-handler with two profiles",
	yaml: header + `plugins: [{type: queue-scorer}, {name: one, type: single-profile-handler}]
schedulingProfiles: [{name: a, plugins: []}, {name: b, plugins: []}]
`,
	want: []string{`plugins[1].type: "single-profile-handler" runs exactly one profile, but 2 are configured`},
}, {
	name: "two profiles and no handler",
	yaml: header + `plugins: [{type: queue-scorer}]
schedulingProfiles: [{name: prefill, plugins: []}, {name: decode, plugins: []}]
`,
	want: []string{`schedulingProfiles: a profile handler is required and none is configured (2 profiles)`},
}, {
	name: "a default scheduling plugin that is not registered",
	yaml: header + "plugins: [{type: queue-scorer}]\n",
	skip: []string{"max-score-picker"},
	want: []string{`plugins[9].type: plugin type "max-score-picker" is not supported by OpenEPP (it is added by default; register it)`},
}, {
	name: "a data-layer plugin written in the file must be registered",
	yaml: DefaultText,
	skip: []string{"metrics-data-source"},
	want: []string{`plugins[3].type: plugin type "metrics-data-source" is not supported by OpenEPP (known: {known without metrics-data-source})`},
}, {
	name: "resolver cannot find its target",
	yaml: header + "plugins: [{name: r, type: resolver-scorer, parameters: {target: nothing}}]\n",
	want: []string{`plugins[0]: plugin "r": resolve: no plugin named "nothing"`},
}, {
	name: "the saturation detector must rate saturation",
	yaml: header + "plugins: [{type: queue-scorer}, {type: max-score-picker}]\nsaturationDetector: {pluginRef: queue-scorer}\n" +
		"schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]\n",
	want: []string{`saturationDetector.pluginRef: "queue-scorer" is a scorer, not a saturation detector`},
}, {
	name: "llm-d's detector reference is checked too",
	yaml: llmd + "plugins: [{type: queue-scorer}, {type: max-score-picker}]\nflowControl: {saturationDetector: {pluginRef: max-score-picker}}\n" +
		"schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]\n",
	want: []string{`flowControl.saturationDetector.pluginRef: "max-score-picker" is a picker, not a saturation detector`},
}, {
	name: "schema, type and factory problems together",
	yaml: header + `plugins:
- {type: foo}
- {name: s, type: strict-scorer, parameters: {bad: 1}}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: s, weight: 0}]
`,
	want: []string{
		`plugins[0].type: plugin type "foo" is not supported by OpenEPP (known: {known})`,
		`plugins[1]: plugin "s" of type "strict-scorer": parameters: json: unknown field "bad"`,
		`schedulingProfiles[0].plugins[0].weight: must be > 0`,
	},
}}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	known := strings.Join(testRegistry(t).Types(), ", ")
	tests := buildErrorCases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				b   *Built
				err error
			)
			if cfg, lerr := decode([]byte(tc.yaml)); lerr != nil {
				err = lerr
			} else {
				b, err = Build(cfg, testRegistry(t, tc.skip...), nil)
			}
			if b != nil {
				t.Errorf("Build returned a result along with problems")
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				w = strings.ReplaceAll(w, "{known without metrics-data-source}", strings.Replace(known, "metrics-data-source, ", "", 1))
				want[i] = strings.ReplaceAll(w, "{known}", known)
			}
			if diff := cmp.Diff(sortedCopy(want), sortedCopy(problemsOf(err))); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildDefaultsByKind(t *testing.T) {
	t.Parallel()
	b, err := build(t, header+`plugins:
- type: decode-filter
- type: queue-scorer
- type: prefix-cache-scorer
- type: inflight-load-producer
- type: random-picker
  parameters: {maxNumOfEndpoints: 2}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := concat([]string{
		"plugin decode-filter: decode-filter",
		"plugin queue-scorer: queue-scorer",
		"plugin prefix-cache-scorer: prefix-cache-scorer",
		"plugin inflight-load-producer: inflight-load-producer",
		`plugin random-picker: random-picker {"maxNumOfEndpoints":2}`,
	}, optionalDefaults, []string{
		"plugin metrics-data-source: metrics-data-source",
		"plugin core-metrics-extractor: core-metrics-extractor",
		"plugin approx-prefix-cache-producer: approx-prefix-cache-producer",
		"plugin single-profile-handler: single-profile-handler",
		// Producers and the injected detector (a filter) stay out.
		"profile default: decode-filter queue-scorer*1 prefix-cache-scorer*1 random-picker",
		"parser: openai-parser",
		"saturationDetector: utilization-detector",
		"dataLayer source metrics-data-source: core-metrics-extractor",
	})
	if diff := cmp.Diff(want, summary(b.Config)); diff != "" {
		t.Errorf("effective config (-want +got):\n%s", diff)
	}
	if len(b.Warnings) != 0 {
		t.Errorf("warnings: %q", b.Warnings)
	}
	if diff := cmp.Diff(len(b.Config.Plugins), len(b.Plugins)); diff != "" {
		t.Errorf("instance count (-config +built):\n%s", diff)
	}
}

func TestBuildPickerAndWeightWarnings(t *testing.T) {
	t.Parallel()
	b, err := build(t, header+`plugins: [{type: queue-scorer}, {type: decode-filter}, {type: inflight-load-producer}]
schedulingProfiles:
- name: default
  plugins: [{pluginRef: decode-filter, weight: 5}, {pluginRef: queue-scorer}, {pluginRef: inflight-load-producer}]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`schedulingProfiles[0].plugins[0].weight: ignored: "decode-filter" is a filter, not a scorer`,
		`schedulingProfiles[0].plugins[2].pluginRef: "inflight-load-producer" is a producer, which runs for every request; listing it in a profile changes nothing`,
	}
	if diff := cmp.Diff(want, b.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	p := b.Config.SchedulingProfiles[0]
	if diff := cmp.Diff("default: decode-filter*5 queue-scorer*1 inflight-load-producer max-score-picker", profileLine(p)); diff != "" {
		t.Errorf("profile (-want +got):\n%s", diff)
	}
}

func profileLine(p ProfileSpec) string {
	c := &Config{SchedulingProfiles: []ProfileSpec{p}}
	return strings.TrimPrefix(summary(c)[0], "profile ")
}

func TestBuildSkipsUnregisteredOptionalDefaults(t *testing.T) {
	t.Parallel()
	b, err := build(t, header+"plugins: [{type: queue-scorer}]\n",
		"metrics-data-source", "core-metrics-extractor", "utilization-detector", "openai-parser", "anthropic-parser", "vllmhttp-parser", "sglanghttp-parser")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`plugins[1]: default plugin "openai-parser" not created: plugin type "openai-parser" is not supported by OpenEPP`,
		`plugins[2]: default plugin "anthropic-parser" not created: plugin type "anthropic-parser" is not supported by OpenEPP`,
		`plugins[3]: default plugin "vllmhttp-parser" not created: plugin type "vllmhttp-parser" is not supported by OpenEPP`,
		`plugins[4]: default plugin "sglanghttp-parser" not created: plugin type "sglanghttp-parser" is not supported by OpenEPP`,
		`plugins[5]: default plugin "utilization-detector" not created: plugin type "utilization-detector" is not supported by OpenEPP`,
		`plugins[6]: default plugin "metrics-data-source" not created: plugin type "metrics-data-source" is not supported by OpenEPP`,
		`plugins[7]: default plugin "core-metrics-extractor" not created: plugin type "core-metrics-extractor" is not supported by OpenEPP`,
	}
	if diff := cmp.Diff(want, b.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	var names []string
	for _, p := range b.Plugins {
		names = append(names, p.TypedName().Name)
	}
	if diff := cmp.Diff([]string{"queue-scorer", "single-profile-handler", "max-score-picker"}, names); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}
}

func TestBuiltSchedules(t *testing.T) {
	t.Parallel()
	b, err := build(t, DefaultText)
	if err != nil {
		t.Fatal(err)
	}
	eps := plugintest.Endpoints(5, 1)
	res, err := b.Scheduler.Schedule(context.Background(), b.Scheduler.NewState(), plugintest.Request("m", 100), eps)
	if err != nil {
		t.Fatal(err)
	}
	// Each stand-in scorer rates endpoint i as i/n, so the last one wins.
	var targets []string
	for _, e := range res.Targets() {
		targets = append(targets, e.String())
	}
	if diff := cmp.Diff([]string{eps[4].String()}, targets); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	prof := b.Scheduler.Profiles()[0]
	var weights []float64
	for _, s := range prof.Scorers {
		weights = append(weights, s.Weight)
	}
	if diff := cmp.Diff([]float64{2, 2, 3}, weights); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
	// The injected utilization-detector drives legacy admission: the
	// stand-in rates every pool saturated, so only a sheddable request fails.
	if d := b.Scheduler.SaturationDetector(); d == nil || d.TypedName().Name != "utilization-detector" {
		t.Fatalf("saturation detector %v, want the default utilization-detector", d)
	}
	req := plugintest.Request("m", 100)
	req.Priority = -1
	if _, err := b.Scheduler.Schedule(context.Background(), b.Scheduler.NewState(), req, eps); !errors.Is(err, scheduler.ErrRejected) {
		t.Errorf("sheddable request on a saturated pool: %v, want ErrRejected", err)
	}
}

func TestBuildLeavesInputAlone(t *testing.T) {
	t.Parallel()
	cfg, err := Load([]byte(header + "plugins: [{type: queue-scorer}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	before := summary(cfg)
	if _, err := Build(cfg, testRegistry(t), nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, summary(cfg)); diff != "" {
		t.Errorf("Build changed its input (-before +after):\n%s", diff)
	}
}

func TestBuildProgrammaticConfig(t *testing.T) {
	t.Parallel()
	nan, inf := math.NaN(), math.Inf(1)
	cfg := &Config{
		APIVersion: APIVersionGIE, Kind: Kind,
		Plugins: []PluginSpec{{Type: "queue-scorer", Parameters: []byte("{oops")}},
		SchedulingProfiles: []ProfileSpec{{Name: "p", Plugins: []ProfilePlugin{
			{PluginRef: "queue-scorer", Weight: &nan}, {PluginRef: "queue-scorer", Weight: &inf},
		}}},
	}
	_, err := Build(cfg, testRegistry(t), nil)
	want := []string{
		`plugins[0].parameters: invalid JSON`,
		`schedulingProfiles[0].plugins[0].weight: must be a finite number, got NaN`,
		`schedulingProfiles[0].plugins[1].pluginRef: "queue-scorer" is already in this profile (plugins[0])`,
		`schedulingProfiles[0].plugins[1].weight: must be a finite number, got +Inf`,
	}
	if diff := cmp.Diff(want, problemsOf(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if _, err := Build(nil, testRegistry(t), nil); err == nil {
		t.Errorf("Build(nil) succeeded")
	}
	if _, err := Build(cfg, nil, nil); err == nil {
		t.Errorf("Build without a registry succeeded")
	}
}

func TestInstances(t *testing.T) {
	t.Parallel()
	b, err := build(t, DefaultText)
	if err != nil {
		t.Fatal(err)
	}
	var runnables []string
	for _, r := range b.Runnables {
		runnables = append(runnables, r.Name)
	}
	if diff := cmp.Diff([]string{"metrics-data-source", "approx-prefix-cache-producer"}, runnables); diff != "" {
		t.Errorf("runnables (-want +got):\n%s", diff)
	}
	if got := len(Instances[scheduler.Scorer](b)); got != 3 {
		t.Errorf("scorers = %d, want 3", got)
	}
	if p, ok := b.Plugin("core-metrics-extractor"); !ok || p.TypedName().Type != "core-metrics-extractor" {
		t.Errorf("Plugin(core-metrics-extractor) = %v, %v", p, ok)
	}
}
