package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// llmdDiscovery is an llm-d header with a queue-scorer profile and a
// file-discovery plugin called "files".
const llmdDiscovery = llmd + `plugins:
- type: queue-scorer
- {name: files, type: file-discovery, parameters: {path: /eps.yaml}}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}]}]
`

// TestDiscoveryOnlyAsTheDiscoverySource: dataLayer.discovery must name a
// discovery plugin, and a discovery plugin may be named nowhere else.
func TestDiscoveryOnlyAsTheDiscoverySource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       []string
	}{{
		name: "discovery names a scorer",
		yaml: llmdDiscovery + "dataLayer: {discovery: {pluginRef: queue-scorer}}\n",
		want: []string{`dataLayer.discovery.pluginRef: "queue-scorer" is a scorer, not an endpoint discovery plugin`},
	}, {
		name: "in a profile",
		yaml: llmd + `plugins: [{type: queue-scorer}, {type: file-discovery}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: file-discovery}]}]
dataLayer: {discovery: {pluginRef: file-discovery}}
`,
		want: []string{`schedulingProfiles[0].plugins[1].pluginRef: "file-discovery" is an endpoint discovery plugin; a profile holds only filters, scorers and pickers`},
	}, {
		name: "as a data source, parser or detector",
		yaml: llmdDiscovery + `dataLayer:
  discovery: {pluginRef: files}
  sources: [{pluginRef: files, extractors: [{pluginRef: files}]}]
  peerDiscovery: {pluginRef: files}
requestHandler: {parsers: [{pluginRef: files}]}
saturationDetector: {pluginRef: files}
`,
		want: []string{
			`dataLayer.peerDiscovery.pluginRef: "files" is an endpoint discovery plugin; only dataLayer.discovery.pluginRef may name it`,
			`dataLayer.sources[0].extractors[0].pluginRef: "files" is an endpoint discovery plugin; only dataLayer.discovery.pluginRef may name it`,
			`dataLayer.sources[0].pluginRef: "files" is an endpoint discovery plugin; only dataLayer.discovery.pluginRef may name it`,
			`requestHandler.parsers[0].pluginRef: "files" is an endpoint discovery plugin; only dataLayer.discovery.pluginRef may name it`,
			`saturationDetector.pluginRef: "files" is an endpoint discovery plugin, not a saturation detector`,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := build(t, tc.yaml)
			if b != nil {
				t.Error("Build returned a result along with problems")
			}
			if diff := cmp.Diff(sortedCopy(tc.want), sortedCopy(problemsOf(err))); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuiltDiscovery(t *testing.T) {
	t.Parallel()
	b, err := build(t, llmdDiscovery+"dataLayer: {discovery: {pluginRef: files}}\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Discovery(); d == nil || d.TypedName().Name != "files" {
		t.Errorf("Discovery() = %v, want the plugin called files", d)
	}
	if len(b.Warnings) != 0 {
		t.Errorf("warnings: %q", b.Warnings)
	}

	b, err = build(t, llmdDiscovery)
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Discovery(); d != nil {
		t.Errorf("Discovery() = %v without dataLayer.discovery", d)
	}
	want := []string{`plugins[1]: endpoint discovery plugin "files" does nothing: dataLayer.discovery.pluginRef does not name it`}
	if diff := cmp.Diff(want, b.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}
