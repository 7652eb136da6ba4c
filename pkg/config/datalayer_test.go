package config

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/scheduler"
)

// sourcePlugin stands in for a data source that feeds extractors (llm-d's
// models-data-source); it takes only readerPlugin extractors.
type sourcePlugin struct {
	*base
	fed []string
}

func (*sourcePlugin) Start(ctx context.Context) error { <-ctx.Done(); return nil }

func (s *sourcePlugin) AddExtractor(p scheduler.Plugin) error {
	if _, ok := p.(*readerPlugin); !ok {
		return fmt.Errorf("%q cannot extract from %q", p.TypedName().Name, s.tn.Name)
	}
	s.fed = append(s.fed, p.TypedName().Name)
	return nil
}

type readerPlugin struct{ *base }

func dataLayerRegistry(t *testing.T) *scheduler.Registry {
	t.Helper()
	reg := testRegistry(t)
	mustRegister(t, reg, scheduler.Registration{Type: "collector", Factory: fakeFactory("collector",
		func(b *base) scheduler.Plugin { return &sourcePlugin{base: b} })})
	mustRegister(t, reg, scheduler.Registration{Type: "reader", Factory: fakeFactory("reader",
		func(b *base) scheduler.Plugin { return &readerPlugin{b} })})
	return reg
}

const fedConfig = header + `plugins:
- type: queue-scorer
- {name: src, type: collector}
- {name: r1, type: reader}
- {name: r2, type: reader}
dataLayer:
  sources: [{pluginRef: src, extractors: [{pluginRef: r2}, {pluginRef: r1}]}]
`

func TestDataSourcesGetTheirExtractors(t *testing.T) {
	t.Parallel()
	reg := dataLayerRegistry(t)
	b := mustBuild(t, fedConfig, BuildOptions{Registry: reg})
	src, _ := b.Plugin("src")
	if diff := cmp.Diff([]string{"r2", "r1"}, src.(*sourcePlugin).fed); diff != "" {
		t.Errorf("extractors handed to the source (-want +got):\n%s", diff)
	}
	if slices.ContainsFunc(b.Warnings, func(w string) bool { return strings.Contains(w, "collects nothing") }) {
		t.Errorf("a fed source was warned about: %v", b.Warnings)
	}

	// Unchanged: reused as it is, never handed its extractors again.
	same := mustBuild(t, fedConfig, BuildOptions{Registry: reg, Previous: b})
	if !same.Reused("src") || len(src.(*sourcePlugin).fed) != 2 {
		t.Errorf("unchanged source: reused=%v, extractors %v", same.Reused("src"), src.(*sourcePlugin).fed)
	}
	// A changed pairing builds a new source with the new extractors.
	repaired := mustBuild(t, strings.Replace(fedConfig, "{pluginRef: r2}, ", "", 1), BuildOptions{Registry: reg, Previous: same})
	next, _ := repaired.Plugin("src")
	if repaired.Reused("src") || next == src {
		t.Fatal("a source whose extractors changed was reused")
	}
	if diff := cmp.Diff([]string{"r1"}, next.(*sourcePlugin).fed); diff != "" {
		t.Errorf("extractors of the rebuilt source (-want +got):\n%s", diff)
	}
	start, stop := repaired.Changes(same)
	if diff := cmp.Diff([]string{"src"}, runnableNames(start)); diff != "" {
		t.Errorf("started (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"src"}, runnableNames(stop)); diff != "" {
		t.Errorf("stopped (-want +got):\n%s", diff)
	}
}

func TestDataSourceRefusesExtractor(t *testing.T) {
	t.Parallel()
	cfg, err := Load([]byte(strings.Replace(fedConfig, "{pluginRef: r1}", "{pluginRef: queue-scorer}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = BuildWith(cfg, BuildOptions{Registry: dataLayerRegistry(t)})
	want := []string{`dataLayer.sources[0].extractors[1].pluginRef: "queue-scorer" cannot extract from "src"`}
	if diff := cmp.Diff(want, problemsOf(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestUnfedDataSourceIsWarnedAbout(t *testing.T) {
	t.Parallel()
	b := mustBuild(t, header+"plugins: [{type: queue-scorer}, {name: src, type: collector}]\n", BuildOptions{Registry: dataLayerRegistry(t)})
	want := `plugins[1]: data source "src" collects nothing: no dataLayer.sources entry pairs it with an extractor`
	if !slices.Contains(b.Warnings, want) {
		t.Errorf("warnings %q lack %q", b.Warnings, want)
	}
}

// TestSourceInterval: dataLayer.sources[].interval (llm-d's) reaches a
// source that takes one; a source that does not, or a non-positive one, is
// an error naming the entry.
func TestSourceInterval(t *testing.T) {
	t.Parallel()
	const plugins = header + `plugins:
- {type: dcgm-data-source, name: dcgm}
- {type: dcgm-extractor}
- {type: metrics-data-source}
- {type: core-metrics-extractor}
- {type: queue-scorer}
`
	b, err := build(t, plugins+"dataLayer:\n  sources:\n  - {pluginRef: dcgm, interval: 2s, extractors: [{pluginRef: dcgm-extractor}]}\n")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := b.Plugin("dcgm")
	if got := p.(*intervalSource).interval; got != 2*time.Second {
		t.Errorf("interval = %v, want 2s", got)
	}
	_, err = build(t, plugins+`dataLayer:
  sources:
  - {pluginRef: dcgm, interval: 0s}
  - {pluginRef: metrics-data-source, extractors: [{pluginRef: core-metrics-extractor}]}
  - {pluginRef: queue-scorer, interval: 100ms}
`)
	for _, want := range []string{
		"dataLayer.sources[0].interval: must be a positive duration, got 0s",
		`dataLayer.sources[2].interval: plugin "queue-scorer" (queue-scorer) takes no collection interval`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
