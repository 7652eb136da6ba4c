package config

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/scheduler"
)

const reuseBefore = header + `plugins:
- type: prefix-cache-scorer
  parameters: {blockSizeTokens: 16, lruCapacityPerServer: 100}
- type: queue-scorer
- name: r
  type: resolver-scorer
  parameters: {target: queue-scorer}
- type: metrics-data-source
  parameters: {path: /metrics}
- type: core-metrics-extractor
dataLayer:
  sources: [{pluginRef: metrics-data-source, extractors: [{pluginRef: core-metrics-extractor}]}]
`

// reuseAfter reorders and re-spaces the prefix parameters (same content),
// changes queue-scorer's and metrics-data-source's parameters, and keeps the
// resolver as it was.
const reuseAfter = header + `plugins:
- type: prefix-cache-scorer
  parameters: {lruCapacityPerServer: 100,   blockSizeTokens: 16}
- type: queue-scorer
  parameters: {scale: 2}
- name: r
  type: resolver-scorer
  parameters: {target: queue-scorer}
- type: metrics-data-source
  parameters: {path: /custom-metrics}
- type: core-metrics-extractor
dataLayer:
  sources: [{pluginRef: metrics-data-source, extractors: [{pluginRef: core-metrics-extractor}]}]
`

func TestRebuildReusesUnchangedInstances(t *testing.T) {
	t.Parallel()
	reg := testRegistry(t)
	prev := mustBuild(t, reuseBefore, BuildOptions{Registry: reg})
	next := mustBuild(t, reuseAfter, BuildOptions{Registry: reg, Previous: prev})

	wantReused := map[string]bool{
		"prefix-cache-scorer":          true, // same canonical parameters
		"approx-prefix-cache-producer": true, // the stateful index survives
		"queue-scorer":                 false,
		"r":                            false, // resolvers are always rebuilt
		"metrics-data-source":          false,
		"core-metrics-extractor":       true,
		"single-profile-handler":       true,
		"max-score-picker":             true,
	}
	for name, want := range wantReused {
		old, _ := prev.Plugin(name)
		cur, _ := next.Plugin(name)
		if got := next.Reused(name); got != want {
			t.Errorf("Reused(%q) = %t, want %t", name, got, want)
		}
		if same := old == cur; same != want {
			t.Errorf("%q: same instance = %t, want %t", name, same, want)
		}
	}
	r, _ := next.Plugin("r")
	q, _ := next.Plugin("queue-scorer")
	if r.(*resolverScorer).found != q {
		t.Errorf("the rebuilt resolver points at the old queue-scorer")
	}

	start, stop := next.Changes(prev)
	if diff := cmp.Diff([]string{"metrics-data-source"}, runnableNames(start)); diff != "" {
		t.Errorf("start (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"metrics-data-source"}, runnableNames(stop)); diff != "" {
		t.Errorf("stop (-want +got):\n%s", diff)
	}
	oldSource, _ := prev.Plugin("metrics-data-source")
	if stop[0].Runnable != oldSource.(scheduler.Runnable) {
		t.Errorf("stop lists the new source instead of the old one")
	}
	start, stop = prev.Changes(nil)
	if diff := cmp.Diff([]string{"metrics-data-source", "approx-prefix-cache-producer"}, runnableNames(start)); diff != "" || stop != nil {
		t.Errorf("first build: start (-want +got):\n%s stop=%v", diff, stop)
	}
}

func TestRebuildDropsRemovedInstances(t *testing.T) {
	t.Parallel()
	reg := testRegistry(t)
	prev := mustBuild(t, reuseBefore, BuildOptions{Registry: reg})
	next := mustBuild(t, header+"plugins: [{type: queue-scorer}]\ndataLayer: {}\n", BuildOptions{Registry: reg, Previous: prev})
	start, stop := next.Changes(prev)
	if diff := cmp.Diff([]string(nil), runnableNames(start)); diff != "" {
		t.Errorf("start (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"metrics-data-source", "approx-prefix-cache-producer"}, runnableNames(stop)); diff != "" {
		t.Errorf("stop (-want +got):\n%s", diff)
	}
	if !next.Reused("queue-scorer") {
		t.Errorf("queue-scorer was rebuilt although unchanged")
	}
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"null", ""},
		{" null ", ""},
		{" { } ", ""},
		{"[]", "[]"},
		{`{"b": 1, "a": {"d": [1, 2.50], "c": true}}`, `{"a":{"c":true,"d":[1,2.50]},"b":1}`},
		{`12345678901234567890`, `12345678901234567890`},
		{`{oops`, `{oops`},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, canonicalJSON([]byte(tc.in))); diff != "" {
			t.Errorf("canonicalJSON(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func mustBuild(t *testing.T, yaml string, opts BuildOptions) *Built {
	t.Helper()
	cfg, err := Load([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildWith(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func runnableNames(rs []NamedRunnable) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// heirPlugin records the instance it inherited from.
type heirPlugin struct {
	scorerPlugin
	from scheduler.Plugin
}

func (h *heirPlugin) Inherit(prev scheduler.Plugin) { h.from = prev }

func TestRebuiltInstancesInheritFromTheirPredecessor(t *testing.T) {
	t.Parallel()
	reg := testRegistry(t)
	for _, typ := range []string{"heir-scorer", "other-heir-scorer"} {
		mustRegister(t, reg, scheduler.Registration{Type: typ, Factory: func(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
			return &heirPlugin{scorerPlugin: scorerPlugin{&base{tn: scheduler.TypedName{Type: typ, Name: name}, params: string(raw)}}}, nil
		}})
	}
	cfg := func(plugins string) string {
		return header + "plugins:\n" + plugins + "schedulingProfiles:\n- name: default\n  plugins: [{pluginRef: a}, {pluginRef: b}, {pluginRef: c}]\n"
	}
	heir := func(b *Built, name string) *heirPlugin {
		p, _ := b.Plugin(name)
		return p.(*heirPlugin)
	}
	first := mustBuild(t, cfg("- {name: a, type: heir-scorer, parameters: {v: 1}}\n- {name: b, type: heir-scorer}\n- {name: c, type: heir-scorer}\n"), BuildOptions{Registry: reg})
	for _, n := range []string{"a", "b", "c"} {
		if heir(first, n).from != nil {
			t.Errorf("%s inherited in a first build", n)
		}
	}
	// a: new parameters, inherits; b: unchanged, reused as is; c: another
	// type under the same name, a stranger's state, so nothing.
	next := mustBuild(t, cfg("- {name: a, type: heir-scorer, parameters: {v: 2}}\n- {name: b, type: heir-scorer}\n- {name: c, type: other-heir-scorer}\n"),
		BuildOptions{Registry: reg, Previous: first})
	if got, want := heir(next, "a").from, scheduler.Plugin(heir(first, "a")); got != want {
		t.Errorf("a inherited from %v, want its predecessor", got)
	}
	if heir(next, "b") != heir(first, "b") || heir(next, "b").from != nil {
		t.Error("b: unchanged parameters must reuse the instance, which inherits nothing")
	}
	if heir(next, "c").from != nil {
		t.Error("c inherited from an instance of another type")
	}
	rebuilt, kept := next.Rebuilt(first)
	if diff := cmp.Diff([]string{"a", "c"}, rebuilt); diff != "" {
		t.Errorf("rebuilt (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a"}, kept); diff != "" {
		t.Errorf("kept state (-want +got):\n%s", diff)
	}
	if r, k := first.Rebuilt(nil); r != nil || k != nil {
		t.Errorf("a first build reports rebuilt %v, kept %v", r, k)
	}
}
